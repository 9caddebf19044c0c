"""Adversarial tests of the work queue's client-go semantics, driven by a fake clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from client.workqueue import (
    BucketRateLimiter,
    FakeClock,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimitingQueue,
    default_controller_rate_limiter,
    process_next_work_item,
    run_workers,
)


async def settle() -> None:
    """Let every ready task run until the loop is quiet."""
    for _ in range(20):
        await asyncio.sleep(0)


def new_queue(clock: FakeClock | None = None) -> RateLimitingQueue[str]:
    clock = clock or FakeClock()
    return RateLimitingQueue(default_controller_rate_limiter(clock), clock=clock)


# --- Type: dedup, processing, dirty ---------------------------------------------------------


async def test_add_deduplicates_and_is_fifo() -> None:
    q = new_queue()
    for k in ["a", "b", "a", "c", "b", "a"]:
        q.add(k)
    assert len(q) == 3
    assert [await q.get(), await q.get(), await q.get()] == ["a", "b", "c"]
    assert len(q) == 0


async def test_key_being_processed_is_not_handed_to_a_second_worker() -> None:
    q = new_queue()
    q.add("a")
    assert await q.get() == "a"
    q.add("a")  # changed again while worker 1 syncs it
    assert len(q) == 0, "a processing key must not be queued"
    second = asyncio.create_task(q.get())
    await settle()
    assert not second.done(), "worker 2 got a key that worker 1 is still processing"
    q.done("a")
    assert await asyncio.wait_for(second, 1) == "a", "re-add during processing was lost"


async def test_done_without_readd_does_not_requeue() -> None:
    q = new_queue()
    q.add("a")
    await q.get()
    q.done("a")
    assert len(q) == 0
    # Many re-adds while processing still collapse to one.
    q.add("a")
    await q.get()
    for _ in range(5):
        q.add("a")
    q.done("a")
    assert len(q) == 1


async def test_waiting_getter_is_woken_by_add() -> None:
    q = new_queue()
    getter = asyncio.create_task(q.get())
    await settle()
    assert not getter.done()
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_cancelled_getter_passes_its_wakeup_on() -> None:
    q = new_queue()
    g1 = asyncio.create_task(q.get())
    g2 = asyncio.create_task(q.get())
    await settle()
    q.add("x")  # wakes g1 ...
    g1.cancel()  # ... which leaves before taking the item
    assert await asyncio.wait_for(g2, 1) == "x"
    with pytest.raises(asyncio.CancelledError):
        await g1


async def test_shut_down_wakes_every_getter_and_ignores_adds() -> None:
    q = new_queue()
    getters = [asyncio.create_task(q.get()) for _ in range(5)]
    await settle()
    q.shut_down()
    assert q.shutting_down
    assert await asyncio.wait_for(asyncio.gather(*getters), 1) == [None] * 5
    q.add("late")
    q.add_after("later", 0.1)
    q.add_rate_limited("latest")
    assert len(q) == 0
    assert await q.get() is None


async def test_shut_down_hands_out_what_is_queued_first() -> None:
    # client-go's Get returns queued items before reporting shutdown.
    q = new_queue()
    q.add("a")
    q.add("b")
    q.shut_down()
    assert await q.get() == "a"
    assert await q.get() == "b"
    assert await q.get() is None


async def test_shut_down_with_drain_waits_for_processing() -> None:
    q = new_queue()
    q.add("a")
    await q.get()
    drain = asyncio.create_task(q.shut_down_with_drain())
    await settle()
    assert not drain.done()
    q.done("a")
    await asyncio.wait_for(drain, 1)


# --- DelayingQueue ---------------------------------------------------------------------------


async def test_add_after_fires_in_ready_time_order() -> None:
    clock = FakeClock()
    q = new_queue(clock)
    q.add_after("a", 3)
    q.add_after("b", 1)
    q.add_after("c", 2)
    q.add_after("now", 0)
    assert len(q) == 1 and q.num_waiting() == 3
    clock.advance(0.999)
    assert len(q) == 1
    clock.advance(2.001)
    assert [await q.get() for _ in range(4)] == ["now", "b", "c", "a"]


async def test_add_after_keeps_the_earliest_ready_time() -> None:
    clock = FakeClock()
    q = new_queue(clock)
    q.add_after("a", 10)
    q.add_after("a", 2)  # earlier: replaces
    q.add_after("a", 5)  # later: ignored
    clock.advance(2)
    assert len(q) == 1 and await q.get() == "a"
    q.done("a")
    clock.advance(10)
    assert len(q) == 0, "the superseded timers must not add the key again"


async def test_add_after_of_queued_key_is_deduplicated() -> None:
    clock = FakeClock()
    q = new_queue(clock)
    q.add("a")
    q.add_after("a", 1)
    clock.advance(1)
    assert len(q) == 1


async def test_delayed_key_wakes_a_waiting_getter() -> None:
    clock = FakeClock()
    q = new_queue(clock)
    getter = asyncio.create_task(q.get())
    q.add_after("a", 5)
    await settle()
    assert not getter.done()
    clock.advance(5)
    assert await asyncio.wait_for(getter, 1) == "a"


# --- rate limiting ----------------------------------------------------------------------------


def test_item_exponential_backoff_doubles_caps_and_forget_resets() -> None:
    rl: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(0.005, 1.0)
    delays = [rl.when("a") for _ in range(10)]
    assert delays[:8] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64])
    assert delays[8:] == [1.0, 1.0]
    assert rl.num_requeues("a") == 10
    assert rl.when("b") == pytest.approx(0.005), "back-off is per item"
    rl.forget("a")
    assert rl.num_requeues("a") == 0
    assert rl.when("a") == pytest.approx(0.005)
    for _ in range(5000):  # no float overflow after very many failures
        rl.when("c")
    assert rl.when("c") == 1.0


def test_default_limits_are_client_go_s() -> None:
    rl: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter()
    assert (rl.base_delay, rl.max_delay) == (0.005, 1000.0)
    bucket: BucketRateLimiter[str] = BucketRateLimiter(clock=FakeClock())
    assert (bucket.qps, bucket.burst) == (10.0, 100)


def test_token_bucket_burst_then_qps() -> None:
    clock = FakeClock()
    rl: BucketRateLimiter[str] = BucketRateLimiter(qps=10, burst=3, clock=clock)
    assert [rl.when(str(i)) for i in range(3)] == [0, 0, 0]
    assert rl.when("x") == pytest.approx(0.1)
    assert rl.when("y") == pytest.approx(0.2)
    clock.advance(10)  # refills, but never beyond burst
    assert [rl.when(str(i)) for i in range(3)] == [0, 0, 0]
    assert rl.when("z") == pytest.approx(0.1)


def test_max_of_takes_the_longer_delay() -> None:
    clock = FakeClock()
    rl: MaxOfRateLimiter[str] = MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, 1000.0),
        BucketRateLimiter(qps=1, burst=1, clock=clock),
    )
    assert rl.when("a") == pytest.approx(0.005)  # bucket has a token; item back-off wins
    assert rl.when("a") == pytest.approx(1.0)  # bucket empty: 1 s beats 0.01 s
    assert rl.num_requeues("a") == 2
    rl.forget("a")
    assert rl.num_requeues("a") == 0


async def test_add_rate_limited_backs_off_per_item() -> None:
    clock = FakeClock()
    q = new_queue(clock)
    q.add_rate_limited("a")
    assert len(q) == 0
    clock.advance(0.004)
    assert len(q) == 0
    clock.advance(0.001)
    assert len(q) == 1
    assert await q.get() == "a"
    q.add_rate_limited("a")  # second failure: 10 ms
    q.done("a")
    clock.advance(0.009)
    assert len(q) == 0
    clock.advance(0.001)
    assert len(q) == 1
    assert q.num_requeues("a") == 2
    q.forget("a")
    assert q.num_requeues("a") == 0


# --- workers ----------------------------------------------------------------------------------


async def test_process_next_work_item_forgets_on_success_and_requeues_on_error() -> None:
    clock = FakeClock()
    q = new_queue(clock)
    attempts: list[str] = []

    async def sync(key: str) -> None:
        attempts.append(key)
        if len(attempts) < 3:
            raise RuntimeError("boom")

    q.add("k")
    assert await process_next_work_item(q, sync)
    assert q.num_requeues("k") == 1 and not q.is_processing("k") and len(q) == 0
    clock.advance(0.005)
    assert await process_next_work_item(q, sync)
    assert q.num_requeues("k") == 2
    clock.advance(0.01)
    assert await process_next_work_item(q, sync)
    assert attempts == ["k", "k", "k"]
    assert q.num_requeues("k") == 0, "success must forget the key's failures"
    q.shut_down()
    assert not await process_next_work_item(q, sync)


async def test_workers_never_sync_one_key_concurrently_and_lose_no_update() -> None:
    """Random adds racing with 8 workers: no key is synced twice at once, and every key's last
    sync starts after its last add (an update is never lost)."""
    rng = random.Random(7)
    q = new_queue()
    keys = [f"k{i}" for i in range(6)]
    in_flight: set[str] = set()
    last_add: dict[str, int] = {}
    last_sync_start: dict[str, int] = {}
    tick = 0
    violations: list[str] = []

    async def sync(key: str) -> None:
        nonlocal tick
        if key in in_flight:
            violations.append(key)
        in_flight.add(key)
        tick += 1
        last_sync_start[key] = tick
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        in_flight.discard(key)

    workers = asyncio.create_task(run_workers(q, sync, 8))
    for _ in range(2000):
        key = rng.choice(keys)
        tick += 1
        last_add[key] = tick
        q.add(key)
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    for _ in range(200):
        await asyncio.sleep(0)
        if len(q) == 0 and not in_flight:
            break
    q.shut_down()
    await asyncio.wait_for(workers, 5)
    assert violations == []
    for key, added in last_add.items():
        assert last_sync_start[key] > added, f"{key}: update after the last sync was lost"


async def test_run_workers_retries_failures_until_success() -> None:
    q: RateLimitingQueue[str] = RateLimitingQueue(
        ItemExponentialFailureRateLimiter(0.001, 0.01)
    )
    calls: dict[str, int] = {}
    synced = asyncio.Event()

    async def sync(key: str) -> None:
        calls[key] = calls.get(key, 0) + 1
        if calls[key] < 4:
            raise ValueError("not yet")
        synced.set()

    workers = asyncio.create_task(run_workers(q, sync, 2))
    q.add("a")
    await asyncio.wait_for(synced.wait(), 5)
    assert calls == {"a": 4}
    assert q.num_requeues("a") == 0
    q.shut_down()
    await asyncio.wait_for(workers, 5)


async def test_run_workers_cancellation_stops_workers() -> None:
    q = new_queue()
    started = asyncio.Event()

    async def sync(key: str) -> None:
        started.set()
        await asyncio.Event().wait()

    workers = asyncio.create_task(run_workers(q, sync, 3))
    q.add("a")
    await asyncio.wait_for(started.wait(), 1)
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(workers, 2)
    # The interrupted key is queued again for whoever runs next.
    assert len(q) == 1 and not q.is_processing("a")


async def test_fake_clock_sleep() -> None:
    clock = FakeClock()
    sleeper = asyncio.create_task(clock.sleep(5))
    await settle()
    clock.advance(4.9)
    await settle()
    assert not sleeper.done()
    clock.advance(0.1)
    await asyncio.wait_for(sleeper, 1)
    assert clock.pending_timers() == 0
