"""kubelet/prober.py without Docker: the HTTP/TCP/gRPC checks against real local servers, and the
ProbeManager's thresholds, gating and events with httpGet/tcpSocket probes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from harness.wait import until
from kubelet.prober import (
    ProbeError,
    ProbeManager,
    grpc_check,
    http_get,
    resolve_port,
    tcp_check,
)


@dataclass
class Server:
    """A tiny HTTP server whose answer the test changes: status, redirect target, a hang."""
    status: int = 200
    location: str = ""
    hang: bool = False
    requests: list[bytes] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return  # a TCP probe: connected and closed
        self.requests.append(head)
        if self.hang:
            await asyncio.sleep(30)
        extra = f"Location: {self.location}\r\n" if self.location else ""
        path = head.split()[1]
        status = 200 if path == b"/final" else self.status
        body = b"hello"
        writer.write(f"HTTP/1.1 {status} X\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
                     .encode() + body)
        await writer.drain()
        writer.close()


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    s.server = await asyncio.start_server(s.handle, "127.0.0.1", 0)
    s.port = s.server.sockets[0].getsockname()[1]
    try:
        yield s
    finally:
        s.server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_http_get_status_codes_and_headers(server: Server) -> None:
    url = f"http://127.0.0.1:{server.port}/healthz"
    assert await http_get(url, [{"name": "X-Custom", "value": "v"}], 1) == (True, "hello")
    head = server.requests[-1].decode()
    assert head.startswith("GET /healthz HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n" in head and "X-Custom: v\r\n" in head
    assert "User-Agent: kube-probe/" in head
    server.status = 500
    assert await http_get(url, [], 1) == (False, "HTTP probe failed with statuscode: 500")
    server.status = 399
    assert (await http_get(url, [], 1))[0]


async def test_http_get_redirects(server: Server) -> None:
    url = f"http://127.0.0.1:{server.port}/start"
    server.status, server.location = 302, "/final"
    assert await http_get(url, [], 1) == (True, "hello")  # same host: followed
    server.location = "http://example.invalid/"
    ok, output = await http_get(url, [], 1)
    assert ok and output == "Probe terminated redirects, Response body: hello"


async def test_http_get_errors_in_go_words(server: Server) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    assert await http_get(url, [], 1) == (
        False, f'Get "{url}": dial tcp 127.0.0.1:{port}: connect: connection refused')
    server.hang = True
    url = f"http://127.0.0.1:{server.port}/"
    assert await http_get(url, [], 0.3) == (
        False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while '
               "awaiting headers)")


async def test_tcp_check(server: Server) -> None:
    assert await tcp_check("127.0.0.1", server.port, 1) == (True, "")
    port = free_port()
    assert await tcp_check("127.0.0.1", port, 1) == (
        False, f"dial tcp 127.0.0.1:{port}: connect: connection refused")


async def test_grpc_check() -> None:
    srv = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    try:
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await servicer.set("db", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert await grpc_check("127.0.0.1", port, "", 2) == (True, "")
        assert await grpc_check("127.0.0.1", port, "db", 2) == (
            False, 'service unhealthy (responded with "NOT_SERVING")')
    finally:
        await srv.stop(None)


def test_resolve_port() -> None:
    container = {"ports": [{"name": "http", "containerPort": 9376}]}
    assert resolve_port("http", container) == 9376
    assert resolve_port(80, container) == 80 and resolve_port("81", container) == 81
    with pytest.raises(ProbeError, match="couldn't find port: web"):
        resolve_port("web", container)
    with pytest.raises(ProbeError, match="invalid port number"):
        resolve_port(70000, container)


# --- ProbeManager ------------------------------------------------------------------------------


class Manager:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.changes: list[str] = []
        self.pm = ProbeManager(None, self.record, self.changes.append)  # type: ignore[arg-type]

    def record(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> None:
        assert (type_, reason) == ("Warning", "Unhealthy")
        self.events.append(message)


@pytest_asyncio.fixture
async def manager() -> AsyncIterator[Manager]:
    m = Manager()
    try:
        yield m
    finally:
        await m.pm.close()


def pod(uid: str, **probes: Any) -> dict[str, Any]:
    container = {"name": "c", "ports": [{"name": "http", "containerPort": 1}], **probes}
    return {"metadata": {"name": "p", "namespace": "ns", "uid": uid},
            "spec": {"containers": [container]}}


def http_probe(port: int, **kw: Any) -> dict[str, Any]:
    return {"httpGet": {"port": port, "path": "/"}, "periodSeconds": 0.05, **kw}


async def test_readiness_flips_both_ways(manager: Manager, server: Server) -> None:
    p = pod("u1", readinessProbe=http_probe(server.port, failureThreshold=2))
    pm = manager.pm
    assert pm.ready("u1", "c", "c1")  # unknown pod: no probe known (the kubelet updates first)
    pm.update_pod(p, "127.0.0.1", {"c": ("c1", time.monotonic())})
    assert not pm.ready("u1", "c", "c1")  # readiness starts False
    await until(lambda: pm.ready("u1", "c", "c1"), timeout=5, what="ready")
    assert manager.changes == ["u1"] and manager.events == []
    assert not pm.ready("u1", "c", "other-container-id")
    server.status = 503
    await until(lambda: not pm.ready("u1", "c", "c1"), timeout=5, what="unready")
    assert manager.events[:2] == ["Readiness probe failed: HTTP probe failed with statuscode: "
                                  "503"] * 2
    server.status = 200
    await until(lambda: pm.ready("u1", "c", "c1"), timeout=5, what="ready again")
    assert manager.changes == ["u1"] * 3
    assert pm.liveness_failed("u1", "c", "c1") is None and pm.started("u1", "c", "c1")


async def test_liveness_fails_after_threshold_then_holds(manager: Manager) -> None:
    port = free_port()
    p = pod("u2", livenessProbe={"tcpSocket": {"port": port}, "periodSeconds": 0.05,
                                 "failureThreshold": 3})
    pm = manager.pm
    pm.update_pod(p, "127.0.0.1", {"c": ("c1", time.monotonic())})
    msg = await until(lambda: pm.liveness_failed("u2", "c", "c1"), timeout=5, what="liveness")
    assert msg == "Container c failed liveness probe"
    # exactly failureThreshold failures, then the worker holds until a new container
    assert manager.events == [f"Liveness probe failed: dial tcp 127.0.0.1:{port}: connect: "
                              "connection refused"] * 3
    await asyncio.sleep(0.2)
    assert len(manager.events) == 3
    # a new container (the restart) starts from scratch: alive until proven otherwise
    pm.update_pod(p, "127.0.0.1", {"c": ("c2", time.monotonic())})
    assert pm.liveness_failed("u2", "c", "c2") is None
    await until(lambda: pm.liveness_failed("u2", "c", "c2"), timeout=5, what="liveness c2")
    pm.remove_pod("u2")
    assert pm.liveness_failed("u2", "c", "c2") is None


async def test_startup_gates_liveness_and_readiness(manager: Manager, server: Server) -> None:
    closed = free_port()
    p = pod("u3",
            startupProbe={"tcpSocket": {"port": closed}, "periodSeconds": 0.05,
                          "failureThreshold": 1000},
            livenessProbe={"tcpSocket": {"port": closed}, "periodSeconds": 0.05,
                           "failureThreshold": 1},
            readinessProbe=http_probe(server.port))
    pm = manager.pm
    pm.update_pod(p, "127.0.0.1", {"c": ("c1", time.monotonic())})
    await until(lambda: len(manager.events) >= 5, timeout=5, what="startup probes failing")
    # while not started: never ready, liveness not probed (it would fail at once)
    assert all(e.startswith("Startup probe failed") for e in manager.events)
    assert not pm.started("u3", "c", "c1") and not pm.ready("u3", "c", "c1")
    assert pm.liveness_failed("u3", "c", "c1") is None and server.requests == []
    # the startup probe now passes: readiness and liveness begin
    p["spec"]["containers"][0]["startupProbe"]["tcpSocket"]["port"] = server.port
    pm.update_pod(p, "127.0.0.1", {"c": ("c2", time.monotonic())})
    await until(lambda: pm.ready("u3", "c", "c2"), timeout=5, what="ready after startup")
    assert pm.started("u3", "c", "c2")
    assert await until(lambda: pm.liveness_failed("u3", "c", "c2"), timeout=5) == \
        "Container c failed liveness probe"


async def test_startup_failure_is_a_kill(manager: Manager) -> None:
    p = pod("u4", startupProbe={"tcpSocket": {"port": free_port()}, "periodSeconds": 0.05,
                                "failureThreshold": 2})
    pm = manager.pm
    pm.update_pod(p, "127.0.0.1", {"c": ("c1", time.monotonic())})
    assert await until(lambda: pm.liveness_failed("u4", "c", "c1"), timeout=5) == \
        "Container c failed startup probe"
    assert not pm.started("u4", "c", "c1")


async def test_initial_delay_and_errored_probes(manager: Manager, server: Server) -> None:
    # a port name the container does not have: "probe errored", which is not a failure
    p = pod("u5", readinessProbe={"httpGet": {"port": "nope"}, "periodSeconds": 0.05,
                                  "failureThreshold": 1},
            livenessProbe=http_probe(server.port, initialDelaySeconds=3600))
    pm = manager.pm
    pm.update_pod(p, "127.0.0.1", {"c": ("c1", time.monotonic())})
    await until(lambda: len(manager.events) >= 2, timeout=5)
    assert manager.events[0].startswith("Readiness probe errored: couldn't find port: nope")
    assert manager.changes == [] and not pm.ready("u5", "c", "c1")
    assert server.requests == []  # the liveness probe waits for its initial delay


async def test_a_cancel_that_meets_a_trigger_stops_the_worker(manager: Manager) -> None:
    """A probe worker waits for its period or a trigger. With Python 3.11's asyncio.wait_for,
    a cancellation arriving with a trigger was dropped: the worker probed on for ever and
    ProbeManager.close() waited for it (a test teardown hung for 300s under load)."""
    p = pod("u9", readinessProbe={"tcpSocket": {"port": free_port()}, "periodSeconds": 60})
    manager.pm.update_pod(p, "127.0.0.1", {"c": ("c1", time.monotonic())})
    w = manager.pm._workers[("u9", "c", "readiness")]
    await until(lambda: w.last is False, timeout=5, what="the first probe")  # now waiting
    assert w.task is not None
    w.trigger.set()
    w.cancel()
    done, _ = await asyncio.wait({w.task}, timeout=2)
    assert done and w.task.cancelled(), "the cancellation was dropped"
