"""Logs and exec end to end: tkctl / ApiClient → apiserver (pods/log, pods/exec) → a kubelet
server (kubelet/server.py) → real Docker containers.

The kubelet server runs in the test process with a node's real credentials from the cluster's
PKI (serving certificate, kubelet.conf for its SubjectAccessReviews); a Node object points the
apiserver at it (status.addresses InternalIP 127.0.0.1, daemonEndpoints.kubeletEndpoint.Port).
There is no kubelet syncing pods here: the test binds Pod objects to that node and runs their
containers itself with the Docker SDK, and the server's `resolve` maps (pod, container) to them,
as the Kubelet's does.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import signal
import struct
import sys
import termios
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import grpc
import pytest
import pytest_asyncio

from api import errors
from api.proto import tinykube_pb2 as pb
from api.proto import tinykube_pb2_grpc as pb_grpc
from client.apiclient import ApiClient
from client.config import load_config
from client.pki import add_node, issue, new_ca
from harness.cluster import Cluster
from harness.wait import until
from kubelet.server import KubeletServer, SARAuthorizer

pytestmark = [pytest.mark.docker]

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "tinykube/busybox:1"
TEST_LABEL = "io.tinykube.test"
Obj = dict[str, Any]


@dataclass
class FakeNode:
    """A Node whose kubelet is the in-process KubeletServer; containers run by the test."""

    name: str
    server: KubeletServer
    docker: docker.DockerClient
    cluster: Cluster
    containers: dict[tuple[str, str, str, bool], str] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)

    def resolve(self, ns: str, pod: str, container: str | None, previous: bool) -> str:
        key = (ns, pod, container or "", previous)
        if key in self.containers:
            return self.containers[key]
        if previous:
            raise errors.BadRequest(message=f'previous terminated container "{container}" in '
                                    f'pod "{pod}" not found')
        raise errors.NotFound(message=f'container "{container}" in pod "{pod}" not found')

    async def run(self, ns: str, pod: str, container: str, script: str, *,
                  previous: bool = False, wait_exit: bool = False) -> str:
        """Run `sh -c script` as the container (or its previous instance) of a pod."""
        def start() -> str:
            c = self.docker.containers.run(
                IMAGE, ["sh", "-c", script], detach=True, network_mode="none",
                labels={TEST_LABEL: "logs-exec", "node": self.name},
                name=f"h6_{container}_{pod}_{ns}_{uuid.uuid4().hex[:6]}")
            return str(c.id)
        cid = await asyncio.to_thread(start)
        self.created.append(cid)
        self.containers[(ns, pod, container, previous)] = cid
        if wait_exit:
            await asyncio.to_thread(lambda: self.docker.containers.get(cid).wait(timeout=30))
        return cid

    async def run_tty(self, ns: str, pod: str, container: str, script: str) -> str:
        """Like run, for a container with a terminal (`tty: true`)."""
        def start() -> str:
            c = self.docker.containers.run(
                IMAGE, ["sh", "-c", script], detach=True, tty=True, network_mode="none",
                labels={TEST_LABEL: "logs-exec", "node": self.name},
                name=f"h6_{container}_{pod}_{ns}_{uuid.uuid4().hex[:6]}")
            return str(c.id)
        cid = await asyncio.to_thread(start)
        self.created.append(cid)
        self.containers[(ns, pod, container, False)] = cid
        return cid

    async def pod(self, ns: str, name: str, containers: dict[str, str], *,
                  labels: dict[str, str] | None = None, **spec: Any) -> Obj:
        """A Pod bound to this node whose containers run `script` each, reported Running."""
        obj = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "labels": labels or {}},
               "spec": {"nodeName": self.name, "automountServiceAccountToken": False,
                        "containers": [{"name": c, "image": IMAGE} for c in containers],
                        **spec}}
        created = await self.cluster.client.create("pods", obj, ns)
        for c, script in containers.items():
            await self.run(ns, name, c, script)
        created["status"] = {**created.get("status", {}), "phase": "Running"}
        return await self.cluster.client.update_status("pods", created, ns)

    def exec_in(self, cid: str, script: str) -> None:
        self.docker.containers.get(cid).exec_run(["sh", "-c", script])


async def make_node(cluster: Cluster, name: str, port: int, address: str = "127.0.0.1") -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    created = await cluster.client.create("nodes", node)
    created["status"] = {"addresses": [{"type": "InternalIP", "address": address},
                                       {"type": "Hostname", "address": name}],
                         "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}
    await cluster.client.update_status("nodes", created)


@pytest.fixture(scope="module")
def dockerc(docker_ready: None) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", version="auto")
    yield client
    client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def node(cluster: Cluster, dockerc: docker.DockerClient) -> AsyncIterator[FakeNode]:
    assert cluster.pki is not None
    name = f"h6-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(add_node, cluster.pki, name)
    d = cluster.pki / "nodes" / name
    kubelet_client = ApiClient(config=load_config(str(d / "kubelet.conf")),
                               user_agent="kubelet")
    holder: list[FakeNode] = []
    server = KubeletServer(
        docker_client=dockerc, resolve=lambda *a: holder[0].resolve(*a),
        authorizer=SARAuthorizer(kubelet_client, name), address="127.0.0.1", port=0,
        tls_cert=(d / "kubelet.crt").read_bytes(), tls_key=(d / "kubelet.key").read_bytes(),
        client_ca=cluster.ca_pem)
    fake = FakeNode(name, server, dockerc, cluster)
    holder.append(fake)
    port = await server.start()
    await make_node(cluster, name, port)
    try:
        yield fake
    finally:
        await server.stop()
        await kubelet_client.close()
        for cid in fake.created:
            try:
                await asyncio.to_thread(dockerc.api.remove_container, cid, force=True)
            except docker.errors.NotFound:
                pass
        await cluster.client.delete("nodes", name)


async def read_logs(client: ApiClient, ns: str, pod: str, **kw: Any) -> bytes:
    return b"".join([c async for c in client.logs(ns, pod, **kw)])


async def wait_logs(client: ApiClient, ns: str, pod: str, want: bytes, **kw: Any) -> bytes:
    """The pod's log once it holds `want` (the container is still starting)."""
    async def check() -> bytes | None:
        data = await read_logs(client, ns, pod, **kw)
        return data if want in data else None
    return await until(check, timeout=60, what=f"{want!r} in the log of {pod}")


async def exec_all(client: ApiClient, ns: str, pod: str, command: list[str], *,
                   stdin: list[bytes] | None = None, container: str = "",
                   ) -> tuple[bytes, bytes, int | None]:
    async def requests() -> AsyncIterator[pb.ExecRequest]:
        for data in stdin or []:
            yield pb.ExecRequest(stdin=data)
        yield pb.ExecRequest(stdin_close=True)

    out, err, code = b"", b"", None
    start = pb.ExecStart(namespace=ns, name=pod, container=container, command=command,
                         stdin=stdin is not None)
    async for r in client.exec(start, requests()):
        out += r.stdout
        err += r.stderr
        if r.exited:
            code = r.exit_code
    return out, err, code


# --- logs ---------------------------------------------------------------------------------


async def test_logs_all_tail_timestamps_limit(cluster: Cluster, namespace: str,
                                              node: FakeNode) -> None:
    await node.pod(namespace, "web", {"c": "for i in 1 2 3 4 5; do echo line$i; done; "
                                           "sleep 3600"})
    data = await wait_logs(cluster.client, namespace, "web", b"line5")
    assert data == b"line1\nline2\nline3\nline4\nline5\n"
    assert await read_logs(cluster.client, namespace, "web", tail_lines=2) == b"line4\nline5\n"
    assert await read_logs(cluster.client, namespace, "web", tail_lines=0) == b""
    stamped = (await read_logs(cluster.client, namespace, "web", timestamps=True,
                               tail_lines=1)).decode()
    stamp, _, rest = stamped.partition(" ")
    assert rest == "line5\n" and stamp.endswith("Z") and "T" in stamp
    assert await read_logs(cluster.client, namespace, "web", limit_bytes=8) == b"line1\nli"


async def test_logs_stdout_and_stderr(cluster: Cluster, namespace: str, node: FakeNode) -> None:
    await node.pod(namespace, "web", {"c": "echo to-out; echo to-err >&2; sleep 3600"})
    data = await wait_logs(cluster.client, namespace, "web", b"to-err")
    assert sorted(data.splitlines()) == [b"to-err", b"to-out"]


async def test_logs_follow_streams_new_lines(cluster: Cluster, namespace: str,
                                             node: FakeNode) -> None:
    await node.pod(namespace, "web", {"c": "echo first; sleep 3600"})
    await wait_logs(cluster.client, namespace, "web", b"first")
    cid = node.containers[(namespace, "web", "c", False)]
    stream = cluster.client.logs(namespace, "web", follow=True)
    try:
        assert await anext(stream) == b"first\n"
        # Written after the stream opened: only a follow sees it.
        await asyncio.to_thread(node.exec_in, cid, "echo second > /proc/1/fd/1")
        assert await asyncio.wait_for(anext(stream), 20) == b"second\n"
    finally:
        await stream.aclose()


async def test_logs_previous(cluster: Cluster, namespace: str, node: FakeNode) -> None:
    await node.pod(namespace, "web", {"c": "echo current; sleep 3600"})
    with pytest.raises(errors.BadRequest, match='previous terminated container "c" in pod '
                       '"web" not found'):
        await read_logs(cluster.client, namespace, "web", previous=True)
    await node.run(namespace, "web", "c", "echo crashed; exit 1", previous=True,
                   wait_exit=True)
    assert await read_logs(cluster.client, namespace, "web", previous=True) == b"crashed\n"
    assert await wait_logs(cluster.client, namespace, "web", b"current") == b"current\n"


async def test_logs_of_a_tty_container_come_in_chunks(cluster: Cluster, namespace: str,
                                                      node: FakeNode) -> None:
    """Docker's SDK reads a TTY container's log one byte at a time: 200 kB must not become
    200,000 messages through the kubelet, the apiserver and the client."""
    await node.pod(namespace, "web", {"c": "sleep 3600"})
    await node.run_tty(namespace, "web", "c", "head -c 200000 /dev/zero | tr '\\0' x; "
                       "echo; echo end; sleep 3600")

    async def chunks() -> list[bytes] | None:
        got = [c async for c in cluster.client.logs(namespace, "web")]
        return got if b"end" in b"".join(got) else None
    got = await until(chunks, timeout=60, what="the whole log of the TTY container")
    data = b"".join(got)
    assert data.count(b"x") == 200_000 and data.endswith(b"\r\nend\r\n")
    assert len(got) < 200, len(got)


# --- exec ---------------------------------------------------------------------------------


async def test_exec_stdout_stderr_exit_code(cluster: Cluster, namespace: str,
                                            node: FakeNode) -> None:
    await node.pod(namespace, "web", {"c": "sleep 3600"})
    out, err, code = await exec_all(cluster.client, namespace, "web",
                                    ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (out, err, code) == (b"out\n", b"err\n", 3)
    out, err, code = await exec_all(cluster.client, namespace, "web", ["echo", "ok"])
    assert (out, err, code) == (b"ok\n", b"", 0)


    def exec_events() -> list[Obj] | None:
        events = [json.loads(line) for line in cluster.audit_log.read_text().splitlines()]
        found = [e for e in events if e.get("objectRef", {}).get("namespace") == namespace
                 and e["objectRef"].get("subresource") == "exec"]
        return found if len(found) == 2 else None
    events = await until(exec_events, timeout=10, what="two audited execs")
    assert {(e["verb"], e["objectRef"]["resource"], e["objectRef"]["name"],
             e["user"]["username"]) for e in events} == {
        ("create", "pods", "web", "kubernetes-admin")}


async def test_exec_stdin(cluster: Cluster, namespace: str, node: FakeNode) -> None:
    await node.pod(namespace, "web", {"c": "sleep 3600"})
    out, err, code = await exec_all(cluster.client, namespace, "web", ["cat"],
                                    stdin=[b"hello\n", b"world\n"])
    assert (out, err, code) == (b"hello\nworld\n", b"", 0)
    # A large stdin arrives whole (back-pressure, no loss), and its end ends `wc`.
    blob = [os.urandom(48_000).hex().encode() for _ in range(8)]
    out, _, code = await exec_all(cluster.client, namespace, "web", ["wc", "-c"], stdin=blob)
    assert (int(out), code) == (sum(len(b) for b in blob), 0)


async def test_exec_tty_and_resize(cluster: Cluster, namespace: str, node: FakeNode) -> None:
    await node.pod(namespace, "web", {"c": "sleep 3600"})
    go = asyncio.Event()

    async def requests() -> AsyncIterator[pb.ExecRequest]:
        yield pb.ExecRequest(resize=pb.TerminalSize(width=123, height=45))
        yield pb.ExecRequest(stdin=b"go\n")  # after the resize: `read` waits for it
        await go.wait()
        yield pb.ExecRequest(stdin_close=True)

    start = pb.ExecStart(namespace=namespace, name="web", command=[
        "sh", "-c", "read x; tty; stty size; echo err >&2"], stdin=True, tty=True)
    out, code = b"", None
    async for r in cluster.client.exec(start, requests()):
        assert not r.stderr  # a terminal has one output stream
        out += r.stdout
        if r.exited:
            code = r.exit_code
            go.set()
    text = out.decode()
    assert "/dev/pts/" in text and "45 123\r\n" in text and "err\r\n" in text
    assert code == 0


# --- errors and authorization -------------------------------------------------------------


async def test_container_must_be_named_or_valid(cluster: Cluster, namespace: str,
                                                node: FakeNode) -> None:
    await node.pod(namespace, "web", {"a": "echo from-a; sleep 3600",
                                      "b": "echo from-b; sleep 3600"})
    with pytest.raises(errors.BadRequest) as e:
        await read_logs(cluster.client, namespace, "web")
    assert e.value.message == ("a container name must be specified for pod web, choose one "
                               "of: [a b]")
    with pytest.raises(errors.BadRequest) as e:
        await exec_all(cluster.client, namespace, "web", ["true"], container="x")
    assert e.value.message == "container x is not valid for pod web"
    assert await wait_logs(cluster.client, namespace, "web", b"from-b",
                           container="b") == b"from-b\n"
    out, _, _ = await exec_all(cluster.client, namespace, "web", ["echo", "in-a"],
                               container="a")
    assert out == b"in-a\n"


async def test_kubelet_errors_pass_through(cluster: Cluster, namespace: str,
                                           node: FakeNode) -> None:
    """The kubelet's own refusals (here: no such container on the node) reach the client as
    the kubelet wrote them, also when stdin is already on its way."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ghost"},
           "spec": {"nodeName": node.name, "automountServiceAccountToken": False,
                    "containers": [{"name": "c", "image": IMAGE}]}}
    await cluster.client.create("pods", pod, namespace)
    with pytest.raises(errors.NotFound, match='container "c" in pod "ghost" not found'):
        await read_logs(cluster.client, namespace, "ghost")
    for _ in range(10):
        with pytest.raises(errors.NotFound, match='container "c" in pod "ghost" not found'):
            await exec_all(cluster.client, namespace, "ghost", ["cat"],
                           stdin=[b"x" * 4096] * 8)


async def test_pod_missing_or_unscheduled(cluster: Cluster, namespace: str,
                                          node: FakeNode) -> None:
    with pytest.raises(errors.NotFound, match='pods "nope" not found'):
        await read_logs(cluster.client, namespace, "nope")
    pending = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pending"},
               "spec": {"containers": [{"name": "c", "image": IMAGE}]}}
    await cluster.client.create("pods", pending, namespace)
    with pytest.raises(errors.BadRequest, match="pod pending does not have a host assigned"):
        await exec_all(cluster.client, namespace, "pending", ["true"])


async def test_authorization_by_the_apiserver(cluster: Cluster, namespace: str,
                                              node: FakeNode) -> None:
    await node.pod(namespace, "web", {"c": "echo hi; sleep 3600"})
    await wait_logs(cluster.client, namespace, "web", b"hi")
    user = f"viewer-{uuid.uuid4().hex[:6]}"
    await cluster.client.create("rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }, namespace)
    viewer = cluster.client_as(user)

    async def can_read() -> bytes | None:
        try:
            return await read_logs(viewer, namespace, "web")
        except errors.Forbidden:
            return None  # the binding is not in the RBAC cache yet
    assert await until(can_read, timeout=60, what="the viewer reads logs") == b"hi\n"
    for _ in range(10):  # a refusal is never lost to stdin racing it (grpc/grpc#36066)
        with pytest.raises(errors.Forbidden) as e:
            await exec_all(viewer, namespace, "web", ["cat"], stdin=[b"x" * 4096] * 8)
    assert e.value.message == (f'pods "web" is forbidden: User "{user}" cannot create '
                               f'resource "pods/exec" in API group "" in the namespace '
                               f'"{namespace}"')
    stranger = cluster.client_as(f"stranger-{uuid.uuid4().hex[:6]}")
    with pytest.raises(errors.Forbidden, match='cannot get resource "pods/log"'):
        await read_logs(stranger, namespace, "web")


async def test_kubelet_refuses_other_callers(cluster: Cluster, namespace: str,
                                             node: FakeNode, tmp_path: Path) -> None:
    await node.pod(namespace, "web", {"c": "echo hi; sleep 3600"})
    await wait_logs(cluster.client, namespace, "web", b"hi")
    address = f"127.0.0.1:{node.server.port}"
    request = pb.LogsRequest(namespace=namespace, name="web", container="c", tail_lines=-1)

    async def call_as(ca: bytes, cert: bytes, key: bytes) -> grpc.aio.AioRpcError:
        creds = grpc.ssl_channel_credentials(root_certificates=cluster.ca_pem,
                                             private_key=key, certificate_chain=cert)
        async with grpc.aio.secure_channel(address, creds, options=[
                ("grpc.ssl_target_name_override", node.name)]) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                async for _ in pb_grpc.KubeletStub(ch).Logs(request, timeout=20):
                    pass
            return e.value

    # A certificate of the cluster's CA, but not one allowed nodes/proxy: the kubelet's
    # SubjectAccessReview says no.
    conf = load_config(cluster.kubeconfig_as("mallory", ("devs",)))
    assert conf.cert_pem is not None and conf.key_pem is not None
    err = await call_as(cluster.ca_pem, conf.cert_pem, conf.key_pem)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.details() == ("Forbidden (user=mallory, verb=get, resource=nodes, "
                             "subresource=proxy)")
    # Another CA's certificate, even for the apiserver's name: refused in the handshake.
    other = new_ca("other-ca")
    forged = issue(other, "kube-apiserver-kubelet-client", organizations=("system:masters",),
                   client=True)
    err = await call_as(cluster.ca_pem, forged.cert_pem, forged.key_pem)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    # The apiserver's own identity is allowed (system:kubelet-api-admin).
    assert cluster.pki is not None
    ok = load_config(cluster.kubeconfig_as("kube-apiserver-kubelet-client"))
    assert ok.cert_pem is not None and ok.key_pem is not None
    creds = grpc.ssl_channel_credentials(root_certificates=cluster.ca_pem,
                                         private_key=ok.key_pem, certificate_chain=ok.cert_pem)
    async with grpc.aio.secure_channel(address, creds, options=[
            ("grpc.ssl_target_name_override", node.name)]) as ch:
        chunks = [c.data async for c in pb_grpc.KubeletStub(ch).Logs(request, timeout=20)]
    assert b"".join(chunks) == b"hi\n"


async def test_kubelet_down_is_a_clear_error(cluster: Cluster, namespace: str) -> None:
    name = f"h6-down-{uuid.uuid4().hex[:6]}"
    port = _unused_port()
    await make_node(cluster, name, port)
    try:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
               "spec": {"nodeName": name, "containers": [{"name": "c", "image": IMAGE}]}}
        await cluster.client.create("pods", pod, namespace)
        with pytest.raises(errors.ServiceUnavailable) as e:
            await read_logs(cluster.client, namespace, "web")
        assert e.value.message.startswith(
            f'error dialing backend: cannot reach the kubelet of node "{name}" at '
            f"127.0.0.1:{port}: ")
        with pytest.raises(errors.ServiceUnavailable, match=f'node "{name}"'):
            await exec_all(cluster.client, namespace, "web", ["true"])
        r = await tk(cluster, "logs", "web", namespace=namespace)
        assert r.code == 1
        assert r.err.startswith("Error from server (ServiceUnavailable): error dialing "
                                f'backend: cannot reach the kubelet of node "{name}"'), r
    finally:
        await cluster.client.delete("nodes", name)


def _unused_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- tkctl --------------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TINYKUBE_SERVER": "", "TINYKUBE_CONFIG": ""}


async def tk(cluster: Cluster, *args: str, stdin: bytes = b"", namespace: str = "") -> Result:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tkctl", "--kubeconfig", cluster.kubeconfig, "-n", namespace,
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=_env())
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def test_tkctl_logs(cluster: Cluster, namespace: str, node: FakeNode) -> None:
    await node.pod(namespace, "web", {"a": "echo a1; echo a2; echo a3; sleep 3600",
                                      "b": "echo b1; sleep 3600"})
    await wait_logs(cluster.client, namespace, "web", b"a3", container="a")
    await wait_logs(cluster.client, namespace, "web", b"b1", container="b")
    r = await tk(cluster, "logs", "web", namespace=namespace)
    assert (r.code, r.out, r.err) == (0, "a1\na2\na3\n",
                                      'Defaulted container "a" out of: a, b\n')
    r = await tk(cluster, "logs", "web", "-c", "b", namespace=namespace)
    assert (r.code, r.out, r.err) == (0, "b1\n", "")
    r = await tk(cluster, "logs", "web", "-c", "a", "--tail", "1", "--since", "1h",
                 namespace=namespace)
    assert (r.code, r.out) == (0, "a3\n")
    r = await tk(cluster, "logs", "web", "-c", "a", "-p", namespace=namespace)
    assert r.code == 1
    assert r.err == ('Error from server (BadRequest): previous terminated container "a" in '
                     'pod "web" not found\n')
    r = await tk(cluster, "logs", "web", "-c", "zz", namespace=namespace)
    assert r.err == "Error from server (BadRequest): container zz is not valid for pod web\n"
    r = await tk(cluster, "logs", namespace=namespace)
    assert r.code == 1 and "POD or TYPE/NAME is a required argument" in r.err
    # A workload's logs are one of its pods' (no controller runs here: the Deployment only
    # selects the pod).
    await cluster.client.create("deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "front"},
        "spec": {"selector": {"matchLabels": {"app": "front"}}, "template": {
            "metadata": {"labels": {"app": "front"}},
            "spec": {"containers": [{"name": "c", "image": IMAGE}]}}}}, namespace)
    await node.pod(namespace, "front-1", {"c": "echo from-front; sleep 3600"},
                   labels={"app": "front"})
    await wait_logs(cluster.client, namespace, "front-1", b"from-front")
    r = await tk(cluster, "logs", "deployment/front", namespace=namespace)
    assert (r.code, r.out) == (0, "from-front\n"), r


async def test_tkctl_logs_follow(cluster: Cluster, namespace: str, node: FakeNode) -> None:
    await node.pod(namespace, "web", {"c": "echo first; sleep 3600"})
    await wait_logs(cluster.client, namespace, "web", b"first")
    cid = node.containers[(namespace, "web", "c", False)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tkctl", "--kubeconfig", cluster.kubeconfig, "-n", namespace,
        "logs", "-f", "web", stdout=asyncio.subprocess.PIPE, cwd=ROOT, env=_env())
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"first\n"
        await asyncio.to_thread(node.exec_in, cid, "echo later > /proc/1/fd/1")
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"later\n"
    finally:
        proc.kill()
        await proc.wait()


async def test_tkctl_exec(cluster: Cluster, namespace: str, node: FakeNode) -> None:
    await node.pod(namespace, "web", {"c": "sleep 3600"})
    r = await tk(cluster, "exec", "web", "--", "sh", "-c", "echo out; echo err >&2",
                 namespace=namespace)
    assert (r.code, r.out, r.err) == (0, "out\n", "err\n")
    r = await tk(cluster, "exec", "web", "--", "sh", "-c", "exit 3", namespace=namespace)
    assert (r.code, r.out, r.err) == (3, "", "command terminated with exit code 3\n")
    r = await tk(cluster, "exec", "-i", "web", "--", "cat", stdin=b"piped\ninput\n",
                 namespace=namespace)
    assert (r.code, r.out, r.err) == (0, "piped\ninput\n", "")
    # -t without a terminal on stdin: kubectl's note, then no TTY.
    r = await tk(cluster, "exec", "-it", "web", "--", "sh", "-c", "cat; echo e >&2",
                 stdin=b"x\n", namespace=namespace)
    assert (r.code, r.out) == (0, "x\n")
    assert r.err == ("Unable to use a TTY - input is not a terminal or the right kind of "
                     "file\ne\n")
    r = await tk(cluster, "exec", "web", namespace=namespace)
    assert (r.code, r.err) == (1, "error: you must specify at least one command for the "
                                  "container\n")


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def test_tkctl_exec_tty(cluster: Cluster, namespace: str, node: FakeNode) -> None:
    """-it on a real terminal: raw mode while it runs, the size sent and updated on SIGWINCH,
    the terminal restored at the end."""
    await node.pod(namespace, "web", {"c": "sleep 3600"})
    cid = node.containers[(namespace, "web", "c", False)]
    master, slave = pty.openpty()
    _set_winsize(master, 40, 100)
    before = termios.tcgetattr(slave)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tkctl", "--kubeconfig", cluster.kubeconfig, "-n", namespace,
        "exec", "-it", "web", "--", "sh", "-c",
        "while [ ! -f /tmp/stop ]; do stty size; sleep 0.1; done; echo bye",
        stdin=slave, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=ROOT, env=_env())
    assert proc.stdout is not None and proc.stderr is not None
    seen = b""

    async def output_has(text: bytes) -> bool:
        nonlocal seen
        while text not in seen:
            seen += await proc.stdout.read(4096)  # type: ignore[union-attr]
        return True

    try:
        await asyncio.wait_for(output_has(b"40 100\r\n"), 30)
        raw = termios.tcgetattr(slave)
        assert not raw[3] & termios.ECHO and not raw[3] & termios.ICANON  # raw mode
        _set_winsize(master, 50, 120)
        proc.send_signal(signal.SIGWINCH)
        await asyncio.wait_for(output_has(b"50 120\r\n"), 30)
        await asyncio.to_thread(node.exec_in, cid, "touch /tmp/stop")
        await asyncio.wait_for(output_has(b"bye\r\n"), 30)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert termios.tcgetattr(slave) == before  # restored
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(master)
        os.close(slave)
