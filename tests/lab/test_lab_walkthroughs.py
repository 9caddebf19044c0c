"""Execute the lab walkthroughs (`docs/lab/NN-*.md`) against a real multi-node lab.

Same format and matching rules as the other walkthroughs (tests/e2e/test_walkthroughs.py: one
command per ```bash block, its ```text Verification compared line by line with placeholders
`<rv>`, `<uid>`, `<age>`, `<ip>`, `<any>` and `...` lines). The reader runs them against the lab
`lab/lab up` brings up (named `tk`, containers tk-etcd, tk-control-plane, tk-worker-N); here
they run against the session's lab (the `lab` fixture: its own name, so each `tk-<service>` in
a block becomes that lab's container, and `lab/lab` finds it through $TK_LAB_NAME). Each
document starts from a fresh cluster: `lab/lab reset` (etcd wiped, every worker's pods, chains
and overlay state removed) runs before it.

The environment is the reader's after "Before you begin": KUBECONFIG and TINYKUBE_CONFIG = the
lab's admin kubeconfig (`eval "$(lab/lab kubeconfig)"`) and PATH starting with the venv's bin
directory (tkctl), before it a directory whose `kubectl` is the one chosen here.

The commands a reader types are `kubectl ...`, so the steps run with a real kubectl:
`$TK_KUBECTL` (a name on PATH or a path; `none` behaves as a machine without kubectl), else
`kubectl` on PATH. A kubectl older than 1.30 speaks SPDY for exec (1.31 for port-forward),
which tinykube does not serve: a document with such a step is skipped, saying so. Without any
kubectl, each step runs with `tkctl` in its place (tinykube's own CLI takes the same commands),
but only in a document where tkctl prints what the Verification blocks show: a step where it
prints otherwise (or a verb tkctl does not have) carries the comment
`<!-- tkctl-differs: why -->` on a line of its own before its ```bash block, and its document is
skipped with the reason "no kubectl binary on this machine". Never a silent pass: either the
document runs, step by step, or it is reported skipped.
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
from tests.conformance import framework
from tests.conformance.framework import NO_KUBECTL
from tests.conformance.framework import KubectlBinary as Kubectl
from tests.e2e.test_walkthroughs import Step, explain_mismatch, match_output, parse_steps, run_step

# Every test using the lab runs in one pytest-xdist worker (tests/conftest.py).
pytestmark = pytest.mark.xdist_group("lab")

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted((REPO / "docs" / "lab").glob("[0-9][0-9]-*.md"))
STEP_TIMEOUT = 180.0
_CONTAINER = re.compile(r"\btk-(etcd|control-plane|worker-\d+)\b")
_KUBECTL = re.compile(r"(?<![\w./-])kubectl(?![\w.-])")
_DIFFERS = re.compile(r"^<!--\s*tkctl-differs:?\s*(.*?)\s*-->\s*$")
# kubectl verbs that stream over WebSocket against tinykube, and the first kubectl that does.
STREAMING = {"exec": (1, 30), "attach": (1, 30), "cp": (1, 30), "port-forward": (1, 31)}


def find_kubectl() -> Kubectl | None:
    try:
        return framework.find_kubectl()
    except ValueError as e:
        pytest.fail(str(e), pytrace=False)


def substitute(command: str, lab: Lab) -> str:
    """A bash block as it runs against `lab`: tk-<service> becomes lab's container name."""
    return _CONTAINER.sub(lambda m: lab.container(m.group(1)), command)


def with_tkctl(command: str) -> str:
    """A bash block with tkctl wherever it runs kubectl (not kubectl.1.30, not ~/.kube/...)."""
    return _KUBECTL.sub("tkctl", command)


def tkctl_differs(text: str) -> dict[int, str]:
    """Line of each ```bash block (1-based, as Step.line) marked `<!-- tkctl-differs: ... -->`
    -> the reason given."""
    marked: dict[int, str] = {}
    pending: str | None = None
    for i, line in enumerate(text.splitlines(), start=1):
        m = _DIFFERS.match(line)
        if m:
            pending = m.group(1) or "tkctl prints otherwise"
        elif pending is not None and line.startswith("```bash"):
            marked[i] = pending
            pending = None
    return marked


def kubectl_verbs(step: Step) -> set[str]:
    return set(re.findall(r"(?<![\w./-])kubectl\s+([a-z-]+)", step.command))


def why_skip(doc: str, steps: list[Step], kubectl: Kubectl | None, text: str) -> str | None:
    """Why this document cannot run with this kubectl (or without one), or None."""
    uses = [s for s in steps if _KUBECTL.search(s.command)]
    if kubectl is None:
        marked = tkctl_differs(text)
        differing = [s for s in uses if s.line in marked]
        if differing:
            s = differing[0]
            return (f"{NO_KUBECTL}; tkctl in its place would print otherwise in "
                    f"{len(differing)} step(s) of {doc}, e.g. {s.heading!r} "
                    f"({marked[s.line]})")
        return None
    for s in uses:
        for verb in sorted(kubectl_verbs(s) & set(STREAMING)):
            if kubectl.version < STREAMING[verb]:
                need = ".".join(map(str, STREAMING[verb]))
                return (f"{kubectl} speaks SPDY for `kubectl {verb}` "
                        f"(step {s.heading!r}); tinykube serves it over WebSocket only: "
                        f"kubectl {need} or newer")
    return None


def test_substitute_names_the_labs_containers() -> None:
    lab = Lab("tktest")
    assert substitute("docker exec tk-worker-12 docker ps; docker logs tk-etcd", lab) == (
        "docker exec tktest-worker-12 docker ps; docker logs tktest-etcd")
    # Node names and other words that merely contain the prefix stay as written.
    assert substitute("kubectl get node worker-1; echo my-tk-worker-1x", lab) == (
        "kubectl get node worker-1; echo my-tk-worker-1x")


def test_with_tkctl_replaces_only_the_command() -> None:
    assert with_tkctl("kubectl get pods | grep x && kubectl\tlogs y") == (
        "tkctl get pods | grep x && tkctl\tlogs y")
    for keep in ("kubectl.1.30 get pods", "ls ~/.kube/kubectl-cache", "/usr/bin/kubectl-foo",
                 "mykubectl get"):
        assert with_tkctl(keep) == keep


def test_tkctl_differs_marks_the_next_bash_block() -> None:
    text = ("# T\n\n## a\n\n```bash\nkubectl get pods\n```\n\n## b\n\n"
            "<!-- tkctl-differs: kubectl explain -->\n\n```bash\nkubectl explain pods\n```\n")
    steps = parse_steps(text)
    assert tkctl_differs(text) == {steps[1].line: "kubectl explain"}
    assert why_skip("t.md", steps, None, text) == (
        f"{NO_KUBECTL}; tkctl in its place would print otherwise in 1 step(s) of t.md, "
        "e.g. 'b' (kubectl explain)")
    plain = "# T\n\n## a\n\n```bash\nkubectl get pods\n```\n"
    assert why_skip("t.md", parse_steps(plain), None, plain) is None


def test_old_kubectl_skips_streaming_steps() -> None:
    text = "# T\n\n## a\n\n```bash\nkubectl exec -it web -- sh\n```\n"
    steps = parse_steps(text)
    reason = why_skip("t.md", steps, Kubectl("/k", (1, 29)), text)
    assert reason is not None and "kubectl 1.30 or newer" in reason
    assert why_skip("t.md", steps, Kubectl("/k", (1, 30)), text) is None
    pf = "# T\n\n## a\n\n```bash\nkubectl port-forward pod/web 8080:80\n```\n"
    assert why_skip("t.md", parse_steps(pf), Kubectl("/k", (1, 30)), pf) is not None


def start_stopped_workers(lab: Lab) -> None:
    for c in lab.containers():
        if c["state"] != "running":
            run([lab.docker, "start", c["name"]])


@pytest.fixture(scope="module")
def kubectl_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Kubectl | None, str]:
    """The kubectl the documents run with, and a directory whose `kubectl` is it (first on
    PATH, so that every step runs that one)."""
    kubectl = find_kubectl()
    d = tmp_path_factory.mktemp("kubectl")
    if kubectl is not None:
        (d / "kubectl").symlink_to(kubectl.path)
    return kubectl, str(d)


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
async def test_lab_walkthrough(doc: Path, lab: Lab,
                               kubectl_dir: tuple[Kubectl | None, str]) -> None:
    kubectl, bindir = kubectl_dir
    text = doc.read_text()
    steps = parse_steps(text, str(doc.relative_to(REPO)))
    assert steps, f"{doc.name} has no ```bash steps"
    reason = why_skip(doc.name, steps, kubectl, text)
    if reason:
        pytest.skip(reason)
    # A worker a failed document left stopped (docs/lab/09 stops one) would fail every later
    # document too: start it; reset waits until it is Ready.
    await asyncio.to_thread(start_stopped_workers, lab)
    await asyncio.to_thread(commands.reset, lab)
    env = {
        **os.environ,
        "TINYKUBE_SERVER": "",
        "TINYKUBE_CONFIG": str(lab.kubeconfig),
        "KUBECONFIG": str(lab.kubeconfig),
        "TK_LAB_NAME": lab.name,
        "PATH": os.pathsep.join([bindir, str(Path(sys.executable).parent), os.environ["PATH"]]),
        "NO_COLOR": "1",
    }
    for step in steps:
        step.command = substitute(step.command, lab)
        if kubectl is None:
            step.command = with_tkctl(step.command)
        code, output = await run_step(step, env, timeout=STEP_TIMEOUT)
        if step.expected is None:
            assert code == 0, (
                f"walkthrough {step.where()}: exited {code} (a step without a Verification "
                f"block must succeed)\n--- command ---\n{step.command}\n--- output ---\n{output}")
        elif not match_output(step.expected, output.splitlines()):
            client = str(kubectl) if kubectl else f"tkctl ({NO_KUBECTL})"
            pytest.fail(f"[run with {client}] " + explain_mismatch(step, output, code),
                        pytrace=False)


def test_lab_docs_parse() -> None:
    """Every lab walkthrough has steps with Verification blocks, types kubectl (tkctl only in
    01's note that it takes the same commands), and only ever names the reader's lab `tk` (the
    runner substitutes those names; any other lab name would not be)."""
    assert len(DOCS) >= 11, f"expected the eleven lab walkthroughs, found {[d.name for d in DOCS]}"
    for doc in DOCS:
        text = doc.read_text()
        steps = parse_steps(text, doc.name)
        assert steps, f"{doc.name}: no ```bash steps"
        assert any(s.expected is not None for s in steps), f"{doc.name}: nothing is verified"
        assert any(_KUBECTL.search(s.command) for s in steps), f"{doc.name}: no kubectl step"
        for line in tkctl_differs(text):
            assert any(s.line == line for s in steps), f"{doc.name}:{line}: marker, no step"
        for s in steps:
            assert s.command.strip(), f"{s.where()}: empty command"
            assert not re.search(r"lab/lab\s+--name", s.command), (
                f"{s.where()}: runs lab/lab with --name; the runner points lab/lab at its own "
                "lab through $TK_LAB_NAME")
            if not doc.name.startswith("01-"):
                assert not re.search(r"(?<![\w./-])tkctl(?![\w.-])", s.command), (
                    f"{s.where()}: runs tkctl; the walkthroughs show kubectl (01 says that "
                    "tkctl takes the same commands)")
