"""Per-resource strategies: everything the registry does differently for one kind than another.

Why this module exists: upstream's generic store (`genericregistry.Store`) implements create,
update and delete once, for every resource, and asks a strategy object what differs
(`rest.RESTCreateStrategy`, `RESTUpdateStrategy`, `RESTDeleteStrategy`, one per kind in
pkg/registry/<group>/<kind>/strategy.go). tinykube does the same: apiserver/registry.py is the
generic store and never asks a resource's name; it calls `strategy_for(info)` and the hooks
below. A kind with rules of its own is one subclass here and one line in `_KINDS`; a kind
without any gets `Strategy`'s defaults.

The hooks, by verb:
- create: `prepare_for_create` (status a client may not set, defaults a kind starts with),
  `admission_plugins` (which mutating admission plugins apply to the kind), `validate`,
  `canonicalize`;
- update: `prepare_for_update` (what an update may not change: status, generation,
  allocations) and `validate_update`; a subresource update gets its own `UpdateStrategy`
  (`for_update`: `status` for every kind with one, namespaces' `finalize`), as upstream's
  podStatusStrategy or namespaceFinalizeStrategy; `allow_create_on_update`;
- delete: `protected`, `default_propagation`, `grace_period`, `deletion_state`, `finalized`;
- storage: `lease` (events expire), `allocates` (ClusterIP/NodePorts, through admission);
- subresources: `scale_of` / `set_replicas` (scale), and the pod strategy's binding and
  eviction transforms;
- lists and watches: `field_selectors` (the fields a selector may name; every field is read
  from the object's JSON at its own camelCase path, so one getter serves every kind).

Strategies are stateless and shared by every request: a hook may modify the object it is given
(the registry hands it the request's own copy) but never keeps it, and what a hook needs from
the server (an etcd lease, a cache) it is passed.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any, Protocol

from api import errors
from api.meta import LabelSelector, TypedObject, format_rfc3339, now_rfc3339
from api.proto import tinykube_pb2 as pb
from api.quantity import parse_quantity
from api.resources import RESOURCES, ResourceInfo
from api.selectors import from_label_selector, from_map
from api.validation import validate

Obj = dict[str, Any]

# The mutating admission plugins a strategy can ask for (upstream's plugin names); the
# Admission chain (apiserver/admission.py) runs them, with the server's configuration.
PLUGIN_SERVICE_ACCOUNT = "ServiceAccount"
PLUGIN_DEFAULT_TOLERATION_SECONDS = "DefaultTolerationSeconds"

NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


class LeaseSource(Protocol):
    """Hands out an etcd lease (apiserver.storage.LeaseReuse)."""

    async def lease(self) -> int: ...


def meta(obj: Obj) -> dict[str, Any]:
    md = obj.setdefault("metadata", {})
    assert isinstance(md, dict)
    return md


def conflict(info: ResourceInfo, name: str, why: str = "") -> errors.Conflict:
    """Upstream's Conflict: `Operation cannot be fulfilled on pods "x": <why>`."""
    why = why or ("the object has been modified; please apply your changes to the latest "
                  "version and try again")
    return errors.Conflict(
        message=f'Operation cannot be fulfilled on {info.qualified_name} "{name}": {why}',
        kind=info.name, name=name, group=info.group)


def mark_deleting(obj: Obj, finalizers: list[str], grace: int) -> Obj:
    """`obj` stamped as being deleted: deletionTimestamp `grace` seconds from now (only ever
    brought forward), the grace period and the finalizers it now waits for."""
    md = meta(obj)
    now = dt.datetime.now(dt.UTC)
    if not md.get("deletionTimestamp") or grace < int(md.get("deletionGracePeriodSeconds") or 0):
        md["deletionTimestamp"] = format_rfc3339(now + dt.timedelta(seconds=grace))
    md["deletionGracePeriodSeconds"] = grace
    if finalizers:
        md["finalizers"] = finalizers
    else:
        md.pop("finalizers", None)
    return obj


def qos_class(spec: Obj) -> str:
    """Kubernetes' QoS class: Guaranteed, Burstable or BestEffort, from requests and limits."""
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    any_set, guaranteed = False, True
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        if limits or requests:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in limits:
                guaranteed = False
            elif r in requests and parse_quantity(requests[r]) != parse_quantity(limits[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


# --- update strategies ---------------------------------------------------------------------


class UpdateStrategy:
    """How one path of update (the object itself, or one subresource) merges what the client
    sent into the stored object, and validates the result (upstream's RESTUpdateStrategy)."""

    # Whether `prepare_for_update` fills in the `new` it is given (so the registry hands it a
    # copy per attempt) or builds its answer apart (so `new` can be shared by the attempts).
    modifies_new = False
    # Whether the write's changes are recorded in managedFields (server-side apply's owners):
    # upstream records them for the object's own endpoint, not for subresources.
    records_managed_fields = False

    def __init__(self, info: ResourceInfo) -> None:
        self.info = info

    def prepare_for_update(self, new: Obj, old: Obj) -> Obj:
        """The object to store, from what the client sent (`new`) and what is stored (`old`,
        maybe the watch cache's own object: never modified)."""
        raise NotImplementedError

    def validate_update(self, new: Obj, old: Obj) -> None:
        """Raise Invalid unless `new` may replace `old`."""
        model = self.info.model.model_validate(new)
        self._raise(validate(self.info.kind, model, self.info.model.model_validate(old)), model)

    def _raise(self, causes: list[errors.Cause], model: TypedObject) -> None:
        if causes:
            raise errors.invalid(
                f"{self.info.kind}{'.' + self.info.group if self.info.group else ''}",
                model.metadata.name or "", causes)


class StatusStrategy(UpdateStrategy):
    """The `status` subresource: only status changes; everything else stays as stored (upstream's
    per-kind <kind>StatusStrategy, which are all this one for tinykube's kinds)."""

    def prepare_for_update(self, new: Obj, old: Obj) -> Obj:
        # Shallow: `old` may be the watch cache's own object, and only `status` (taken whole
        # from `new`) and the resourceVersion (in a metadata copy) differ from it.
        merged = {**old, "metadata": dict(meta(old))}
        merged["status"] = new.get("status")
        if merged["status"] is None:
            merged.pop("status")
        return merged

    def validate_update(self, new: Obj, old: Obj) -> None:
        # A status update changes nothing but `status`, and the update rules (immutable
        # fields, selectors) compare only what lies outside it: they are checked against the
        # new object itself, the same checks without parsing the stored object a second time.
        model = self.info.model.model_validate(new)
        self._raise(validate(self.info.kind, model, model), model)


class NamespaceFinalizeStrategy(UpdateStrategy):
    """namespaces/finalize: only spec.finalizers changes (the namespace controller removes
    `kubernetes` from it when the namespace's content is gone)."""

    def prepare_for_update(self, new: Obj, old: Obj) -> Obj:
        merged = copy.deepcopy(old)
        merged.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get(
            "finalizers") or []
        return merged


# --- the strategy of a resource --------------------------------------------------------------


class Strategy(UpdateStrategy):
    """Defaults for every kind; the update strategy of the object's own endpoint."""

    modifies_new = True
    records_managed_fields = True
    # AllowCreateOnUpdate: an update of a missing object creates it.
    allow_create_on_update = False
    # Whether admission allocates (and releases) cluster resources for its writes: a Service's
    # ClusterIP and NodePorts. Such writes copy the object per attempt, as allocation fills it in.
    allocates = False
    # The propagation policy of a delete that names none (DefaultGarbageCollectionPolicy):
    # "" keeps the object's own finalizers.
    default_propagation = ""
    # Whether a spec change bumps metadata.generation (kinds with a spec/status split that a
    # controller reconciles, and reports observedGeneration for).
    tracks_generation = False
    # Mutating admission plugins that apply to this kind's creates, in order.
    admission_plugins: tuple[str, ...] = ()

    def __init__(self, info: ResourceInfo) -> None:
        super().__init__(info)
        self.subresource_updates: dict[str, UpdateStrategy] = (
            {"status": StatusStrategy(info)} if self.has_status else {})

    # --- what discovery says, as the registry asks it --------------------------------------

    @property
    def namespace_scoped(self) -> bool:
        return self.info.namespaced

    @property
    def has_status(self) -> bool:
        """Whether status is the status subresource's alone."""
        return "status" in self.info.subresources

    @property
    def field_selectors(self) -> frozenset[str]:
        return self.info.field_selectors

    # --- create ----------------------------------------------------------------------------

    def prepare_for_create(self, obj: Obj) -> None:
        """Fill in what a new object starts with, and drop what a client may not set."""

    def validate(self, model: TypedObject) -> None:
        """Raise Invalid unless `model` may be created. Takes the decoded model (a create has
        it already: parsing the JSON again would double the cost)."""
        self._raise(validate(self.info.kind, model, None), model)

    def canonicalize(self, obj: Obj) -> None:
        """Normalize a validated object before it is stored (no kind needs it yet)."""

    # --- update ----------------------------------------------------------------------------

    def for_update(self, subresource: str) -> UpdateStrategy | None:
        """The update strategy of `subresource` ("" is the object itself), None if updates
        through it are not served."""
        return self if not subresource else self.subresource_updates.get(subresource)

    def prepare_for_update(self, new: Obj, old: Obj) -> Obj:
        """What a plain update may not change, restored from `old` into `new` (the request's
        own copy); the registry has already kept the system metadata."""
        if self.has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if self.tracks_generation and new.get("spec") != old.get("spec"):
            meta(new)["generation"] = int(meta(old).get("generation") or 1) + 1
        return new

    # --- delete ----------------------------------------------------------------------------

    def protected(self, name: str) -> bool:
        """Whether the object `name` may never be deleted."""
        return False

    def grace_period(self, obj: Obj, opts: pb.DeleteOptions) -> int:
        """Seconds the object lives on after a delete: everything goes at once by default."""
        return 0

    def deletion_state(self, obj: Obj, finalizers: list[str], grace: int) -> Obj | None:
        """`obj` (a copy of the stored object) as it is to be stored while it is being deleted,
        waiting for `finalizers` and `grace` seconds; None to remove it now."""
        if grace > 0 or finalizers:
            return mark_deleting(obj, finalizers, grace)
        return None

    def finalized(self, obj: Obj) -> bool:
        """Whether `obj`, about to be written, is being deleted with nothing left to wait for:
        then the write removes it instead."""
        md = meta(obj)
        return bool(md.get("deletionTimestamp")) and not md.get("finalizers")

    # --- storage ---------------------------------------------------------------------------

    async def lease(self, leases: LeaseSource) -> int:
        """The etcd lease the object's key rides on (0: none, it lives until deleted)."""
        return 0

    # --- scale -----------------------------------------------------------------------------

    def scale_of(self, obj: Obj) -> Obj:
        """The autoscaling/v1 Scale of `obj` (kinds with a scale subresource)."""
        raise errors.NotFound(message=f"the server could not find the requested resource "
                              f"({self.info.qualified_name}/scale)", kind=self.info.name)

    def set_replicas(self, obj: Obj, replicas: int) -> Obj:
        """A copy of `obj` scaled to `replicas`."""
        raise errors.NotFound(message=f"the server could not find the requested resource "
                              f"({self.info.qualified_name}/scale)", kind=self.info.name)


class CreateOnUpdateStrategy(Strategy):
    """Kinds that a client keeps up to date with PUT alone, as upstream lets it (Endpoints,
    Leases): an update of a missing object creates it."""

    allow_create_on_update = True


class StatusResetStrategy(Strategy):
    """Kinds whose status only controllers write: a create's status is dropped."""

    def prepare_for_create(self, obj: Obj) -> None:
        obj.pop("status", None)


class ScalableStrategy(StatusResetStrategy):
    """Deployments and ReplicaSets (apps/v1): a scale subresource over spec.replicas, and a
    generation their controllers report observing."""

    tracks_generation = True

    def selector(self, spec: Obj) -> str:
        """The pods' selector as a string, for Scale.status.selector: apps/v1 selectors are
        LabelSelectors."""
        return str(from_label_selector(LabelSelector.model_validate(spec.get("selector") or {})))

    def scale_of(self, obj: Obj) -> Obj:
        md, spec, status = meta(obj), obj.get("spec") or {}, obj.get("status") or {}
        return {
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                            "creationTimestamp") if k in md},
            "spec": {"replicas": int(spec.get("replicas") or 0)},
            "status": {"replicas": int(status.get("replicas") or 0),
                       "selector": self.selector(spec)},
        }

    def set_replicas(self, obj: Obj, replicas: int) -> Obj:
        new = copy.deepcopy(obj)
        new.setdefault("spec", {})["replicas"] = replicas
        return new


class ReplicationControllerStrategy(ScalableStrategy):
    """core/v1 ReplicationControllers: a map selector, and pods kept (orphaned) on a delete
    that names no policy, for backward compatibility, as upstream."""

    default_propagation = "Orphan"

    def selector(self, spec: Obj) -> str:
        return str(from_map(spec.get("selector") or {}))


class ServiceStrategy(StatusResetStrategy):
    """Services: a ClusterIP and NodePorts allocated on write (by admission, which claims them
    in the same etcd transaction), kept across updates that leave them out."""

    allow_create_on_update = True
    allocates = True

    def prepare_for_update(self, new: Obj, old: Obj) -> Obj:
        super().prepare_for_update(new, old)
        keep_allocations(new, old)
        return new


def keep_allocations(new: Obj, old: Obj) -> None:
    """An update that leaves clusterIP/nodePort empty keeps the allocated values (upstream's
    patchAllocatedValues), so `replace -f manifest.yaml` just works."""
    spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
    if spec.get("type") != "ExternalName" and not spec.get("clusterIP") and old_spec.get(
            "clusterIP"):
        spec["clusterIP"] = old_spec["clusterIP"]
        spec["clusterIPs"] = old_spec.get("clusterIPs") or [old_spec["clusterIP"]]
    old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                 for p in old_spec.get("ports") or []}
    if spec.get("type") in NODE_PORT_TYPES:
        for p in spec.get("ports") or []:
            if not p.get("nodePort"):
                np = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
                if np:
                    p["nodePort"] = np
        return
    # Leaving NodePort/LoadBalancer: fields that only meant something for the old type go
    # with it, unless the user set them anew (upstream's dropTypeDependentFields).
    for p in spec.get("ports") or []:
        if p.get("nodePort") and p["nodePort"] == old_ports.get(
                (p.get("port"), p.get("protocol", "TCP"))):
            p.pop("nodePort")
    if spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
        spec.pop("externalTrafficPolicy", None)


class EventStrategy(Strategy):
    """Events expire like upstream's --event-ttl: their keys ride on an etcd lease."""

    allow_create_on_update = True

    async def lease(self, leases: LeaseSource) -> int:
        return await leases.lease()


class NamespaceStrategy(Strategy):
    """Namespaces: created Active with the `kubernetes` finalizer; deleted by turning
    Terminating until the namespace controller has emptied them and finalized them (the
    `finalize` subresource); the system namespaces never go."""

    PROTECTED = frozenset({"default", "kube-system", "kube-node-lease", "kube-public"})

    def __init__(self, info: ResourceInfo) -> None:
        super().__init__(info)
        self.subresource_updates["finalize"] = NamespaceFinalizeStrategy(info)

    def prepare_for_create(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        spec["finalizers"] = spec.get("finalizers") or ["kubernetes"]
        obj["status"] = {"phase": "Active"}

    def prepare_for_update(self, new: Obj, old: Obj) -> Obj:
        super().prepare_for_update(new, old)
        # Only the `finalize` subresource changes these.
        new.setdefault("spec", {})["finalizers"] = (old.get("spec") or {}).get(
            "finalizers") or []
        return new

    def protected(self, name: str) -> bool:
        return name in self.PROTECTED

    def deletion_state(self, obj: Obj, finalizers: list[str], grace: int) -> Obj | None:
        # spec.finalizers hold a namespace as metadata.finalizers hold any object.
        if (obj.get("spec") or {}).get("finalizers") or finalizers:
            obj.setdefault("status", {})["phase"] = "Terminating"
            return mark_deleting(obj, finalizers, 0)
        return None

    def finalized(self, obj: Obj) -> bool:
        return super().finalized(obj) and not (obj.get("spec") or {}).get("finalizers")

    @staticmethod
    def terminating(obj: Obj) -> bool:
        """Whether the namespace `obj` takes no new content (NamespaceLifecycle admission)."""
        return bool((obj.get("metadata") or {}).get("deletionTimestamp")) or (
            obj.get("status") or {}).get("phase") == "Terminating"


class PodStrategy(Strategy):
    """Pods: created Pending with their QoS class, ServiceAccount and default tolerations
    (admission); deleted gracefully (their kubelet stops the containers, then deletes with
    grace 0); assigned to a node through pods/binding; evicted through pods/eviction."""

    admission_plugins = (PLUGIN_SERVICE_ACCOUNT, PLUGIN_DEFAULT_TOLERATION_SECONDS)

    def prepare_for_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}

    def grace_period(self, obj: Obj, opts: pb.DeleteOptions) -> int:
        spec, md = obj.get("spec") or {}, meta(obj)
        grace = opts.grace_period_seconds
        if grace < 0:
            grace = int(spec.get("terminationGracePeriodSeconds", 30))
        phase = (obj.get("status") or {}).get("phase")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0  # nothing runs it: no kubelet will ever confirm the stop
        current = md.get("deletionGracePeriodSeconds")
        if current is not None:
            grace = min(grace, int(current))  # a delete can shorten, never lengthen, the grace
        return grace

    def finalized(self, obj: Obj) -> bool:
        # A pod in graceful deletion is removed by its kubelet (delete with grace 0), not here.
        return super().finalized(obj) and int(
            meta(obj).get("deletionGracePeriodSeconds") or 0) == 0

    def binding_update(self, name: str, binding: Obj) -> Callable[[Obj], Obj]:
        """pods/binding: check the Binding, and return the change it makes to the pod.

        The one write that sets spec (nodeName) and status (PodScheduled) at once, which no
        update may: the registry applies it in its compare-and-swap loop with no update
        strategy, as upstream's BindingREST does its own GuaranteedUpdate. The change raises
        Conflict when the pod is gone to another node, being deleted, or another pod (uid).
        """
        target, md = binding.get("target"), binding.get("metadata")
        if not isinstance(target, dict) or not isinstance(md, dict | None):
            raise errors.BadRequest(message="a Binding must have an object `target` "
                                    "(and `metadata`)")
        node = target.get("name")
        if not node or not isinstance(node, str):
            raise errors.invalid("Binding", name, [errors.Cause(
                "target.name", "Required value", "FieldValueRequired")])
        if target.get("kind", "Node") not in ("Node", ""):
            raise errors.invalid("Binding", name, [errors.Cause(
                "target.kind", f'Unsupported value: "{target.get("kind")}": supported values: '
                '"Node"', "FieldValueNotSupported")])
        uid = (md or {}).get("uid")
        info = self.info

        def assign(cur: Obj) -> Obj:
            cur_md, spec = meta(cur), cur.get("spec") or {}
            if uid and uid != cur_md.get("uid"):
                raise conflict(info, name, f"Precondition failed: UID in precondition: {uid}, "
                               f"UID in object meta: {cur_md.get('uid')}")
            if cur_md.get("deletionTimestamp"):
                raise conflict(info, name, f"pod {name} is being deleted, cannot be assigned "
                               "to a host")
            if spec.get("nodeName"):
                raise conflict(info, name, f'pod {name} is already assigned to node '
                               f'"{spec["nodeName"]}"')
            # Copied only along the paths that change: the rest is shared with `cur` (maybe
            # the watch cache's own object) and only read, to be encoded.
            status = cur.get("status") or {}
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True",
                          "lastTransitionTime": now_rfc3339()})
            return {**cur, "metadata": dict(cur_md), "spec": {**spec, "nodeName": node},
                    "status": {**status, "conditions": conds}}

        return assign

    @staticmethod
    def with_disruption_target(pod: Obj) -> Obj:
        """A copy of `pod` with condition DisruptionTarget=True (EvictionByEvictionAPI), as
        upstream sets before an eviction deletes the pod (PodDisruptionConditions, GA 1.31), so
        the pod's owner can tell an eviction from a failure."""
        new = copy.deepcopy(pod)
        conds = (new.setdefault("status", {}).get("conditions") or [])
        old = next((c for c in conds if c.get("type") == "DisruptionTarget"), None)
        want = {"type": "DisruptionTarget", "status": "True",
                "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}
        if old is not None and all(old.get(k) == v for k, v in want.items()):
            return new
        since = old.get("lastTransitionTime") if old and old.get("status") == "True" else None
        new["status"]["conditions"] = [c for c in conds if c is not old] + [
            {**want, "lastTransitionTime": since or now_rfc3339()}]
        return new


# --- the table -----------------------------------------------------------------------------

# The kinds with rules of their own, by (resource, group); every other resource gets Strategy.
_KINDS: dict[tuple[str, str], type[Strategy]] = {
    ("pods", ""): PodStrategy,
    ("namespaces", ""): NamespaceStrategy,
    ("services", ""): ServiceStrategy,
    ("endpoints", ""): CreateOnUpdateStrategy,
    ("events", ""): EventStrategy,
    ("replicationcontrollers", ""): ReplicationControllerStrategy,
    ("replicasets", "apps"): ScalableStrategy,
    ("deployments", "apps"): ScalableStrategy,
    ("leases", "coordination.k8s.io"): CreateOnUpdateStrategy,
}

_STRATEGIES: dict[tuple[str, str], Strategy] = {
    (r.name, r.group): _KINDS.get((r.name, r.group), Strategy)(r) for r in RESOURCES.values()
}


def strategy_for(info: ResourceInfo) -> Strategy:
    """The strategy of the resource `info` describes."""
    key = (info.name, info.group)
    strategy = _STRATEGIES.get(key)
    if strategy is None:  # a resource outside the table (tests build their own): the defaults
        strategy = _STRATEGIES[key] = _KINDS.get(key, Strategy)(info)
    return strategy


def pod_strategy() -> PodStrategy:
    """Pods' strategy, for the pod subresources the registry serves (binding, eviction)."""
    strategy = _STRATEGIES[("pods", "")]
    assert isinstance(strategy, PodStrategy)
    return strategy


def namespace_strategy() -> NamespaceStrategy:
    """Namespaces' strategy, for NamespaceLifecycle admission."""
    strategy = _STRATEGIES[("namespaces", "")]
    assert isinstance(strategy, NamespaceStrategy)
    return strategy
