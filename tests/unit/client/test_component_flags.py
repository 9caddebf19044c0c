"""client.flags' process plumbing: leadership lost, work crashed, asked to stop, server down.

The leader-election paths run against the in-test lease store of test_leader_elector.py (a
compare-and-swap Lease like the apiserver's); tests/integration/test_control_plane_resilience.py
does the same with real processes and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, cast

import pytest
from test_leader_elector import FakeLeases  # tests/unit/client, on sys.path under pytest

from api import errors
from client.apiclient import ApiClient
from client.config import ConfigError
from client.flags import run_leader_elected, run_main


def flags(leader_elect: bool = True) -> argparse.Namespace:
    return argparse.Namespace(
        leader_elect=leader_elect, leader_elect_resource_name="lock",
        leader_elect_resource_namespace="kube-system", leader_elect_lease_duration=1.0,
        leader_elect_renew_deadline=0.6, leader_elect_retry_period=0.1)


def holder(leases: FakeLeases) -> str:
    return str(leases.spec().get("holderIdentity") or "")


async def test_work_that_crashes_gives_up_the_lease_and_returns() -> None:
    """A leader whose controllers died must not keep renewing a lease it does nothing with."""
    leases = FakeLeases()
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        raise RuntimeError("a controller crashed")

    async with asyncio.timeout(10):
        await run_leader_elected(cast(ApiClient, leases), flags(), work, "tk-test")
    assert started.is_set()
    assert holder(leases) == "", "the lease was released for a successor"


async def test_cancel_stops_the_work_releases_the_lease_and_propagates() -> None:
    """SIGTERM cancels the main task: the work is cancelled, the lease released, and the
    cancellation is not mistaken for a crash (the process then exits 0)."""
    leases = FakeLeases()
    leading = asyncio.Event()
    cancelled = False

    async def work() -> None:
        nonlocal cancelled
        leading.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled = True
            raise

    task = asyncio.create_task(run_leader_elected(cast(ApiClient, leases), flags(), work, "t"))
    await asyncio.wait_for(leading.wait(), 5)
    assert holder(leases)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert cancelled
    assert holder(leases) == ""


async def test_lost_lease_returns_after_the_renew_deadline() -> None:
    leases = FakeLeases()
    leading = asyncio.Event()

    async def work() -> None:
        leading.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(run_leader_elected(cast(ApiClient, leases), flags(), work, "t"))
    await asyncio.wait_for(leading.wait(), 5)
    leases.down = True  # renewals fail from now on
    await asyncio.wait_for(task, 5)  # returns (the caller exits 1), does not raise


async def test_without_leader_election_a_crash_is_logged_not_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    async def work() -> None:
        raise RuntimeError("boom")

    await run_leader_elected(cast(ApiClient, FakeLeases()), flags(leader_elect=False), work,
                             "tk-test")
    assert "stopped on an unexpected error" in caplog.text


@pytest.mark.parametrize(("error", "code"), [
    (errors.ServiceUnavailable(message="the server at 127.0.0.1:1 is not reachable"), 1),
    (ConfigError("/x.conf: cannot read the kubeconfig"), 2),
])
def test_run_main_turns_failures_into_one_line(capsys: pytest.CaptureFixture[str],
                                               error: Exception, code: int) -> None:
    async def fail() -> Any:
        raise error

    with pytest.raises(SystemExit) as exc:
        run_main(fail(), "tk-test")
    assert exc.value.code == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tk-test: error: "), err
    assert "Traceback" not in err


def test_run_main_returns_normally_when_cancelled() -> None:
    async def cancelled() -> None:
        me = asyncio.current_task()
        assert me is not None
        me.cancel()
        await asyncio.sleep(1)

    run_main(cancelled(), "tk-test")  # no exception: SIGTERM is a clean exit
