"""The scheduling queue with a fake clock: order, back-off, parking and moving on events."""

from __future__ import annotations

import asyncio

from sched_fixtures import make_podinfo as p

from scheduler.queue import SchedulingQueue, backoff_duration


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def queue() -> tuple[SchedulingQueue, Clock]:
    clock = Clock()
    return SchedulingQueue(1.0, 10.0, clock=clock, max_in_unschedulable=300), clock


def test_backoff_doubles_to_the_cap() -> None:
    assert [backoff_duration(a, 1, 10) for a in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_pops_by_priority_then_age() -> None:
    q, clock = queue()
    q.add(p("old"))
    clock.t += 1
    q.add(p("new"))
    q.add(p("vip", priority=1000))
    order = [q.pop_nowait() for _ in range(3)]
    assert [x.key for x in order if x] == ["ns/vip", "ns/old", "ns/new"]
    assert q.pop_nowait() is None
    assert q.scheduling_cycle == 3


def test_unschedulable_pod_waits_for_an_event_then_backs_off() -> None:
    q, clock = queue()
    q.add(p("a"))
    item = q.pop_nowait()
    assert item is not None
    q.add_unschedulable(item, q.scheduling_cycle)
    assert q.counts() == (0, 0, 1)
    clock.t += 100
    assert q.pop_nowait() is None  # parked: time alone does not bring it back (until 5 min)
    assert q.move_all_to_active_or_backoff() == 1
    assert q.counts() == (1, 0, 0)  # its 1 s back-off is long over


def test_event_during_backoff_moves_to_backoff_queue() -> None:
    q, clock = queue()
    q.add(p("a"))
    for expected_wait in (1.0, 2.0, 4.0):
        item = q.pop_nowait()
        assert item is not None
        q.add_unschedulable(item, q.scheduling_cycle)
        q.move_all_to_active_or_backoff()
        assert q.counts() == (0, 1, 0)
        clock.t += expected_wait - 0.01
        assert q.pop_nowait() is None
        clock.t += 0.01
        assert q.counts()[1] == 1


def test_move_request_during_the_cycle_skips_parking() -> None:
    q, _ = queue()
    q.add(p("a"))
    item = q.pop_nowait()
    assert item is not None
    cycle = q.scheduling_cycle
    q.move_all_to_active_or_backoff()  # e.g. a node was added while we were deciding
    q.add_unschedulable(item, cycle)
    assert q.counts() == (0, 1, 0)


def test_spec_update_of_parked_pod_retries_it_status_update_does_not() -> None:
    q, clock = queue()
    q.add(p("a"))
    item = q.pop_nowait()
    assert item is not None
    q.add_unschedulable(item, q.scheduling_cycle)
    clock.t += 5
    q.update(p("a"))  # same spec (a status write, e.g. our own PodScheduled condition)
    assert q.counts() == (0, 0, 1)
    q.update(p("a", nodeSelector={"x": "y"}))
    assert q.counts() == (1, 0, 0)


def test_delete_and_leftover_flush() -> None:
    q, clock = queue()
    for name in ("a", "b"):
        q.add(p(name))
        item = q.pop_nowait()
        assert item is not None
        q.add_unschedulable(item, q.scheduling_cycle)
    q.delete("ns/a")
    assert q.counts() == (0, 0, 1)
    clock.t += 299
    assert q.flush_unschedulable_leftover() == 0
    clock.t += 1
    assert q.flush_unschedulable_leftover() == 1
    item = q.pop_nowait()
    assert item is not None and item.key == "ns/b" and item.attempts == 2


def test_readded_pod_keeps_a_single_entry() -> None:
    q, _ = queue()
    q.add(p("a"))
    q.add(p("a"))
    q.update(p("a", labels={"x": "1"}))
    assert len(q) == 1
    item = q.pop_nowait()
    assert item is not None and item.info.pod.metadata.labels == {"x": "1"}
    assert q.pop_nowait() is None


async def test_pop_waits_for_a_pod_and_returns_none_when_closed() -> None:
    q = SchedulingQueue()
    waiter = asyncio.create_task(q.pop())
    await asyncio.sleep(0)
    q.add(p("a"))
    got = await asyncio.wait_for(waiter, 5)
    assert got is not None and got.key == "ns/a"
    closing = asyncio.create_task(q.pop())
    await asyncio.sleep(0)
    q.close()
    assert await asyncio.wait_for(closing, 5) is None


async def test_a_cancel_that_meets_a_wake_up_is_not_lost() -> None:
    """pop() waits for a wake-up with a timeout (the next back-off expiry). With Python 3.11's
    asyncio.wait_for, a pod added in the same loop iteration as the scheduler's cancellation
    was returned and the cancellation dropped: the scheduling loop went on after being stopped."""
    q, _ = queue()
    q.add(p("a"))
    a = q.pop_nowait()
    assert a is not None
    q.add_backoff(a)  # a finite wait in pop(): until a's back-off ends
    task = asyncio.create_task(q.pop())
    await asyncio.sleep(0.01)
    assert not task.done()
    q.add(p("b"))
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done and task.cancelled(), "the cancellation was dropped"
