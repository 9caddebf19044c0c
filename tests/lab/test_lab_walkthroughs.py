"""Execute the lab walkthroughs (`docs/lab/NN-*.md`) against a real multi-node lab.

Same format and matching rules as the other walkthroughs (tests/e2e/test_walkthroughs.py: one
command per ```bash block, its ```text Verification compared line by line with placeholders
`<rv>`, `<uid>`, `<age>`, `<ip>`, `<any>` and `...` lines). The reader runs them against the lab
`lab/lab up` brings up (named `tk`, containers tk-etcd, tk-control-plane, tk-worker-N); here
they run against the session's lab (the `lab` fixture: its own name, so each `tk-<service>` in
a block becomes that lab's container, and `lab/lab` finds it through $TK_LAB_NAME). Each
document starts from a fresh cluster: `lab/lab reset` (etcd wiped, every worker's pods, chains
and overlay state removed) runs before it.

The environment is the reader's after "Before you begin": TINYKUBE_CONFIG=the lab's admin
kubeconfig (`eval "$(lab/lab kubeconfig)"`) and PATH starting with the venv's bin directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from lab import commands
from lab.cluster import Lab, run
from tests.e2e.test_walkthroughs import explain_mismatch, match_output, parse_steps, run_step

# Every test using the lab runs in one pytest-xdist worker (tests/conftest.py).
pytestmark = pytest.mark.xdist_group("lab")

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted((REPO / "docs" / "lab").glob("[0-9][0-9]-*.md"))
STEP_TIMEOUT = 180.0
_CONTAINER = re.compile(r"\btk-(etcd|control-plane|worker-\d+)\b")


def substitute(command: str, lab: Lab) -> str:
    """A bash block as it runs against `lab`: tk-<service> becomes lab's container name."""
    return _CONTAINER.sub(lambda m: lab.container(m.group(1)), command)


def test_substitute_names_the_labs_containers() -> None:
    lab = Lab("tktest")
    assert substitute("docker exec tk-worker-12 docker ps; docker logs tk-etcd", lab) == (
        "docker exec tktest-worker-12 docker ps; docker logs tktest-etcd")
    # Node names and other words that merely contain the prefix stay as written.
    assert substitute("tkctl get node worker-1; echo my-tk-worker-1x", lab) == (
        "tkctl get node worker-1; echo my-tk-worker-1x")


def start_stopped_workers(lab: Lab) -> None:
    for c in lab.containers():
        if c["state"] != "running":
            run([lab.docker, "start", c["name"]])


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
async def test_lab_walkthrough(doc: Path, lab: Lab) -> None:
    steps = parse_steps(doc.read_text(), str(doc.relative_to(REPO)))
    assert steps, f"{doc.name} has no ```bash steps"
    # A worker a failed document left stopped (docs/lab/09 stops one) would fail every later
    # document too: start it; reset waits until it is Ready.
    await asyncio.to_thread(start_stopped_workers, lab)
    await asyncio.to_thread(commands.reset, lab)
    env = {
        **os.environ,
        "TINYKUBE_SERVER": "",
        "TINYKUBE_CONFIG": str(lab.kubeconfig),
        "TK_LAB_NAME": lab.name,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "NO_COLOR": "1",
    }
    for step in steps:
        step.command = substitute(step.command, lab)
        code, output = await run_step(step, env, timeout=STEP_TIMEOUT)
        if step.expected is None:
            assert code == 0, (
                f"walkthrough {step.where()}: exited {code} (a step without a Verification "
                f"block must succeed)\n--- command ---\n{step.command}\n--- output ---\n{output}")
        elif not match_output(step.expected, output.splitlines()):
            pytest.fail(explain_mismatch(step, output, code), pytrace=False)


def test_lab_docs_parse() -> None:
    """Every lab walkthrough has steps with Verification blocks, and only ever names the reader's
    lab `tk` (the runner substitutes those names; any other lab name would not be)."""
    assert len(DOCS) >= 10, f"expected the ten lab walkthroughs, found {[d.name for d in DOCS]}"
    for doc in DOCS:
        text = doc.read_text()
        steps = parse_steps(text, doc.name)
        assert steps, f"{doc.name}: no ```bash steps"
        assert any(s.expected is not None for s in steps), f"{doc.name}: nothing is verified"
        for s in steps:
            assert s.command.strip(), f"{s.where()}: empty command"
            assert not re.search(r"lab/lab\s+--name", s.command), (
                f"{s.where()}: runs lab/lab with --name; the runner points lab/lab at its own "
                "lab through $TK_LAB_NAME")
