"""Leader election on a coordination.k8s.io/v1 Lease: client-go's tools/leaderelection.

Several replicas of the controller-manager (or scheduler) may run; exactly one must act. They
compete for one Lease object, using the apiserver's optimistic concurrency as the lock: every write
carries the resourceVersion it read, so of two replicas writing at once one gets Conflict and
loses. The holder renews `spec.renewTime` every `retry_period`; the others take over once the
lease has expired.

Timing (client-go's defaults, all parameters): lease_duration 15 s, renew_deadline 10 s,
retry_period 2 s. Safety needs `renew_deadline < lease_duration`: a leader that cannot renew stops
leading (cancels its work) after renew_deadline, before anyone else may consider the lease expired.

Invariants:
- a replica acts as leader (its `on_started_leading` task runs) only while its last successful
  write of the Lease is less than renew_deadline old;
- the lease is taken only if it is absent, expired (renewTime + leaseDurationSeconds < now),
  released (empty holderIdentity) or already ours; `leaseTransitions` is incremented whenever the
  holder changes, `acquireTime` set when we take it;
- `release_on_cancel`: on a graceful stop the leader clears holderIdentity so that a successor
  takes over at its next retry instead of waiting for expiry.

Deviation from client-go, documented: expiry is judged from the record's renewTime against our own
wall clock (what the brief and Kubernetes' node-lease logic do), not from the local time at which
we last saw the record change. That lets a fresh replica take over a long-dead lease at once, and
assumes the replicas' clocks agree to well within lease_duration - renew_deadline (NTP).
Unlike client-go, `on_stopped_leading` is called only if we actually led.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from api import errors
from api.meta import parse_rfc3339

log = logging.getLogger(__name__)

LEASES = "leases"


class LeaseClient(Protocol):
    """The ApiClient verbs leader election uses (ApiClient satisfies it)."""

    async def get(
        self, resource: str, name: str, namespace: str | None = None, *, subresource: str = ""
    ) -> dict[str, Any]: ...

    async def create(
        self, resource: str, obj: dict[str, Any], namespace: str | None = None,
        *, dry_run: bool = False,
    ) -> dict[str, Any]: ...

    async def update(
        self, resource: str, obj: dict[str, Any], namespace: str | None = None,
        *, subresource: str = "", dry_run: bool = False,
    ) -> dict[str, Any]: ...


def now_micro(when: dt.datetime | None = None) -> str:
    """Kubernetes MicroTime (of `when`, default now): RFC 3339, UTC, microseconds."""
    return (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = parse_rfc3339(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass
class LeaderElectionRecord:
    """The Lease spec as leader election sees it (client-go's LeaderElectionRecord)."""

    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    lease_transitions: int = 0

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> LeaderElectionRecord:
        spec = spec or {}
        return cls(
            holder_identity=spec.get("holderIdentity") or "",
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime") or "",
            renew_time=spec.get("renewTime") or "",
            lease_transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.holder_identity,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.lease_transitions,
        }
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return spec

    def expired(self, now: dt.datetime) -> bool:
        renew = _parse_time(self.renew_time) or _parse_time(self.acquire_time)
        if renew is None:
            return True
        return renew + dt.timedelta(seconds=self.lease_duration_seconds) < now


Callback = Callable[..., Any]


async def _maybe_await(fn: Callback | None, *args: Any) -> None:
    if fn is None:
        return
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("leader election callback %s failed", getattr(fn, "__name__", fn))


class LeaderElector:
    """Compete for a Lease; run `on_started_leading()` while we hold it.

    `await elector.run()` returns when leadership is lost (as client-go's Run does; the caller
    usually exits the process so that a fresh start competes again). Cancelling `run()` stops
    leading (and releases the lease if `release_on_cancel`).

    Callbacks may be plain or async functions: `on_started_leading()` is a coroutine function run
    as a task and cancelled on loss; `on_stopped_leading()` runs after that task is gone;
    `on_new_leader(identity)` runs whenever the observed holder changes (including to us).
    """

    def __init__(
        self,
        client: LeaseClient,
        *,
        lock_name: str,
        identity: str,
        on_started_leading: Callable[[], Awaitable[Any]],
        on_stopped_leading: Callback | None = None,
        on_new_leader: Callable[[str], Any] | None = None,
        namespace: str = "kube-system",
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        release_on_cancel: bool = False,
    ) -> None:
        if not identity:
            raise ValueError("leader election identity must not be empty")
        if lease_duration <= renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if renew_deadline <= retry_period:
            raise ValueError("renew_deadline must be greater than retry_period")
        self.client = client
        self.lock_name = lock_name
        self.namespace = namespace
        self.identity = identity
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self._observed: LeaderElectionRecord | None = None
        self._reported_leader = ""
        self._leading = False
        self._callback_tasks: set[asyncio.Task[None]] = set()

    # --- state ------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._leading

    def get_leader(self) -> str:
        """The holder we last observed ("" if none)."""
        return self._observed.holder_identity if self._observed else ""

    # --- run --------------------------------------------------------------------------------

    async def run(self) -> None:
        work: asyncio.Task[Any] | None = None
        try:
            await self._acquire()
            self._leading = True
            log.info("%s: became leader of %s/%s", self.identity, self.namespace,
                     self.lock_name)
            work = asyncio.create_task(self._lead(), name=f"leading {self.lock_name}")
            await self._renew_loop()
            log.warning("%s: lost leadership of %s/%s", self.identity, self.namespace,
                        self.lock_name)
        finally:
            was_leading = self._leading
            self._leading = False
            if work is not None:
                # Stop acting as leader before anything else: another replica may take over
                # as soon as the lease expires or is released.
                work.cancel()
                await asyncio.wait({work}, timeout=5.0)
            if was_leading and self.release_on_cancel:
                try:
                    async with asyncio.timeout(self.retry_period):
                        await self._release()
                except (TimeoutError, errors.ApiError) as e:
                    log.warning("%s: could not release %s/%s: %s", self.identity,
                                self.namespace, self.lock_name, e)
            if was_leading:
                await _maybe_await(self.on_stopped_leading)

    async def _lead(self) -> None:
        try:
            await self.on_started_leading()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: on_started_leading failed", self.identity)

    async def _acquire(self) -> None:
        """Retry every retry_period until we hold the lease (or are cancelled)."""
        while True:
            if await self._try_once():
                return
            await asyncio.sleep(self.retry_period)

    async def _renew_loop(self) -> None:
        """Renew every retry_period; return when no renewal succeeded for renew_deadline."""
        loop = asyncio.get_running_loop()
        while True:
            deadline = loop.time() + self.renew_deadline
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                if await self._try_once(limit=remaining):
                    break
                await asyncio.sleep(min(self.retry_period, max(0.0, deadline - loop.time())))
            await asyncio.sleep(self.retry_period)

    async def _try_once(self, limit: float | None = None) -> bool:
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # races with the inner call finishing, which would leave the renew loop running.
            async with asyncio.timeout(limit):
                return await self._try_acquire_or_renew()
        except TimeoutError:
            log.info("%s: lease update timed out", self.identity)
            return False
        except errors.Conflict:
            # Someone else wrote the lease between our read and our write: they won this round.
            return False
        except errors.ApiError as e:
            log.info("%s: lease %s/%s: %s: %s", self.identity, self.namespace, self.lock_name,
                     type(e).__name__, e)
            return False

    async def _try_acquire_or_renew(self) -> bool:
        now_dt = dt.datetime.now(dt.UTC)
        now = now_micro(now_dt)
        try:
            lease = await self.client.get(LEASES, self.lock_name, self.namespace)
        except errors.NotFound:
            record = LeaderElectionRecord(
                holder_identity=self.identity,
                lease_duration_seconds=_seconds(self.lease_duration),
                acquire_time=now, renew_time=now, lease_transitions=0,
            )
            try:
                created = await self.client.create(LEASES, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.lock_name, "namespace": self.namespace},
                    "spec": record.to_spec(),
                }, self.namespace)
            except errors.AlreadyExists:
                return False
            self._observe(created)
            return True

        old = LeaderElectionRecord.from_spec(lease.get("spec"))
        self._observe(lease)
        if old.holder_identity and old.holder_identity != self.identity \
                and not old.expired(now_dt):
            return False

        record = LeaderElectionRecord(
            holder_identity=self.identity,
            lease_duration_seconds=_seconds(self.lease_duration),
            renew_time=now,
        )
        if old.holder_identity == self.identity:
            record.acquire_time = old.acquire_time or now
            record.lease_transitions = old.lease_transitions
        else:
            record.acquire_time = now
            record.lease_transitions = old.lease_transitions + 1
        # The resourceVersion we read makes this a compare-and-swap: Conflict if anyone wrote
        # in between, so two candidates can never both believe they took the lease.
        updated = await self.client.update(
            LEASES, {**lease, "spec": {**(lease.get("spec") or {}), **record.to_spec()}},
            self.namespace,
        )
        self._observe(updated)
        return True

    async def _release(self) -> None:
        """Clear holderIdentity so a successor does not wait for expiry (client-go's release)."""
        lease = await self.client.get(LEASES, self.lock_name, self.namespace)
        old = LeaderElectionRecord.from_spec(lease.get("spec"))
        if old.holder_identity != self.identity:
            return
        now = now_micro()
        record = LeaderElectionRecord(
            holder_identity="", lease_duration_seconds=1, acquire_time=now, renew_time=now,
            lease_transitions=old.lease_transitions,
        )
        spec = {**(lease.get("spec") or {}), **record.to_spec()}
        updated = await self.client.update(LEASES, {**lease, "spec": spec}, self.namespace)
        self._observe(updated)
        log.info("%s: released %s/%s", self.identity, self.namespace, self.lock_name)

    def _observe(self, lease: dict[str, Any]) -> None:
        record = LeaderElectionRecord.from_spec(lease.get("spec"))
        self._observed = record
        holder = record.holder_identity
        if holder and holder != self._reported_leader:
            self._reported_leader = holder
            if self.on_new_leader is not None:
                # Run detached so a slow callback cannot delay a renewal.
                task = asyncio.create_task(_maybe_await(self.on_new_leader, holder))
                self._callback_tasks.add(task)
                task.add_done_callback(self._callback_tasks.discard)


def _seconds(value: float) -> int:
    # leaseDurationSeconds is an integer in the API; never round a positive duration to 0.
    return max(1, round(value))
