"""SharedInformer / factory logic against a scripted ListerWatcher."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from informer_fakes import FakeLW, cm, ev  # tests/unit/client, on sys.path under pytest

from api.core import ConfigMap, Pod
from client.informer import SharedInformer, SharedInformerFactory
from client.store import field_index


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, ...]] = []
        self.changed = asyncio.Event()

    def _rec(self, *item: str) -> None:
        self.seen.append(item)
        self.changed.set()

    def on_add(self, obj: ConfigMap) -> None:
        self._rec("add", obj.name, obj.metadata.resource_version or "")

    def on_update(self, old: ConfigMap, new: ConfigMap) -> None:
        self._rec("update", new.name, old.metadata.resource_version or "",
                  new.metadata.resource_version or "")

    def on_delete(self, obj: ConfigMap) -> None:
        self._rec("delete", obj.name)

    async def wait_for(self, n: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.seen) < n:
                self.changed.clear()
                await self.changed.wait()


def informer(lw: FakeLW, **kw: Any) -> SharedInformer[ConfigMap]:
    return SharedInformer(lw, ConfigMap, namespace="ns", **kw)


async def test_two_handlers_see_every_change_in_order() -> None:
    lw = FakeLW()
    lw.lists.append(([cm("a", "1")], "1"))
    lw.watches.append([ev("ADDED", cm("b", "2")), ev("MODIFIED", cm("a", "3")),
                       ev("DELETED", cm("b", "4"))])
    inf = informer(lw)
    r1, r2 = Recorder(), Recorder()
    reg1 = inf.add_event_handler(r1.on_add, r1.on_update, r1.on_delete)
    reg2 = inf.add_event_handler(r2.on_add, r2.on_update, r2.on_delete)
    inf.start()
    await r1.wait_for(4)
    await r2.wait_for(4)
    expected = [("add", "a", "1"), ("add", "b", "2"), ("update", "a", "1", "3"),
                ("delete", "b")]
    assert r1.seen == expected and r2.seen == expected
    assert reg1.has_synced and reg2.has_synced
    assert inf.has_synced
    assert [o.name for o in inf.lister.list("ns")] == ["a"]
    assert inf.last_sync_resource_version == "4"
    await inf.stop()


async def test_raising_handler_is_logged_and_keeps_receiving() -> None:
    lw = FakeLW()
    lw.lists.append(([], "1"))
    lw.watches.append([ev("ADDED", cm("a", "2")), ev("ADDED", cm("b", "3"))])
    inf = informer(lw)
    good = Recorder()
    calls: list[str] = []

    def bad(obj: ConfigMap) -> None:
        calls.append(obj.name)
        raise RuntimeError("handler bug")

    inf.add_event_handler(on_add=bad)
    inf.add_event_handler(on_add=good.on_add)
    inf.start()
    await good.wait_for(2)
    await asyncio.sleep(0.01)
    assert calls == ["a", "b"]
    await inf.stop()


async def test_async_handler_and_slow_handler_do_not_block_others() -> None:
    lw = FakeLW()
    lw.lists.append(([cm("a", "1")], "1"))
    lw.watches.append([ev("ADDED", cm("b", "2"))])
    inf = informer(lw)
    release = asyncio.Event()
    slow_seen: list[str] = []
    slow_done = asyncio.Event()

    async def slow(obj: ConfigMap) -> None:
        await release.wait()
        slow_seen.append(obj.name)
        if len(slow_seen) == 2:
            slow_done.set()

    fast = Recorder()
    inf.add_event_handler(on_add=slow)
    inf.add_event_handler(on_add=fast.on_add)
    inf.start()
    await fast.wait_for(2)
    assert slow_seen == []
    release.set()
    await asyncio.wait_for(slow_done.wait(), 5)
    assert slow_seen == ["a", "b"]
    await inf.stop()


async def test_handler_added_after_sync_gets_existing_objects() -> None:
    lw = FakeLW()
    lw.lists.append(([cm("a", "1"), cm("b", "2")], "2"))
    inf = informer(lw)
    inf.start()
    async with asyncio.timeout(5):
        await inf.wait_for_sync()
    late = Recorder()
    reg = inf.add_event_handler(late.on_add, late.on_update, late.on_delete)
    await late.wait_for(2)
    assert sorted(late.seen) == [("add", "a", "1"), ("add", "b", "2")]
    await asyncio.sleep(0.01)
    assert reg.has_synced
    await inf.stop()


async def test_resync_replays_cache_as_updates() -> None:
    lw = FakeLW()
    lw.lists.append(([cm("a", "1")], "1"))
    inf = informer(lw, resync_period=0.05)
    r = Recorder()
    inf.add_event_handler(r.on_add, r.on_update)
    no_resync = Recorder()
    inf.add_event_handler(no_resync.on_add, no_resync.on_update, resync_period=0)
    inf.start()
    await r.wait_for(3)
    assert r.seen[:3] == [("add", "a", "1"), ("update", "a", "1", "1"),
                          ("update", "a", "1", "1")]
    assert no_resync.seen == [("add", "a", "1")]
    await inf.stop()


async def test_remove_event_handler_stops_delivery() -> None:
    lw = FakeLW()
    lw.lists.append(([], "1"))
    lw.watches.append([ev("ADDED", cm("a", "2"))])
    inf = informer(lw)
    stay, leave = Recorder(), Recorder()
    inf.add_event_handler(on_add=stay.on_add)
    reg = inf.add_event_handler(on_add=leave.on_add)
    await inf.remove_event_handler(reg)
    inf.start()
    await stay.wait_for(1)
    assert leave.seen == []
    await inf.stop()


async def test_stop_is_bounded_even_with_a_stuck_handler() -> None:
    lw = FakeLW()
    lw.lists.append(([cm("a", "1")], "1"))
    inf = informer(lw)
    entered = asyncio.Event()

    async def stuck(obj: ConfigMap) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # Refuses to stop promptly: shutdown must not wait longer than its grace.
            await asyncio.sleep(3)

    inf.add_event_handler(on_add=stuck)
    inf.start()
    await asyncio.wait_for(entered.wait(), 5)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await inf.stop(grace=0.2)
    assert loop.time() - t0 < 2
    with pytest.raises(RuntimeError):
        inf.start()


async def test_factory_shares_informers_per_resource_and_selectors() -> None:
    lw = FakeLW()
    factory = SharedInformerFactory(lw)
    a = factory.informer_for(ConfigMap, "ns")
    assert factory.informer_for(ConfigMap, "ns") is a
    assert factory.informer_for(ConfigMap, "other") is not a
    assert factory.informer_for(ConfigMap, "ns", label_selector="x=y") is not a
    assert factory.informer_for(ConfigMap, "ns", field_selector="metadata.name=q") is not a
    pods = factory.informer_for(Pod, indexers={"node": field_index("spec.nodeName")})
    again = factory.informer_for(Pod, indexers={"node": field_index("spec.nodeName"),
                                                "phase": field_index("status.phase")})
    assert again is pods
    assert {"namespace", "node", "phase"} <= set(pods.store.get_indexers())
    assert len(factory.informers) == 5

    for _ in factory.informers:
        lw.lists.append(([], "1"))
    factory.start()
    async with asyncio.timeout(5):
        assert await factory.wait_for_cache_sync()
    # An informer asked for after start() is started at once.
    lw.lists.append(([cm("late", "1")], "1"))
    late = factory.informer_for(ConfigMap, "late-ns")
    assert late.started
    async with asyncio.timeout(5):
        await factory.wait_for_cache_sync()
    assert [o.name for o in late.lister.list()] == ["late"]
    await asyncio.wait_for(factory.shutdown(grace=1), 5)
