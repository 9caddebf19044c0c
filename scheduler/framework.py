"""What the scheduler knows about a pod and a node, computed once per change, read per decision.

Filters and scores run for every (pod, node) pair: at 1,000 nodes that is hundreds of thousands of
checks per second, so nothing in that loop may parse a quantity, walk a pydantic model or build a
list. `PodInfo` is built once when a pod event arrives (requests in millicores and bytes, host
ports, tolerations, selector terms, controller uid); `NodeInfo` keeps a node's allocatable
resources, labels and taints next to running sums of what the pods on it (bound or assumed)
request, as upstream's framework.NodeInfo does. No I/O.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from api.core import Node, NodeSelectorTerm, Pod, Taint, Toleration
from api.podutil import (
    NO_EXECUTE,
    NO_SCHEDULE,
    PREFER_NO_SCHEDULE,
    TAINT_UNSCHEDULABLE,
    controller_ref,
    node_allocatable,
    node_taints,
    pod_requests,
    pod_tolerations,
    sum_containers,
    tolerates,
)
from api.quantity import cpu_millis, to_bytes
from api.selectors import (
    DOES_NOT_EXIST,
    EXISTS,
    GREATER_THAN,
    IN,
    LESS_THAN,
    NOT_IN,
    Requirement,
    Selector,
)

# Upstream's schedutil.DefaultMilliCPURequest / DefaultMemoryRequest: what a container that
# requests nothing counts as when scoring, so that many such pods do not pile onto one node.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

# A host port as the NodePorts filter sees it: (protocol, port) -> host IPs using it.
PortKey = tuple[str, int]
HostPort = tuple[str, str, int]  # (protocol, host IP, port)

_UNSCHEDULABLE_TAINT = Taint(key=TAINT_UNSCHEDULABLE, effect=NO_SCHEDULE)
ANY_IP = "0.0.0.0"


def pod_key(pod: Pod) -> str:
    return f"{pod.metadata.namespace or ''}/{pod.metadata.name or ''}"


def _nonzero_requests(pod: Pod) -> tuple[int, int]:
    """Requests with each container's missing cpu/memory counted as the defaults (for scores)."""
    return sum_containers(pod, _nonzero_container)


def _nonzero_container(res: object) -> tuple[int, int]:
    requests = getattr(res, "requests", None) or {}
    cpu = cpu_millis(requests["cpu"]) if "cpu" in requests else DEFAULT_MILLI_CPU_REQUEST
    mem = to_bytes(requests["memory"]) if "memory" in requests else DEFAULT_MEMORY_REQUEST
    return cpu, mem


# NodeSelectorOperator -> the label selector operator that means the same.
_NODE_SELECTOR_OPS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS,
                      "DoesNotExist": DOES_NOT_EXIST, "Gt": GREATER_THAN, "Lt": LESS_THAN}
# The only field a NodeSelectorTerm's matchFields may name.
NODE_NAME_FIELD = "metadata.name"


@dataclass(frozen=True)
class NodeTerm:
    """A NodeSelectorTerm as selectors over labels and the node name, converted once per pod
    (upstream's NodeSelectorRequirementsAsSelector) so that matching walks no model."""

    labels: Selector
    fields: Selector | None

    def matches(self, labels: dict[str, str], node_name: str) -> bool:
        return self.labels.matches(labels) and (
            self.fields is None or self.fields.matches({NODE_NAME_FIELD: node_name}))


def node_term(term: NodeSelectorTerm) -> NodeTerm | None:
    """The term's selectors; None for a term that matches no node (empty, an unknown operator,
    a Gt/Lt without a value, a field other than metadata.name)."""
    exprs, fields = term.match_expressions or [], term.match_fields or []
    if not exprs and not fields:
        return None
    reqs: list[Requirement] = []
    for r in [*exprs, *fields]:
        op = _NODE_SELECTOR_OPS.get(r.operator)
        values = tuple(r.values or ())
        if op is None or (op in (GREATER_THAN, LESS_THAN) and not values):
            return None
        reqs.append(Requirement(r.key, op, values))
    label_reqs, field_reqs = reqs[:len(exprs)], reqs[len(exprs):]
    if any(r.key != NODE_NAME_FIELD for r in field_reqs):
        return None
    return NodeTerm(Selector(label_reqs), Selector(field_reqs) if field_reqs else None)


def _host_ports(pod: Pod) -> tuple[HostPort, ...]:
    out: list[HostPort] = []
    for c in (pod.spec.containers if pod.spec else None) or []:
        for p in c.ports or []:
            if p.host_port:
                out.append((p.protocol or "TCP", p.host_ip or ANY_IP, p.host_port))
    return tuple(out)


@dataclass(eq=False)
class PodInfo:
    """A pod with everything filters and scores need, precomputed (framework.PodInfo)."""

    pod: Pod
    key: str
    uid: str
    cpu: int
    mem: int
    nz_cpu: int
    nz_mem: int
    priority: int
    host_ports: tuple[HostPort, ...]
    tolerations: list[Toleration]
    tolerates_unschedulable: bool
    node_selector: dict[str, str]
    required_terms: list[NodeTerm] | None  # None: no required affinity; []: no node matches
    preferred_terms: list[tuple[int, NodeTerm]]
    prefer_tolerations: list[Toleration]
    owner_uid: str | None
    node_name: str

    @classmethod
    def of(cls, pod: Pod) -> PodInfo:
        spec = pod.spec
        cpu, mem = pod_requests(pod)
        nz_cpu, nz_mem = _nonzero_requests(pod)
        tols = pod_tolerations(pod)
        affinity = spec.affinity.node_affinity if spec and spec.affinity else None
        required = affinity.required_during_scheduling_ignored_during_execution \
            if affinity else None
        preferred = affinity.preferred_during_scheduling_ignored_during_execution \
            if affinity else None
        ref = controller_ref(pod)
        return cls(
            pod=pod, key=pod_key(pod), uid=pod.metadata.uid or "", cpu=cpu, mem=mem,
            nz_cpu=nz_cpu, nz_mem=nz_mem, priority=(spec.priority if spec else None) or 0,
            host_ports=_host_ports(pod), tolerations=tols,
            tolerates_unschedulable=any(tolerates(t, _UNSCHEDULABLE_TAINT) for t in tols),
            node_selector=dict((spec.node_selector if spec else None) or {}),
            required_terms=_node_terms(required.node_selector_terms) if required else None,
            preferred_terms=[(t.weight, nt) for t in preferred or []
                             if t.weight and (nt := node_term(t.preference)) is not None],
            # TaintToleration's score only looks at tolerations that can tolerate
            # PreferNoSchedule (that effect, or every effect).
            prefer_tolerations=[t for t in tols if t.effect in (None, "", PREFER_NO_SCHEDULE)],
            owner_uid=ref.uid if ref is not None else None,
            node_name=(spec.node_name if spec else None) or "",
        )


def _node_terms(terms: list[NodeSelectorTerm]) -> list[NodeTerm]:
    """The terms that can match some node (the others cannot change an OR of terms)."""
    return [nt for t in terms if (nt := node_term(t)) is not None]


@dataclass(eq=False)
class NodeInfo:
    """A node and the pods on it (bound or assumed), with running sums (framework.NodeInfo).

    `node` is None while pods are still accounted to a node whose object is gone (upstream keeps
    such an entry until its last pod leaves, so the sums stay right if the node comes back).
    """

    name: str
    node: Node | None = None
    labels: dict[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    hard_taints: list[Taint] = field(default_factory=list)  # NoSchedule and NoExecute
    prefer_taints: list[Taint] = field(default_factory=list)  # PreferNoSchedule
    alloc_cpu: int = 0
    alloc_mem: int = 0
    alloc_pods: int = 0
    req_cpu: int = 0
    req_mem: int = 0
    nz_cpu: int = 0
    nz_mem: int = 0
    pods: dict[str, PodInfo] = field(default_factory=dict)
    used_ports: dict[PortKey, Counter[str]] = field(default_factory=dict)
    owner_counts: Counter[str] = field(default_factory=Counter)

    def set_node(self, node: Node | None) -> bool:
        """Take the node's new state; True if anything a filter or score reads changed."""
        before = self.signature()
        self.node = node
        if node is None:
            return before != self.signature()
        self.labels = dict(node.metadata.labels or {})
        self.unschedulable = bool(node.spec and node.spec.unschedulable)
        taints = node_taints(node)
        self.hard_taints = [t for t in taints if t.effect in (NO_SCHEDULE, NO_EXECUTE)]
        self.prefer_taints = [t for t in taints if t.effect == PREFER_NO_SCHEDULE]
        self.alloc_cpu, self.alloc_mem, self.alloc_pods = node_allocatable(node)
        return before != self.signature()

    def signature(self) -> tuple[object, ...]:
        """What scheduling decisions depend on: a change here may make pending pods fit."""
        return (self.node is not None, self.labels, self.unschedulable,
                [(t.key, t.value, t.effect) for t in self.hard_taints + self.prefer_taints],
                self.alloc_cpu, self.alloc_mem, self.alloc_pods)

    def add_pod(self, p: PodInfo) -> None:
        self.pods[p.key] = p
        self._account(p, 1)

    def remove_pod(self, key: str) -> PodInfo | None:
        p = self.pods.pop(key, None)
        if p is not None:
            self._account(p, -1)
        return p

    def _account(self, p: PodInfo, sign: int) -> None:
        self.req_cpu += sign * p.cpu
        self.req_mem += sign * p.mem
        self.nz_cpu += sign * p.nz_cpu
        self.nz_mem += sign * p.nz_mem
        for proto, ip, port in p.host_ports:
            ips = self.used_ports.setdefault((proto, port), Counter())
            ips[ip] += sign
            if ips[ip] <= 0:
                del ips[ip]
                if not ips:
                    del self.used_ports[(proto, port)]
        if p.owner_uid is not None:
            self.owner_counts[p.owner_uid] += sign
            if self.owner_counts[p.owner_uid] <= 0:
                del self.owner_counts[p.owner_uid]

    def ports_conflict(self, host_ports: tuple[HostPort, ...]) -> bool:
        """HostPortInfo.CheckConflict: same protocol and port, and either IP is 0.0.0.0 or both
        are the same IP."""
        for proto, ip, port in host_ports:
            used = self.used_ports.get((proto, port))
            if not used:
                continue
            if ip == ANY_IP or ip in used or ANY_IP in used:
                return True
        return False
