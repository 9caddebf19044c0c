"""Reflector logic against a scripted ListerWatcher: relist deltas, bookmarks, reconnects."""

from __future__ import annotations

import asyncio

import pytest
from informer_fakes import FakeLW, bookmark, cm, ev  # tests/unit/client, on sys.path under pytest

from api import errors
from api.core import ConfigMap
from client.reflector import Backoff, Delta, DeltaType, Reflector, replace_deltas
from client.store import Store


class Harness:
    def __init__(self) -> None:
        self.lw = FakeLW()
        self.store: Store[ConfigMap] = Store()
        self.deltas: list[Delta[ConfigMap]] = []
        self.sleeps: list[float] = []
        self.reflector = Reflector(
            self.lw, ConfigMap, self.store, namespace="ns", label_selector="a=b",
            field_selector="metadata.name!=x", on_delta=self.deltas.append,
            backoff=Backoff(jitter=0), sleep=self._sleep, watch_timeout_seconds=60,
        )
        self.task: asyncio.Task[None] | None = None

    async def _sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        await asyncio.sleep(0)

    def start(self) -> None:
        self.task = asyncio.create_task(self.reflector.run())

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task

    def summary(self) -> list[tuple[str, str, str]]:
        return [(d.type.value, d.object.name, d.object.metadata.resource_version or "")
                for d in self.deltas]

    def contents(self) -> dict[str, str]:
        return {k: o.metadata.resource_version or "" for k, o in self.store.items()}


async def test_list_then_watch_from_list_rv_with_bookmarks() -> None:
    h = Harness()
    h.lw.lists.append(([cm("a", "3"), cm("b", "5")], "10"))
    h.start()
    await h.lw.idle()
    assert h.reflector.has_synced
    await asyncio.wait_for(h.reflector.wait_for_sync(), 1)
    assert h.summary() == [("ADDED", "a", "3"), ("ADDED", "b", "5")]
    assert h.lw.watch_rvs == ["10"]
    assert h.lw.watch_kwargs[0] == {"namespace": "ns", "label_selector": "a=b",
                                    "field_selector": "metadata.name!=x",
                                    "allow_bookmarks": True}
    assert h.reflector.last_sync_resource_version == "10"
    await h.stop()


async def test_watch_events_update_store_and_emit_deltas() -> None:
    h = Harness()
    h.lw.lists.append(([cm("a", "3")], "10"))
    h.lw.watches.append([
        ev("ADDED", cm("b", "11")),
        ev("MODIFIED", cm("a", "12")),
        ev("DELETED", cm("b", "13")),
        ev("MODIFIED", cm("c", "14")),  # never seen as ADDED: still an add for handlers
    ])
    h.start()
    await h.lw.idle()
    assert h.summary() == [("ADDED", "a", "3"), ("ADDED", "b", "11"), ("MODIFIED", "a", "12"),
                           ("DELETED", "b", "13"), ("ADDED", "c", "14")]
    modified = h.deltas[2]
    assert modified.old is not None and modified.old.metadata.resource_version == "3"
    assert h.contents() == {"ns/a": "12", "ns/c": "14"}
    # The stream ended normally after progress: re-watched at once, from the last event's RV.
    assert h.lw.watch_rvs == ["10", "14"]
    assert h.sleeps == []
    await h.stop()


async def test_bookmark_advances_rv_without_deltas() -> None:
    h = Harness()
    h.lw.lists.append(([cm("a", "3")], "10"))
    h.lw.watches.append([bookmark("20"), errors.ServiceUnavailable("connection reset")])
    h.start()
    await h.lw.idle()
    assert h.summary() == [("ADDED", "a", "3")]
    assert h.reflector.last_sync_resource_version == "20"
    assert h.store.resource_version == "20"
    assert h.lw.watch_rvs == ["10", "20"], "re-watch must resume from the bookmark's RV"
    assert h.lw.list_calls == 1
    await h.stop()


async def test_reconnect_after_stream_error_resumes_from_last_rv() -> None:
    h = Harness()
    h.lw.lists.append(([], "10"))
    h.lw.watches.append([ev("ADDED", cm("a", "11")), errors.ServiceUnavailable("apiserver gone")])
    h.lw.watches.append([errors.ServiceUnavailable("still down")])
    h.lw.watches.append([RuntimeError("socket closed")])
    h.lw.watches.append([ev("MODIFIED", cm("a", "15"))])
    h.start()
    await h.lw.idle()
    assert h.lw.watch_rvs == ["10", "11", "11", "11", "15"]
    assert h.lw.list_calls == 1, "a broken stream is not a reason to relist"
    assert h.summary() == [("ADDED", "a", "11"), ("MODIFIED", "a", "15")]
    # Back-off: reset by the first watch's progress, then doubling while nothing gets through.
    assert h.sleeps == pytest.approx([0.1, 0.2, 0.4])
    await h.stop()


async def test_relist_after_gone_emits_synthetic_deltas() -> None:
    h = Harness()
    h.lw.lists.append(([cm("a", "1"), cm("b", "2"), cm("c", "3")], "3"))
    h.lw.watches.append([bookmark("3"), errors.Gone("too old resource version: 3 (40)")])
    # While we could not watch: b changed, c was deleted, d was created, a untouched.
    h.lw.lists.append(([cm("a", "1"), cm("b", "25"), cm("d", "30")], "40"))
    h.start()
    await h.lw.idle()
    assert h.lw.list_calls == 2
    assert h.summary()[3:] == [("MODIFIED", "b", "25"), ("ADDED", "d", "30"),
                               ("DELETED", "c", "3")]
    deleted = h.deltas[-1]
    assert deleted.final_state_unknown, "a delete seen only by relist is a tombstone"
    assert h.deltas[3].old is not None and h.deltas[3].old.metadata.resource_version == "2"
    assert h.contents() == {"ns/a": "1", "ns/b": "25", "ns/d": "30"}
    assert h.lw.watch_rvs == ["3", "40"]
    assert h.sleeps == [], "Gone relists at once"
    await h.stop()


async def test_gone_right_after_a_list_backs_off_instead_of_spinning() -> None:
    h = Harness()
    h.lw.lists.extend([([], "5"), ([], "5"), ([], "6")])
    h.lw.watches.extend([[errors.Gone("too old")], [errors.Gone("too old")]])
    h.start()
    await h.lw.idle()
    assert h.lw.list_calls == 3
    assert h.sleeps == pytest.approx([0.1, 0.1])
    assert h.lw.watch_rvs == ["5", "5", "6"]
    await h.stop()


async def test_gone_as_error_event_relists() -> None:
    h = Harness()
    h.lw.lists.append(([cm("a", "1")], "5"))
    h.lw.watches.append([ev("ERROR", {"kind": "Status", "reason": "Expired", "code": 410,
                                      "message": "too old"})])
    h.lw.lists.append(([], "9"))
    h.start()
    await h.lw.idle()
    assert h.summary() == [("ADDED", "a", "1"), ("DELETED", "a", "1")]
    assert h.lw.watch_rvs == ["5", "9"]
    await h.stop()


async def test_list_failures_back_off_and_retry() -> None:
    h = Harness()
    h.lw.lists.extend([errors.ServiceUnavailable("down")] * 3)
    h.lw.lists.append(([cm("a", "1")], "2"))
    h.start()
    await h.lw.idle()
    assert h.sleeps == pytest.approx([0.1, 0.2, 0.4])
    assert h.reflector.has_synced
    assert h.lw.list_calls == 4
    await h.stop()


async def test_backoff_caps_and_resets() -> None:
    b = Backoff(initial=0.1, cap=30.0, jitter=0)
    delays = [b.next() for _ in range(12)]
    assert delays[:5] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])
    assert delays[-1] == 30.0 and max(delays) == 30.0
    b.reset()
    assert b.next() == pytest.approx(0.1)
    jittered = Backoff(initial=1.0, cap=30.0, jitter=0.2)
    assert 1.0 <= jittered.next() <= 1.2


async def test_watch_ending_without_events_backs_off() -> None:
    h = Harness()
    h.lw.lists.append(([], "5"))
    h.lw.watches.extend([[], [], []])
    h.start()
    await h.lw.idle()
    assert h.sleeps == pytest.approx([0.1, 0.2, 0.4]), "an empty stream must not spin"
    await h.stop()


async def test_unparseable_object_is_skipped_not_fatal() -> None:
    h = Harness()
    bad = cm("bad", "2")
    bad["metadata"] = "not an object"
    h.lw.lists.append(([cm("a", "1"), bad], "3"))
    h.lw.watches.append([ev("ADDED", {**cm("x", "4"), "data": "nope"}), ev("ADDED", cm("y", "5"))])
    h.start()
    await h.lw.idle()
    assert h.contents() == {"ns/a": "1", "ns/y": "5"}
    assert h.reflector.last_sync_resource_version == "5"
    await h.stop()


async def test_failing_delta_handler_does_not_stop_reflector() -> None:
    h = Harness()

    def explode(d: Delta[ConfigMap]) -> None:
        h.deltas.append(d)
        raise RuntimeError("handler bug")

    h.reflector.on_delta = explode
    h.lw.lists.append(([cm("a", "1")], "1"))
    h.lw.watches.append([ev("ADDED", cm("b", "2"))])
    h.start()
    await h.lw.idle()
    assert [d.object.name for d in h.deltas] == ["a", "b"]
    await h.stop()


def test_replace_deltas_is_a_pure_diff() -> None:
    store: Store[ConfigMap] = Store()
    store.replace([ConfigMap.model_validate(cm("a", "1")), ConfigMap.model_validate(cm("b", "1"))])
    deltas = replace_deltas(store, [ConfigMap.model_validate(cm("a", "1"))])
    assert [(d.type, d.object.name) for d in deltas] == [(DeltaType.DELETED, "b")]
    assert len(store) == 2, "computing deltas must not change the store"
