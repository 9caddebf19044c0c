"""kubectl's per-kind table columns (`kubectl get`), as pure functions of JSON objects and a clock.

Two components print the same tables: the apiserver answers kubectl's
`Accept: application/json;as=Table;g=meta.k8s.io;v=v1` with a `meta.k8s.io/v1` Table
(`api.tables`), and tkctl formats the objects it lists over gRPC itself. Components may not import
each other, so the one definition of every kind's columns lives here, next to the models: change a
column here and both kubectl and tkctl see it.

Each `Printer` is a transcription of upstream's kube-apiserver printers
(pkg/printers/internalversion/printers.go): the column definitions with upstream's names, types,
descriptions and priorities (priority 1 = the `-o wide` columns), and a function giving all of a
row's cells, wide ones included, because kube-apiserver always generates the wide row and lets the
client hide priority > 0 columns. Cells carry upstream's Go types (`int64(...)` becomes an int,
strings stay strings) so the JSON Table is the one kube-apiserver sends; a kind upstream prints
with no handler (Role, ClusterRole, the review kinds) gets `DEFAULT`, the generic registry's
DefaultTableConvertor (Name, Created At).

No I/O, nothing of ours beyond `api.meta`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from api.meta import parse_rfc3339

Obj = dict[str, Any]
# What a Table cell holds: Go's string, int64 or bool as JSON gives them back.
Cell = str | int | bool

NONE = "<none>"
UNKNOWN = "<unknown>"

# --- descriptions ---------------------------------------------------------------------------
# Upstream fills each column's description from the Go types' SwaggerDoc() (generated from the
# field comments in k8s.io/api and k8s.io/apimachinery); these are those strings, so that a
# client reading columnDefinitions (kubectl explain-like UIs, dashboards) sees the same text.

_DOC: dict[str, str] = {
    "ObjectMeta.name": "Name must be unique within a namespace. Is required when creating "
    "resources, although some resources may allow a client to request the generation of an "
    "appropriate name automatically. Name is primarily intended for creation idempotence and "
    "configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    "ObjectMeta.creationTimestamp": "CreationTimestamp is a timestamp representing the server "
    "time when this object was created. It is not guaranteed to be set in happens-before order "
    "across separate operations. Clients may not set this value. It is represented in RFC3339 "
    "form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    "PodStatus.podIP": "podIP address allocated to the pod. Routable at least within the "
    "cluster. Empty if not yet allocated.",
    "PodStatus.nominatedNodeName": "nominatedNodeName is set only when this pod preempts other "
    "pods on the node, but it cannot be scheduled right away as preemption victims receive their "
    "graceful termination periods. This field does not guarantee that the pod will be scheduled "
    "on this node. Scheduler may decide to place the pod elsewhere if other nodes become "
    "available sooner. Scheduler may also decide to give the resources on this node to a higher "
    "priority pod that is created after preemption. As a result, this field may be different "
    "than PodSpec.nodeName when the pod is scheduled.",
    "PodSpec.nodeName": "NodeName indicates in which node this pod is scheduled. If empty, this "
    "pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this "
    "field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. "
    "This field should not be used to express a desire for the pod to be scheduled on a "
    "specific node. "
    "https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename",
    "PodSpec.readinessGates": "If specified, all readiness gates will be evaluated for pod "
    "readiness. A pod is ready when all its containers are ready AND all conditions specified "
    'in the readiness gates have status equal to "True" More info: '
    "https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
    "ReplicationControllerSpec.replicas": "Replicas is the number of desired replicas. This is "
    "a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: "
    "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller"
    "#what-is-a-replicationcontroller",
    "ReplicationControllerSpec.selector": "Selector is a label query over pods that should match "
    "the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod "
    "template. Label keys and values that must match in order to be controlled by this "
    "replication controller, if empty defaulted to labels on Pod template. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    "ReplicationControllerStatus.replicas": "Replicas is the most recently observed number of "
    "replicas. More info: "
    "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller"
    "#what-is-a-replicationcontroller",
    "ReplicationControllerStatus.readyReplicas": "The number of ready replicas for this "
    "replication controller.",
    "ReplicaSetSpec.replicas": "Replicas is the number of desired pods. This is a pointer to "
    "distinguish between explicit zero and unspecified. Defaults to 1. More info: "
    "https://kubernetes.io/docs/concepts/workloads/controllers/replicaset",
    "ReplicaSetSpec.selector": "Selector is a label query over pods that should match the "
    "replica count. If the selector is empty, it is defaulted to the labels present on the pod "
    "template. Label keys and values that must match in order to be controlled by this replica "
    "set. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    "ReplicaSetStatus.replicas": "Replicas is the most recently observed number of "
    "non-terminating pods. More info: "
    "https://kubernetes.io/docs/concepts/workloads/controllers/replicaset",
    "ReplicaSetStatus.readyReplicas": "The number of non-terminating pods targeted by this "
    "ReplicaSet with a Ready Condition.",
    "DeploymentStatus.updatedReplicas": "Total number of non-terminating pods targeted by this "
    "deployment that have the desired template spec.",
    "DeploymentStatus.availableReplicas": "Total number of available non-terminating pods "
    "(ready for at least minReadySeconds) targeted by this deployment.",
    "DeploymentSpec.selector": "Label selector for pods. Existing ReplicaSets whose pods are "
    "selected by this will be the ones affected by this deployment.",
    "ServiceSpec.type": "type determines how the Service is exposed. Defaults to ClusterIP. "
    "Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" "
    "allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are "
    "determined by the selector or if that is not specified, by manual construction of an "
    "Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is "
    "allocated and the endpoints are published as a set of endpoints rather than a virtual IP. "
    "\"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same "
    "endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external "
    "load-balancer (if supported in the current cloud) which routes to the same endpoints as the "
    "clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several "
    "other fields do not apply to ExternalName services. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/"
    "#publishing-services-service-types",
    "ServiceSpec.clusterIP": "clusterIP is the IP address of the service and is usually "
    "assigned randomly. If an address is specified manually, is in-range (as per system "
    "configuration), and is not in use, it will be allocated to the service; otherwise creation "
    "of the service will fail. This field may not be changed through updates unless the type "
    "field is also being changed to ExternalName (which requires this field to be blank) or the "
    "type field is being changed from ExternalName (in which case this field may optionally be "
    "specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid "
    "IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is "
    "useful when direct endpoint connections are preferred and proxying is not required.  Only "
    "applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when "
    "creating a Service of type ExternalName, creation will fail. This field will be wiped when "
    "updating a Service to type ExternalName. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/"
    "#virtual-ips-and-service-proxies",
    "ServiceSpec.externalIPs": "externalIPs is a list of IP addresses for which nodes in the "
    "cluster will also accept traffic for this service.  These IPs are not managed by "
    "Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this "
    "IP.  A common example is external load-balancers that are not part of the Kubernetes "
    "system.",
    "ServiceSpec.ports": "The list of ports that are exposed by this service. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/"
    "#virtual-ips-and-service-proxies",
    "ServiceSpec.selector": "Route service traffic to pods with label keys and values matching "
    "this selector. If empty or not present, the service is assumed to have an external process "
    "managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, "
    "NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/",
    "Endpoints.subsets": "The set of all endpoints is the union of all subsets. Addresses are "
    "placed into subsets according to the IPs they share. A single address with multiple ports, "
    "some of which are ready and some of which are not (because they come from different "
    "containers) will result in the address being displayed in different subsets for the "
    "different ports. No address will appear in both Addresses and NotReadyAddresses in the "
    "same subset. Sets of addresses and ports that comprise a service.",
    "NodeSystemInfo.kubeletVersion": "Kubelet Version reported by the node.",
    "NodeSystemInfo.osImage": "OS Image reported by the node from /etc/os-release (e.g. Debian "
    "GNU/Linux 7 (wheezy)).",
    "NodeSystemInfo.kernelVersion": "Kernel Version reported by the node from 'uname -r' (e.g. "
    "3.16.0-0.bpo.4-amd64).",
    "NodeSystemInfo.containerRuntimeVersion": "ContainerRuntime Version reported by the node "
    "through runtime remote API (e.g. containerd://1.4.2).",
    "NodeStatus.addresses": "List of addresses reachable to the node. Queried from cloud "
    "provider, if available. More info: "
    "https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is "
    "declared as mergeable, but the merge key is not sufficiently unique, which can cause data "
    "corruption when it is merged. Callers should instead use a full-replacement patch. See "
    "https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change "
    "during the lifetime of a Node. However, there are some exceptions where this may not be "
    "possible, such as Pods that inherit a Node's address in its own status or consumers of the "
    "downward API (status.hostIP).",
    "Event.lastTimestamp": "The time at which the most recent occurrence of this event was "
    "recorded.",
    "Event.type": "Type of this event (Normal, Warning), new types could be added in the future",
    "Event.reason": "This should be a short, machine understandable string that gives the "
    "reason for the transition into the object's current status.",
    "Event.involvedObject": "The object that this event is about.",
    "Event.source": "The component reporting this event. Should be a short machine "
    "understandable string.",
    "Event.message": "A human-readable description of the status of this operation.",
    "Event.firstTimestamp": "The time at which the event was first recorded. (Time of server "
    "receipt is in TypeMeta.)",
    "Event.count": "The number of times this event has occurred.",
    "ObjectReference.fieldPath": "If referring to a piece of an object instead of an entire "
    "object, this string should contain a valid JSON/Go field access statement, such as "
    "desiredState.manifest.containers[2]. For example, if the object reference is to a "
    "container within a pod, this would take on a value like: \"spec.containers{name}\" (where "
    "\"name\" refers to the name of the container that triggered the event) or if no container "
    "name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax "
    "is chosen only to have some well-defined way of referencing a part of an object.",
    "Secret.type": "Used to facilitate programmatic handling of secret data. More info: "
    "https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
    "Secret.data": "Data contains the secret data. Each key must consist of alphanumeric "
    "characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded "
    "string, representing the arbitrary (possibly non-string) data value here. Described in "
    "https://tools.ietf.org/html/rfc4648#section-4",
    "ServiceAccount.secrets": "Secrets is a list of the secrets in the same namespace that pods "
    "running using this ServiceAccount are allowed to use. Pods are only limited to this list "
    "if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set "
    "to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since "
    "v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should "
    "not be used to find auto-generated service account token secrets for use outside of pods. "
    "Instead, tokens can be requested directly using the TokenRequest API, or service account "
    "token secrets can be manually created. More info: "
    "https://kubernetes.io/docs/concepts/configuration/secret",
    "ConfigMap.data": "Data contains the configuration data. Each key must consist of "
    "alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use "
    "the BinaryData field. The keys stored in Data must not overlap with the keys in the "
    "BinaryData field, this is enforced during validation process.",
    "LeaseSpec.holderIdentity": "holderIdentity contains the identity of the holder of a "
    "current lease. If Coordinated Leader Election is used, the holder identity must be equal "
    "to the elected LeaseCandidate.metadata.name field.",
    "RoleBinding.roleRef": "roleRef can reference a Role in the current namespace or a "
    "ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer "
    "must return an error.",
    "ClusterRoleBinding.roleRef": "roleRef can only reference a ClusterRole in the global "
    "namespace. If the RoleRef cannot be resolved, the Authorizer must return an error.",
}


# --- ages -------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: `5s`, `3m2s`, `15m`, `4h10m`, `20h`, `2d5h`,
    `9d`, `3y`."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return _two(minutes, "m", s % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return _two(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return _two(days, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return _two(days // 365, "y", days % 365, "d")
    return f"{days // 365}y"


def _two(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}" if small == 0 else f"{big}{big_unit}{small}{small_unit}"


def parse_time(timestamp: Any) -> _dt.datetime | None:
    """An RFC 3339 Time or MicroTime, or None when it is missing or unreadable (Go's zero)."""
    if not timestamp:
        return None
    try:
        return parse_rfc3339(str(timestamp))
    except ValueError:
        return None


def since(when: _dt.datetime | None, now: _dt.datetime) -> str:
    """Upstream's translateTimestampSince: the age of a time, `<unknown>` for the zero time."""
    if when is None:
        return UNKNOWN
    return human_duration((now - when).total_seconds())


def age(timestamp: str | None, now: _dt.datetime) -> str:
    """The AGE cell for an RFC 3339 timestamp; `<unknown>` when it is missing or unreadable."""
    return since(parse_time(timestamp), now)


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


# --- small accessors ------------------------------------------------------------------------


def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def name_of(obj: Obj) -> str:
    return str(meta(obj).get("name", ""))


def created(obj: Obj) -> str | None:
    value = meta(obj).get("creationTimestamp")
    return str(value) if value else None


def _age_of(obj: Obj, now: _dt.datetime) -> str:
    return age(created(obj), now)


def _int(value: Any, default: int = 0) -> int:
    """A Go int32/int64 field read from JSON: absent (nil) is the zero value."""
    return default if value is None else int(value)


def _condition(st: Obj, ctype: str) -> str:
    """The status of condition `ctype` ("True", "False", "Unknown"), "" when absent."""
    for cond in st.get("conditions") or []:
        if cond.get("type") == ctype:
            return str(cond.get("status", "Unknown"))
    return ""


def format_labels(labels: dict[str, str] | None) -> str:
    """labels.FormatLabels: `a=1,b=2` sorted by key, `<none>` when empty."""
    if not labels:
        return NONE
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _requirement(key: str, op: str, values: list[str]) -> str | None:
    """One labels.Requirement as its String() prints it; None for an operator it refuses."""
    listed = ",".join(sorted(values))  # String() normalizes value order
    forms = {"In": f"{key} in ({listed})", "NotIn": f"{key} notin ({listed})",
             "Exists": key, "DoesNotExist": f"!{key}"}
    return forms.get(op)


def label_selector_string(selector: Obj | None) -> str | None:
    """metav1.LabelSelectorAsSelector(...).String(): requirements sorted by key, `""` for a
    nil or empty selector, None for a selector it cannot convert (an unknown operator)."""
    if not selector:
        return ""
    reqs: list[tuple[str, str]] = [(str(k), f"{k}={v}")
                                   for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key = str(expr.get("key", ""))
        text = _requirement(key, str(expr.get("operator", "")),
                            [str(v) for v in expr.get("values") or []])
        if text is None:
            return None
        reqs.append((key, text))
    # internalSelector.Add sorts by key; Python's sort is stable where Go's is not, which only
    # matters for two requirements on one key.
    return ",".join(text for _, text in sorted(reqs, key=lambda r: r[0]))


def format_label_selector(selector: Obj | None) -> str:
    """metav1.FormatLabelSelector: the selector's String(), `<none>` when empty."""
    text = label_selector_string(selector)
    if text is None:
        return "<error>"
    return text or NONE


def _containers_cells(template: Obj | None) -> list[Cell]:
    """layoutContainerCells: container names and images, each comma-joined."""
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    return [",".join(str(c.get("name", "")) for c in containers),
            ",".join(str(c.get("image", "")) for c in containers)]


# --- columns and printers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One metav1.TableColumnDefinition: what kubectl shows as a header (upper-cased)."""

    name: str
    type: str = "string"  # OpenAPI type: string, integer, number, boolean, date
    description: str = ""
    priority: int = 0  # 0 = always shown, 1 = only with `-o wide`
    format: str = ""  # "name" marks the column kubectl prefixes with `kind/` for several kinds

    @property
    def header(self) -> str:
        """How kubectl's table printer writes the column's name: upper case."""
        return self.name.upper()

    def definition(self) -> Obj:
        # Every field, empty ones too: TableColumnDefinition's JSON tags have no omitempty.
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


def _no_conditions(_obj: Obj) -> list[Obj]:
    return []


@dataclass(frozen=True)
class Printer:
    """One kind's table: its columns, and every cell of a row in their order (wide ones too)."""

    columns: tuple[Column, ...]
    cells: Callable[[Obj, _dt.datetime], list[Cell]]
    # metav1.TableRowCondition entries for a row (only pods have them: Completed on a pod that
    # has succeeded or failed, which clients may use to hide finished pods).
    conditions: Callable[[Obj], list[Obj]] = _no_conditions


NAME = Column("Name", format="name", description=_DOC["ObjectMeta.name"])
AGE = Column("Age", description=_DOC["ObjectMeta.creationTimestamp"])
_CONTAINERS = Column("Containers", priority=1,
                     description="Names of each container in the template.")
_IMAGES = Column("Images", priority=1,
                 description="Images referenced by each container in the template.")


# --- pods -----------------------------------------------------------------------------------


class PodSummary(NamedTuple):
    """What printPod derives from a pod: READY's two numbers, STATUS, RESTARTS and when the
    last restart ended."""

    ready: int
    total: int
    reason: str
    restarts: int
    last_restart: _dt.datetime | None


def _restartable(container: Obj | None) -> bool:
    """A sidecar: an init container with `restartPolicy: Always` (IsRestartableInitContainer)."""
    return bool(container) and (container or {}).get("restartPolicy") == "Always"


def _exit_text(term: Obj) -> str:
    if term.get("signal"):
        return f"Signal:{int(term['signal'])}"
    return f"ExitCode:{_int(term.get('exitCode'))}"


def _finished(cs: Obj) -> _dt.datetime | None:
    """When the container's previous run ended (lastState.terminated.finishedAt)."""
    term = (cs.get("lastState") or {}).get("terminated")
    return parse_time(term.get("finishedAt")) if term is not None else None


def _later(a: _dt.datetime | None, b: _dt.datetime | None) -> _dt.datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


def pod_status(pod: Obj) -> PodSummary:
    """printPod's READY, STATUS and RESTARTS, as upstream computes them (sidecars included)."""
    st, sp = status(pod), spec(pod)
    phase = str(st.get("phase") or "")
    reason = str(st.get("reason") or phase)
    for cond in st.get("conditions") or []:
        # A pod held back by schedulingGates says so instead of Pending.
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    init_specs = list(sp.get("initContainers") or [])
    by_name = {str(c.get("name", "")): c for c in init_specs}
    total = len(sp.get("containers") or []) + sum(1 for c in init_specs if _restartable(c))
    ready = restarts = sidecar_restarts = 0
    last: _dt.datetime | None = None
    sidecar_last: _dt.datetime | None = None
    initializing = False
    for i, cs in enumerate(st.get("initContainerStatuses") or []):
        count, finished = _int(cs.get("restartCount")), _finished(cs)
        restarts += count
        last = _later(last, finished)
        sidecar = _restartable(by_name.get(str(cs.get("name", ""))))
        if sidecar:
            sidecar_restarts += count
            sidecar_last = _later(sidecar_last, finished)
        state = cs.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting") or {}
        if term is not None and _int(term.get("exitCode")) == 0:
            continue
        if sidecar and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        if term is not None:
            reason = "Init:" + (term.get("reason") or _exit_text(term))
        elif waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    if not initializing or _condition(st, "Initialized") == "True":
        # The app containers' restarts replace the init containers' (sidecars' stay).
        restarts, last = sidecar_restarts, sidecar_last
        has_running = False
        for cs in reversed(st.get("containerStatuses") or []):
            restarts += _int(cs.get("restartCount"))
            last = _later(last, _finished(cs))
            state = cs.get("state") or {}
            term, waiting = state.get("terminated"), state.get("waiting") or {}
            if waiting.get("reason"):
                reason = waiting["reason"]
            elif term is not None:
                reason = term.get("reason") or _exit_text(term)
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        # A pod whose last container completed while another still runs is not "Completed".
        if reason == "Completed" and has_running:
            reason = "Running" if _condition(st, "Ready") == "True" else "NotReady"
    if meta(pod).get("deletionTimestamp"):
        if st.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    return PodSummary(ready, total, str(reason), restarts, last)


def _pod_cells(pod: Obj, now: _dt.datetime) -> list[Cell]:
    s = pod_status(pod)
    restarts = str(s.restarts)
    if s.restarts and s.last_restart is not None:
        restarts = f"{s.restarts} ({since(s.last_restart, now)} ago)"
    st, sp = status(pod), spec(pod)
    ips = st.get("podIPs") or []
    # Upstream reads podIPs[0]; podIP is its mirror, read when an older writer set only it.
    ip = str((ips[0] or {}).get("ip") or "") if ips else str(st.get("podIP") or "")
    gates = sp.get("readinessGates") or []
    gate_cell = NONE
    if gates:
        ok = sum(1 for g in gates if _condition(st, str(g.get("conditionType", ""))) == "True")
        gate_cell = f"{ok}/{len(gates)}"
    return [name_of(pod), f"{s.ready}/{s.total}", s.reason, restarts, _age_of(pod, now),
            ip or NONE, str(sp.get("nodeName") or NONE),
            str(st.get("nominatedNodeName") or NONE), gate_cell]


_POD_SUCCEEDED = [{"type": "Completed", "status": "True", "reason": "Succeeded",
                   "message": "The pod has completed successfully."}]
_POD_FAILED = [{"type": "Completed", "status": "True", "reason": "Failed",
                "message": "The pod failed."}]


def _pod_conditions(pod: Obj) -> list[Obj]:
    phase = status(pod).get("phase")
    conds = _POD_SUCCEEDED if phase == "Succeeded" else _POD_FAILED if phase == "Failed" else []
    return [dict(c) for c in conds]


POD = Printer((
    NAME,
    Column("Ready", description="The aggregate readiness state of this pod for accepting "
           "traffic."),
    Column("Status", description="The aggregate status of the containers in this pod."),
    # A string since 1.22: "2 (5s ago)" says when the last restart was.
    Column("Restarts", description="The number of times the containers in this pod have been "
           "restarted and when the last container in this pod has restarted."),
    AGE,
    Column("IP", priority=1, description=_DOC["PodStatus.podIP"]),
    Column("Node", priority=1, description=_DOC["PodSpec.nodeName"]),
    Column("Nominated Node", priority=1, description=_DOC["PodStatus.nominatedNodeName"]),
    Column("Readiness Gates", priority=1, description=_DOC["PodSpec.readinessGates"]),
), _pod_cells, _pod_conditions)


# --- workloads ------------------------------------------------------------------------------


def _replicas(obj: Obj) -> int:
    # spec.replicas defaults to 1 (the apiserver fills it; a bare manifest may not have it).
    return _int(spec(obj).get("replicas"), 1)


def _deployment_cells(d: Obj, now: _dt.datetime) -> list[Cell]:
    st = status(d)
    selector = label_selector_string(spec(d).get("selector"))
    return [name_of(d), f"{_int(st.get('readyReplicas'))}/{_replicas(d)}",
            _int(st.get("updatedReplicas")), _int(st.get("availableReplicas")), _age_of(d, now),
            *_containers_cells(spec(d).get("template")),
            "<invalid>" if selector is None else selector]


DEPLOYMENT = Printer((
    NAME,
    Column("Ready", description="Number of the pod with ready state"),
    Column("Up-to-date", description=_DOC["DeploymentStatus.updatedReplicas"]),
    Column("Available", description=_DOC["DeploymentStatus.availableReplicas"]),
    AGE, _CONTAINERS, _IMAGES,
    Column("Selector", priority=1, description=_DOC["DeploymentSpec.selector"]),
), _deployment_cells)


def _replica_set_cells(rs: Obj, now: _dt.datetime) -> list[Cell]:
    st = status(rs)
    return [name_of(rs), _replicas(rs), _int(st.get("replicas")), _int(st.get("readyReplicas")),
            _age_of(rs, now), *_containers_cells(spec(rs).get("template")),
            format_label_selector(spec(rs).get("selector"))]


def _replication_controller_cells(rc: Obj, now: _dt.datetime) -> list[Cell]:
    cells = _replica_set_cells(rc, now)
    # A ReplicationController's selector is a plain label map, printed with FormatLabels.
    cells[-1] = format_labels(spec(rc).get("selector"))
    return cells


def _replica_columns(doc: str) -> tuple[Column, ...]:
    return (
        NAME,
        Column("Desired", "integer", _DOC[f"{doc}Spec.replicas"]),
        Column("Current", "integer", _DOC[f"{doc}Status.replicas"]),
        Column("Ready", "integer", _DOC[f"{doc}Status.readyReplicas"]),
        AGE, _CONTAINERS, _IMAGES,
        Column("Selector", priority=1, description=_DOC[f"{doc}Spec.selector"]),
    )


REPLICA_SET = Printer(_replica_columns("ReplicaSet"), _replica_set_cells)
REPLICATION_CONTROLLER = Printer(_replica_columns("ReplicationController"),
                                 _replication_controller_cells)


# --- services and endpoints -----------------------------------------------------------------


def service_external_ip(svc: Obj) -> str:
    """getServiceExternalIP (wide, as the apiserver always prints): LoadBalancer ingress
    addresses (sorted, deduplicated) then spec.externalIPs."""
    sp = spec(svc)
    kind = sp.get("type") or "ClusterIP"  # the apiserver defaults it; a bare manifest may not
    external = [str(ip) for ip in sp.get("externalIPs") or []]
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or NONE
    if kind == "LoadBalancer":
        ingress = (status(svc).get("loadBalancer") or {}).get("ingress") or []
        lb = sorted({str(i.get("ip") or i.get("hostname")) for i in ingress
                     if i.get("ip") or i.get("hostname")})
        return ",".join([*lb, *external]) or "<pending>"
    if kind == "ExternalName":
        return str(sp.get("externalName") or "")
    return UNKNOWN


def service_ports(svc: Obj) -> str:
    """makePortString: `80/TCP`, `80:30080/TCP` with a node port; `<none>` without ports."""
    cells = []
    for p in spec(svc).get("ports") or []:
        proto = p.get("protocol") or "TCP"
        node_port = _int(p.get("nodePort"))
        cells.append(f"{p.get('port')}:{node_port}/{proto}" if node_port > 0
                     else f"{p.get('port')}/{proto}")
    return ",".join(cells) or NONE


def _service_cells(svc: Obj, now: _dt.datetime) -> list[Cell]:
    sp = spec(svc)
    ips = sp.get("clusterIPs") or []
    # clusterIPs[0] as upstream; clusterIP mirrors it for writers that set only the old field.
    cluster_ip = str(ips[0]) if ips else str(sp.get("clusterIP") or "")
    return [name_of(svc), str(sp.get("type") or "ClusterIP"), cluster_ip or NONE,
            service_external_ip(svc), service_ports(svc), _age_of(svc, now),
            format_labels(sp.get("selector"))]


SERVICE = Printer((
    NAME,
    Column("Type", description=_DOC["ServiceSpec.type"]),
    Column("Cluster-IP", description=_DOC["ServiceSpec.clusterIP"]),
    Column("External-IP", description=_DOC["ServiceSpec.externalIPs"]),
    Column("Port(s)", description=_DOC["ServiceSpec.ports"]),
    AGE,
    Column("Selector", priority=1, description=_DOC["ServiceSpec.selector"]),
), _service_cells)


def _host_port(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"  # net.JoinHostPort


def format_endpoints(ep: Obj, limit: int = 3) -> str:
    """formatEndpoints: `10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more...`; `<none>` without
    subsets, and empty when the subsets hold no ready address (as upstream)."""
    subsets = ep.get("subsets") or []
    if not subsets:
        return NONE
    shown: list[str] = []
    count = 0
    for subset in subsets:
        addresses = [str(a.get("ip", "")) for a in subset.get("addresses") or []]
        ports = subset.get("ports") or []
        # A headless service may have no ports: then the bare addresses.
        pairs = addresses if not ports else [
            _host_port(ip, p.get("port")) for p in ports for ip in addresses]
        for pair in pairs:
            if len(shown) < limit:
                shown.append(pair)
            count += 1
    text = ",".join(shown)
    return f"{text} + {count - limit} more..." if count > limit else text


ENDPOINTS = Printer((
    NAME, Column("Endpoints", description=_DOC["Endpoints.subsets"]), AGE,
), lambda ep, now: [name_of(ep), format_endpoints(ep), _age_of(ep, now)])


# --- nodes ----------------------------------------------------------------------------------


def node_status(node: Obj) -> str:
    """printNode's STATUS: `Ready` when its Ready condition is True, `NotReady` when it is False
    or Unknown (a node that stopped reporting), `Unknown` with no condition; then
    `,SchedulingDisabled` when cordoned."""
    ready = _condition(status(node), "Ready")
    cell = "Ready" if ready == "True" else "NotReady" if ready else "Unknown"
    if spec(node).get("unschedulable"):
        cell += ",SchedulingDisabled"
    return cell


def node_roles(node: Obj) -> str:
    """findNodeRoles: `node-role.kubernetes.io/<role>` labels and `kubernetes.io/role=<role>`."""
    roles = set()
    for key, value in (meta(node).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            roles.add(key.split("/", 1)[1])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(r for r in roles if r)) or NONE


def _node_address(node: Obj, kind: str) -> str:
    for a in status(node).get("addresses") or []:
        if a.get("type") == kind:
            return str(a.get("address") or "")
    return NONE


def _node_cells(node: Obj, now: _dt.datetime) -> list[Cell]:
    info = status(node).get("nodeInfo") or {}
    return [name_of(node), node_status(node), node_roles(node), _age_of(node, now),
            str(info.get("kubeletVersion") or ""),
            _node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
            str(info.get("osImage") or UNKNOWN), str(info.get("kernelVersion") or UNKNOWN),
            str(info.get("containerRuntimeVersion") or UNKNOWN)]


NODE = Printer((
    NAME,
    Column("Status", description="The status of the node"),
    Column("Roles", description="The roles of the node"),
    AGE,
    Column("Version", description=_DOC["NodeSystemInfo.kubeletVersion"]),
    Column("Internal-IP", priority=1, description=_DOC["NodeStatus.addresses"]),
    Column("External-IP", priority=1, description=_DOC["NodeStatus.addresses"]),
    Column("OS-Image", priority=1, description=_DOC["NodeSystemInfo.osImage"]),
    Column("Kernel-Version", priority=1, description=_DOC["NodeSystemInfo.kernelVersion"]),
    Column("Container-Runtime", priority=1,
           description=_DOC["NodeSystemInfo.containerRuntimeVersion"]),
), _node_cells)


# --- events ---------------------------------------------------------------------------------


def event_source(ev: Obj) -> str:
    """formatEventSource: `component, host`, falling back to the events.k8s.io fields
    (reportingComponent, reportingInstance) that newer reporters fill instead."""
    src = ev.get("source") or {}
    component = src.get("component") or ev.get("reportingComponent") or ""
    instance = src.get("host") or ev.get("reportingInstance") or ""
    return f"{component}, {instance}" if instance else str(component)


def event_object(ev: Obj) -> str:
    """The OBJECT cell: `pod/web-1`, or the bare kind when the event names no object."""
    inv = ev.get("involvedObject") or {}
    kind = str(inv.get("kind", "")).lower()
    return f"{kind}/{inv['name']}" if inv.get("name") else kind


def _event_cells(ev: Obj, now: _dt.datetime) -> list[Cell]:
    first = age(ev.get("firstTimestamp"), now) if ev.get("firstTimestamp") else age(
        ev.get("eventTime"), now)
    last = age(ev.get("lastTimestamp"), now) if ev.get("lastTimestamp") else first
    count = _int(ev.get("count"))
    series = ev.get("series")
    if series is not None:
        last = age(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1  # singleton events of the newer API carry no count
    inv = ev.get("involvedObject") or {}
    return [last, str(ev.get("type") or ""), str(ev.get("reason") or ""), event_object(ev),
            str(inv.get("fieldPath") or ""), event_source(ev),
            str(ev.get("message") or "").strip(), first, count, name_of(ev)]


# Events have no leading NAME: kubectl shows when, what and why, the name only with -o wide.
EVENT = Printer((
    Column("Last Seen", description=_DOC["Event.lastTimestamp"]),
    Column("Type", description=_DOC["Event.type"]),
    Column("Reason", description=_DOC["Event.reason"]),
    Column("Object", description=_DOC["Event.involvedObject"]),
    Column("Subobject", priority=1, description=_DOC["ObjectReference.fieldPath"]),
    Column("Source", priority=1, description=_DOC["Event.source"]),
    Column("Message", description=_DOC["Event.message"]),
    Column("First Seen", priority=1, description=_DOC["Event.firstTimestamp"]),
    Column("Count", priority=1, description=_DOC["Event.count"]),
    Column("Name", priority=1, format="name", description=_DOC["ObjectMeta.name"]),
), _event_cells)


# --- the small kinds ------------------------------------------------------------------------

NAMESPACE = Printer((
    NAME, Column("Status", description="The status of the namespace"), AGE,
), lambda ns, now: [name_of(ns), str(status(ns).get("phase") or ""), _age_of(ns, now)])

CONFIG_MAP = Printer((
    NAME, Column("Data", description=_DOC["ConfigMap.data"]), AGE,
), lambda cm, now: [name_of(cm), len(cm.get("data") or {}) + len(cm.get("binaryData") or {}),
                    _age_of(cm, now)])

# DATA counts `data` only: the apiserver merges write-only stringData into it.
SECRET = Printer((
    NAME, Column("Type", description=_DOC["Secret.type"]),
    Column("Data", description=_DOC["Secret.data"]), AGE,
), lambda s, now: [name_of(s), str(s.get("type") or ""), len(s.get("data") or {}),
                   _age_of(s, now)])

SERVICE_ACCOUNT = Printer((
    NAME, Column("Secrets", description=_DOC["ServiceAccount.secrets"]), AGE,
), lambda sa, now: [name_of(sa), len(sa.get("secrets") or []), _age_of(sa, now)])

LEASE = Printer((
    NAME, Column("Holder", description=_DOC["LeaseSpec.holderIdentity"]), AGE,
), lambda lease, now: [name_of(lease), str(spec(lease).get("holderIdentity") or ""),
                       _age_of(lease, now)])


def binding_subjects(b: Obj) -> tuple[list[str], list[str], list[str]]:
    """rbac.SubjectsStrings: users, groups and `namespace/name` service accounts."""
    users: list[str] = []
    groups: list[str] = []
    sas: list[str] = []
    for s in b.get("subjects") or []:
        kind, name = s.get("kind"), str(s.get("name") or "")
        if kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
        elif kind == "ServiceAccount":
            sas.append(f"{s.get('namespace') or ''}/{name}")
    return users, groups, sas


def _binding_cells(b: Obj, now: _dt.datetime) -> list[Cell]:
    ref = b.get("roleRef") or {}
    return [name_of(b), f"{ref.get('kind', '')}/{ref.get('name', '')}", _age_of(b, now),
            *(", ".join(part) for part in binding_subjects(b))]


def _binding_printer(kind: str, where: str) -> Printer:
    return Printer((
        NAME, Column("Role", description=_DOC[f"{kind}.roleRef"]), AGE,
        Column("Users", priority=1, description=f"Users in the {where}"),
        Column("Groups", priority=1, description=f"Groups in the {where}"),
        Column("ServiceAccounts", priority=1, description=f"ServiceAccounts in the {where}"),
    ), _binding_cells)


ROLE_BINDING = _binding_printer("RoleBinding", "roleBinding")
CLUSTER_ROLE_BINDING = _binding_printer("ClusterRoleBinding", "clusterRoleBinding")


# --- the default --------------------------------------------------------------------------


def created_at(obj: Obj) -> str:
    """The `Created At` cell: creationTimestamp as RFC 3339 UTC, Go's zero time when unset."""
    when = parse_time(created(obj))
    if when is None:
        return created(obj) or "0001-01-01T00:00:00Z"
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# The generic registry's DefaultTableConvertor (k8s.io/apiserver rest/table.go), what kubectl
# shows for a kind with no printer of its own (`kubectl get roles`: NAME, CREATED AT).
DEFAULT = Printer((
    NAME, Column("Created At", "date", _DOC["ObjectMeta.creationTimestamp"]),
), lambda obj, _now: [name_of(obj), created_at(obj)])


# Keyed by kind. Role, ClusterRole and the review kinds are absent on purpose: upstream has no
# printer for them, so they get DEFAULT.
PRINTERS: dict[str, Printer] = {
    "Pod": POD,
    "Deployment": DEPLOYMENT,
    "ReplicaSet": REPLICA_SET,
    "ReplicationController": REPLICATION_CONTROLLER,
    "Service": SERVICE,
    "Endpoints": ENDPOINTS,
    "Node": NODE,
    "Event": EVENT,
    "Namespace": NAMESPACE,
    "ConfigMap": CONFIG_MAP,
    "Secret": SECRET,
    "ServiceAccount": SERVICE_ACCOUNT,
    "Lease": LEASE,
    "RoleBinding": ROLE_BINDING,
    "ClusterRoleBinding": CLUSTER_ROLE_BINDING,
}


def printer_for(kind: str) -> Printer:
    """The printer the apiserver uses for `kind`: its own, or the default table."""
    return PRINTERS.get(kind, DEFAULT)
