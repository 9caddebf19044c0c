"""The proxy's BoundedFrequencyRunner on a fake clock: coalescing, rate limit, periodic
runs and retries, as upstream's bounded_frequency_runner_test.go checks them."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from proxy.proxier import BoundedFrequencyRunner


class FakeClock:
    """Time moves only when the runner sleeps: a sleep of d advances it by d."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, d: float) -> None:
        self.now += d
        await asyncio.sleep(0)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _drive(runner: BoundedFrequencyRunner, done: asyncio.Event) -> None:
    task = asyncio.create_task(runner.loop())
    try:
        async with asyncio.timeout(10):
            await done.wait()
    finally:
        await _cancel(task)


async def test_requests_coalesce_and_respect_min_interval_then_max_interval() -> None:
    clock = FakeClock()
    calls: list[float] = []
    done = asyncio.Event()
    runner: BoundedFrequencyRunner

    async def fn() -> None:
        calls.append(clock.now)
        if len(calls) == 1:
            for _ in range(100):  # a burst of changes while the first sync runs
                runner.run()
        if len(calls) == 3:
            done.set()

    runner = BoundedFrequencyRunner("t", fn, 1.0, 30.0, clock=clock, sleep=clock.sleep)
    await _drive(runner, done)
    # First run at once; the burst → exactly one run, min_interval later; then, with no
    # request, the periodic run max_interval after that.
    assert calls == [0.0, 1.0, 31.0]


class ManualClock:
    """Time moves only when the test says so (`advance`); sleepers wake at their deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waiters: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, d: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append((self.now + d, fut))
        await fut

    async def advance(self, d: float) -> None:
        self.now += d
        for deadline, fut in self.waiters:
            if deadline <= self.now and not fut.done():
                fut.set_result(None)
        self.waiters = [(t, f) for t, f in self.waiters if not f.done()]
        for _ in range(20):  # let the runner react
            await asyncio.sleep(0)


async def test_request_between_runs_waits_for_min_interval() -> None:
    clock = ManualClock()
    calls: list[float] = []

    async def fn() -> None:
        calls.append(clock.now)

    runner = BoundedFrequencyRunner("t", fn, 2.0, 30.0, clock=clock, sleep=clock.sleep)
    task = asyncio.create_task(runner.loop())
    await clock.advance(0)
    assert calls == [0.0]
    await clock.advance(0.5)
    runner.run()
    runner.run()
    await clock.advance(1.0)
    assert calls == [0.0]  # 1.5s after the last run: still rate-limited
    await clock.advance(0.5)
    assert calls == [0.0, 2.0]  # both requests: one run, at min_interval
    await clock.advance(29.9)
    assert calls == [0.0, 2.0]
    await clock.advance(0.1)
    assert calls == [0.0, 2.0, 32.0]  # periodic
    await _cancel(task)


async def test_failure_retried_with_backoff_without_requests() -> None:
    clock = FakeClock()
    calls: list[float] = []
    done = asyncio.Event()

    async def fn() -> None:
        calls.append(clock.now)
        if len(calls) == 5:
            done.set()
            return
        if len(calls) < 4:
            raise RuntimeError("iptables-restore: line 3 failed")

    runner = BoundedFrequencyRunner("t", fn, 0.5, 30.0, retry_initial=1.0, clock=clock,
                                    sleep=clock.sleep)
    await _drive(runner, done)
    # Retries after 1, 2, 4 seconds (doubling); success resets: next run is periodic (+30).
    assert calls == [0.0, 1.0, 3.0, 7.0, 37.0]
    assert runner.failures == 0


async def test_backoff_is_capped_by_max_interval() -> None:
    clock = FakeClock()
    calls: list[float] = []
    done = asyncio.Event()

    async def fn() -> None:
        calls.append(clock.now)
        if len(calls) == 5:
            done.set()
        raise RuntimeError("boom")

    runner = BoundedFrequencyRunner("t", fn, 0.0, 3.0, retry_initial=1.0, clock=clock,
                                    sleep=clock.sleep)
    await _drive(runner, done)
    assert [b - a for a, b in itertools.pairwise(calls)] == [1.0, 2.0, 3.0, 3.0]


async def test_run_during_a_run_causes_exactly_one_more() -> None:
    clock = ManualClock()
    calls: list[float] = []
    gate = asyncio.Event()

    async def fn() -> None:
        calls.append(clock.now)
        if len(calls) == 1:
            await gate.wait()  # a slow sync; requests arrive meanwhile

    runner = BoundedFrequencyRunner("t", fn, 0.0, 1000.0, clock=clock, sleep=clock.sleep)
    task = asyncio.create_task(runner.loop())
    await clock.advance(0)
    runner.run()
    runner.run()
    gate.set()
    await clock.advance(0)
    await clock.advance(999)
    assert calls == [0.0, 0.0]  # one more run right away, not two
    await clock.advance(1)
    assert calls == [0.0, 0.0, 1000.0]
    await _cancel(task)


async def test_burst_allows_back_to_back_runs_then_rate_limits() -> None:
    """Upstream's Test_BoundedFrequencyRunnerBurst, kube-proxy's burstSyncs=2: after a quiet
    period a change right after a sync runs at once; a third within min_interval waits."""
    clock = FakeClock()
    calls: list[float] = []
    done = asyncio.Event()
    runner: BoundedFrequencyRunner

    async def fn() -> None:
        calls.append(clock.now)
        if len(calls) <= 2:
            runner.run()  # a change arrives during each of the first two runs
        if len(calls) == 4:
            done.set()

    runner = BoundedFrequencyRunner("t", fn, 1.0, 30.0, burst=2, clock=clock,
                                    sleep=clock.sleep)
    await _drive(runner, done)
    # Two runs back to back (the bucket's two tokens), the third when a token has refilled
    # (min_interval after the first), then periodic.
    assert calls == [0.0, 0.0, 1.0, 31.0]
