"""The scheduler's informer handlers and binding cycle, driven by hand with a stub client (no
I/O): what happens to the cache and the queue when pods and nodes go away mid-decision."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from sched_fixtures import make_node, make_pod  # tests/unit/scheduler, on sys.path under pytest

from api import errors
from scheduler.scheduler import Scheduler


class StubClient:
    """Binds wait until the test releases them, then fail or succeed as told."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.bind_error: Exception | None = None
        self.binds: list[tuple[str, str, str]] = []
        self.patches: list[tuple[str, Any]] = []

    async def bind(self, ns: str, name: str, node: str, uid: str = "") -> None:
        self.binds.append((ns, name, node))
        await self.release.wait()
        if self.bind_error is not None:
            raise self.bind_error

    async def patch(self, resource: str, name: str, body: Any, ns: Any = None,
                    subresource: str = "") -> None:
        self.patches.append((name, body))


class StubRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: Any, type_: str, reason: str, message: str) -> None:
        self.events.append((obj.metadata.name, reason, message))


def scheduler() -> tuple[Scheduler, StubClient, StubRecorder]:
    client, recorder = StubClient(), StubRecorder()
    return Scheduler(cast(Any, client), cast(Any, recorder)), client, recorder


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_pod_deleted_while_assumed_is_forgotten_at_once() -> None:
    s, client, recorder = scheduler()
    s._on_node_add(make_node("n1", cpu="1"))
    pod = make_pod("a", cpu="800m", schedulerName="default-scheduler")
    s._on_pod_add(pod)
    assert await s.schedule_one()
    assert s.cache.is_assumed("ns/a") and s.cache.nodes["n1"].req_cpu == 800
    await settle()
    assert client.binds == [("ns", "a", "n1")]  # in flight

    s._on_pod_delete(pod)  # deleted before the bind answered
    assert not s.cache.knows("ns/a")
    assert s.cache.nodes["n1"].req_cpu == 0  # capacity free for the next pod at once

    client.bind_error = errors.NotFound(message='pods "a" not found')
    client.release.set()
    await settle()
    assert "ns/a" not in s.queue and not s.cache.knows("ns/a")
    assert not any(r == "FailedScheduling" for _, r, _ in recorder.events)


async def test_late_delete_of_an_older_pod_keeps_its_successors_assumption() -> None:
    s, client, _ = scheduler()
    s._on_node_add(make_node("n1", cpu="1"))
    old = make_pod("a", cpu="800m", uid="uid-old", node="n1")
    new = make_pod("a", cpu="800m", uid="uid-new", schedulerName="default-scheduler")
    s._on_pod_add(new)
    assert await s.schedule_one()
    s._on_pod_delete(old)  # a stale tombstone of the same name
    assert s.cache.is_assumed("ns/a") and s.cache.nodes["n1"].req_cpu == 800
    client.release.set()
    await settle()


async def test_bound_pod_delete_frees_the_node_and_retries_parked_pods() -> None:
    s, _client, recorder = scheduler()
    s._on_node_add(make_node("n1", cpu="1"))
    big = make_pod("big", cpu="800m", node="n1")
    s._on_pod_add(big)
    s._on_pod_add(make_pod("next", cpu="800m", schedulerName="default-scheduler"))
    assert await s.schedule_one()
    assert s.queue.counts() == (0, 0, 1)  # parked: fits nowhere
    assert recorder.events[-1] == ("next", "FailedScheduling",
                                   "0/1 nodes are available: 1 Insufficient cpu.")
    s._on_pod_delete(big)
    assert s.cache.nodes["n1"].req_cpu == 0
    assert s.queue.counts()[2] == 0  # moved back to be retried
    await settle()


async def test_node_deleted_while_pods_are_queued() -> None:
    s, client, recorder = scheduler()
    n1 = make_node("n1")
    s._on_node_add(n1)
    s._on_node_add(make_node("n2"))
    s._on_pod_add(make_pod("a", schedulerName="default-scheduler", nodeSelector={"x": "1"}))
    s._on_node_delete(n1)
    assert s.cache.node_list == ["n2"] and "n1" not in s.cache.nodes
    assert await s.schedule_one()
    assert recorder.events[-1] == (
        "a", "FailedScheduling",
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.")
    s._on_node_delete(make_node("n2"))
    s._on_pod_add(make_pod("b", schedulerName="default-scheduler"))
    assert await s.schedule_one()
    assert recorder.events[-1] == ("b", "FailedScheduling",
                                   "no nodes available to schedule pods")
    assert client.binds == []
    await settle()


async def test_failed_bind_is_forgotten_and_retried_with_upstreams_message() -> None:
    s, client, recorder = scheduler()
    s._on_node_add(make_node("n1", cpu="1"))
    s._on_pod_add(make_pod("a", cpu="800m", schedulerName="default-scheduler"))
    assert await s.schedule_one()
    client.bind_error = errors.InternalError(message="etcd is sad")
    client.release.set()
    await settle()
    assert not s.cache.knows("ns/a") and s.cache.nodes["n1"].req_cpu == 0
    assert s.queue.counts() == (0, 1, 0)  # backing off
    assert recorder.events[-1] == (
        "a", "FailedScheduling",
        'binding rejected: running Bind plugin "DefaultBinder": etcd is sad')
    assert client.patches[-1][1]["status"]["conditions"][-1]["reason"] == "SchedulerError"
