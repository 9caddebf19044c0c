"""Pure questions about pods, nodes and owners that several components ask alike.

The scheduler, the controllers, the hollow nodes and tkctl all need "is this pod ready", "who is
its controller", "does this toleration tolerate that taint", "what does this pod request". They
may not import each other, so the answers live here, next to the models, with upstream's
definitions (k8s.io/kubernetes/pkg/api/v1/pod, component-helpers' taint and resource helpers).
No I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

from api.core import Node, NodeCondition, Pod, PodCondition, Taint, Toleration
from api.meta import OwnerReference, TypedObject, parse_rfc3339
from api.quantity import cpu_millis, to_bytes

# Taints the node lifecycle controller manages, and the admission defaults that tolerate them.
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
NO_SCHEDULE, PREFER_NO_SCHEDULE, NO_EXECUTE = "NoSchedule", "PreferNoSchedule", "NoExecute"

# The label every pod of a Deployment's ReplicaSet carries (and its selector adds).
POD_TEMPLATE_HASH = "pod-template-hash"


# --- owners ---------------------------------------------------------------------------------

def controller_ref(obj: TypedObject) -> OwnerReference | None:
    """The ownerReference with `controller: true`, if any (metav1.GetControllerOf)."""
    for ref in obj.metadata.owner_references or []:
        if ref.controller:
            return ref
    return None


def new_controller_ref(owner: TypedObject) -> OwnerReference:
    """The ownerReference a controller puts on what it creates (blockOwnerDeletion set)."""
    return OwnerReference(api_version=owner.api_version or owner.API_VERSION,
                          kind=owner.kind or owner.KIND, name=owner.name,
                          uid=owner.metadata.uid or "", controller=True,
                          block_owner_deletion=True)


def is_terminating(obj: TypedObject) -> bool:
    return obj.metadata.deletion_timestamp is not None


# --- pod state ------------------------------------------------------------------------------

def pod_condition(pod: Pod, type_: str) -> PodCondition | None:
    for c in (pod.status.conditions if pod.status else None) or []:
        if c.type == type_:
            return c
    return None


def is_pod_ready(pod: Pod) -> bool:
    c = pod_condition(pod, "Ready")
    return c is not None and c.status == "True"


def is_pod_available(pod: Pod, min_ready_seconds: int, now: dt.datetime | None = None) -> bool:
    """Ready for at least `min_ready_seconds` (podutil.IsPodAvailable)."""
    c = pod_condition(pod, "Ready")
    if c is None or c.status != "True":
        return False
    if min_ready_seconds <= 0:
        return True
    if not c.last_transition_time:
        return False
    now = now or dt.datetime.now(dt.UTC)
    return parse_rfc3339(c.last_transition_time) + dt.timedelta(seconds=min_ready_seconds) <= now


def pod_phase(pod: Pod) -> str:
    return (pod.status.phase if pod.status else None) or "Pending"


def is_pod_active(pod: Pod) -> bool:
    """Counted by a ReplicaSet: not finished and not being deleted (controller.IsPodActive)."""
    return pod_phase(pod) not in ("Succeeded", "Failed") and not is_terminating(pod)


def is_scheduled(pod: Pod) -> bool:
    return bool(pod.spec and pod.spec.node_name)


# --- resources ------------------------------------------------------------------------------

def pod_requests(pod: Pod) -> tuple[int, int]:
    """(cpu millicores, memory bytes) the pod requests, as the scheduler counts them.

    The sum over app containers, and at least the largest init container (init containers run
    one at a time, before the app containers). A container with limits but no requests
    requests its limits (the API's defaulting, applied here too for objects stored before it).
    """
    return sum_containers(pod, _container_requests)


def sum_containers(pod: Pod, per_container: Callable[[Any], tuple[int, int]]) -> tuple[int, int]:
    """(cpu, memory) of a pod from `per_container(resources)`: summed over app containers,
    and at least the largest init container (they run one at a time, before the others)."""
    spec = pod.spec
    if spec is None:
        return 0, 0
    cpu = mem = 0
    for c in spec.containers:
        c_cpu, c_mem = per_container(c.resources)
        cpu, mem = cpu + c_cpu, mem + c_mem
    for c in spec.init_containers or []:
        c_cpu, c_mem = per_container(c.resources)
        cpu, mem = max(cpu, c_cpu), max(mem, c_mem)
    return cpu, mem


def _container_requests(res: Any) -> tuple[int, int]:
    if res is None:
        return 0, 0
    req = dict(res.limits or {})
    req.update(res.requests or {})
    cpu = cpu_millis(req["cpu"]) if "cpu" in req else 0
    mem = to_bytes(req["memory"]) if "memory" in req else 0
    return cpu, mem


def node_allocatable(node: Node) -> tuple[int, int, int]:
    """(cpu millicores, memory bytes, pods) the node offers to pods (allocatable, else capacity)."""
    st = node.status
    alloc = dict((st.capacity or {}) if st else {})
    alloc.update((st.allocatable or {}) if st else {})
    cpu = cpu_millis(alloc["cpu"]) if "cpu" in alloc else 0
    mem = to_bytes(alloc["memory"]) if "memory" in alloc else 0
    pods = int(to_bytes(alloc["pods"])) if "pods" in alloc else 0
    return cpu, mem, pods


# --- nodes and taints -----------------------------------------------------------------------

def node_condition(node: Node, type_: str) -> NodeCondition | None:
    for c in (node.status.conditions if node.status else None) or []:
        if c.type == type_:
            return c
    return None


def is_node_ready(node: Node) -> bool:
    c = node_condition(node, "Ready")
    return c is not None and c.status == "True"


def tolerates(tol: Toleration, taint: Taint) -> bool:
    """Toleration.ToleratesTaint: empty effect matches all effects, empty key with Exists matches
    all keys, operator defaults to Equal."""
    if tol.effect and tol.effect != taint.effect:
        return False
    op = tol.operator or "Equal"
    if not tol.key:
        return op == "Exists"
    if tol.key != taint.key:
        return False
    if op == "Exists":
        return True
    return (tol.value or "") == (taint.value or "")


def untolerated(taints: Iterable[Taint], tolerations: Iterable[Toleration],
                effects: Iterable[str]) -> list[Taint]:
    """The taints with one of `effects` that no toleration tolerates."""
    tols = list(tolerations)
    wanted = set(effects)
    return [t for t in taints
            if t.effect in wanted and not any(tolerates(tol, t) for tol in tols)]


def pod_tolerations(pod: Pod) -> list[Toleration]:
    return list((pod.spec.tolerations if pod.spec else None) or [])


def node_taints(node: Node) -> list[Taint]:
    return list((node.spec.taints if node.spec else None) or [])
