"""The kubelet's runtime-health judgement (kubelet/health.py) and how the NodeManager's Ready
condition follows it, on a fake clock and a fake runtime: no Docker, no apiserver.

Issue 20: one Docker ping slower than 5 s turned the node NotReady (the old readiness() pinged
inline with a 5 s timeout), so a loaded host flapped its nodes and evicted healthy pods.
Upstream judges the runtime over time: NotReady only when no check has succeeded for 30 s, or
the PLEG has not relisted for 3 minutes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from client.workqueue import FakeClock
from kubelet.__main__ import parse
from kubelet.health import (
    RUNTIME_DOWN,
    RUNTIME_NOT_CHECKED,
    HealthThresholds,
    RuntimeHealth,
    go_duration,
)
from kubelet.node import NodeManager


def test_go_duration_prints_like_go() -> None:
    assert go_duration(180) == "3m0s"
    assert go_duration(180.5) == "3m0.5s"
    assert go_duration(181.25) == "3m1.25s"
    assert go_duration(3723) == "1h2m3s"
    assert go_duration(0.25) == "250ms"
    assert go_duration(30) == "30s"
    assert go_duration(0) == "0s"


def test_thresholds_default_to_upstreams() -> None:
    t = HealthThresholds()
    assert (t.runtime_request_timeout, t.runtime_down_after, t.pleg_relist_threshold,
            t.runtime_check_period) == (120.0, 30.0, 180.0, 5.0)
    with pytest.raises(ValueError, match="runtime_down_after"):
        HealthThresholds(runtime_down_after=0)


def test_flags_carry_upstreams_defaults() -> None:
    a, _ = parse(["--node-name", "n1"])
    assert (a.runtime_request_timeout, a.runtime_down_threshold,
            a.pleg_relist_threshold) == (120.0, 30.0, 180.0)
    a, _ = parse(["--node-name", "n1", "--runtime-request-timeout", "10s",
                  "--runtime-down-threshold", "1m", "--pleg-relist-threshold", "5m"])
    assert (a.runtime_request_timeout, a.runtime_down_threshold,
            a.pleg_relist_threshold) == (10.0, 60.0, 300.0)


def test_failed_checks_flip_only_after_the_threshold() -> None:
    clock = FakeClock()
    h = RuntimeHealth(clock=clock)
    assert h.runtime_errors() == [RUNTIME_NOT_CHECKED]
    h.runtime_ok()
    assert h.runtime_errors() == []
    # Failed checks every 5 s: healthy for 30 s after the last success, down after.
    for _ in range(6):
        clock.advance(5)
        h.runtime_failed("connection refused")
        assert h.runtime_errors() == []
    clock.advance(0.001)
    assert h.runtime_errors() == [RUNTIME_DOWN]
    h.runtime_ok()
    assert h.runtime_errors() == [] and h.failures == 0


def test_a_failure_before_any_success_says_down() -> None:
    h = RuntimeHealth(clock=FakeClock())
    h.runtime_failed("Cannot connect to the Docker daemon")
    assert h.runtime_errors() == [RUNTIME_DOWN]


def test_pleg_judged_over_three_minutes_in_upstreams_words() -> None:
    clock = FakeClock()
    h = RuntimeHealth(clock=clock)
    h.runtime_ok()
    assert h.pleg_error(clock.now()) is None  # no PLEG yet (NodeManager alone)
    h.pleg_started()
    clock.advance(179)
    assert h.pleg_error(clock.now()) is None  # still starting: not judged yet
    clock.advance(2)
    assert h.pleg_error(clock.now()) == "pleg has yet to be successful"
    h.relisted()
    clock.advance(180)
    assert h.pleg_error(clock.now()) is None
    clock.advance(0.5)
    for _ in range(30):  # runtime checks still fine: only the PLEG is stale
        h.runtime_ok()
    assert h.runtime_errors() == [
        "PLEG is not healthy: pleg was last seen active 3m0.5s ago; threshold is 3m0s"]


class FakeRuntime:
    """A runtime whose ping the test controls: answers, fails, or hangs until released."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.release = asyncio.Event()
        self.hanging = asyncio.Event()  # set once a ping hangs
        self.pings = 0

    async def ping(self, timeout: float = 5.0) -> None:
        self.pings += 1
        if self.mode == "fail":
            raise ConnectionRefusedError("connection refused")
        if self.mode == "hang":
            self.hanging.set()
            await self.release.wait()


class FakeCNI:
    def not_ready_reason(self) -> str | None:
        return None


def manager(clock: FakeClock, runtime: FakeRuntime) -> NodeManager:
    fake: Any = runtime
    cni: Any = FakeCNI()
    client: Any = None
    return NodeManager(client, "n1", fake, cni, node_ip="10.0.0.1", kubelet_port=10250,
                       lease_interval=10, status_interval=10, labels={},
                       health=RuntimeHealth(clock=clock))


async def test_one_slow_or_failed_ping_never_flips_ready() -> None:
    """The reproduction of issue 20's flapping: the old readiness() answered NotReady for a
    ping that failed or took over 5 s."""
    clock, runtime = FakeClock(), FakeRuntime()
    nm = manager(clock, runtime)
    assert await nm.check_runtime()
    assert nm.readiness()[0] == "True"

    # One failed ping: still Ready.
    clock.advance(5)
    runtime.mode = "fail"
    assert not await nm.check_runtime()
    assert nm.readiness()[0] == "True"

    # One slow ping (10 s in flight): Ready throughout, and Ready after it answers.
    runtime.mode = "hang"
    clock.advance(5)
    slow = asyncio.create_task(nm.check_runtime())
    await runtime.hanging.wait()
    assert not slow.done()
    clock.advance(10)
    assert nm.readiness() == ("True", "KubeletReady", "kubelet is posting ready status")
    runtime.release.set()
    assert await slow
    assert nm.readiness()[0] == "True"


async def test_a_runtime_down_past_the_threshold_flips_ready_with_upstreams_words() -> None:
    clock, runtime = FakeClock(), FakeRuntime()
    nm = manager(clock, runtime)
    assert await nm.check_runtime()
    runtime.mode = "fail"
    for _ in range(6):  # 30 s of failed checks, one every 5 s
        clock.advance(5)
        await nm.check_runtime()
        assert nm.readiness()[0] == "True"
    clock.advance(1)
    assert nm.readiness() == ("False", "KubeletNotReady", RUNTIME_DOWN)
    runtime.mode = "ok"
    assert await nm.check_runtime()
    assert nm.readiness()[0] == "True"


async def test_a_hung_runtime_is_caught_while_its_ping_is_still_in_flight() -> None:
    """A dockerd that never answers: the check in flight holds no verdict, the age of the last
    success does."""
    clock, runtime = FakeClock(), FakeRuntime()
    nm = manager(clock, runtime)
    assert await nm.check_runtime()
    runtime.mode = "hang"
    hung = asyncio.create_task(nm.check_runtime())
    await runtime.hanging.wait()
    clock.advance(31)
    assert nm.readiness() == ("False", "KubeletNotReady", RUNTIME_DOWN)
    runtime.release.set()
    assert await hung
    assert nm.readiness()[0] == "True"


async def test_a_timed_out_check_is_a_failed_check() -> None:
    clock, runtime = FakeClock(), FakeRuntime()
    nm = manager(clock, runtime)
    nm.health = RuntimeHealth(HealthThresholds(runtime_request_timeout=0.01), clock=clock)
    runtime.mode = "hang"
    assert not await nm.check_runtime()  # wait_for gives up after timeout + 1 s
    assert nm.health.failures == 1
