"""Leader election over a real Lease in a real apiserver: one leader, takeover on expiry and
immediately on release."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from client.apiclient import ApiClient
from client.leaderelection import LeaderElector
from harness.cluster import Cluster

pytestmark = pytest.mark.integration

# Short durations so that expiry takes about two seconds (leaseDurationSeconds is an integer).
TIMING = {"lease_duration": 2.0, "renew_deadline": 1.5, "retry_period": 0.2}


class Candidate:
    def __init__(self, client: ApiClient, namespace: str, identity: str, **kw: Any) -> None:
        self.identity = identity
        self.leading = asyncio.Event()
        self.stopped = asyncio.Event()
        self.elector = LeaderElector(
            client, lock_name="controller-manager", namespace=namespace, identity=identity,
            on_started_leading=self._lead, on_stopped_leading=self.stopped.set,
            **{**TIMING, **kw},
        )
        self.task = asyncio.create_task(self.elector.run(), name=f"elector {identity}")

    async def _lead(self) -> None:
        self.leading.set()
        await asyncio.Event().wait()

    async def cancel(self) -> None:
        self.task.cancel()
        await asyncio.wait({self.task}, timeout=5)


async def leader_of(cands: list[Candidate], timeout: float = 15.0) -> Candidate:
    async with asyncio.timeout(timeout):
        while True:
            leading = [c for c in cands if c.leading.is_set()]
            if leading:
                return leading[0]
            await asyncio.sleep(0.02)


async def lease_spec(client: ApiClient, namespace: str) -> dict[str, Any]:
    lease = await client.get("leases", "controller-manager", namespace)
    spec: dict[str, Any] = lease["spec"]
    return spec


async def test_one_leader_then_takeover_after_expiry(cluster: Cluster, namespace: str) -> None:
    clients = [cluster.new_client() for _ in range(2)]
    cands = [Candidate(clients[0], namespace, "a"), Candidate(clients[1], namespace, "b")]
    try:
        first = await leader_of(cands)
        await asyncio.sleep(1.0)  # several renew rounds: still exactly one
        assert [c.identity for c in cands if c.leading.is_set()] == [first.identity]
        spec = await lease_spec(cluster.client, namespace)
        assert spec["holderIdentity"] == first.identity
        assert spec["leaseDurationSeconds"] == 2
        transitions = spec.get("leaseTransitions", 0)

        other = next(c for c in cands if c is not first)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await first.cancel()  # crash-like stop: no release
        assert first.stopped.is_set()
        assert (await lease_spec(cluster.client, namespace))["holderIdentity"] == first.identity
        await asyncio.wait_for(other.leading.wait(), 10)
        waited = loop.time() - t0
        assert waited >= 1.5, f"took over after {waited:.2f}s, before the lease expired"
        spec = await lease_spec(cluster.client, namespace)
        assert spec["holderIdentity"] == other.identity
        assert spec["leaseTransitions"] == transitions + 1
        assert other.elector.is_leader()
    finally:
        for c in cands:
            await c.cancel()
        for cl in clients:
            await cl.close()


async def test_release_hands_over_immediately(cluster: Cluster, namespace: str) -> None:
    clients = [cluster.new_client() for _ in range(2)]
    # A long lease for the successor too: only the release can explain a fast takeover.
    slow = {"lease_duration": 15.0, "renew_deadline": 10.0, "retry_period": 0.2}
    a = Candidate(clients[0], namespace, "a", release_on_cancel=True, **slow)
    try:
        await asyncio.wait_for(a.leading.wait(), 10)
        b = Candidate(clients[1], namespace, "b", **slow)
        await asyncio.sleep(0.5)
        assert not b.leading.is_set()
        assert b.elector.get_leader() == "a"
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await a.cancel()
        assert (await lease_spec(cluster.client, namespace))["holderIdentity"] in ("", "b")
        await asyncio.wait_for(b.leading.wait(), 5)
        assert loop.time() - t0 < 2.0
        spec = await lease_spec(cluster.client, namespace)
        assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
        await b.cancel()
    finally:
        await a.cancel()
        for cl in clients:
            await cl.close()
