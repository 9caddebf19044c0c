"""Killing control-plane components: everything converges again, and nothing acts twice.

Kubernetes' promise (DESIGN.md §1): any component can be SIGKILLed at any moment and restarted;
it rebuilds its view by list + watch and converges, level-triggered. These tests kill the
controller-manager in the middle of a rolling update and the scheduler in the middle of a burst,
and run two controller-managers at once to check that only the lease holder acts.

Each test runs its own cluster (it kills components the shared `control_plane` relies on), with
short leader-election timings so that a restarted process need not wait 15s for the dead one's
lease to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from api import errors
from client.leaderelection import now_micro
from harness.cluster import Cluster, Component
from harness.wait import until

LEASE = ("--leader-elect-lease-duration", "3", "--leader-elect-renew-deadline", "2",
         "--leader-elect-retry-period", "0.5")
CM_FLAGS = (*LEASE, "--node-monitor-period", "0.5", "--node-monitor-grace-period", "10")

Obj = dict[str, Any]


@contextlib.asynccontextmanager
async def running_cluster(nodes: int = 3, *hollow_args: str) -> AsyncIterator[Cluster]:
    async with Cluster() as c:
        c.start_hollow_nodes(nodes, "--lease-interval", "1", *hollow_args)
        await c.wait_nodes_ready(nodes)
        yield c


def deployment(name: str, replicas: int, *, surge: int, unavailable: int,
               ready_after: str = "0.5") -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "template": {
                "metadata": {"labels": labels,
                             "annotations": {"hollow.tinykube.io/ready-after": ready_after}},
                "spec": {"containers": [{"name": "app", "image": "tinykube/serve-hostname:1",
                                         "env": [{"name": "VERSION", "value": "1"}]}]},
            },
        },
    }


async def rolled_out(c: Cluster, ns: str, name: str, replicas: int) -> bool:
    d = await c.client.get("deployments", name, ns)
    st = d.get("status") or {}
    return (st.get("observedGeneration") == d["metadata"]["generation"]
            and st.get("updatedReplicas") == replicas and st.get("replicas") == replicas
            and st.get("availableReplicas") == replicas)


class PodCounter:
    """Watches a namespace's pods and remembers the most that were alive (not terminating) at
    any observed moment."""

    def __init__(self, c: Cluster, ns: str) -> None:
        self.c, self.ns = c, ns
        self.alive: dict[str, Obj] = {}
        self.max_alive = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PodCounter:
        listed = await self.c.client.list("pods", self.ns)
        for p in listed["items"]:
            self._see("ADDED", p)
        rv = listed["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._watch(rv))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def _see(self, type_: str, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        if type_ == "DELETED" or pod["metadata"].get("deletionTimestamp"):
            self.alive.pop(name, None)
        else:
            self.alive[name] = pod
        self.max_alive = max(self.max_alive, len(self.alive))

    async def _watch(self, rv: str) -> None:
        async for ev in self.c.client.watch("pods", self.ns, resource_version=rv):
            if ev.type in ("ADDED", "MODIFIED", "DELETED"):
                self._see(ev.type, ev.object)


async def test_controller_manager_sigkill_mid_rollout_converges_within_surge() -> None:
    """A rolling update survives the controller-manager's death: after a restart the rollout
    finishes, and at no observed moment were there more pods than replicas + maxSurge."""
    async with running_cluster() as c:
        c.start_scheduler(*LEASE)
        cm = c.start_controller_manager(*CM_FLAGS)
        ns = await c.new_namespace()
        await c.client.create("deployments", deployment("web", 6, surge=1, unavailable=0), ns)
        await until(lambda: rolled_out(c, ns, "web", 6), timeout=90, what="first rollout")

        async with PodCounter(c, ns) as counter:
            await c.client.patch("deployments", "web", {"spec": {"template": {"spec": {
                "containers": [{"name": "app", "image": "tinykube/serve-hostname:1",
                                "env": [{"name": "VERSION", "value": "2"}]}]}}}}, ns)

            async def new_rs_started() -> bool:
                rss = (await c.client.list("replicasets", ns))["items"]
                return len(rss) == 2 and all(
                    (rs.get("status") or {}).get("replicas", 0) > 0 for rs in rss)

            await until(new_rs_started, timeout=60, what="the rollout to start")
            cm.kill()
            await asyncio.sleep(1.0)
            cm.start()
            await until(lambda: rolled_out(c, ns, "web", 6), timeout=120,
                        what="the rollout to finish after the restart")
        assert counter.max_alive <= 6 + 1, (
            f"{counter.max_alive} pods alive at once (replicas 6, maxSurge 1)\n{cm.logs()}")
        pods = [p for p in (await c.client.list("pods", ns))["items"]
                if not p["metadata"].get("deletionTimestamp")]
        assert len(pods) == 6
        assert all(p["spec"]["containers"][0]["env"][0]["value"] == "2" for p in pods)


async def test_scheduler_sigkill_mid_burst_binds_every_pod_once_without_overcommit() -> None:
    """Pods the dead scheduler assumed but never bound are scheduled by the next one; a node's
    cpu is never overcommitted across the restart (the new scheduler counts bound pods)."""
    async with running_cluster(3, "--name-prefix", "cpu-", "--cpu", "4") as c:
        sched = c.start_scheduler(*LEASE)
        ns = await c.new_namespace()
        for i in range(12):
            await c.client.create("pods", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}"},
                "spec": {"containers": [{"name": "c", "image": "tinykube/busybox:1",
                                         "resources": {"requests": {"cpu": "1"}}}]}}, ns)
            if i == 5:
                await until(lambda: _bound(c, ns, 1), timeout=30, what="a first binding")
                sched.kill()
        sched.start()
        pods = await until(lambda: _bound(c, ns, 12), timeout=60, what="all 12 pods bound")
        per_node: dict[str, int] = {}
        for p in pods:
            per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
        assert sorted(per_node.values()) == [4, 4, 4], per_node
        extra = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "one-too-many"},
                 "spec": {"containers": [{"name": "c", "image": "tinykube/busybox:1",
                                          "resources": {"requests": {"cpu": "1"}}}]}}
        await c.client.create("pods", extra, ns)

        async def unschedulable() -> str:
            p = await c.client.get("pods", "one-too-many", ns)
            conds = (p.get("status") or {}).get("conditions") or []
            return next((x.get("message", "") for x in conds if x["type"] == "PodScheduled"
                         and x.get("reason") == "Unschedulable"), "")

        message = await until(unschedulable, timeout=30, what="the 13th pod to be unschedulable")
        assert message.startswith("0/3 nodes are available: 3 Insufficient cpu"), message


async def _bound(c: Cluster, ns: str, n: int) -> list[Obj]:
    pods = (await c.client.list("pods", ns))["items"]
    bound = [p for p in pods if p["spec"].get("nodeName")]
    return bound if len(bound) >= n else []


def _leader_of(lease: Obj) -> str:
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


async def test_two_controller_managers_only_the_leader_acts() -> None:
    """Two controller-managers share one lease: one acts, the other waits; pods are never
    doubled; when the leader dies the other takes over and keeps converging."""
    async with running_cluster() as c:
        c.start_scheduler(*LEASE)
        first = c.start_controller_manager(*CM_FLAGS)
        lease = await until(lambda: _lease(c), timeout=30, what="a controller-manager lease")
        assert lease is not None
        holder = _leader_of(lease)
        second = c.start_controller_manager(*CM_FLAGS)
        ns = await c.new_namespace()
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
              "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "rs"}},
                       "template": {"metadata": {"labels": {"app": "rs"}},
                                    "spec": {"containers": [{"name": "c",
                                                             "image": "tinykube/busybox:1"}]}}}}
        async with PodCounter(c, ns) as counter:
            await c.client.create("replicasets", rs, ns)
            await until(lambda: _ready_replicas(c, ns, 5), timeout=60, what="5 ready replicas")
            await asyncio.sleep(2.0)  # time for a second, misbehaving manager to over-create
            assert counter.max_alive == 5
            # Exactly one of the two started its controllers.
            started = [comp for comp in (first, second)
                       if "starting controllers" in comp.logs(1000)]
            assert len(started) == 1, [comp.logs(50) for comp in (first, second)]
            leader, follower = (first, second) if started[0] is first else (second, first)

            leader.kill()
            await until(lambda: _new_holder(c, holder), timeout=30, what="a new lease holder")
            await c.client.patch("replicasets", "rs", {"spec": {"replicas": 7}}, ns)
            await until(lambda: _ready_replicas(c, ns, 7), timeout=60,
                        what="the follower to scale to 7")
            assert "starting controllers" in follower.logs(1000)
            assert counter.max_alive == 7


async def _lease(c: Cluster) -> Obj | None:
    try:
        lease = await c.client.get("leases", "kube-controller-manager", "kube-system")
    except Exception:
        return None
    return lease if _leader_of(lease) else None


async def _new_holder(c: Cluster, old: str) -> bool:
    lease = await _lease(c)
    return lease is not None and _leader_of(lease) != old


async def _ready_replicas(c: Cluster, ns: str, n: int) -> bool:
    rs = await c.client.get("replicasets", "rs", ns)
    st = rs.get("status") or {}
    return st.get("readyReplicas") == n and st.get("replicas") == n


def test_component_helper_is_a_process(tmp_path: Path) -> None:
    """The harness's Component runs what it is told as a separate OS process, and refuses to
    start a second copy over a running one (which would orphan it)."""
    comp = Component("http.server", "--help", name="probe", parent=tmp_path)
    comp.start()
    assert comp.proc is not None
    assert comp.wait(30) == 0
    assert "usage" in comp.logs().lower()
    sleeper = Component("http.server", "--bind", "127.0.0.1", "0", name="sleeper",
                        parent=tmp_path).start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            sleeper.start()
    finally:
        sleeper.stop()
    assert not sleeper.running


async def _holder(c: Cluster, name: str) -> str:
    return _leader_of(await c.client.get("leases", name, "kube-system"))


async def _exit_status(comp: Component, timeout: float) -> int:
    return await asyncio.to_thread(comp.wait, timeout)


async def test_sigterm_releases_the_lease_and_a_lost_lease_exits_non_zero() -> None:
    """SIGTERM: the scheduler and the controller-manager stop promptly, exit 0 and clear the
    lease's holder (a successor need not wait out the 15s lease). Losing the lease to someone
    else: the controller-manager stops acting and exits 1, to be restarted and compete again."""
    async with Cluster() as c:
        sched = c.start_scheduler()
        cm = c.start_controller_manager("--controllers", "serviceaccount")
        for comp, lease in ((sched, "kube-scheduler"), (cm, "kube-controller-manager")):
            await until(_held(c, lease), timeout=60, what=f"{lease} held")
            assert comp.proc is not None
            comp.proc.send_signal(signal.SIGTERM)  # not kill(): it would wait unboundedly
            assert await _exit_status(comp, 15) == 0, comp.logs()
            assert await _holder(c, lease) == "", f"{lease} not released\n{comp.logs()}"
            assert "Traceback" not in comp.logs(), comp.logs()

        cm = c.start_controller_manager("--controllers", "serviceaccount", *LEASE)
        await until(_held(c, "kube-controller-manager"), timeout=60,
                    what="kube-controller-manager held again")
        await _steal(c, "kube-controller-manager")
        assert await _exit_status(cm, 30) == 1, cm.logs()
        assert "leader election lost" in cm.logs(), cm.logs()
        assert await _holder(c, "kube-controller-manager") == "intruder"


def _held(c: Cluster, name: str) -> Callable[[], Awaitable[str]]:
    """A check: the lease's holder, "" while it has none (or does not exist yet)."""
    async def check() -> str:
        try:
            return await _holder(c, name)
        except errors.NotFound:
            return ""
    return check


async def _steal(c: Cluster, name: str) -> None:
    """Take the lease over as another candidate would (for an hour)."""
    for _ in range(20):
        lease = await c.client.get("leases", name, "kube-system")
        now = now_micro()
        lease["spec"].update(holderIdentity="intruder", leaseDurationSeconds=3600,
                             acquireTime=now, renewTime=now)
        try:
            await c.client.update("leases", lease, "kube-system")
            return
        except errors.Conflict:
            continue  # the holder renewed in between
    raise AssertionError("could not take the lease over")


async def test_controller_manager_keeps_working_across_an_apiserver_restart() -> None:
    """The apiserver restarts under a running controller-manager: it keeps its lease (the gap
    is shorter than the renew deadline), its informers re-list and re-watch, and it goes on
    converging: a namespace created after the restart gets its default ServiceAccount."""
    async with Cluster() as c:
        cm = c.start_controller_manager(
            "--controllers", "serviceaccount,namespace", "--leader-elect-lease-duration", "40",
            "--leader-elect-renew-deadline", "30", "--leader-elect-retry-period", "1")
        before = await c.new_namespace()
        await until(lambda: _default_sa(c, before), timeout=60, what="a default SA before")
        holder = await _holder(c, "kube-controller-manager")

        assert c.apiserver is not None
        c.apiserver.kill()
        await asyncio.sleep(1.0)
        await c.apiserver.start()
        await until(lambda: _answers(c), timeout=30, what="the apiserver back")

        after = await c.new_namespace()
        await until(lambda: _default_sa(c, after), timeout=60,
                    what=f"a default SA after the restart\n{cm.logs()}")
        # Deleting the account is noticed through the new watch, too.
        await c.client.delete("serviceaccounts", "default", before)
        await until(lambda: _default_sa(c, before), timeout=60, what="the SA recreated")
        assert cm.running, cm.logs()
        assert await _holder(c, "kube-controller-manager") == holder


async def _default_sa(c: Cluster, ns: str) -> bool:
    try:
        await c.client.get("serviceaccounts", "default", ns)
    except errors.NotFound:
        return False
    return True


async def _answers(c: Cluster) -> bool:
    try:
        await c.client.get("namespaces", "default")
    except errors.ApiError:
        return False
    return True
