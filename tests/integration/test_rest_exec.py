"""exec and port-forward over the HTTP front's WebSockets (apiserver/rest/websocket.py), end to
end: the official `kubernetes` Python client and real kubectl → the apiserver → a real kubelet
(tk-kubelet, the shared `kubelet_cluster`) → Docker.

What is proven here: the channel protocols (v5 with its stdin close, v4, the base64 variant),
the exit status on the error stream in upstream's exact words, terminals and their resizes,
refusals as ordinary HTTP Status before any upgrade, and port-forward both ways kubectl 1.31+
and the Python client do it (the SPDY/3.1 tunnel inside a WebSocket, and v4 channels), into the
pod's own network namespace (a port bound to the pod's 127.0.0.1 only is reachable).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import struct
import tempfile
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.stream import portforward, stream

from apiserver.rest.websocket import SPDY_DICTIONARY, SpdyCodec, exit_status
from harness.cluster import Cluster
from harness.wait import until

pytestmark = [pytest.mark.docker]

POD = "talk"
WEB_PORT = 9376  # serve-hostname: an HTTP answer whose body is the pod's name
LOCAL_PORT = 8080  # busybox httpd bound to the pod's 127.0.0.1 only
ECHO_PORT = 7000  # nc -e cat: echoes until the client half-closes


def kubectl_binary() -> str | None:
    """$TINYKUBE_TEST_KUBECTL, else the newest kubectl here: `kubectl` on PATH, or a versioned
    sibling (kubectl.1.33 beside the Cloud SDK's dispatcher)."""
    if os.environ.get("TINYKUBE_TEST_KUBECTL"):
        return os.environ["TINYKUBE_TEST_KUBECTL"]
    found = shutil.which("kubectl")
    if found is None:
        return None
    where = Path(os.path.realpath(found)).parent
    versioned = []
    for p in where.glob("kubectl.1.*"):
        m = re.fullmatch(r"kubectl\.1\.(\d+)", p.name)
        if m and os.access(p, os.X_OK):
            versioned.append((int(m.group(1)), str(p)))
    return max(versioned)[1] if versioned else found


KUBECTL = kubectl_binary()
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")


@pytest.fixture(scope="module")
def kube_home() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="tk-kubectl-home-") as d:
        yield d


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ns(kubelet_cluster: Cluster) -> AsyncIterator[str]:
    """A namespace with pod `talk`: `main` (busybox: httpd on 127.0.0.1:8080 only), `web`
    (serve-hostname on 9376) and `echo` (nc -e cat on 7000), Running on the real kubelet."""
    c = kubelet_cluster
    name = await c.new_namespace("rx-")
    busybox = "tinykube/busybox:1"
    await c.client.create("pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [
            {"name": "main", "image": busybox, "command": [
                "sh", "-c", "mkdir -p /tmp/www && echo local-only > /tmp/www/index.html && "
                f"exec httpd -f -p 127.0.0.1:{LOCAL_PORT} -h /tmp/www"]},
            {"name": "web", "image": "tinykube/serve-hostname:1"},
            {"name": "echo", "image": busybox,
             "command": ["nc", "-ll", "-p", str(ECHO_PORT), "-e", "cat"]}]}}, name)

    async def running() -> bool:
        pod = await c.client.get("pods", POD, name)
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return len(statuses) == 3 and all("running" in (s.get("state") or {})
                                          for s in statuses)
    await until(running, timeout=90, what=f"pod {POD} running")
    yield name
    with contextlib.suppress(Exception):
        await c.client.delete("namespaces", name)


ATTACH_POD = "att"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def att(kubelet_cluster: Cluster, ns: str) -> str:
    """Pod `att` for attach: `reader` echoes its stdin's lines, `once` too but its stdin closes
    when the attached client's does (stdinOnce), `ticker` writes a line every 0.2s, `shell` is
    an interactive sh on a terminal."""
    c = kubelet_cluster
    busybox = "tinykube/busybox:1"
    echo_lines = "while read line; do echo got $line; done"
    await c.client.create("pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": ATTACH_POD},
        "spec": {"terminationGracePeriodSeconds": 1, "restartPolicy": "Never", "containers": [
            {"name": "reader", "image": busybox, "stdin": True,
             "command": ["sh", "-c", echo_lines]},
            {"name": "once", "image": busybox, "stdin": True, "stdinOnce": True,
             "command": ["sh", "-c", echo_lines]},
            {"name": "ticker", "image": busybox, "command": [
                "sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"]},
            {"name": "shell", "image": busybox, "stdin": True, "tty": True,
             "command": ["sh"]}]}}, ns)

    async def running() -> bool:
        pod = await c.client.get("pods", ATTACH_POD, ns)
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return len(statuses) == 4 and all("running" in (s.get("state") or {})
                                          for s in statuses)
    await until(running, timeout=90, what=f"pod {ATTACH_POD} running")
    return ATTACH_POD


@pytest.fixture(scope="module")
def api(kubelet_cluster: Cluster) -> Iterator[k8s.CoreV1Api]:
    """The official client, configured from the cluster's admin kubeconfig."""
    cfg = k8s.Configuration()
    k8s_config.load_kube_config(config_file=kubelet_cluster.kubeconfig, client_configuration=cfg)
    with k8s.ApiClient(cfg) as api_client:
        yield k8s.CoreV1Api(api_client)


def run_exec(api: k8s.CoreV1Api, ns: str, command: list[str], *, container: str = "main",
             stdin: bytes | None = None, close_stdin: bool = True, tty: bool = False,
             resize: tuple[int, int] | None = None) -> tuple[str, str, str, Any]:
    """(stdout, stderr, the error stream's text, the client) of one exec through `stream()`."""
    ws = stream(api.connect_get_namespaced_pod_exec, POD, ns, container=container,
                command=command, stdin=stdin is not None, stdout=True, stderr=not tty,
                tty=tty, _preload_content=False)
    try:
        if resize is not None:
            ws.write_channel(4, json.dumps({"Width": resize[0], "Height": resize[1]}))
        if stdin is not None:
            ws.write_stdin(stdin.decode())
            if close_stdin:
                ws.close_channel(0)
        ws.run_forever(timeout=30)
        return ws.read_stdout(), ws.read_stderr(), ws.peek_channel(3), ws
    finally:
        ws.close()


# --- the Python client ----------------------------------------------------------------------


async def test_client_exec_output_and_success(api: k8s.CoreV1Api, ns: str) -> None:
    out, err, status, ws = await asyncio.to_thread(
        run_exec, api, ns, ["sh", "-c", "echo to-out; echo to-err >&2"])
    assert (out, err) == ("to-out\n", "to-err\n")
    assert ws.subprotocol == "v5.channel.k8s.io"  # the newest both speak
    assert status == '{"metadata":{},"status":"Success"}'
    assert ws.returncode == 0


async def test_client_exec_non_zero_exit(api: k8s.CoreV1Api, ns: str) -> None:
    out, _, status, ws = await asyncio.to_thread(
        run_exec, api, ns, ["sh", "-c", "echo before; exit 3"])
    assert out == "before\n"
    # Byte for byte what upstream's kubelet writes (Go's field order, no kind/apiVersion).
    assert status == (
        '{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit '
        'code: error executing command [sh -c echo before; exit 3], exit code 3",'
        '"reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}')
    assert ws.returncode == 3


async def test_client_exec_stdin_closed_by_v5(api: k8s.CoreV1Api, ns: str) -> None:
    """v5's close signal is the end of stdin: `cat` sees EOF and exits."""
    out, _, _, ws = await asyncio.to_thread(run_exec, api, ns, ["cat"],
                                            stdin=b"line one\nline two\n")
    assert out == "line one\nline two\n"
    assert ws.returncode == 0


async def test_client_exec_tty_and_resize(api: k8s.CoreV1Api, ns: str) -> None:
    script = "test -t 0 && test -t 1 && echo terminal; sleep 1; stty size"
    out, err, _, ws = await asyncio.to_thread(run_exec, api, ns, ["sh", "-c", script],
                                              stdin=b"", close_stdin=False, tty=True,
                                              resize=(100, 30))
    assert out == "terminal\r\n30 100\r\n"  # a terminal: CRLF, one output stream
    assert err == ""
    assert ws.returncode == 0


def attach_until(api: k8s.CoreV1Api, ns: str, container: str, want: str, *,
                 stdin: str | None = None, tty: bool = False) -> str:
    """Attach, send `stdin`, read stdout until it holds `want`; then detach (close)."""
    ws = stream(api.connect_get_namespaced_pod_attach, ATTACH_POD, ns, container=container,
                stdin=stdin is not None, stdout=True, stderr=not tty, tty=tty,
                _preload_content=False)
    try:
        if stdin is not None:
            ws.write_stdin(stdin)
        out = ""
        for _ in range(100):
            ws.update(timeout=0.3)
            out += ws.read_stdout(timeout=0) if ws.peek_stdout() else ""
            if want in out or not ws.is_open():
                break
        return out
    finally:
        ws.close()


async def test_client_attach(api: k8s.CoreV1Api, ns: str, att: str) -> None:
    out = await asyncio.to_thread(attach_until, api, ns, "reader", "got two", stdin="one\ntwo\n")
    assert out == "got one\ngot two\n"
    # Output only: what the process writes from now on; detached, it goes on, and a second
    # client attaches to it.
    first = await asyncio.to_thread(attach_until, api, ns, "ticker", "\ntick")
    second = await asyncio.to_thread(attach_until, api, ns, "ticker", "\ntick")
    assert re.match(r"tick \d+\n", first) and re.match(r"tick \d+\n", second)
    assert int(second.split()[1]) > int(first.split()[1])
    # A terminal: the shell reads a line, the terminal echoes it back.
    out = await asyncio.to_thread(attach_until, api, ns, "shell", "hi-2",
                                  stdin="echo hi-$((1+1))\n", tty=True)
    assert "hi-2\r\n" in out


# --- the channel protocols by hand ----------------------------------------------------------


class Raw:
    """The admin's TLS material for hand-made requests (aiohttp)."""

    def __init__(self, api: k8s.CoreV1Api) -> None:
        cfg = api.api_client.configuration
        self.host = cfg.host
        self.ssl = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        self.ssl.load_cert_chain(cfg.cert_file, cfg.key_file)

    def url(self, ns: str, sub: str, query: str) -> str:
        return f"{self.host}/api/v1/namespaces/{ns}/pods/{POD}/{sub}?{query}"


async def ws_exec(raw: Raw, ns: str, query: str, protocols: list[str],
                  send: list[bytes | str] = ()) -> tuple[str, list[tuple[int, bytes]]]:
    """(the chosen subprotocol, every (stream, data) the server sent) of one exec."""
    got: list[tuple[int, bytes]] = []
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(raw.url(ns, "exec", query), protocols=protocols, ssl=raw.ssl,
                                timeout=aiohttp.ClientWSTimeout(ws_close=10)) as ws:
            for m in send:
                await (ws.send_str(m) if isinstance(m, str) else ws.send_bytes(m))
            async with asyncio.timeout(30):
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        got.append((msg.data[0], msg.data[1:]))
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        got.append((ord(msg.data[0]) - ord("0"), base64.b64decode(msg.data[1:])))
            return ws.protocol or "", got


async def test_v4_protocol_and_started_message(api: k8s.CoreV1Api, ns: str) -> None:
    """A client offering v4 first gets v4 (the client's order, as upstream's handshake); the
    first message is the empty "started" one on stdout; v4 has the JSON status too."""
    raw = Raw(api)
    q = "command=sh&command=-c&command=head+-n1%3Bexit+5&container=main&stdin=true&stdout=true"
    protocol, got = await ws_exec(raw, ns, q, ["v4.channel.k8s.io", "v5.channel.k8s.io"],
                                  [b"\x00first\nsecond\n"])
    assert protocol == "v4.channel.k8s.io"
    assert got[0] == (1, b"")
    assert b"".join(d for s, d in got if s == 1) == b"first\n"
    status = json.loads(b"".join(d for s, d in got if s == 3))
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"] == [
        {"reason": "ExitCode", "message": "5"}]


async def test_v1_and_base64_protocols(api: k8s.CoreV1Api, ns: str) -> None:
    """channel.k8s.io says a failure as text on the error stream and nothing on success;
    base64.channel.k8s.io sends text messages, the stream as a digit."""
    raw = Raw(api)
    q = "command=sh&command=-c&command=echo+hi%3Bexit+2&container=main&stdout=true"
    protocol, got = await ws_exec(raw, ns, q, ["channel.k8s.io"])
    assert protocol == "channel.k8s.io"
    assert b"".join(d for s, d in got if s == 1) == b"hi\n"
    assert b"".join(d for s, d in got if s == 3) == (
        b"command terminated with non-zero exit code: error executing command "
        b"[sh -c echo hi;exit 2], exit code 2")
    q = "command=echo&command=b64&container=main&stdout=true"
    protocol, got = await ws_exec(raw, ns, q, ["base64.channel.k8s.io"])
    assert protocol == "base64.channel.k8s.io"
    assert b"".join(d for s, d in got if s == 1) == b"b64\n"
    assert not [d for s, d in got if s == 3 and d]


async def refusal(raw: Raw, url: str, headers: dict[str, str],
                  method: str = "GET") -> tuple[int, dict[str, Any]]:
    base = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, headers={**base, **headers}, ssl=raw.ssl) as r:
            return r.status, json.loads(await r.read())


async def test_refusals_are_http_statuses(kubelet_cluster: Cluster, api: k8s.CoreV1Api,
                                          ns: str) -> None:
    raw = Raw(api)
    v5 = {"Sec-WebSocket-Protocol": "v5.channel.k8s.io"}
    code, st = await refusal(raw, raw.url(ns, "exec", "container=main&stdout=true"), v5)
    assert (code, st["reason"], st["message"]) == (
        400, "BadRequest", "you must specify at least one command for the container")
    code, st = await refusal(raw, raw.url(ns, "exec", "command=ls&stdout=true"), v5)
    assert (code, st["message"]) == (400, "a container name must be specified for pod talk, "
                                     "choose one of: [main web echo]")
    code, st = await refusal(raw, raw.url(ns, "exec", "command=ls&stdout=true&container=x"), v5)
    assert (code, st["message"]) == (400, "container x is not valid for pod talk")
    url = f"{raw.host}/api/v1/namespaces/{ns}/pods/nope/exec?command=ls&stdout=true"
    code, st = await refusal(raw, url, v5)
    assert (code, st["reason"], st["message"]) == (404, "NotFound", 'pods "nope" not found')
    code, st = await refusal(raw, raw.url(ns, "exec", "command=ls&container=main&stdout=true"),
                             {"Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version":
                              "v4.channel.k8s.io"}, method="POST")
    assert code == 400 and "over SPDY" in st["message"] and "WebSocket only" in st["message"]
    code, st = await refusal(raw, raw.url(ns, "exec", "command=ls&container=main&stdout=true"),
                             {"Sec-WebSocket-Protocol": "v9.channel.k8s.io"})
    assert (code, st["message"]) == (400, "requested protocol(s) are not supported: "
                                     "[v9.channel.k8s.io]; supports [v5.channel.k8s.io "
                                     "v4.channel.k8s.io v4.base64.channel.k8s.io "
                                     "v3.channel.k8s.io v2.channel.k8s.io channel.k8s.io "
                                     "base64.channel.k8s.io]")
    code, st = await refusal(raw, raw.url(ns, "attach", "container=main"), v5)
    assert (code, st["message"]) == (400, "you must specify at least 1 of stdin, stdout, stderr")

    # Who may not create pods/exec is told so before anything runs.
    cfg = k8s.Configuration()
    k8s_config.load_kube_config(config_file=kubelet_cluster.kubeconfig_as("eve"),
                                client_configuration=cfg)
    with k8s.ApiClient(cfg) as c:
        eve = Raw(k8s.CoreV1Api(c))
        code, st = await refusal(eve, eve.url(ns, "exec", "command=ls&container=main&stdout="
                                              "true"), v5)
    assert (code, st["reason"]) == (403, "Forbidden")
    assert st["message"] == (f'pods "talk" is forbidden: User "eve" cannot create resource '
                             f'"pods/exec" in API group "" in the namespace "{ns}"')


async def test_client_going_away_mid_command(kubelet_cluster: Cluster, api: k8s.CoreV1Api,
                                             ns: str) -> None:
    """A client that vanishes (TCP reset, no close frame) ends its session quietly: the
    kubelet's stream is cancelled, nothing is logged as a failure, the next exec works."""
    raw = Raw(api)
    q = "command=sh&command=-c&command=echo+started%3Bsleep+5&container=main&stdout=true"
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(raw.url(ns, "exec", q), protocols=["v5.channel.k8s.io"],
                                ssl=raw.ssl)
        got = b""
        while b"started" not in got:
            msg = await asyncio.wait_for(ws.receive(), 30)
            got += msg.data[1:]
        transport = ws._response.connection.transport  # type: ignore[union-attr]
        transport.abort()
    _, out = await ws_exec(raw, ns, "command=echo&command=next&container=main&stdout=true",
                           ["v5.channel.k8s.io"])
    assert b"".join(d for st, d in out if st == 1) == b"next\n"
    assert kubelet_cluster.apiserver is not None
    log = kubelet_cluster.apiserver.logs()
    assert "Traceback" not in log and " ERROR " not in log, log


async def test_tunnel_by_hand(api: k8s.CoreV1Api, ns: str) -> None:
    """The SPDY tunnel with our own codec as the client: pings come back, a stream with a bad
    header is refused (SYN_REPLY with FIN), a pair forwards one connection."""
    raw = Raw(api)
    codec = SpdyCodec()
    frames = []
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(raw.url(ns, "portforward", ""), ssl=raw.ssl,
                                protocols=["SPDY/3.1+portforward.k8s.io"]) as ws:
            assert ws.protocol == "SPDY/3.1+portforward.k8s.io"
            await ws.send_bytes(codec.ping(1))
            await ws.send_bytes(codec.syn_stream(1, {"streamtype": ["bogus"], "port": ["80"]}))
            head = {"port": [str(WEB_PORT)], "requestid": ["7"]}
            await ws.send_bytes(codec.syn_stream(3, {**head, "streamtype": ["error"]}))
            await ws.send_bytes(codec.syn_stream(5, {**head, "streamtype": ["data"]}))
            await ws.send_bytes(codec.data(5, b"GET / HTTP/1.0\r\n\r\n", fin=True))
            async with asyncio.timeout(30):
                while not any(f.type == 0 and f.stream_id == 5 and f.flags & 1 for f in frames):
                    msg = await ws.receive()
                    assert msg.type == aiohttp.WSMsgType.BINARY, msg
                    frames += codec.feed(msg.data)
    assert (6, 1) in [(f.type, f.value) for f in frames]  # the ping, back
    replies = {f.stream_id: f.flags for f in frames if f.type == 2}
    assert replies == {1: 1, 3: 0, 5: 0}  # the bogus stream refused at once
    body = b"".join(f.data for f in frames if f.type == 0 and f.stream_id == 5)
    assert body.startswith(b"HTTP/1.1 200 OK") and body.endswith(POD.encode())
    assert not b"".join(f.data for f in frames if f.type == 0 and f.stream_id == 3)


# --- port-forward: the Python client (v4 channels) -----------------------------------------


def client_forward(api: k8s.CoreV1Api, ns: str, port: int, payload: bytes) -> bytes:
    pf = portforward(api.connect_get_namespaced_pod_portforward, POD, ns, ports=str(port))
    try:
        sock = pf.socket(port)
        sock.settimeout(30)
        sock.sendall(payload)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        assert pf.error(port) is None
        return data
    finally:
        pf.close()


async def test_client_port_forward(api: k8s.CoreV1Api, ns: str) -> None:
    answer = await asyncio.to_thread(client_forward, api, ns, WEB_PORT,
                                     b"GET / HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"\r\n\r\n" + POD.encode())
    # A port bound to the pod's loopback only: the kubelet connects inside the pod.
    answer = await asyncio.to_thread(client_forward, api, ns, LOCAL_PORT,
                                     b"GET /index.html HTTP/1.0\r\n\r\n")
    assert b"200 OK" in answer and answer.endswith(b"local-only\n")


async def test_client_port_forward_refused_port(api: k8s.CoreV1Api, ns: str) -> None:
    def run() -> str | None:
        pf = portforward(api.connect_get_namespaced_pod_portforward, POD, ns, ports="9")
        try:
            sock = pf.socket(9)
            sock.settimeout(30)
            assert sock.recv(10) == b""
            return pf.error(9)
        finally:
            pf.close()
    error = await asyncio.to_thread(run)
    assert error is not None and error.startswith(
        f"error forwarding port 9 to pod {ns}/{POD}: failed to connect to localhost:9 inside "
        "the pod's network namespace:")


# --- kubectl ---------------------------------------------------------------------------------


async def kubectl(cluster: Cluster, home: str, *args: str, stdin: bytes = b""
                  ) -> tuple[int, str, str]:
    assert KUBECTL is not None
    env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "KUBECONFIG": cluster.kubeconfig}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@needs_kubectl
async def test_kubectl_exec(kubelet_cluster: Cluster, ns: str, kube_home: str) -> None:
    c = kubelet_cluster
    assert await kubectl(c, kube_home, "-n", ns, "exec", POD, "-c", "main", "--",
                         "echo", "hi") == (0, "hi\n", "")
    code, out, err = await kubectl(c, kube_home, "-n", ns, "exec", "-i", POD, "-c", "main",
                                   "--", "cat", stdin=b"round\ntrip\n")
    assert (code, out, err) == (0, "round\ntrip\n", "")
    code, out, err = await kubectl(c, kube_home, "-n", ns, "exec", POD, "-c", "main", "--",
                                   "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (code, out, err) == (7, "out\n", "err\ncommand terminated with exit code 7\n")
    code, _, err = await kubectl(c, kube_home, "-n", ns, "exec", "nope", "--", "true")
    assert (code, err) == (1, 'Error from server (NotFound): pods "nope" not found\n')


@needs_kubectl
@pytest.mark.skipif(shutil.which("script") is None, reason="script (util-linux) is not here")
async def test_kubectl_exec_terminal(kubelet_cluster: Cluster, ns: str, kube_home: str) -> None:
    """`exec -it` on a real pseudo-terminal (script(1)): kubectl sends the terminal's size on
    the resize stream, the command sees it (after a moment: the size follows the start, as
    upstream's), and its output comes back raw."""
    assert KUBECTL is not None
    inner = (f"stty rows 37 cols 91; {KUBECTL} -n {ns} exec -it {POD} -c main -- "
             "sh -c 'sleep 1; stty size; test -t 0 && echo on-a-tty'")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": kube_home,
           "KUBECONFIG": kubelet_cluster.kubeconfig, "TERM": "xterm"}
    proc = await asyncio.create_subprocess_exec(
        "script", "-qec", inner, "/dev/null", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, out
    assert b"37 91\r\non-a-tty\r\n" in out, out


@needs_kubectl
async def test_kubectl_exec_big_streams(kubelet_cluster: Cluster, ns: str,
                                        kube_home: str) -> None:
    """Megabytes both ways: stdin held back while the command is slower, output in order."""
    c = kubelet_cluster
    data = os.urandom(3 * 1024 * 1024)
    code, out, err = await kubectl(c, kube_home, "-n", ns, "exec", "-i", POD, "-c", "main",
                                   "--", "md5sum", stdin=data)
    assert (code, err) == (0, "") and out.split()[0] == hashlib.md5(data).hexdigest()
    code, out, err = await kubectl(c, kube_home, "-n", ns, "exec", POD, "-c", "main", "--",
                                   "sh", "-c", "seq 1 400000")
    assert (code, err) == (0, "")
    assert out == "".join(f"{i}\n" for i in range(1, 400001))


@needs_kubectl
async def test_kubectl_cp(kubelet_cluster: Cluster, ns: str, kube_home: str,
                          tmp_path: Path) -> None:
    """kubectl cp is tar through exec: stdin to the pod and its end (v5's close), then back."""
    c = kubelet_cluster
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(200_000))
    code, _, err = await kubectl(c, kube_home, "-n", ns, "cp", str(src), f"{POD}:/tmp/payload",
                                 "-c", "main")
    assert (code, err) == (0, "")
    back = tmp_path / "back.bin"
    code, _, err = await kubectl(c, kube_home, "-n", ns, "cp", f"{POD}:/tmp/payload", str(back),
                                 "-c", "main")
    assert code == 0, err
    assert back.read_bytes() == src.read_bytes()


@needs_kubectl
async def test_kubectl_attach(kubelet_cluster: Cluster, ns: str, att: str,
                              kube_home: str) -> None:
    """stdinOnce: the container's stdin ends with kubectl's, its loop ends, and so does the
    attach (Success: exit status 0)."""
    code, out, _ = await kubectl(kubelet_cluster, kube_home, "-n", ns, "attach", "-i", att,
                                 "-c", "once", stdin=b"x\ny\n")
    assert (code, out) == (0, "got x\ngot y\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fetch(port: int, payload: bytes, half_close: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        if half_close:
            writer.write_eof()
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


@needs_kubectl
async def test_kubectl_port_forward(kubelet_cluster: Cluster, ns: str, kube_home: str) -> None:
    """kubectl (1.31+) tunnels SPDY through a WebSocket: several ports, several connections
    each, one at a time and at once, a half-close, a loopback-only port."""
    assert KUBECTL is not None
    web, local, echo = free_port(), free_port(), free_port()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": kube_home,
           "KUBECONFIG": kubelet_cluster.kubeconfig}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "-n", ns, "port-forward", f"pod/{POD}", f"{web}:{WEB_PORT}",
        f"{local}:{LOCAL_PORT}", f"{echo}:{ECHO_PORT}", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        lines = []
        async with asyncio.timeout(30):
            while len(lines) < 3:
                line = (await proc.stdout.readline()).decode()
                assert line, (await proc.stderr.read()).decode()
                if line.startswith("Forwarding from 127.0.0.1:"):
                    lines.append(line)
        for _ in range(2):
            answer = await fetch(web, b"GET / HTTP/1.0\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(POD.encode())
        answers = await asyncio.gather(*(fetch(web, b"GET / HTTP/1.0\r\n\r\n")
                                         for _ in range(5)))
        assert all(a.endswith(POD.encode()) for a in answers)
        answer = await fetch(local, b"GET /index.html HTTP/1.0\r\n\r\n")
        assert b"200 OK" in answer and answer.endswith(b"local-only\n")
        # The echo server answers what it read until the client's half-close.
        big = os.urandom(300_000)
        assert await fetch(echo, big, half_close=True) == big
        assert proc.returncode is None  # still serving
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


# --- the pieces, without a cluster ------------------------------------------------------------


def test_spdy_dictionary_is_the_specs() -> None:
    assert len(SPDY_DICTIONARY) == 1423 and zlib.adler32(SPDY_DICTIONARY) == 0xE3C6A7C2


def test_spdy_codec_round_trip() -> None:
    """Header compression is one zlib stream per direction: the second block only decodes
    after the first (what kubectl's SPDY library does, and what ours must follow)."""
    client, server = SpdyCodec(), SpdyCodec()
    wire = client.syn_stream(1, {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]})
    wire += client.syn_stream(3, {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]})
    wire += client.data(3, b"hello") + client.data(3, fin=True) + client.ping(1)
    frames = server.feed(wire[:7]) + server.feed(wire[7:])  # a frame across two messages
    assert [(f.type, f.stream_id, f.flags) for f in frames] == [
        (1, 1, 0), (1, 3, 0), (0, 3, 0), (0, 3, 1), (6, 0, 0)]
    assert frames[1].headers == {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]}
    assert frames[2].data == b"hello" and frames[4].value == 1
    replies = server.syn_reply(1) + server.syn_reply(3) + server.goaway(3)
    back = client.feed(replies)
    assert [(f.type, f.stream_id) for f in back] == [(2, 1), (2, 3), (7, 3)]
    assert back[0].headers == {} and back[1].headers == {}
    # The frame layout as Go's framer writes it: control bit, version 3, type, flags, length.
    assert struct.unpack(">HHI", server.ping(2)[:8]) == (0x8003, 6, 4)


def test_exit_status_words() -> None:
    assert exit_status(["true"], 0) == {"metadata": {}, "status": "Success"}
    assert exit_status(["sh", "-c", "exit 3"], 3)["message"] == (
        "command terminated with non-zero exit code: error executing command [sh -c exit 3], "
        "exit code 3")
