"""How tkctl shows objects: kubectl's per-kind tables, `-o json|yaml|name|wide`, and ages.

Everything here is a pure function of JSON dicts and a clock, so each column can be tested from a
sample object. Column choice and cell wording follow kubectl's printers
(pkg/printers/internalversion) and the table layout follows its tabwriter settings (min width 6,
padding 3, remembered widths so that rows streamed by `get -w` stay aligned with the header
printed first).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from api.meta import parse_rfc3339

Obj = dict[str, Any]
Row = list[str]

NONE = "<none>"
UNKNOWN = "<unknown>"
OUTPUT_FORMATS = ("json", "yaml", "wide", "name")

# kubectl's printers.GetNewTabWriter: minwidth 6, padding 3.
_MIN_WIDTH = 6
_PADDING = 3


# --- ages -------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """kubectl's duration.HumanDuration: `5s`, `3m2s`, `15m`, `4h10m`, `20h`, `2d5h`, `9d`, `3y`."""
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


def age(timestamp: str | None, now: _dt.datetime) -> str:
    """The AGE cell for an RFC 3339 timestamp; `<unknown>` when it is missing or unreadable."""
    if not timestamp:
        return UNKNOWN
    try:
        then = parse_rfc3339(timestamp)
    except ValueError:
        return UNKNOWN
    return human_duration((now - then).total_seconds())


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


def group_of(obj: Obj) -> str:
    api_version = str(obj.get("apiVersion", ""))
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def kind_ref(obj: Obj) -> str:
    """`deployment.apps` or `pod`: how kubectl names a kind in `-o name` and messages."""
    kind = str(obj.get("kind", "")).lower()
    group = group_of(obj)
    return f"{kind}.{group}" if group else kind


def resource_name(obj: Obj) -> str:
    """`-o name`: `deployment.apps/nginx`, `pod/web-1`."""
    return f"{kind_ref(obj)}/{name_of(obj)}"


def format_labels(labels: dict[str, str] | None) -> str:
    if not labels:
        return NONE
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def format_selector(selector: Obj | None) -> str:
    """A metav1.LabelSelector as kubectl prints it: `app=nginx,tier in (a,b)`."""
    if not selector:
        return NONE
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        parts.append(_format_requirement(expr))
    return ",".join(parts) or NONE


def _format_requirement(expr: Obj) -> str:
    key, op = expr.get("key", ""), expr.get("operator", "")
    values = ",".join(expr.get("values") or [])
    if op == "Exists":
        return key
    if op == "DoesNotExist":
        return f"!{key}"
    return f"{key} {op.lower()} ({values})"


def _count(value: Any) -> str:
    return str(int(value or 0))


def _containers(obj: Obj) -> list[Obj]:
    template = spec(obj).get("template") or {}
    return list((template.get("spec") or {}).get("containers") or [])


def _container_cols(obj: Obj) -> Row:
    containers = _containers(obj)
    names = ",".join(str(c.get("name", "")) for c in containers)
    images = ",".join(str(c.get("image", "")) for c in containers)
    return [names, images, format_selector(_selector(obj))]


def _selector(obj: Obj) -> Obj | None:
    sel = spec(obj).get("selector")
    if sel and "matchLabels" not in sel and "matchExpressions" not in sel:
        return {"matchLabels": sel}  # ReplicationController's map selector
    return sel if isinstance(sel, dict) else None


# --- per-kind rows ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KindTable:
    """Columns for one kind: the AGE-style row, and the extra `-o wide` columns."""

    headers: tuple[str, ...]
    row: Callable[[Obj, _dt.datetime], Row]
    wide_headers: tuple[str, ...] = ()
    wide: Callable[[Obj], Row] = lambda _obj: []


def pod_status(pod: Obj) -> tuple[int, int, str, int]:
    """(ready containers, total containers, STATUS reason, restarts), as kubectl's printPod."""
    st = status(pod)
    reason = str(st.get("reason") or st.get("phase") or "")
    restarts = 0
    reason, initializing, restarts = _init_status(pod, reason)
    ready = 0
    if not initializing:
        ready, reason, restarts = _container_status(pod, reason)
    if meta(pod).get("deletionTimestamp"):
        reason = "Unknown" if st.get("reason") == "NodeLost" else "Terminating"
    total = len(spec(pod).get("containers") or [])
    return ready, total, reason, restarts


def _init_status(pod: Obj, reason: str) -> tuple[str, bool, int]:
    statuses = status(pod).get("initContainerStatuses") or []
    n_init = len(spec(pod).get("initContainers") or [])
    restarts = 0
    for i, cs in enumerate(statuses):
        restarts += int(cs.get("restartCount") or 0)
        state = cs.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting")
        if term and int(term.get("exitCode") or 0) == 0:
            continue
        if term:
            reason = "Init:" + (term.get("reason") or _exit_text(term))
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{n_init}"
        return reason, True, restarts
    return reason, False, restarts


def _exit_text(term: Obj) -> str:
    if term.get("signal"):
        return f"Signal:{term['signal']}"
    return f"ExitCode:{int(term.get('exitCode') or 0)}"


def _container_status(pod: Obj, reason: str) -> tuple[int, str, int]:
    ready = restarts = 0
    has_running = False
    for cs in reversed(status(pod).get("containerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        state = cs.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif term:
            reason = term.get("reason") or _exit_text(term)
        elif cs.get("ready") and state.get("running") is not None:
            has_running = True
            ready += 1
    if reason == "Completed" and has_running:
        reason = "Running" if _condition(status(pod), "Ready") == "True" else "NotReady"
    return ready, reason, restarts


def _condition(st: Obj, ctype: str) -> str:
    for cond in st.get("conditions") or []:
        if cond.get("type") == ctype:
            return str(cond.get("status", "Unknown"))
    return ""


def _last_restart(pod: Obj) -> str | None:
    finished = [
        str(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt") or "")
        for cs in (status(pod).get("containerStatuses") or [])
    ]
    finished = [f for f in finished if f]
    return max(finished) if finished else None


def _pod_row(pod: Obj, now: _dt.datetime) -> Row:
    ready, total, reason, restarts = pod_status(pod)
    restarts_cell = str(restarts)
    last = _last_restart(pod)
    if restarts and last:
        restarts_cell = f"{restarts} ({age(last, now)} ago)"
    return [f"{ready}/{total}", reason, restarts_cell, age(created(pod), now)]


def _pod_wide(pod: Obj) -> Row:
    st, sp = status(pod), spec(pod)
    gates = sp.get("readinessGates") or []
    gate_cell = NONE
    if gates:
        ok = sum(1 for g in gates if _condition(st, g.get("conditionType", "")) == "True")
        gate_cell = f"{ok}/{len(gates)}"
    return [
        st.get("podIP") or NONE, sp.get("nodeName") or NONE,
        st.get("nominatedNodeName") or NONE, gate_cell,
    ]


def _deployment_row(d: Obj, now: _dt.datetime) -> Row:
    st = status(d)
    desired = spec(d).get("replicas", 1)
    return [
        f"{_count(st.get('readyReplicas'))}/{_count(desired)}",
        _count(st.get("updatedReplicas")), _count(st.get("availableReplicas")),
        age(created(d), now),
    ]


def _replica_row(rs: Obj, now: _dt.datetime) -> Row:
    st = status(rs)
    return [
        _count(spec(rs).get("replicas", 1)), _count(st.get("replicas")),
        _count(st.get("readyReplicas")), age(created(rs), now),
    ]


def _service_row(svc: Obj, now: _dt.datetime) -> Row:
    sp = spec(svc)
    return [
        str(sp.get("type") or "ClusterIP"), str(sp.get("clusterIP") or NONE),
        service_external_ip(svc), service_ports(svc), age(created(svc), now),
    ]


def service_external_ip(svc: Obj) -> str:
    sp = spec(svc)
    kind = sp.get("type") or "ClusterIP"
    external = list(sp.get("externalIPs") or [])
    if kind == "ExternalName":
        return str(sp.get("externalName") or NONE)
    if kind == "LoadBalancer":
        ingress = (status(svc).get("loadBalancer") or {}).get("ingress") or []
        ips = [str(i.get("ip") or i.get("hostname")) for i in ingress
               if i.get("ip") or i.get("hostname")]
        return ",".join([*ips, *external]) or "<pending>"
    return ",".join(external) or NONE


def service_ports(svc: Obj) -> str:
    cells = []
    for p in spec(svc).get("ports") or []:
        proto = p.get("protocol") or "TCP"
        node_port = p.get("nodePort")
        cells.append(f"{p.get('port')}:{node_port}/{proto}" if node_port
                     else f"{p.get('port')}/{proto}")
    return ",".join(cells) or NONE


def node_status(node: Obj) -> str:
    """kubectl's STATUS of a node: `Ready` when its Ready condition is True, `NotReady` when
    it is False or Unknown (a node that stopped reporting), `Unknown` with no condition."""
    ready = _condition(status(node), "Ready")
    cell = "Ready" if ready == "True" else "NotReady" if ready else "Unknown"
    if spec(node).get("unschedulable"):
        cell += ",SchedulingDisabled"
    return cell


def node_roles(node: Obj) -> str:
    roles = set()
    for key, value in (meta(node).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            roles.add(key.split("/", 1)[1])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(r for r in roles if r)) or NONE


def _node_row(node: Obj, now: _dt.datetime) -> Row:
    info = status(node).get("nodeInfo") or {}
    return [node_status(node), node_roles(node), age(created(node), now),
            str(info.get("kubeletVersion") or "")]


def _node_address(node: Obj, kind: str) -> str:
    for a in status(node).get("addresses") or []:
        if a.get("type") == kind:
            return str(a.get("address") or NONE)
    return NONE


def _node_wide(node: Obj) -> Row:
    info = status(node).get("nodeInfo") or {}
    return [
        _node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
        str(info.get("osImage") or UNKNOWN), str(info.get("kernelVersion") or UNKNOWN),
        str(info.get("containerRuntimeVersion") or UNKNOWN),
    ]


def format_endpoints(ep: Obj, limit: int = 3) -> str:
    """`10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more...` as kubectl's formatEndpoints."""
    shown: list[str] = []
    count = 0
    for subset in ep.get("subsets") or []:
        addresses = [str(a.get("ip", "")) for a in subset.get("addresses") or []]
        ports = subset.get("ports") or []
        pairs = list(addresses) if not ports else [
            _host_port(ip, p.get("port")) for p in ports for ip in addresses
        ]
        for pair in pairs:
            if len(shown) < limit:
                shown.append(pair)
            count += 1
    text = ",".join(shown)
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or NONE


def _host_port(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _endpoints_row(ep: Obj, now: _dt.datetime) -> Row:
    return [format_endpoints(ep), age(created(ep), now)]


def event_last_seen(ev: Obj) -> str | None:
    series = ev.get("series") or {}
    return (series.get("lastObservedTime") or ev.get("lastTimestamp") or ev.get("eventTime")
            or ev.get("firstTimestamp") or created(ev))


def event_object(ev: Obj) -> str:
    inv = ev.get("involvedObject") or ev.get("regarding") or {}
    return f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}"


def event_source(ev: Obj) -> str:
    src = ev.get("source") or {}
    component = src.get("component") or ev.get("reportingComponent") or ""
    host = src.get("host") or ""
    return ", ".join(x for x in (component, host) if x)


def _event_row(ev: Obj, now: _dt.datetime) -> Row:
    return [
        age(event_last_seen(ev), now), str(ev.get("type") or ""), str(ev.get("reason") or ""),
        event_object(ev), str(ev.get("message") or "").strip().replace("\n", " "),
    ]


def _event_wide(ev: Obj) -> Row:
    inv = ev.get("involvedObject") or {}
    return [str(inv.get("fieldPath") or ""), event_source(ev) or NONE,
            str(ev.get("count") or 1), name_of(ev)]


def _namespace_row(ns: Obj, now: _dt.datetime) -> Row:
    return [str(status(ns).get("phase") or "Active"), age(created(ns), now)]


def _configmap_row(cm: Obj, now: _dt.datetime) -> Row:
    n = len(cm.get("data") or {}) + len(cm.get("binaryData") or {})
    return [str(n), age(created(cm), now)]


def _secret_row(s: Obj, now: _dt.datetime) -> Row:
    n = len(s.get("data") or {}) + len(s.get("stringData") or {})
    return [str(s.get("type") or "Opaque"), str(n), age(created(s), now)]


def _sa_row(sa: Obj, now: _dt.datetime) -> Row:
    return [str(len(sa.get("secrets") or [])), age(created(sa), now)]


def _lease_row(lease: Obj, now: _dt.datetime) -> Row:
    return [str(spec(lease).get("holderIdentity") or ""), age(created(lease), now)]


def _role_row(role: Obj, now: _dt.datetime) -> Row:
    # kubectl prints roles' creation time as a timestamp, not an age.
    return [str(created(role) or "")]


def _binding_row(b: Obj, now: _dt.datetime) -> Row:
    ref = b.get("roleRef") or {}
    return [f"{ref.get('kind', '')}/{ref.get('name', '')}", age(created(b), now)]


def binding_subjects(b: Obj) -> tuple[list[str], list[str], list[str]]:
    """Users, groups and `namespace/name` service accounts of a (Cluster)RoleBinding."""
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


def _binding_wide(b: Obj) -> Row:
    return [", ".join(part) for part in binding_subjects(b)]


def _generic_row(obj: Obj, now: _dt.datetime) -> Row:
    return [age(created(obj), now)]


_WORKLOAD_WIDE = ("CONTAINERS", "IMAGES", "SELECTOR")

TABLES: dict[str, KindTable] = {
    "Pod": KindTable(("READY", "STATUS", "RESTARTS", "AGE"), _pod_row,
                     ("IP", "NODE", "NOMINATED NODE", "READINESS GATES"), _pod_wide),
    "Deployment": KindTable(("READY", "UP-TO-DATE", "AVAILABLE", "AGE"), _deployment_row,
                            _WORKLOAD_WIDE, _container_cols),
    "ReplicaSet": KindTable(("DESIRED", "CURRENT", "READY", "AGE"), _replica_row,
                            _WORKLOAD_WIDE, _container_cols),
    "ReplicationController": KindTable(("DESIRED", "CURRENT", "READY", "AGE"), _replica_row,
                                       _WORKLOAD_WIDE, _container_cols),
    "Service": KindTable(("TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"), _service_row,
                         ("SELECTOR",),
                         lambda s: [format_labels(spec(s).get("selector"))]),
    "Node": KindTable(("STATUS", "ROLES", "AGE", "VERSION"), _node_row,
                      ("INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION",
                       "CONTAINER-RUNTIME"), _node_wide),
    "Namespace": KindTable(("STATUS", "AGE"), _namespace_row),
    "Endpoints": KindTable(("ENDPOINTS", "AGE"), _endpoints_row),
    "Event": KindTable(("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"), _event_row,
                       ("SUBOBJECT", "SOURCE", "COUNT", "NAME"), _event_wide),
    "ConfigMap": KindTable(("DATA", "AGE"), _configmap_row),
    "Secret": KindTable(("TYPE", "DATA", "AGE"), _secret_row),
    "ServiceAccount": KindTable(("SECRETS", "AGE"), _sa_row),
    "Lease": KindTable(("HOLDER", "AGE"), _lease_row),
    "Role": KindTable(("CREATED AT",), _role_row),
    "ClusterRole": KindTable(("CREATED AT",), _role_row),
    "RoleBinding": KindTable(("ROLE", "AGE"), _binding_row,
                             ("USERS", "GROUPS", "SERVICEACCOUNTS"), _binding_wide),
    "ClusterRoleBinding": KindTable(("ROLE", "AGE"), _binding_row,
                                    ("USERS", "GROUPS", "SERVICEACCOUNTS"), _binding_wide),
}
GENERIC = KindTable(("AGE",), _generic_row)


# --- tables -----------------------------------------------------------------------------------


@dataclass
class TableOptions:
    """What decorates the rows: `-o wide`, `-A`, `--show-labels`, `--no-headers`, kind prefix."""

    wide: bool = False
    with_namespace: bool = False
    show_labels: bool = False
    no_headers: bool = False
    with_kind: bool = False
    label_columns: list[str] = field(default_factory=list)  # -L app,tier


def headers_for(kind: str, opts: TableOptions) -> Row:
    table = TABLES.get(kind, GENERIC)
    cols = ["NAME", *table.headers]
    if kind == "Event":
        cols = list(table.headers)  # events have no NAME column (it is in -o wide)
    if opts.wide:
        cols += table.wide_headers
    if opts.with_namespace:
        cols.insert(0, "NAMESPACE")
    cols += [key.rsplit("/", 1)[-1].upper() for key in opts.label_columns]
    if opts.show_labels:
        cols.append("LABELS")
    return cols


def row_for(obj: Obj, opts: TableOptions, now: _dt.datetime) -> Row:
    kind = str(obj.get("kind", ""))
    table = TABLES.get(kind, GENERIC)
    name = resource_name(obj) if opts.with_kind else name_of(obj)
    cells = table.row(obj, now) if kind == "Event" else [name, *table.row(obj, now)]
    if opts.wide:
        cells += table.wide(obj)
    if opts.with_namespace:
        cells.insert(0, str(meta(obj).get("namespace") or ""))
    labels = meta(obj).get("labels") or {}
    cells += [str(labels.get(key, "")) for key in opts.label_columns]
    if opts.show_labels:
        cells.append(format_labels(meta(obj).get("labels")))
    return cells


@dataclass
class TableWriter:
    """Go's tabwriter with RememberWidths: columns never shrink between calls to `format`."""

    widths: list[int] = field(default_factory=list)

    def format(self, rows: Iterable[Row]) -> list[str]:
        rows = list(rows)
        for row in rows:
            for i, cell in enumerate(row[:-1]):
                need = max(_MIN_WIDTH, len(cell) + _PADDING)
                if i >= len(self.widths):
                    self.widths.append(need)
                else:
                    self.widths[i] = max(self.widths[i], need)
        return [self._line(row) for row in rows]

    def _line(self, row: Row) -> str:
        if not row:
            return ""
        padded = [cell.ljust(self.widths[i]) for i, cell in enumerate(row[:-1])]
        return "".join(padded) + row[-1]


def format_table(
    objs: list[Obj], opts: TableOptions, now: _dt.datetime, writer: TableWriter | None = None,
    *, headers: bool = True,
) -> list[str]:
    """The lines of one kind's table (header first unless `--no-headers`)."""
    kind = str(objs[0].get("kind", "")) if objs else ""
    rows = [row_for(o, opts, now) for o in objs]
    if headers and not opts.no_headers:
        rows.insert(0, headers_for(kind, opts))
    return (writer or TableWriter()).format(rows)


# --- structured output ----------------------------------------------------------------------


def as_list(items: list[Obj]) -> Obj:
    """What kubectl prints for several objects in -o json|yaml."""
    return {"apiVersion": "v1", "items": items, "kind": "List",
            "metadata": {"resourceVersion": ""}}


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False)


class _Dumper(yaml.SafeDumper):
    """kubectl's YAML look: `|` blocks for multi-line strings, double quotes where needed."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    tag = "tag:yaml.org,2002:str"
    if "\n" in value:
        return dumper.represent_scalar(tag, value, style="|")
    implicit = dumper.resolve(yaml.ScalarNode, value, (True, False))
    if implicit != tag or value == "" or value.strip() != value:
        return dumper.represent_scalar(tag, value, style='"')
    return dumper.represent_scalar(tag, value)


_Dumper.add_representer(str, _represent_str)


def to_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, default_flow_style=False, sort_keys=True,
                     allow_unicode=True, width=1 << 30).rstrip("\n")


def format_structured(obj: Any, output: str) -> str:
    """`-o json` or `-o yaml` of one object or list."""
    return to_json(obj) if output == "json" else to_yaml(obj)


def tabwrite(lines: list[str], padding: int = 2, min_width: int = 0) -> list[str]:
    """Go's text/tabwriter: align tab-terminated cells in column blocks of consecutive lines.

    kubectl's describe writes `Key:\\tvalue` lines through it (min width 0, padding 2), so
    nested sections align among themselves, not with the whole page.
    """
    rows = [line.split("\t") for line in lines]
    widths: list[list[int]] = [[] for _ in rows]
    _tab_blocks(rows, widths, 0, len(rows), [], padding, min_width)
    out = []
    for row, w in zip(rows, widths, strict=True):
        cells = [c.ljust(w[i]) if i < len(w) else c for i, c in enumerate(row[:-1])]
        out.append("".join(cells) + row[-1])
    return out


def _tab_blocks(rows: list[list[str]], widths: list[list[int]], line0: int, line1: int,
                stack: list[int], padding: int, min_width: int) -> None:
    column = len(stack)
    this = line0
    while this < line1:
        if column >= len(rows[this]) - 1:
            widths[this] = list(stack)
            this += 1
            continue
        start, width = this, min_width
        while this < line1 and column < len(rows[this]) - 1:
            width = max(width, len(rows[this][column]) + padding)
            this += 1
        _tab_blocks(rows, widths, start, this, [*stack, width], padding, min_width)
