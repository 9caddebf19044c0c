"""Execute the numbered walkthroughs (`docs/NN-*.md`) so that what they promise stays true.

The docs follow Kubernetes The Hard Way: every step is a `##` heading, one sentence, one command
in a ```bash block and, usually, a Verification: a ```text block with the expected output. This
module parses them and runs every step, in order, against a fresh `harness.cluster.Cluster()` per
document (real etcd + apiserver on free ports; not a shared cluster, since the steps create and
delete objects by fixed names).

Running a step:
- only ```bash blocks run (```sh blocks are for the reader, such as setting variables in their
  own shell); each runs as `bash -c BLOCK` in the repo root with stdin closed, stdout and stderr
  merged, and the environment a reader's shell would have after "Before you begin":
  TINYKUBE_CONFIG=<the cluster's admin kubeconfig>, ETCDCTL_API=3, ETCDCTL_ENDPOINTS=<its etcd>,
  ETCDCTL_CACERT/ETCDCTL_CERT/ETCDCTL_KEY=<its etcd client certificate>, PKI=<its certificate
  directory>, AUDIT_LOG=<its audit log>, and PATH starting with this Python's bin directory (the
  venv's, with the `tkctl` console script);
- the Verification is the first ```text block after the command, before the next ```bash block
  or `#`/`##` heading (a `### Verification` heading may introduce it). A step with one is judged
  by its output only, not its exit status (some steps show an error on purpose); a step without
  one must exit 0.

Matching a Verification block against the output (`match_output`), line by line:
- each line has its leading and trailing whitespace removed and every run of whitespace collapsed
  to one space (tables may be aligned differently); blank lines are ignored on both sides;
- a placeholder stands for what varies from run to run: `<rv>`, `<uid>`, `<age>`, `<ip>` match
  one run of non-space characters; `<any>` matches anything within the line, spaces included,
  or nothing. Other `<...>` text (kubectl's `<none>`) is literal;
- a line that is exactly `...` matches any number of lines (none included).

A walkthrough says what it needs beyond etcd + apiserver in a comment, as `scripts/up` starts it:
`<!-- walkthrough-cluster: scheduler controller-manager hollow-nodes=3 kubelets=node-1 -->`.
`hosts=node-1,node-2` asks for networked nodes instead: a `harness.netcluster.NetCluster`
(scheduler, controller-manager with --cluster-cidr 10.244.0.0/16, and per node a host, a
network namespace on a veth underlay, running the node's kubelet, tk-netagent and tk-proxy),
started once every node is Ready, annotated by its netagent and synced by its proxy. scripts/up
names a node's host `tk-<node>` and keeps its state in `.tinykube/nodes/<node>/`; the runner's
hosts and state have other names (a random tag, the cluster's own directory), so before a bash
block runs, each `tk-<node>` in it is replaced by that node's network namespace and each
`.tinykube/nodes/` by the cluster's node directory. Node addresses are not replaced (the
underlay subnet is random here): commands read them from the Node objects, and Verification
blocks show them as `<ip>`.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted((REPO / "docs").glob("[0-9][0-9]-*.md"))
STEP_TIMEOUT = 60.0

# placeholder -> regex for what it matches
PLACEHOLDERS = {
    "rv": r"\S+",
    "uid": r"\S+",
    "age": r"\S+",
    "ip": r"\S+",
    "any": r".*",
}
_PLACEHOLDER = re.compile("<(" + "|".join(PLACEHOLDERS) + ")>")
ELLIPSIS = "..."


# --- parsing ---------------------------------------------------------------------------------


@dataclass
class Step:
    doc: str
    heading: str
    line: int  # where the ```bash block starts, 1-based
    command: str
    expected: list[str] | None = None  # None: no Verification block

    def where(self) -> str:
        return f"{self.doc}:{self.line} step {self.heading!r}"


def parse_steps(text: str, doc: str = "<doc>") -> list[Step]:
    """The ```bash blocks of a walkthrough, each with the ```text Verification that follows it."""
    steps: list[Step] = []
    heading = "(before the first heading)"
    lines = text.splitlines()
    i = 0
    awaiting: Step | None = None  # the last command, while its Verification may still follow
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^(```+|~~~+)\s*([\w+-]*)", line)
        if fence is None:
            h = re.match(r"^(#{1,2})\s+(.*)", line)  # `###` and deeper stay inside a step
            if h:
                heading = h.group(2).strip()
                awaiting = None
            i += 1
            continue
        marker, lang = fence.group(1), fence.group(2).lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].startswith(marker):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{doc}:{start + 1}: code block is not closed")
        i += 1  # the closing fence
        if lang == "bash":
            awaiting = Step(doc, heading, start + 1, "\n".join(body))
            steps.append(awaiting)
        elif lang == "text" and awaiting is not None:
            awaiting.expected = body
            awaiting = None
    return steps


# --- matching --------------------------------------------------------------------------------


def normalize(lines: list[str]) -> list[str]:
    """Strip each line, collapse whitespace runs to one space, drop blank lines."""
    out = []
    for line in lines:
        squeezed = " ".join(line.split())
        if squeezed:
            out.append(squeezed)
    return out


def _line_regex(expected: str) -> re.Pattern[str]:
    parts: list[str] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(expected):
        parts.append(re.escape(expected[pos : m.start()]))
        parts.append(f"(?:{PLACEHOLDERS[m.group(1)]})")
        pos = m.end()
    parts.append(re.escape(expected[pos:]))
    return re.compile("".join(parts))


def line_matches(expected: str, actual: str) -> bool:
    """One normalized expected line against one normalized output line."""
    return _line_regex(expected).fullmatch(actual) is not None


def match_output(expected: list[str], actual: list[str]) -> bool:
    """Whether the output matches the Verification block (rules in the module docstring)."""
    exp = normalize(expected)
    act = normalize(actual)
    regexes = [None if e == ELLIPSIS else _line_regex(e) for e in exp]
    # reachable[j]: the expected lines consumed so far can match exactly act[:j]
    reachable = [True] + [False] * len(act)
    for rx in regexes:
        nxt = [False] * (len(act) + 1)
        for j, ok in enumerate(reachable):
            if not ok:
                continue
            if rx is None:  # `...`: any number of lines
                for k in range(j, len(act) + 1):
                    nxt[k] = True
                break
            if j < len(act) and rx.fullmatch(act[j]):
                nxt[j + 1] = True
        reachable = nxt
    return reachable[len(act)]


def explain_mismatch(step: Step, output: str, returncode: int | None) -> str:
    exp = normalize(step.expected or [])
    act = normalize(output.splitlines())
    diff = "\n".join(
        difflib.unified_diff(exp, act, "expected (Verification)", "actual output", lineterm="")
    )
    return (
        f"walkthrough {step.where()}: output does not match its Verification block\n"
        f"--- command ---\n{step.command}\n"
        f"--- exit status: {returncode} ---\n"
        f"--- diff (whitespace collapsed; placeholders and `...` shown as written) ---\n{diff}\n"
        f"--- raw output ---\n{output}"
    )


# --- running ---------------------------------------------------------------------------------


async def run_step(step: Step, env: dict[str, str],
                   timeout: float = STEP_TIMEOUT) -> tuple[int | None, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", step.command, cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = await proc.communicate()
        pytest.fail(
            f"walkthrough {step.where()}: timed out after {timeout:.0f}s\n"
            f"--- command ---\n{step.command}\n--- output ---\n{out.decode(errors='replace')}"
        )
    return proc.returncode, out.decode(errors="replace")


# A walkthrough that needs more than etcd + apiserver says so in an HTML comment, e.g.
# `<!-- walkthrough-cluster: scheduler controller-manager hollow-nodes=3 -->`, matching what
# `scripts/up` starts for the reader.
_CLUSTER_SPEC = re.compile(r"<!--\s*walkthrough-cluster:\s*(.*?)\s*-->")


def cluster_spec(text: str) -> dict[str, str]:
    """The components a walkthrough's comment asks for: name -> value ("" when bare)."""
    m = _CLUSTER_SPEC.search(text)
    if m is None:
        return {}
    spec = {}
    for word in m.group(1).split():
        name, _, value = word.partition("=")
        spec[name] = value
    unknown = set(spec) - {"scheduler", "controller-manager", "hollow-nodes", "kubelets", "hosts"}
    if unknown:
        raise ValueError(f"walkthrough-cluster: unknown component(s) {sorted(unknown)}")
    return spec


async def start_components(cluster: Any, spec: dict[str, str]) -> None:
    """Start what `spec` names against `cluster`, as scripts/up would, and wait for the nodes."""

    if "scheduler" in spec:
        cluster.start_scheduler()
    if "controller-manager" in spec:
        # Real kubelets route their podCIDRs on this host: keep them apart from scripts/up's
        # 10.244.0.0/16 (a reader's cluster may be running beside the tests).
        cidr = ("--cluster-cidr", "10.243.0.0/16") if "kubelets" in spec else ()
        cluster.start_controller_manager(*cidr)
    nodes = 0
    if "hollow-nodes" in spec:
        nodes += int(spec["hollow-nodes"] or 3)
        cluster.start_hollow_nodes(nodes, "--name-prefix", "hollow-")
    if "kubelets" in spec:
        # Real kubelets on this machine's Docker engine (`kubelets=node-1,node-2`), as
        # scripts/up starts one.
        from harness.docker import ensure_images

        await asyncio.to_thread(ensure_images)
        names = (spec["kubelets"] or "node-1").split(",")
        for name in names:
            cluster.start_kubelet(name)
        nodes += len(names)
    if nodes:
        await cluster.wait_nodes_ready(nodes)


async def wait_hosts_ready(nc: Any, timeout: float = 90.0) -> None:
    """Until every node's netagent published its VTEP and every proxy wrote KUBE-SERVICES (what
    scripts/up waits for before it goes on)."""
    from harness.wait import until

    def ready() -> bool:
        for host in nc.hosts.values():
            if host.run("iptables", "-w", "-t", "nat", "-S", "KUBE-SERVICES",
                        check=False).returncode != 0:
                return False
        return True

    async def annotated() -> bool:
        for node in nc.nodes:
            obj = await nc.c.client.get("nodes", node)
            notes = obj["metadata"].get("annotations") or {}
            if "flannel.alpha.coreos.com/public-ip" not in notes:
                return False
        return await asyncio.to_thread(ready)

    await until(annotated, timeout=timeout, what="netagents annotated and proxies synced")


def substitute(command: str, nc: Any) -> str:
    """A bash block as it runs against `nc` (module docstring): each `tk-<node>` becomes that
    node's network namespace, each `.tinykube/nodes/` the cluster's node directory."""
    if nc is None:
        return command
    names = "|".join(re.escape(n) for n in sorted(nc.hosts, key=len, reverse=True))
    command = re.sub(rf"\btk-({names})(?![\w.-])", lambda m: nc.hosts[m.group(1)].netns,
                     command)
    return command.replace(".tinykube/nodes/", f"{nc.c.dir / 'nodes'}/")


@asynccontextmanager
async def walkthrough_cluster(spec: dict[str, str]) -> AsyncIterator[tuple[Any, Any]]:
    """(cluster, netcluster or None) with what `spec` asks for, running."""
    from harness.cluster import Cluster

    if "hosts" in spec:
        from harness.docker import ensure_images
        from harness.netcluster import NetCluster

        await asyncio.to_thread(ensure_images)
        names = (spec["hosts"] or "node-1,node-2").split(",")
        async with NetCluster(node_names=names, cluster_cidr="10.244.0.0/16") as nc:
            await wait_hosts_ready(nc)
            yield nc.c, nc
        return
    async with Cluster() as cluster:
        await start_components(cluster, spec)
        yield cluster, None


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
async def test_walkthrough(doc: Path) -> None:
    text = doc.read_text()
    steps = parse_steps(text, str(doc.relative_to(REPO)))
    assert steps, f"{doc.name} has no ```bash steps"
    async with walkthrough_cluster(cluster_spec(text)) as (cluster, nc):
        env = {
            **os.environ,
            "TINYKUBE_SERVER": "",
            "TINYKUBE_CONFIG": cluster.kubeconfig,
            "PKI": str(cluster.pki),
            "AUDIT_LOG": str(cluster.audit_log),
            **cluster.etcd.etcdctl_env(),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
            "NO_COLOR": "1",
        }
        for step in steps:
            step.command = substitute(step.command, nc)
            code, output = await run_step(step, env)
            if step.expected is None:
                assert code == 0, (
                    f"walkthrough {step.where()}: exited {code} (a step without a Verification "
                    f"block must succeed)\n--- command ---\n{step.command}\n--- output ---\n"
                    f"{output}"
                )
            elif not match_output(step.expected, output.splitlines()):
                extra = f"\n--- node components ---\n{nc.logs()}" if nc is not None else ""
                pytest.fail(explain_mismatch(step, output, code) + extra, pytrace=False)


# --- the parser and matcher themselves (no cluster) ------------------------------------------


def test_docs_parse() -> None:
    """Every walkthrough has steps, and each step sits under a heading."""
    assert DOCS, "no docs/NN-*.md walkthroughs found"
    for doc in DOCS:
        steps = parse_steps(doc.read_text(), doc.name)
        assert steps, f"{doc.name}: no ```bash steps"
        verified = [s for s in steps if s.expected is not None]
        assert verified, f"{doc.name}: no step has a Verification block"
        for s in steps:
            assert s.command.strip(), f"{s.where()}: empty command"


def test_parse_steps_pairs_commands_with_verification() -> None:
    text = """# Title

```sh
export NOT_RUN=1
```

## Step one

Do a thing.

```bash
echo one
```

Verification:

```text
one
```

## Step two

```bash
true
```

## Step three

```text
stray output with no command in this step
```

```bash
printf 'a\\nb\\n'
```

```text
a
b
```
"""
    steps = parse_steps(text, "t.md")
    assert [(s.heading, s.command, s.expected) for s in steps] == [
        ("Step one", "echo one", ["one"]),
        ("Step two", "true", None),
        ("Step three", "printf 'a\\nb\\n'", ["a", "b"]),
    ]
    assert steps[0].line == 11


def test_parse_steps_rejects_unclosed_block() -> None:
    with pytest.raises(ValueError, match="not closed"):
        parse_steps("## S\n```bash\necho\n", "t.md")


def test_matcher_collapses_whitespace_and_ignores_blank_lines() -> None:
    expected = ["NAME               READY   UP-TO-DATE   AVAILABLE   AGE",
                "nginx-deployment   0/3     0            0           <age>"]
    actual = ["", "NAME READY  UP-TO-DATE AVAILABLE AGE  ", "nginx-deployment 0/3 0 0 12s", ""]
    assert match_output(expected, actual)


def test_matcher_placeholders() -> None:
    assert match_output(["uid: <uid>", "resourceVersion: <rv>"],
                        ["uid: 0b7e-11ee", "resourceVersion: 1234"])
    # A one-word placeholder does not swallow spaces ...
    assert not match_output(["resourceVersion: <rv>"], ["resourceVersion: 12 34"])
    assert not match_output(["resourceVersion: <rv>"], ["resourceVersion:"])
    # ... `<any>` does, and may match nothing.
    assert match_output(["Error from server (Conflict): <any>modified<any>"],
                        ["Error from server (Conflict): the object has been modified; retry"])
    assert match_output(["a<any>b"], ["ab"])
    # kubectl's `<none>` is literal text, not a placeholder.
    assert match_output(["IP <none>"], ["IP <none>"])
    assert not match_output(["IP <none>"], ["IP 10.0.0.1"])
    # Regex characters in the expected text are literal.
    assert not match_output(["a.c (x)"], ["abc (x)"])
    assert match_output(["a.c (x) [y]*"], ["a.c (x) [y]*"])


def test_matcher_rejects_what_should_not_match() -> None:
    expected = ["deployment.apps/nginx-deployment created"]
    assert not match_output(expected, ["deployment.apps/nginx-deployment configured"])
    assert not match_output(expected, [])  # missing line
    assert not match_output(expected, [expected[0], "extra line"])  # extra line
    assert not match_output(["a", "b"], ["b", "a"])  # order matters
    assert not match_output([], ["unexpected output"])
    assert match_output([], ["", "   "])


def test_matcher_ellipsis() -> None:
    expected = ["{", '"kind": "Deployment",', "...", '"name": "nginx-deployment",', "...", "}"]
    actual = ["{", '    "kind": "Deployment",', '    "metadata": {', '        "a": 1,',
              '        "name": "nginx-deployment",', "    }", "}"]
    assert match_output(expected, actual)
    assert match_output(["...", "}"], ["}"])  # `...` may match no line
    assert match_output(["..."], [])
    assert not match_output(expected, actual[:-2])  # the closing line is still required
    assert not match_output(["...", "x"], ["x", "y"])  # nothing after the last literal line


def test_mismatch_message_names_doc_and_step() -> None:
    step = Step("docs/01-x.md", "Apply it", 12, "tkctl apply -f x.yaml", ["created"])
    msg = explain_mismatch(step, "error: boom\n", 1)
    assert "docs/01-x.md:12" in msg and "'Apply it'" in msg
    assert "-created" in msg and "+error: boom" in msg


def test_cluster_spec_comment() -> None:
    text = "intro\n<!-- walkthrough-cluster: scheduler controller-manager hollow-nodes=3 -->\n"
    assert cluster_spec(text) == {"scheduler": "", "controller-manager": "", "hollow-nodes": "3"}
    assert cluster_spec("no comment here") == {}
    with pytest.raises(ValueError, match="kubelet"):
        cluster_spec("<!-- walkthrough-cluster: kubelet -->")


def test_substitute_maps_scripts_up_names_to_the_run() -> None:
    from types import SimpleNamespace

    nc = SimpleNamespace(hosts={"node-1": SimpleNamespace(netns="tkn1a2b3c0"),
                                "node-2": SimpleNamespace(netns="tkn1a2b3c1")},
                         c=SimpleNamespace(dir=Path("/tmp/cluster")))
    assert substitute("ip netns exec tk-node-1 ip route; ip -n tk-node-2 link", nc) == (
        "ip netns exec tkn1a2b3c0 ip route; ip -n tkn1a2b3c1 link")
    # Only whole host names, and the node state directory.
    assert substitute("tk-node-10 tk-node-1.x", nc) == "tk-node-10 tk-node-1.x"
    assert substitute("cat .tinykube/nodes/node-1/subnet.env", nc) == (
        "cat /tmp/cluster/nodes/node-1/subnet.env")
    assert substitute("ip netns exec tk-node-1 true", None) == "ip netns exec tk-node-1 true"
