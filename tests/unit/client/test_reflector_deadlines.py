"""The reflector's deadlines (client/reflector.py): every list and watch carries one, a watch
that stalls is abandoned and restarted with back-off, failing lists are retried forever, and
each kind of trouble is logged once.

Issue 20: after an overload the controller-manager's pod watch was gone on the apiserver while
its reflector waited on the stream forever, logging nothing; a ReplicaSet stayed at 6 of 7
replicas until the process was killed. `test_a_stalled_watch_is_abandoned_and_restarted` is
that stream: it neither ends nor delivers anything, not even the bookmarks that were asked for.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from informer_fakes import FakeLW, bookmark, cm, ev  # tests/unit/client, on sys.path under pytest

from api import errors
from api.core import ConfigMap
from client.reflector import (
    LIST_TIMEOUT,
    WATCH_DEADLINE_SLACK,
    WATCH_PROGRESS_DEADLINE,
    Backoff,
    Reflector,
)
from client.store import Store


class Harness:
    def __init__(self, **kwargs: object) -> None:
        self.lw = FakeLW()
        self.store: Store[ConfigMap] = Store()
        self.sleeps: list[float] = []
        self.reflector = Reflector(self.lw, ConfigMap, self.store, namespace="ns",
                                   backoff=Backoff(jitter=0), sleep=self._sleep,
                                   **kwargs)  # type: ignore[arg-type]
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

    async def until(self, cond: object, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            # Polling on purpose: the condition is the reflector's state, nothing to await.
            while not cond():  # type: ignore[operator]  # noqa: ASYNC110
                await asyncio.sleep(0.005)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "client.reflector" and r.levelno >= logging.WARNING]


async def test_every_list_and_watch_carries_a_deadline() -> None:
    h = Harness()
    h.lw.lists.append(([cm("a", "1")], "5"))
    h.lw.watches.extend([[bookmark("6")], [bookmark("7")], [bookmark("8")]])
    h.start()
    await h.lw.idle()
    assert h.lw.list_timeouts == [LIST_TIMEOUT] and LIST_TIMEOUT == 60.0
    assert len(h.lw.watch_timeouts) == 4
    for seconds, call_deadline in h.lw.watch_timeouts:
        # client-go: a random 5-10 minutes; the call's own deadline a little after that.
        assert 300 <= seconds < 600
        assert call_deadline == seconds + WATCH_DEADLINE_SLACK
    assert len({s for s, _ in h.lw.watch_timeouts}) > 1, "spread, not all expiring together"
    assert WATCH_PROGRESS_DEADLINE == 60.0
    await h.stop()


async def test_a_stalled_watch_is_abandoned_and_restarted(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "client.reflector")
    h = Harness(watch_progress_deadline=0.05)
    h.lw.lists.append(([cm("a", "1")], "5"))
    h.lw.watches.append([ev("ADDED", cm("b", "7"))])  # then silence: no script left
    h.start()
    await h.until(lambda: h.reflector.stalled_count >= 3)
    # Restarted from where it was, not relisted, with a growing back-off.
    assert h.lw.list_calls == 1
    assert set(h.lw.watch_rvs) == {"5", "7"} and h.lw.watch_rvs[-1] == "7"
    assert h.sleeps[:3] == pytest.approx([0.1, 0.2, 0.4])
    # Logged once at WARNING, however long it lasts.
    assert warnings(caplog) == [
        "reflector(configmaps,ns=ns): watch: no event and no bookmark for 0.05s; abandoning "
        "it; retrying with back-off"]
    # The server answers again: the recovery is logged, the back-off reset.
    h.lw.watches.append([bookmark("9"), ev("MODIFIED", cm("a", "10"))])
    await h.until(lambda: h.reflector.last_sync_resource_version == "10")
    assert h.store.get("ns/a") is not None
    assert any("watch works again" in r.getMessage() and r.levelno == logging.INFO
               for r in caplog.records)
    await h.stop()


async def test_bookmarks_keep_an_idle_watch_alive() -> None:
    h = Harness(watch_progress_deadline=0.5)
    h.lw.lists.append(([], "5"))
    # 0.75 s in all, longer than the progress deadline, but never 0.5 s without a bookmark.
    h.lw.watches.append([0.25, bookmark("6"), 0.25, bookmark("7"), 0.25, bookmark("8")])
    h.start()
    await h.until(lambda: h.reflector.last_sync_resource_version == "8")
    assert h.reflector.stalled_count == 0
    assert h.lw.watch_rvs[0] == "5" and h.sleeps == []
    await h.stop()


async def test_a_watch_the_server_never_ends_is_ended_by_the_client() -> None:
    h = Harness(watch_timeout_seconds=1)
    h.reflector.watch_deadline_slack = 0.1
    h.lw.lists.append(([], "5"))
    h.lw.watches.append([bookmark("6")] + [0.1, bookmark("6")] * 30)  # 3 s of bookmarks
    h.start()
    await h.until(lambda: len(h.lw.watch_rvs) == 2, timeout=10)
    assert h.reflector.stalled_count == 1 and h.lw.watch_rvs == ["5", "6"]
    await h.stop()


async def test_a_failing_list_is_retried_forever_and_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "client.reflector")
    h = Harness()
    h.lw.lists.extend([errors.Timeout(message="Deadline Exceeded")] * 20)
    h.lw.lists.append(([cm("a", "1")], "2"))
    h.start()
    await h.lw.idle()
    assert h.lw.list_calls == 21 and h.reflector.has_synced
    assert max(h.sleeps) == 30.0, "the back-off is capped, never given up"
    assert warnings(caplog) == [
        "reflector(configmaps,ns=ns): list: Deadline Exceeded; retrying with back-off"]
    assert any("list works again, after 20 failures" in r.getMessage() for r in caplog.records)
    await h.stop()


async def test_watch_errors_are_logged_once_per_streak(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "client.reflector")
    h = Harness()
    h.lw.lists.append(([], "5"))
    h.lw.watches.extend([[errors.ServiceUnavailable(message="etcd unavailable")]] * 5)
    h.lw.watches.append([bookmark("6")])
    h.start()
    await h.lw.idle()
    assert warnings(caplog) == [
        "reflector(configmaps,ns=ns): watch: etcd unavailable; retrying with back-off"]
    await h.stop()
