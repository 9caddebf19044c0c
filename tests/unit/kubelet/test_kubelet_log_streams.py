"""A followed log whose client goes away must not leave the kubelet's reader thread behind,
also when the client leaves while Docker is still answering the logs request (a stand-in for
Docker's API: what is tested is the server's stream bookkeeping, not Docker)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from api.proto import tinykube_pb2 as pb
from harness.wait import until
from kubelet.server import KubeletServer


class QuietStream:
    """Docker's CancellableStream of a followed log that prints nothing: iterating blocks
    until close()."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        self.closed.wait()
        return iter(())

    def close(self) -> None:
        self.closed.set()


class SlowLogsApi:
    """api.logs answers only when the test opens the gate."""

    def __init__(self) -> None:
        self.called = threading.Event()
        self.gate = threading.Event()
        self.streams: list[QuietStream] = []

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        return {"Config": {"Tty": False}}

    def logs(self, container_id: str, **kwargs: Any) -> QuietStream:
        self.called.set()
        self.gate.wait(30)
        stream = QuietStream()
        self.streams.append(stream)
        return stream


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "container logs" and t.is_alive()]


async def test_client_gone_before_docker_answered_stops_the_reader() -> None:
    api = SlowLogsApi()
    server = KubeletServer(docker_client=SimpleNamespace(api=api),  # type: ignore[arg-type]
                           resolve=lambda *a: "cid", authorizer=None)
    before = set(readers())
    gen = server.container_logs("cid", pb.LogsRequest(follow=True, tail_lines=-1))
    task = asyncio.create_task(anext(gen))
    await until(api.called.is_set, timeout=10, what="the logs request reaching Docker")
    task.cancel()  # the client went away
    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
        await task
    await gen.aclose()
    api.gate.set()  # Docker answers only now
    try:
        await until(lambda: api.streams and api.streams[0].closed.is_set(), timeout=10,
                    what="the late stream closed")
        await until(lambda: not (set(readers()) - before), timeout=10,
                    what="the reader thread gone")
    finally:
        for s in api.streams:
            s.close()
