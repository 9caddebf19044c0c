"""kubelet/runtime.py against the real Docker engine: sandboxes, app containers, states, exec.

Every test labels its containers with a node name of its own (`test-<uuid>`), so that it sees
only its containers while other test processes use the same engine, and removes them at the end.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from harness.wait import until
from kubelet import labels as L
from kubelet.runtime import (
    EXEC_TIMEOUT_EXIT,
    ContainerInfo,
    ContainerNotFound,
    DockerRuntime,
    Mount,
    RuntimeFailure,
    RuntimeUnavailable,
    container_config,
)

pytestmark = pytest.mark.docker

PAUSE = "tinykube/pause:1"
BUSYBOX = "tinykube/busybox:1"
SERVE_HOSTNAME = "tinykube/serve-hostname:1"


@dataclass
class Node:
    rt: DockerRuntime
    name: str

    async def sandbox(self, pod: dict[str, Any]) -> str:
        sid = await self.rt.create_sandbox(pod, self.name, 0, PAUSE)
        await self.rt.start(sid)
        return sid

    async def container(self, pod: dict[str, Any], container: dict[str, Any], sandbox_id: str,
                        *, env: list[tuple[str, str]] | None = None,
                        mounts: list[Mount] | None = None, start: bool = True,
                        restart_count: int = 0) -> str:
        cfg = container_config(pod, container, sandbox_id=sandbox_id,
                               restart_count=restart_count, env=env or [], mounts=mounts or [],
                               node_name=self.name)
        cid = await self.rt.create_container(cfg)
        if start:
            await self.rt.start(cid)
        return cid

    async def exited(self, cid: str) -> ContainerInfo:
        async def check() -> ContainerInfo | None:
            info = await self.rt.inspect(cid)
            return info if info is not None and info.state == "exited" else None
        return await until(check, timeout=30, what=f"container {cid[:12]} exited")


def make_pod(name: str = "p", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "h3", "uid": str(uuid.uuid4())},
            "spec": {"containers": [], **spec}}


async def _cleanup(rt: DockerRuntime, node_name: str) -> None:
    for c in await rt.list_containers(node_name):
        await rt.remove(c.id)


@pytest_asyncio.fixture
async def node(docker_ready: None) -> AsyncIterator[Node]:
    rt = DockerRuntime()
    n = Node(rt, f"test-{uuid.uuid4().hex[:10]}")
    try:
        yield n
    finally:
        await _cleanup(rt, n.name)
        await rt.close()


async def test_ping_and_version(node: Node) -> None:
    await node.rt.ping()
    assert (await node.rt.version()).startswith("docker://")


async def test_unavailable_docker_raises_runtime_unavailable(tmp_path: Path) -> None:
    rt = DockerRuntime(base_url=f"unix://{tmp_path}/nothing.sock")
    try:
        with pytest.raises(RuntimeUnavailable):
            await rt.ping()
        with pytest.raises(RuntimeUnavailable):
            await rt.list_containers("x")
        # the SDK client for logs/exec can be had before Docker answers (kubelet start-up)
        assert rt.docker_client.api.base_url
    finally:
        await rt.close()


async def test_containers_of_a_pod_share_localhost_and_hostname(node: Node) -> None:
    pod = make_pod("web-1")
    sid = await node.sandbox(pod)
    await node.container(pod, {"name": "server", "image": SERVE_HOSTNAME}, sid)
    client = await node.container(pod, {"name": "client", "image": BUSYBOX,
                                        "command": ["sleep", "3600"]}, sid)

    async def fetch() -> bytes | None:
        code, out = await node.rt.exec_sync(
            client, ["wget", "-qO-", "http://127.0.0.1:9376"], timeout=5)
        return out if code == 0 else None

    # serve-hostname answers with its hostname: the pod's name, from the sandbox's UTS namespace
    assert (await until(fetch, timeout=20, what="serve-hostname over localhost")).strip() \
        == b"web-1"
    inspect = await asyncio.to_thread(node.rt.docker_client.api.inspect_container, client)
    assert inspect["HostConfig"]["NetworkMode"] == f"container:{sid}"
    assert inspect["HostConfig"]["IpcMode"] == f"container:{sid}"
    sandbox = await asyncio.to_thread(node.rt.docker_client.api.inspect_container, sid)
    assert sandbox["HostConfig"]["NetworkMode"] == "none"
    assert sandbox["HostConfig"]["IpcMode"] == "shareable"
    assert sandbox["HostConfig"]["RestartPolicy"]["Name"] in ("no", "")
    assert sandbox["HostConfig"]["LogConfig"]["Type"] == "json-file"
    assert sandbox["Name"] == "/" + L.sandbox_name(pod, 0)


async def test_host_network_sandbox_and_shared_pid_namespace(node: Node) -> None:
    pod = make_pod("hostnet", hostNetwork=True, shareProcessNamespace=True)
    sid = await node.sandbox(pod)
    cid = await node.container(pod, {"name": "c", "image": BUSYBOX,
                                     "command": ["sleep", "3600"]}, sid)
    sandbox = await asyncio.to_thread(node.rt.docker_client.api.inspect_container, sid)
    assert sandbox["HostConfig"]["NetworkMode"] == "host"
    # with a shared pid namespace the pause container is pid 1 for everyone
    code, out = await node.rt.exec_sync(cid, ["cat", "/proc/1/cmdline"], timeout=5)
    assert code == 0 and out.startswith(b"/pause"), out


async def test_labels_round_trip_and_list_sees_only_its_node(node: Node) -> None:
    pod = make_pod("labelled", terminationGracePeriodSeconds=7)
    sid = await node.sandbox(pod)
    container = {"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"]}
    cid = await node.container(pod, container, sid, restart_count=3)
    other = Node(node.rt, f"test-{uuid.uuid4().hex[:10]}")
    other_pod = make_pod("elsewhere")
    try:
        other_sid = await other.sandbox(other_pod)
        infos = {i.id: i for i in await node.rt.list_containers(node.name)}
        assert set(infos) == {sid, cid}
        assert other_sid in {i.id for i in await node.rt.list_containers(other.name)}
    finally:
        await _cleanup(node.rt, other.name)
    s, c = infos[sid], infos[cid]
    uid = pod["metadata"]["uid"]
    assert s.is_sandbox and not c.is_sandbox
    assert s.pod_uid == c.pod_uid == uid
    assert s.container_name == "POD" and c.container_name == "app"
    assert c.restart_count == 3 and c.sandbox_id == sid and c.node_name == node.name
    assert c.labels[L.CONTAINER_HASH] == L.container_hash(container)
    assert c.labels[L.TERMINATION_GRACE] == "7"
    assert c.name == L.container_name(pod, "app", 3)
    assert c.state == s.state == "running"
    assert c.started_at.endswith("Z") and c.finished_at == "" and c.exit_code is None
    assert c.image_id.startswith("docker://sha256:") and c.image == BUSYBOX and c.pid > 0
    assert await node.rt.netns_path(sid) == f"/proc/{s.pid}/ns/net"
    assert os.path.exists(f"/proc/{s.pid}/ns/net")


async def test_exit_codes_and_reasons(node: Node) -> None:
    pod = make_pod("exits")
    sid = await node.sandbox(pod)
    ok = await node.container(pod, {"name": "ok", "image": BUSYBOX,
                                    "command": ["sh", "-c", "exit 0"]}, sid)
    bad = await node.container(pod, {"name": "bad", "image": BUSYBOX,
                                     "command": ["sh", "-c", "exit 3"]}, sid)
    info = await node.exited(ok)
    assert (info.exit_code, info.reason) == (0, "Completed")
    assert info.started_at and info.finished_at and info.finished_at >= info.started_at
    info = await node.exited(bad)
    assert (info.exit_code, info.reason) == (3, "Error")

    missing = await node.container(pod, {"name": "missing", "image": BUSYBOX,
                                         "command": ["/no/such/binary"]}, sid, start=False)
    created = await node.rt.inspect(missing)
    assert created is not None and created.state == "created" and created.exit_code is None
    with pytest.raises(RuntimeFailure, match="no such file"):
        await node.rt.start(missing)
    info = await node.exited(missing)
    assert info.reason == "ContainerCannotRun" and info.exit_code
    assert "no such file" in info.message


async def test_command_replaces_entrypoint_args_replace_cmd(node: Node) -> None:
    pod = make_pod("cmds")
    sid = await node.sandbox(pod)
    # command without args: the image's CMD ("sh") is not appended
    echo = await node.container(pod, {"name": "echo", "image": BUSYBOX,
                                      "command": ["echo", "hi"]}, sid)
    # $(VAR) expansion in args, with the container's env
    code = await node.container(pod, {"name": "code", "image": BUSYBOX,
                                      "command": ["sh", "-c", 'exit "$0"'],
                                      "args": ["$(CODE)"]}, sid, env=[("CODE", "7")])
    assert (await node.exited(echo)).exit_code == 0
    logs = await asyncio.to_thread(node.rt.docker_client.api.logs, echo)
    assert logs == b"hi\n"
    assert (await node.exited(code)).exit_code == 7


async def test_oom_killed(node: Node) -> None:
    pod = make_pod("oom")
    sid = await node.sandbox(pod)
    # `tail` of an endless line buffers it all: over 16Mi the cgroup OOM-kills it
    cid = await node.container(pod, {"name": "hog", "image": BUSYBOX,
                                     "command": ["tail", "/dev/zero"],
                                     "resources": {"limits": {"memory": "16Mi"}}}, sid)
    info = await node.exited(cid)
    assert info.reason == "OOMKilled", info
    assert info.exit_code == 137


async def test_resources_and_security_context_reach_docker(node: Node) -> None:
    pod = make_pod("res", securityContext={"runAsUser": 1000, "runAsGroup": 3000})
    sid = await node.sandbox(pod)
    cid = await node.container(pod, {
        "name": "c", "image": BUSYBOX, "command": ["sleep", "3600"], "workingDir": "/bin",
        "resources": {"limits": {"cpu": "500m", "memory": "64Mi"},
                      "requests": {"cpu": "250m"}},
        "securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["CHOWN"]},
                            "readOnlyRootFilesystem": True},
    }, sid)
    data = await asyncio.to_thread(node.rt.docker_client.api.inspect_container, cid)
    hc = data["HostConfig"]
    assert (hc["CpuQuota"], hc["CpuPeriod"], hc["CpuShares"]) == (50000, 100000, 256)
    assert hc["Memory"] == 64 * 1024 * 1024
    assert hc["CapAdd"] == ["NET_ADMIN"] and hc["CapDrop"] == ["CHOWN"]
    assert hc["ReadonlyRootfs"] is True
    assert data["Config"]["User"] == "1000:3000"
    assert data["Config"]["WorkingDir"] == "/bin"
    code, out = await node.rt.exec_sync(cid, ["sh", "-c", "id -u; id -g; pwd"], timeout=5)
    assert (code, out.split()) == (0, [b"1000", b"3000", b"/bin"])
    # the cgroup the kernel enforces, not only Docker's record of it
    code, out = await node.rt.exec_sync(cid, ["touch", "/x"], timeout=5)
    assert code != 0 and b"Read-only file system" in out


async def test_stop_sends_sigterm_first(node: Node, tmp_path: Path) -> None:
    pod = make_pod("graceful")
    sid = await node.sandbox(pod)
    tmp_path.chmod(0o777)
    script = ("trap 'echo term > /out/term; exit 0' TERM; "
              "touch /out/ready; while true; do sleep 0.1; done")
    cid = await node.container(pod, {"name": "c", "image": BUSYBOX,
                                     "command": ["sh", "-c", script]}, sid,
                               mounts=[Mount(str(tmp_path), "/out")])
    await until(lambda: (tmp_path / "ready").exists(), what="trap installed")
    await node.rt.stop(cid, timeout=30)
    info = await node.rt.inspect(cid)
    assert info is not None and (info.state, info.exit_code, info.reason) == \
        ("exited", 0, "Completed")
    assert (tmp_path / "term").read_text() == "term\n"
    await node.rt.stop(cid, timeout=1)  # stopping a stopped container is fine


async def test_stop_kills_after_the_timeout(node: Node) -> None:
    pod = make_pod("stubborn")
    sid = await node.sandbox(pod)
    # pid 1 ignores SIGTERM (`trap ''`): only the SIGKILL after the timeout ends it
    cid = await node.container(pod, {"name": "c", "image": BUSYBOX, "command": [
        "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]}, sid)
    await node.rt.stop(cid, timeout=1)
    info = await node.rt.inspect(cid)
    assert info is not None and (info.exit_code, info.reason) == (137, "Error")


async def test_exec_sync(node: Node) -> None:
    pod = make_pod("exec")
    sid = await node.sandbox(pod)
    cid = await node.container(pod, {"name": "c", "image": BUSYBOX,
                                     "command": ["sleep", "3600"]}, sid)
    code, out = await node.rt.exec_sync(cid, ["sh", "-c", "echo out; echo err >&2"], 5)
    assert (code, sorted(out.split())) == (0, [b"err", b"out"])  # both streams, any order
    assert await node.rt.exec_sync(cid, ["sh", "-c", "exit 4"], 5) == (4, b"")
    code, out = await node.rt.exec_sync(cid, ["sleep", "30"], timeout=0.5)
    assert code == EXEC_TIMEOUT_EXIT and out == b'command "sleep 30" timed out'

    # the timed-out process was killed, not left behind
    async def no_sleep_30() -> bool:
        _, ps = await node.rt.exec_sync(cid, ["ps", "-o", "args"], timeout=5)
        return b"sleep 30" not in ps
    await until(no_sleep_30, timeout=10, what="timed-out exec killed")
    code, out = await node.rt.exec_sync(cid, ["/no/such/binary"], 5)
    assert code not in (0, EXEC_TIMEOUT_EXIT) and b"no such file" in out, (code, out)


async def test_missing_containers(node: Node) -> None:
    nope = uuid.uuid4().hex
    assert await node.rt.inspect(nope) is None
    for call in (node.rt.start(nope), node.rt.stop(nope, 1), node.rt.exec_sync(nope, ["x"], 1),
                 node.rt.netns_path(nope)):
        with pytest.raises(ContainerNotFound):
            await call
    await node.rt.remove(nope)  # idempotent


async def test_events_see_die_and_stop_on_close(docker_ready: None) -> None:
    rt = DockerRuntime()
    node = Node(rt, f"test-{uuid.uuid4().hex[:10]}")
    seen: list[dict[str, Any]] = []
    try:
        async def consume() -> None:
            async for event in rt.events(node.name):
                seen.append(event)
        task = asyncio.create_task(consume())
        # the stream only sees what happens after it subscribed
        await until(lambda: rt._streams, what="event stream subscribed")
        pod = make_pod("events")
        sid = await node.sandbox(pod)
        cid = await node.container(pod, {"name": "c", "image": BUSYBOX,
                                         "command": ["sh", "-c", "exit 2"]}, sid)

        def died() -> dict[str, Any] | None:
            return next((e for e in seen if e.get("id") == cid and e.get("Action") == "die"),
                        None)
        event = await until(died, timeout=20, what="die event")
        assert event["Actor"]["Attributes"]["exitCode"] == "2"
        assert event["Actor"]["Attributes"][L.CONTAINER_NAME] == "c"
        assert all(e["Actor"]["Attributes"].get(L.NODE_NAME) == node.name for e in seen)
        await _cleanup(rt, node.name)
    finally:
        await rt.close()
    await asyncio.wait_for(task, 10)  # the iterator ends when the runtime closes


async def test_kubelets_with_one_node_name_keep_to_their_own_containers(node: Node) -> None:
    """Two kubelets named alike on one engine (a test cluster's `node-1` beside scripts/up's):
    each lists and watches only the containers it created, told apart by its instance id."""
    mine = DockerRuntime(kubelet_id=L.kubelet_id("/tmp/a/root"))
    theirs = DockerRuntime(kubelet_id=L.kubelet_id("/tmp/b/root"))
    try:
        pod_a, pod_b = make_pod("a"), make_pod("b")
        sid_a = await mine.create_sandbox(pod_a, node.name, 0, PAUSE)
        sid_b = await theirs.create_sandbox(pod_b, node.name, 0, PAUSE)
        assert [c.id for c in await mine.list_containers(node.name)] == [sid_a]
        assert [c.id for c in await theirs.list_containers(node.name, detail=False)] == [sid_b]
        # without an id (an old kubelet, or a tool) both are the node's
        assert {c.id for c in await node.rt.list_containers(node.name)} == {sid_a, sid_b}
        info = await mine.inspect(sid_a)
        assert info is not None and info.labels[L.KUBELET_ID] == L.kubelet_id("/tmp/a/root")
    finally:
        await mine.close()
        await theirs.close()


async def test_a_hung_docker_is_unavailable_soon(tmp_path: Path) -> None:
    """A dockerd that accepts connections but never answers (hung, not dead): ping says
    RuntimeUnavailable within seconds (the node goes NotReady), instead of holding a thread for
    the SDK's two-minute timeout on every status tick."""
    path = tmp_path / "hung.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(16)  # accepted by the kernel, never read
    rt = DockerRuntime(base_url=f"unix://{path}")
    try:
        for _ in range(2):  # the version probe, then (still hung) again
            with pytest.raises(RuntimeUnavailable):
                await asyncio.wait_for(rt.ping(timeout=1), 30)
    finally:
        await rt.close()
        listener.close()
