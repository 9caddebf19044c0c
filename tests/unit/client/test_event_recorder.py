"""EventRecorder logic against an in-test event sink: aggregation, spam filter, never raising."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from api import errors
from api.core import Node, Pod
from client.events import NORMAL, WARNING, EventRecorder


class FakeEvents:
    def __init__(self) -> None:
        self.events: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.fail: list[Exception] = []  # raised, in order, by the next calls

    def _maybe_fail(self) -> None:
        if self.fail:
            raise self.fail.pop(0)

    async def create(self, resource: str, obj: dict[str, Any], namespace: str | None = None,
                     *, dry_run: bool = False) -> dict[str, Any]:
        self.calls.append("create")
        await asyncio.sleep(0)
        self._maybe_fail()
        key = (namespace or "", obj["metadata"]["name"])
        assert obj["metadata"]["namespace"] == namespace
        self.events[key] = obj
        return obj

    async def patch(self, resource: str, name: str, patch: dict[str, Any] | list[Any],
                    namespace: str | None = None, *, patch_type: str = "merge",
                    subresource: str = "", dry_run: bool = False) -> dict[str, Any]:
        self.calls.append("patch")
        await asyncio.sleep(0)
        self._maybe_fail()
        key = (namespace or "", name)
        if key not in self.events:
            raise errors.NotFound(f'events "{name}" not found')
        assert isinstance(patch, dict) and patch_type == "merge"
        self.events[key].update(patch)
        return self.events[key]


def pod(name: str = "web-1", ns: str = "prod") -> Pod:
    return Pod.model_validate({"metadata": {"name": name, "namespace": ns, "uid": "u-1",
                                            "resourceVersion": "7"},
                               "spec": {"containers": [{"name": "c", "image": "i"}]}})


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def recorder(sink: FakeEvents, **kw: Any) -> EventRecorder:
    return EventRecorder(sink, "kubelet", "node-1", retry_interval=0.01, **kw)


async def test_identical_events_are_aggregated_into_one_with_count() -> None:
    sink = FakeEvents()
    rec = recorder(sink)
    for _ in range(3):
        rec.event(pod(), WARNING, "BackOff", "Back-off restarting failed container")
    await rec.flush()
    assert sink.calls == ["create", "patch", "patch"]
    assert len(sink.events) == 1
    (ns, name), event = next(iter(sink.events.items()))
    assert ns == "prod"
    assert re.fullmatch(r"web-1\.[0-9a-f]+", name)
    assert event["count"] == 3
    assert event["involvedObject"] == {"kind": "Pod", "namespace": "prod", "name": "web-1",
                                       "uid": "u-1", "apiVersion": "v1",
                                       "resourceVersion": "7"}
    assert event["source"] == {"component": "kubelet", "host": "node-1"}
    assert event["type"] == "Warning" and event["reason"] == "BackOff"
    assert event["firstTimestamp"] <= event["lastTimestamp"]
    assert event["reportingComponent"] == "kubelet"
    await rec.close()


async def test_different_message_reason_or_object_is_a_new_event() -> None:
    sink = FakeEvents()
    rec = recorder(sink)
    rec.event(pod(), NORMAL, "Pulled", "image a")
    rec.event(pod(), NORMAL, "Pulled", "image b")
    rec.event(pod(), NORMAL, "Started", "image a")
    rec.event(pod("web-2"), NORMAL, "Pulled", "image a")
    rec.eventf(pod(), NORMAL, "Pulled", "image %s", "a")  # same as the first
    await rec.flush()
    assert sink.calls == ["create"] * 4 + ["patch"]
    assert len({name for _, name in sink.events}) == 4, "event names must be unique"
    await rec.close()


async def test_aggregation_window_expires() -> None:
    sink = FakeEvents()
    clock = Clock()
    rec = recorder(sink, clock=clock)
    rec.event(pod(), NORMAL, "Synced", "ok")
    await rec.flush()
    clock.t += 601
    rec.event(pod(), NORMAL, "Synced", "ok")
    await rec.flush()
    assert sink.calls == ["create", "create"]
    await rec.close()


async def test_cluster_scoped_objects_get_events_in_default() -> None:
    sink = FakeEvents()
    rec = recorder(sink)
    rec.event(Node.model_validate({"metadata": {"name": "node-1"}}), NORMAL, "NodeReady", "ok")
    rec.event({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}},
              NORMAL, "Created", "ok")
    await rec.flush()
    assert sorted(ns for ns, _ in sink.events) == ["default", "default"]
    await rec.close()


async def test_spam_filter_limits_each_object_and_refills() -> None:
    sink = FakeEvents()
    clock = Clock()
    rec = recorder(sink, clock=clock, burst=3, refill_interval=300)
    for i in range(5):
        rec.event(pod(), WARNING, "Failed", f"attempt {i}")
    rec.event(pod("other"), WARNING, "Failed", "attempt 0")  # another object: own bucket
    await rec.flush()
    assert len(sink.events) == 4
    assert rec.dropped == 2
    clock.t += 300  # one token back
    rec.event(pod(), WARNING, "Failed", "attempt 5")
    rec.event(pod(), WARNING, "Failed", "attempt 6")
    await rec.flush()
    assert len(sink.events) == 5
    await rec.close()


async def test_never_raises_into_the_caller() -> None:
    sink = FakeEvents()
    rec = recorder(sink)
    rec.event(None, NORMAL, "X", "bad object")  # type: ignore[arg-type]
    rec.event(pod(), "Info", "X", "bad type")
    rec.eventf(pod(), NORMAL, "X", "%d items", "not-a-number")
    await rec.flush()
    assert rec.dropped == 2
    # The eventf message was still formatted into something and recorded.
    assert any("not-a-number" in e["message"] for e in sink.events.values())
    sink.fail = [errors.ServiceUnavailable("down")] * 3  # every attempt of the next write
    rec.event(pod(), NORMAL, "Lost", "apiserver down")
    await asyncio.wait_for(rec.flush(), 5)
    assert rec.dropped == 3
    assert not any(e["reason"] == "Lost" for e in sink.events.values())
    await rec.close()


async def test_transient_failure_is_retried() -> None:
    sink = FakeEvents()
    rec = recorder(sink)
    sink.fail = [errors.ServiceUnavailable("blip")]
    rec.event(pod(), NORMAL, "Scheduled", "ok")
    await rec.flush()
    assert sink.calls == ["create", "create"]
    assert len(sink.events) == 1
    await rec.close()


async def test_patch_of_vanished_event_starts_a_new_one() -> None:
    sink = FakeEvents()
    rec = recorder(sink)
    rec.event(pod(), NORMAL, "Pulled", "x")
    await rec.flush()
    sink.events.clear()  # TTL expired the event
    rec.event(pod(), NORMAL, "Pulled", "x")
    await rec.flush()
    assert sink.calls == ["create", "patch", "create"]
    assert next(iter(sink.events.values()))["count"] == 1
    await rec.close()


async def test_queue_full_drops_and_close_stops_recording() -> None:
    sink = FakeEvents()
    rec = recorder(sink, max_queue=2)
    for i in range(5):
        rec.event(pod(), NORMAL, "R", str(i))
    assert rec.dropped == 3
    await rec.close()
    assert len(sink.events) == 2
    rec.event(pod(), NORMAL, "R", "after close")
    await rec.flush()
    assert len(sink.events) == 2
