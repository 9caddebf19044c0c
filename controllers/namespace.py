"""The namespace controller: deleting a namespace deletes everything in it, then the namespace.

`tkctl delete namespace x` only marks the namespace (deletionTimestamp, phase Terminating): the
apiserver keeps it while `spec.finalizers` holds `kubernetes`, and refuses new content in it.
This controller (upstream's NamespacedResourcesDeleter) then, for every namespaced resource,
deletes the collection (pods gracefully, through their nodes), lists what is left, reports
progress in the namespace's status conditions exactly as upstream words them, and once nothing
is left removes the `kubernetes` finalizer through `namespaces/finalize`, which lets the
apiserver delete the namespace.

Waiting: pods in graceful termination requeue the namespace after half their grace period plus
one second (upstream's estimate), and any pod deletion in a terminating namespace requeues it at
once, so a namespace whose pods stop quickly goes quickly; objects held by finalizers requeue
after upstream's 15 s estimate; failures retry with back-off capped at 60 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api import errors
from api.core import Namespace, Pod
from api.meta import now_rfc3339
from api.resources import RESOURCES, ResourceInfo
from client.workqueue import RateLimitingQueue, default_controller_rate_limiter
from controllers.base import Controller, ControllerContext

FINALIZER = "kubernetes"
# Upstream's finalizerEstimateSeconds: how long to give other finalizers (the garbage
# collector's, say) before looking again.
FINALIZER_ESTIMATE_SECONDS = 15
_FINALIZE_RETRIES = 5

Obj = dict[str, Any]

# (type, reason, message) when all is well; upstream sets all five on every pass.
OK_CONDITIONS: tuple[tuple[str, str, str], ...] = (
    ("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered",
     "All resources successfully discovered"),
    ("NamespaceDeletionGroupVersionParsingFailure", "ParsedGroupVersions",
     "All legacy kube types successfully parsed"),
    ("NamespaceDeletionContentFailure", "ContentDeleted",
     "All content successfully deleted, may be waiting on finalization"),
    ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
    ("NamespaceFinalizersRemaining", "ContentHasNoFinalizers",
     "All content-preserving finalizers finished"),
)


@dataclass
class ContentResult:
    """What one pass over a terminating namespace's content found."""

    estimate: int = 0  # seconds until graceful deletions should be over
    remaining: dict[str, int] = field(default_factory=dict)  # "pods" → count
    finalizers: dict[str, int] = field(default_factory=dict)  # finalizer → count
    errors: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not (self.remaining or self.errors)


def group_resource(info: ResourceInfo) -> str:
    """Upstream's GroupResource.String(): `pods`, `replicasets.apps`."""
    return info.qualified_name


def deletable_resources() -> list[ResourceInfo]:
    """Every stored namespaced resource, in a stable order."""
    return sorted((r for r in RESOURCES.values() if r.namespaced and not r.virtual),
                  key=lambda r: (r.group, r.name))


def pod_grace_estimate(pods: list[Obj]) -> int:
    """Upstream's estimateGracefulTerminationForPods: the longest grace of pods still running."""
    estimate = 0
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        if isinstance(grace, int) and grace > estimate:
            estimate = grace
    return estimate


def conditions_for(result: ContentResult) -> list[tuple[str, str, str, str]]:
    """(type, status, reason, message) for the five deletion conditions, upstream's wording."""
    out: list[tuple[str, str, str, str]] = []
    for ctype, ok_reason, ok_message in OK_CONDITIONS:
        status, reason, message = "False", ok_reason, ok_message
        if ctype == "NamespaceDeletionContentFailure" and result.errors:
            joined = result.errors[0] if len(result.errors) == 1 else \
                "[" + ", ".join(result.errors) + "]"
            status, reason = "True", "ContentDeletionFailed"
            message = (f"Failed to delete all resource types, {len(result.errors)} "
                       f"remaining: {joined}")
        elif ctype == "NamespaceContentRemaining" and result.remaining:
            status, reason = "True", "SomeResourcesRemain"
            message = "Some resources are remaining: " + ", ".join(
                f"{r} has {n} resource instances" for r, n in sorted(result.remaining.items()))
        elif ctype == "NamespaceFinalizersRemaining" and result.finalizers:
            status, reason = "True", "SomeFinalizersRemain"
            message = "Some content in the namespace has finalizers remaining: " + ", ".join(
                f"{f} in {n} resource instances" for f, n in sorted(result.finalizers.items()))
        out.append((ctype, status, reason, message))
    return out


def merge_conditions(existing: list[Obj], result: ContentResult, now: str) -> list[Obj]:
    """The namespace's new status.conditions: ours replaced (lastTransitionTime kept while the
    status does not change), any others kept."""
    old = {c.get("type"): c for c in existing}
    mine = []
    for ctype, status, reason, message in conditions_for(result):
        prev = old.pop(ctype, None)
        since = prev.get("lastTransitionTime") if prev and prev.get("status") == status else now
        mine.append({"type": ctype, "status": status, "lastTransitionTime": since,
                     "reason": reason, "message": message})
    return [*old.values(), *mine]


def _same(a: list[Obj], b: list[Obj]) -> bool:
    def strip(cs: list[Obj]) -> list[Obj]:
        return [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in cs]
    return strip(a) == strip(b)


class NamespaceController(Controller):
    name = "namespace"
    component = "namespace-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        # Upstream's nsControllerRateLimiter: retry a stuck namespace at least every minute.
        self.queue = RateLimitingQueue(default_controller_rate_limiter(max_delay=60.0),
                                       name=self.name)

    def setup(self) -> None:
        self.namespaces = self.factory.informer_for(Namespace)
        self.namespaces.add_event_handler(
            on_add=self._maybe_enqueue, on_update=lambda _old, new: self._maybe_enqueue(new),
            resync_period=self.options.namespace_sync_period)
        pods = self.factory.informer_for(Pod)
        pods.add_event_handler(on_delete=self._pod_deleted)

    def _maybe_enqueue(self, ns: Namespace) -> None:
        if ns.metadata.deletion_timestamp:
            self.enqueue(ns)

    def _pod_deleted(self, pod: Pod) -> None:
        ns = self.namespaces.lister.get(pod.namespace)
        if ns is not None and ns.metadata.deletion_timestamp:
            self.queue.add(pod.namespace)

    async def sync(self, key: str) -> None:
        cached = self.namespaces.lister.get(key)
        if cached is None or not cached.metadata.deletion_timestamp:
            return
        try:
            ns = await self.client.get("namespaces", key)
        except errors.NotFound:
            return
        if not (ns.get("metadata") or {}).get("deletionTimestamp"):
            return
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return  # our part is done; the apiserver deletes it when the rest is
        result = await self.delete_all_content(key)
        await self._update_conditions(ns, result)
        if result.errors:
            raise RuntimeError(f"namespace {key}: " + "; ".join(result.errors))
        if result.estimate > 0:
            delay = result.estimate // 2 + 1
            self.log.info("namespace %s: content remaining, checking again in %ds", key, delay)
            self.queue.add_after(key, delay)
            return
        if not result.done:
            raise RuntimeError(f"namespace {key}: unexpected items still remain: "
                               f"{sorted(result.remaining)}")
        await self._finalize(key)

    async def delete_all_content(self, namespace: str) -> ContentResult:
        result = ContentResult()
        for info in deletable_resources():
            try:
                await self._delete_resource(info, namespace, result)
            except errors.ApiError as e:
                result.errors.append(f"{group_resource(info)}: {e}")
        return result

    async def _delete_resource(self, info: ResourceInfo, ns: str, result: ContentResult) -> None:
        await self.client.delete_collection(info.name, ns, propagation_policy="Background")
        items, _ = await self.client.list_all(info.name, ns)
        if not items:
            return
        result.remaining[group_resource(info)] = len(items)
        with_finalizers = False
        for item in items:
            for f in (item.get("metadata") or {}).get("finalizers") or []:
                result.finalizers[f] = result.finalizers.get(f, 0) + 1
                with_finalizers = True
        estimate = pod_grace_estimate(items) if info.name == "pods" else 0
        if estimate == 0 and with_finalizers:
            estimate = FINALIZER_ESTIMATE_SECONDS
        if estimate == 0:
            result.errors.append(f"unexpected items still remain in namespace: {ns} for gvr: "
                                 f"{group_resource(info)}")
        result.estimate = max(result.estimate, estimate)

    async def _update_conditions(self, ns: Obj, result: ContentResult) -> None:
        status = ns.get("status") or {}
        existing = list(status.get("conditions") or [])
        new = merge_conditions(existing, result, now_rfc3339())
        if _same(existing, new):
            return
        body = {**ns, "status": {**status, "conditions": new}}
        try:
            await self.client.update_status("namespaces", body)
        except (errors.Conflict, errors.NotFound):
            pass  # the next pass writes them again

    async def _finalize(self, name: str) -> None:
        for _ in range(_FINALIZE_RETRIES):
            try:
                ns = await self.client.get("namespaces", name)
            except errors.NotFound:
                return
            spec = ns.setdefault("spec", {})
            spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != FINALIZER]
            try:
                await self.client.update("namespaces", ns, subresource="finalize")
            except errors.Conflict:
                continue
            except errors.NotFound:
                return
            self.log.info("namespace %s: all content deleted; finalized", name)
            return
        raise errors.Conflict(message=f"namespace {name}: could not finalize")
