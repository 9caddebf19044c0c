"""LeaderElector logic against an in-test lease store with compare-and-swap semantics.

The real apiserver is exercised by tests/integration/test_leaderelection.py; here we check the
state machine: acquisition rules, transitions, release, loss on failed renewals, Conflict races.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from typing import Any

import pytest

from api import errors
from client.leaderelection import LeaderElectionRecord, LeaderElector, now_micro

FAST = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.1}


class FakeLeases:
    """get/create/update on leases with resourceVersion compare-and-swap, like the apiserver."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.rv = 0
        self.down = False
        self.updates = 0

    def _check(self) -> None:
        if self.down:
            raise errors.ServiceUnavailable("apiserver down")

    async def get(self, resource: str, name: str, namespace: str | None = None, *,
                  subresource: str = "") -> dict[str, Any]:
        self._check()
        await asyncio.sleep(0)
        try:
            return copy.deepcopy(self.objects[(namespace or "", name)])
        except KeyError:
            raise errors.NotFound(f'leases "{name}" not found') from None

    async def create(self, resource: str, obj: dict[str, Any], namespace: str | None = None,
                     *, dry_run: bool = False) -> dict[str, Any]:
        self._check()
        await asyncio.sleep(0)
        key = (namespace or "", obj["metadata"]["name"])
        if key in self.objects:
            raise errors.AlreadyExists("exists")
        self.rv += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[key] = stored
        return copy.deepcopy(stored)

    async def update(self, resource: str, obj: dict[str, Any], namespace: str | None = None,
                     *, subresource: str = "", dry_run: bool = False) -> dict[str, Any]:
        self._check()
        await asyncio.sleep(0)
        key = (namespace or "", obj["metadata"]["name"])
        current = self.objects[key]
        if obj["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise errors.Conflict("the object has been modified")
        self.rv += 1
        self.updates += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[key] = stored
        return copy.deepcopy(stored)

    def spec(self, name: str = "lock") -> dict[str, Any]:
        spec: dict[str, Any] = self.objects[("kube-system", name)]["spec"]
        return spec


class Candidate:
    def __init__(self, leases: FakeLeases, identity: str, **kw: Any) -> None:
        self.identity = identity
        self.leading = asyncio.Event()
        self.stopped = asyncio.Event()
        self.work_cancelled = False
        self.leaders: list[str] = []
        self.elector = LeaderElector(
            leases, lock_name="lock", identity=identity, on_started_leading=self._lead,
            on_stopped_leading=self.stopped.set, on_new_leader=self.leaders.append,
            **{**FAST, **kw},
        )
        self.task: asyncio.Task[None] = asyncio.create_task(self.elector.run())

    async def _lead(self) -> None:
        self.leading.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.work_cancelled = True
            raise

    async def cancel(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def first_leader(*cands: Candidate, timeout: float = 5.0) -> Candidate:
    async with asyncio.timeout(timeout):
        while True:
            for c in cands:
                if c.leading.is_set():
                    return c
            await asyncio.sleep(0.01)


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError):
        LeaderElector(FakeLeases(), lock_name="l", identity="a", on_started_leading=_noop,
                      lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError):
        LeaderElector(FakeLeases(), lock_name="l", identity="", on_started_leading=_noop)


async def _noop() -> None:
    return None


def test_record_expiry() -> None:
    now = dt.datetime.now(dt.UTC)
    old = (now - dt.timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert LeaderElectionRecord("x", 15, old, old).expired(now)
    assert not LeaderElectionRecord("x", 15, now_micro(), now_micro()).expired(now)
    assert LeaderElectionRecord("x", 15).expired(now), "no renewTime at all counts as expired"


async def test_single_candidate_creates_and_renews_lease() -> None:
    leases = FakeLeases()
    c = Candidate(leases, "a")
    await asyncio.wait_for(c.leading.wait(), 5)
    assert c.elector.is_leader() and c.elector.get_leader() == "a"
    spec = leases.spec()
    assert spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0
    assert spec["leaseDurationSeconds"] == 1
    first_renew = spec["renewTime"]
    await asyncio.sleep(0.35)
    assert leases.spec()["renewTime"] > first_renew, "the leader must keep renewing"
    assert leases.spec()["acquireTime"] == spec["acquireTime"]
    assert c.leaders == ["a"]
    await c.cancel()
    assert c.work_cancelled and c.stopped.is_set()


async def test_exactly_one_leads_and_successor_waits_for_expiry() -> None:
    leases = FakeLeases()
    cands = [Candidate(leases, n) for n in ("a", "b", "c")]
    leader = await first_leader(*cands)
    await asyncio.sleep(0.5)
    assert [c.identity for c in cands if c.leading.is_set()] == [leader.identity]
    others = [c for c in cands if c is not leader]
    assert all(o.elector.get_leader() == leader.identity for o in others)

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await leader.cancel()  # no release: the others must wait for the lease to expire
    assert leases.spec()["holderIdentity"] == leader.identity
    successor = await first_leader(*others)
    waited = loop.time() - t0
    assert waited >= 0.8, f"took over after {waited:.2f}s, before the 1s lease expired"
    assert leases.spec()["holderIdentity"] == successor.identity
    assert leases.spec()["leaseTransitions"] == 1
    await asyncio.sleep(0.3)
    assert sum(c.leading.is_set() for c in others) == 1
    for c in others:
        await c.cancel()


async def test_release_on_cancel_hands_over_immediately() -> None:
    leases = FakeLeases()
    a = Candidate(leases, "a", release_on_cancel=True)
    await asyncio.wait_for(a.leading.wait(), 5)
    b = Candidate(leases, "b", lease_duration=10.0, renew_deadline=5.0, retry_period=0.1)
    await asyncio.sleep(0.2)
    assert not b.leading.is_set()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await a.cancel()
    assert leases.spec()["holderIdentity"] == ""
    await asyncio.wait_for(b.leading.wait(), 5)
    assert loop.time() - t0 < 1.0, "a released lease must not wait for expiry"
    assert leases.spec()["leaseTransitions"] == 1
    assert b.leaders == ["a", "b"]
    await b.cancel()


async def test_leadership_lost_when_renewals_fail_for_renew_deadline() -> None:
    leases = FakeLeases()
    a = Candidate(leases, "a")
    await asyncio.wait_for(a.leading.wait(), 5)
    loop = asyncio.get_running_loop()
    leases.down = True
    t0 = loop.time()
    await asyncio.wait_for(a.task, 5)  # run() returns on loss
    lost_after = loop.time() - t0
    assert 0.4 <= lost_after <= 1.0, lost_after
    assert a.work_cancelled and a.stopped.is_set() and not a.elector.is_leader()


async def test_a_leader_that_sees_another_holder_stops() -> None:
    leases = FakeLeases()
    a = Candidate(leases, "a")
    await asyncio.wait_for(a.leading.wait(), 5)
    # Someone force-takes the lease (e.g. an operator edited it): a must stop renewing over it.
    obj = await leases.get("leases", "lock", "kube-system")
    obj["spec"].update(holderIdentity="intruder", renewTime=now_micro(),
                       leaseDurationSeconds=30)
    await leases.update("leases", obj, "kube-system")
    await asyncio.wait_for(a.task, 5)
    assert a.work_cancelled
    assert leases.spec()["holderIdentity"] == "intruder"


async def test_concurrent_writers_conflict_instead_of_both_winning() -> None:
    leases = FakeLeases()
    # An expired lease that many candidates see at the same moment.
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")
    await leases.create("leases", {
        "metadata": {"name": "lock", "namespace": "kube-system"},
        "spec": {"holderIdentity": "dead", "leaseDurationSeconds": 1, "renewTime": old,
                 "acquireTime": old, "leaseTransitions": 4},
    }, "kube-system")
    cands = [Candidate(leases, f"c{i}") for i in range(5)]
    leader = await first_leader(*cands)
    await asyncio.sleep(0.3)
    assert sum(c.leading.is_set() for c in cands) == 1
    assert leases.spec()["holderIdentity"] == leader.identity
    assert leases.spec()["leaseTransitions"] == 5
    for c in cands:
        await c.cancel()
