"""The scheduler's loop: informers feed the cache and the queue; one pod at a time is placed.

Shape of upstream's scheduleOne, in asyncio:

- two informers: nodes, and pods that are not finished (a pod that succeeds or fails leaves the
  informer as a delete, freeing its node, as upstream's field selector does). Pending pods with
  our schedulerName go to the `SchedulingQueue`; bound pods of every scheduler go to the `Cache`;
- the **scheduling cycle** is synchronous: pop a pod, filter and score against the cache, then
  *assume* the pod on the chosen node. No await happens in between, so no informer event can
  change the cache mid-decision and consecutive decisions always see each other;
- the **binding cycle** runs as its own task (upstream's binding goroutine), up to
  `max_binds_in_flight` at once; success records `Scheduled`, failure forgets the assumption and
  requeues the pod with back-off;
- a pod that fits nowhere gets a `FailedScheduling` event and the condition PodScheduled=False
  reason Unschedulable with upstream's message, and waits in the queue for a cluster event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from api import errors
from api.core import Node, Pod
from api.meta import now_rfc3339
from api.podutil import is_terminating, pod_condition
from client.apiclient import ApiClient
from client.events import NORMAL, WARNING, EventRecorder
from client.informer import SharedInformerFactory
from scheduler.cache import Cache
from scheduler.framework import NodeInfo, PodInfo, pod_key
from scheduler.plugins import LEAST_ALLOCATED, Algorithm, FitError
from scheduler.queue import (
    DEFAULT_INITIAL_BACKOFF,
    DEFAULT_MAX_BACKOFF,
    QueuedPodInfo,
    SchedulingQueue,
)

log = logging.getLogger(__name__)

DEFAULT_SCHEDULER_NAME = "default-scheduler"
MAX_BINDS_IN_FLIGHT = 64
# Upstream's PodScheduled condition reasons (v1.PodReasonUnschedulable / SchedulerError).
REASON_UNSCHEDULABLE = "Unschedulable"
REASON_SCHEDULER_ERROR = "SchedulerError"
ACTIVE_FIELD_SELECTOR = "status.phase!=Succeeded,status.phase!=Failed"
HOUSEKEEPING_PERIOD = 1.0
LEFTOVER_FLUSH_PERIOD = 30.0


class Scheduler:
    """Places pending pods on nodes; `run()` until cancelled."""

    def __init__(
        self, client: ApiClient, recorder: EventRecorder, *,
        scheduler_name: str = DEFAULT_SCHEDULER_NAME, scoring: str = LEAST_ALLOCATED,
        percentage_of_nodes_to_score: int = 0,
        initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        max_binds_in_flight: int = MAX_BINDS_IN_FLIGHT,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.scheduler_name = scheduler_name
        self.cache = Cache()
        self.queue = SchedulingQueue(initial_backoff, max_backoff)
        self.algorithm = Algorithm(scoring, percentage_of_nodes_to_score)
        self.factory = SharedInformerFactory(client)
        self._bind_slots = asyncio.Semaphore(max_binds_in_flight)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.scheduled = 0  # binds that succeeded, for logs and tests
        pods = self.factory.informer_for(Pod, field_selector=ACTIVE_FIELD_SELECTOR)
        nodes = self.factory.informer_for(Node)
        self._pod_reg = pods.add_event_handler(
            on_add=self._on_pod_add, on_update=self._on_pod_update, on_delete=self._on_pod_delete)
        self._node_reg = nodes.add_event_handler(
            on_add=self._on_node_add, on_update=self._on_node_update,
            on_delete=self._on_node_delete)

    # --- informer handlers (synchronous: they only touch the cache and the queue) -----------

    def _responsible(self, pod: Pod) -> bool:
        return bool(pod.spec and pod.spec.scheduler_name == self.scheduler_name)

    def _on_pod_add(self, pod: Pod) -> None:
        if pod.spec and pod.spec.node_name:
            self.cache.add_pod(PodInfo.of(pod), pod.spec.node_name)
        elif self._responsible(pod) and not is_terminating(pod):
            self.queue.add(PodInfo.of(pod))

    def _on_pod_update(self, old: Pod, new: Pod) -> None:
        node = new.spec.node_name if new.spec else None
        if node:
            if not (old.spec and old.spec.node_name):
                self.queue.delete(pod_key(new))  # bound (by us or by someone else)
            elif self.cache.node_of(pod_key(new)) == node and old.spec == new.spec \
                    and old.metadata.uid == new.metadata.uid:
                return  # a status change (the kubelet's): nothing the cache counts moved
            self.cache.update_pod(PodInfo.of(new), node)
        elif self._responsible(new):
            if is_terminating(new):
                self.queue.delete(pod_key(new))
            else:
                self.queue.update(PodInfo.of(new))

    def _on_pod_delete(self, pod: Pod) -> None:
        key = pod_key(pod)
        self.queue.delete(key)
        # Only this very pod leaves the cache: a late delete of an older pod with the same name
        # must not drop its successor. An assumed pod that is deleted is forgotten at once (its
        # bind, if still in flight, can only fail), not left to hold its node's capacity until
        # the assumption expires.
        uid = self.cache.uid_of(key)
        if uid is not None and uid == (pod.metadata.uid or ""):
            self.cache.remove_pod(key)
            # Freed resources or ports may let a parked pod fit (AssignedPodDelete).
            self.queue.move_all_to_active_or_backoff()

    def _on_node_add(self, node: Node) -> None:
        self.cache.add_node(node)
        self.queue.move_all_to_active_or_backoff()

    def _on_node_update(self, old: Node, new: Node) -> None:
        if self.cache.update_node(new):
            self.queue.move_all_to_active_or_backoff()

    def _on_node_delete(self, node: Node) -> None:
        self.cache.remove_node(node.metadata.name or "")

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Sync the informers, then schedule until cancelled."""
        self.factory.start()
        try:
            await self.factory.wait_for_cache_sync()
            # Handler registrations expose a flag, not an event: poll it briefly.
            while not (self._pod_reg.has_synced and self._node_reg.has_synced):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            log.info("caches synced: %d nodes, %d pods bound, %d pending",
                     self.cache.node_count(), self.cache.pod_count(), len(self.queue))
            self._spawn(self._housekeeping())
            while True:
                if not await self.schedule_one():
                    break
                # The cycle itself never awaits: give informers and binds their turn.
                await asyncio.sleep(0)
        finally:
            self.queue.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.factory.shutdown()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _housekeeping(self) -> None:
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING_PERIOD)
            now = time.monotonic()
            if self.cache.cleanup_expired(now):
                self.queue.move_all_to_active_or_backoff()
            if now - last_flush >= LEFTOVER_FLUSH_PERIOD:
                last_flush = now
                self.queue.flush_unschedulable_leftover()

    async def schedule_one(self) -> bool:
        """One scheduling cycle; False once the queue is closed."""
        q = await self.queue.pop()
        if q is None:
            return False
        p = q.info
        if p.node_name or is_terminating(p.pod) or self.cache.knows(p.key):
            return True  # deleted meanwhile, or already placed (assumed or bound)
        cycle = self.queue.scheduling_cycle
        try:
            chosen = self.algorithm.schedule(p, self.cache.node_infos)
        except FitError as e:
            log.debug("pod %s is unschedulable: %s", p.key, e)
            self.queue.add_unschedulable(q, cycle)
            self._record_failure(p, REASON_UNSCHEDULABLE, str(e))
            return True
        self.cache.assume(p, chosen.name)
        await self._bind_slots.acquire()
        self._spawn(self._bind(q, chosen))
        return True

    async def _bind(self, q: QueuedPodInfo, node: NodeInfo) -> None:
        p = q.info
        ns, name = p.pod.metadata.namespace or "", p.pod.metadata.name or ""
        try:
            await self.client.bind(ns, name, node.name, uid=p.uid)
        except errors.ApiError as e:
            self._bind_failed(q, node, e)
        except Exception as e:  # the connection, not the apiserver: treat like an error reply
            self._bind_failed(q, node, errors.ServiceUnavailable(message=str(e)))
        else:
            self.cache.finish_binding(p.key, time.monotonic())
            self.scheduled += 1
            self.recorder.event(p.pod, NORMAL, "Scheduled",
                                f"Successfully assigned {ns}/{name} to {node.name}")
        finally:
            self._bind_slots.release()

    def _bind_failed(self, q: QueuedPodInfo, node: NodeInfo, e: errors.ApiError) -> None:
        p = q.info
        self.cache.forget(p.key)
        # The capacity it held is free again for pods parked meanwhile.
        self.queue.move_all_to_active_or_backoff()
        if isinstance(e, errors.NotFound):
            return  # deleted while we bound it
        if isinstance(e, errors.Conflict) and "already assigned" in str(e):
            return  # someone else bound it; the informer will tell the cache
        log.warning("binding %s to %s failed: %s", p.key, node.name, e)
        self.queue.add_backoff(q)
        # Upstream's wording: the DefaultBinder plugin's error, wrapped by the binding cycle.
        self._record_failure(p, REASON_SCHEDULER_ERROR,
                             f'binding rejected: running Bind plugin "DefaultBinder": {e}')

    # --- reporting failures -----------------------------------------------------------------

    def _record_failure(self, p: PodInfo, reason: str, message: str) -> None:
        self.recorder.event(p.pod, WARNING, "FailedScheduling", message)
        cond = pod_condition(p.pod, "PodScheduled")
        if cond is not None and cond.status == "False" and cond.reason == reason \
                and cond.message == message:
            return  # already says so: no write
        self._spawn(self._set_unschedulable(p, reason, message))

    async def _set_unschedulable(self, p: PodInfo, reason: str, message: str) -> None:
        """PodScheduled=False with the reason, through pods/status (the only write allowed)."""
        conds = [c.to_dict() for c in (p.pod.status.conditions if p.pod.status else None) or []
                 if c.type != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "False", "reason": reason,
                      "message": message, "lastTransitionTime": now_rfc3339()})
        with contextlib.suppress(errors.NotFound):
            try:
                await self.client.patch("pods", p.pod.metadata.name or "",
                                        {"status": {"conditions": conds}},
                                        p.pod.metadata.namespace, subresource="status")
            except errors.ApiError as e:
                log.warning("could not update the PodScheduled condition of %s: %s", p.key, e)
