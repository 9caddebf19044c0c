"""PodWorkers: one sync at a time per pod, coalesced wakes, timers, retries, an end."""

from __future__ import annotations

import asyncio
import math

from harness.wait import until
from kubelet.podworkers import PodWorkers


async def test_wakes_during_a_sync_coalesce_into_one_more() -> None:
    calls: list[str] = []
    gate = asyncio.Event()

    async def sync(uid: str) -> float | None:
        calls.append(uid)
        if len(calls) == 1:
            await gate.wait()
        return math.inf

    w = PodWorkers(sync)
    w.wake("a")
    await until(lambda: len(calls) == 1, timeout=2, interval=0.01)
    for _ in range(10):
        w.wake("a")
    gate.set()
    await until(lambda: len(calls) == 2, timeout=2, interval=0.01)
    await asyncio.sleep(0.1)
    assert calls == ["a", "a"]
    await w.stop()


async def test_pods_sync_in_parallel_and_timers_fire() -> None:
    running: set[str] = set()
    overlap: list[int] = []
    count: dict[str, int] = {}

    async def sync(uid: str) -> float | None:
        running.add(uid)
        overlap.append(len(running))
        await asyncio.sleep(0.05)
        running.discard(uid)
        count[uid] = count.get(uid, 0) + 1
        return 0.05 if count[uid] < 3 else math.inf

    w = PodWorkers(sync)
    w.wake("a")
    w.wake("b")
    await until(lambda: count.get("a") == 3 and count.get("b") == 3, timeout=3, interval=0.01)
    assert max(overlap) == 2
    await w.stop()


async def test_none_ends_the_worker_and_errors_retry() -> None:
    attempts = 0
    ended: list[str] = []

    async def sync(uid: str) -> float | None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("flaky")
        return None

    w = PodWorkers(sync, max_retry=0.05, on_exit=ended.append)
    w.wake("a")
    await until(lambda: ended == ["a"], timeout=3, interval=0.01)
    assert attempts == 2 and "a" not in w
    w.wake("a", create=False)
    assert "a" not in w
    await w.stop()


async def test_delayed_wake_of_new_worker() -> None:
    calls: list[float] = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def sync(uid: str) -> float | None:
        calls.append(loop.time() - t0)
        return None

    w = PodWorkers(sync)
    w.wake("a", after=0.2)
    await until(lambda: calls, timeout=2, interval=0.01)
    assert calls[0] >= 0.19
    await w.stop()
