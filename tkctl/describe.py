"""`describe` pages as kubectl writes them: `Key:  value` sections aligned by Go's tabwriter.

Pure functions from JSON dicts (the object and what the command fetched for it: its events,
owned ReplicaSets, pods, endpoints) to lines, so every page is testable without a server. Pods,
Deployments, ReplicaSets/ReplicationControllers, Services, Nodes and Namespaces get kubectl's
hand-written sections; any other kind gets the generic describer kubectl uses for custom
resources (every field, `camelCase` keys spelled as `Camel Case`).
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Any

from api.meta import parse_rfc3339
from tkctl import printers
from tkctl.printers import NONE, meta, spec, status

Obj = dict[str, Any]


@dataclass
class Page:
    """Lines with tab-separated cells, indented two spaces per level, aligned when rendered."""

    now: _dt.datetime
    lines: list[str] = field(default_factory=list)

    def line(self, level: int, key: str, value: Any = None) -> None:
        indent = "  " * level
        self.lines.append(f"{indent}{key}" if value is None else f"{indent}{key}:\t{value}")

    def raw(self, level: int, *cells: Any) -> None:
        self.lines.append("  " * level + "\t".join(str(c) for c in cells))

    def multi(self, level: int, key: str, values: list[str]) -> None:
        """`Labels:  a=b` with further values on their own lines in the value column."""
        if not values:
            self.line(level, key, NONE)
            return
        self.line(level, key, values[0])
        for v in values[1:]:
            self.lines.append("  " * level + f"\t{v}")

    def render(self) -> str:
        return "\n".join(printers.tabwrite(self.lines))


def timestamp(value: str | None) -> str:
    """kubectl's RFC 1123 with numeric zone: `Mon, 02 Jan 2006 15:04:05 +0000`."""
    if not value:
        return NONE
    try:
        return parse_rfc3339(value).strftime("%a, %d %b %Y %H:%M:%S %z")
    except ValueError:
        return value


def _kv(mapping: dict[str, Any] | None, sep: str = "=") -> list[str]:
    return [f"{k}{sep}{v}" for k, v in sorted((mapping or {}).items())]


def _header(page: Page, obj: Obj, *, namespace: bool = True) -> None:
    md = meta(obj)
    page.line(0, "Name", md.get("name", ""))
    if namespace and md.get("namespace"):
        page.line(0, "Namespace", md["namespace"])


_SKIP_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration"}
_MAX_ANNOTATION = 140


def annotation_lines(annotations: dict[str, str] | None) -> list[str]:
    """As kubectl: the last-applied configuration is skipped, long values are cut at 140."""
    out = []
    for key, value in sorted((annotations or {}).items()):
        if key in _SKIP_ANNOTATIONS:
            continue
        text = " ".join(str(value).split("\n")).strip()
        if len(text) > _MAX_ANNOTATION:
            text = text[:_MAX_ANNOTATION] + "..."
        out.append(f"{key}: {text}")
    return out


def _labels_annotations(page: Page, obj: Obj, level: int = 0) -> None:
    md = meta(obj)
    page.multi(level, "Labels", _kv(md.get("labels")))
    page.multi(level, "Annotations", annotation_lines(md.get("annotations")))


def _controlled_by(page: Page, obj: Obj) -> None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            page.line(0, "Controlled By", f"{ref.get('kind')}/{ref.get('name')}")


# --- events -----------------------------------------------------------------------------------


def _event_time(ev: Obj, key: str) -> str | None:
    value = ev.get(key) or ev.get("eventTime") or meta(ev).get("creationTimestamp")
    return str(value) if value else None


def events_section(page: Page, events: list[Obj] | None) -> None:
    """kubectl's Events table (Type, Reason, Age, From, Message), oldest first."""
    if events is None:
        return
    if not events:
        page.line(0, "Events", NONE)
        return
    page.line(0, "Events:")
    page.raw(1, "Type", "Reason", "Age", "From", "Message")
    page.raw(1, "----", "------", "----", "----", "-------")
    for ev in sorted(events, key=lambda e: _event_time(e, "lastTimestamp") or ""):
        page.raw(1, ev.get("type", ""), ev.get("reason", ""), _event_age(ev, page.now),
                 (ev.get("source") or {}).get("component") or ev.get("reportingComponent") or "",
                 str(ev.get("message") or "").strip())


def _event_age(ev: Obj, now: _dt.datetime) -> str:
    first = printers.age(_event_time(ev, "firstTimestamp"), now)
    count = int(ev.get("count") or 1)
    if count > 1:
        last = printers.age(_event_time(ev, "lastTimestamp"), now)
        return f"{last} (x{count} over {first})"
    return first


# --- containers -----------------------------------------------------------------------------


def _ports(c: Obj) -> tuple[str, str]:
    ports = c.get("ports") or []
    if not ports:
        return NONE, NONE
    cport = ", ".join(f"{p.get('containerPort')}/{p.get('protocol') or 'TCP'}" for p in ports)
    hport = ", ".join(f"{p.get('hostPort') or 0}/{p.get('protocol') or 'TCP'}" for p in ports)
    return cport, hport


def _probe(p: Obj) -> str:
    if p.get("httpGet"):
        h = p["httpGet"]
        what = f"http-get {str(h.get('scheme') or 'HTTP').lower()}://{h.get('host', '')}:" \
               f"{h.get('port', '')}{h.get('path', '')}"
    elif p.get("tcpSocket"):
        what = f"tcp-socket :{p['tcpSocket'].get('port', '')}"
    elif p.get("exec"):
        what = "exec [" + " ".join(p["exec"].get("command") or []) + "]"
    else:
        what = "unknown"
    return (f"{what} delay={p.get('initialDelaySeconds', 0)}s timeout="
            f"{p.get('timeoutSeconds', 1)}s period={p.get('periodSeconds', 10)}s "
            f"#success={p.get('successThreshold', 1)} #failure={p.get('failureThreshold', 3)}")


def _env(c: Obj) -> list[str]:
    out = []
    for e in c.get("env") or []:
        if "value" in e:
            out.append(f"{e['name']}:\t{e['value']}")
        else:
            src = e.get("valueFrom") or {}
            ref: Obj = next(iter(src.values()), {}) if src else {}
            what = ref.get("fieldPath") or ref.get("key") or ref.get("resource") or "?"
            out.append(f"{e['name']}:\t<set to the key or field '{what}'>")
    return out


def _state(page: Page, level: int, label: str, state: Obj) -> None:
    if not state:
        page.line(level, label, "Waiting")
        return
    name, detail = next(iter(state.items()))
    page.line(level, label, name.capitalize())
    detail = detail or {}
    for key, title in (("reason", "Reason"), ("message", "Message"), ("exitCode", "Exit Code"),
                       ("startedAt", "Started"), ("finishedAt", "Finished")):
        if key in detail and detail[key] not in (None, ""):
            value = timestamp(detail[key]) if key.endswith("At") else detail[key]
            page.line(level + 1, title, value)


def _container(page: Page, level: int, c: Obj, cs: Obj | None) -> None:
    page.line(level, f"{c.get('name', '')}:")
    lv = level + 1
    if cs is not None:
        page.line(lv, "Container ID", cs.get("containerID") or "")
    page.line(lv, "Image", c.get("image", ""))
    if cs is not None:
        page.line(lv, "Image ID", cs.get("imageID") or "")
    port, host_port = _ports(c)
    page.line(lv, "Port", port)
    page.line(lv, "Host Port", host_port)
    for key, title in (("command", "Command"), ("args", "Args")):
        if c.get(key):
            page.line(lv, f"{title}:")
            for part in c[key]:
                page.line(lv + 1, str(part))
    if cs is not None:
        _container_status(page, lv, cs)
    _resources(page, lv, c.get("resources") or {})
    for key, title in (("livenessProbe", "Liveness"), ("readinessProbe", "Readiness"),
                       ("startupProbe", "Startup")):
        if c.get(key):
            page.line(lv, title, _probe(c[key]))
    env = _env(c)
    if env:
        page.line(lv, "Environment:")
        page.lines += ["  " * (lv + 1) + e for e in env]
    else:
        page.line(lv, "Environment", NONE)
    mounts = [f"{m.get('mountPath')} from {m.get('name')} ({'ro' if m.get('readOnly') else 'rw'})"
              for m in c.get("volumeMounts") or []]
    page.multi(lv, "Mounts", mounts)


def _container_status(page: Page, lv: int, cs: Obj) -> None:
    _state(page, lv, "State", cs.get("state") or {})
    last = cs.get("lastState") or {}
    if last:
        _state(page, lv, "Last State", last)
    page.line(lv, "Ready", str(bool(cs.get("ready"))))
    page.line(lv, "Restart Count", int(cs.get("restartCount") or 0))


def _resources(page: Page, lv: int, res: Obj) -> None:
    for key, title in (("limits", "Limits"), ("requests", "Requests")):
        if res.get(key):
            page.line(lv, f"{title}:")
            for name, qty in sorted(res[key].items()):
                page.line(lv + 1, name, qty)


def pod_template(page: Page, template: Obj) -> None:
    """The `Pod Template:` section of a Deployment, ReplicaSet or rollout revision."""
    page.line(0, "Pod Template:")
    page.multi(1, "Labels", _kv(meta(template).get("labels")))
    tspec = spec(template)
    if tspec.get("serviceAccountName"):
        page.line(1, "Service Account", tspec["serviceAccountName"])
    page.line(1, "Containers:")
    for c in tspec.get("containers") or []:
        _container(page, 2, c, None)
    _volumes(page, 1, tspec)


def _volumes(page: Page, level: int, pspec: Obj) -> None:
    vols = pspec.get("volumes") or []
    if not vols:
        page.line(level, "Volumes", NONE)
        return
    page.line(level, "Volumes:")
    for v in vols:
        page.line(level + 1, f"{v.get('name')}:")
        kinds = [k for k in v if k != "name"]
        page.line(level + 2, "Type", kinds[0] if kinds else "<unknown>")


# --- kinds ----------------------------------------------------------------------------------


def describe_pod(pod: Obj, events: list[Obj] | None, now: _dt.datetime) -> str:
    page = Page(now)
    sp, st, md = spec(pod), status(pod), meta(pod)
    _header(page, pod)
    page.line(0, "Priority", sp.get("priority", 0))
    page.line(0, "Service Account", sp.get("serviceAccountName") or "default")
    node = sp.get("nodeName")
    page.line(0, "Node", f"{node}/{st.get('hostIP')}" if node and st.get("hostIP")
              else node or NONE)
    page.line(0, "Start Time", timestamp(st.get("startTime")))
    _labels_annotations(page, pod)
    phase = printers.pod_status(pod)[2] if md.get("deletionTimestamp") else st.get("phase", "")
    page.line(0, "Status", phase)
    if st.get("reason"):
        page.line(0, "Reason", st["reason"])
    if st.get("message"):
        page.line(0, "Message", st["message"])
    page.line(0, "IP", st.get("podIP") or "")
    ips = [i.get("ip", "") for i in st.get("podIPs") or []]
    if ips:
        page.line(0, "IPs:")
        for ip in ips:
            page.line(1, "IP", ip)
    else:
        page.line(0, "IPs", NONE)
    _controlled_by(page, pod)
    _pod_containers(page, pod)
    _conditions(page, st.get("conditions") or [], ("Type", "Status"))
    _volumes(page, 0, sp)
    page.line(0, "QoS Class", st.get("qosClass") or "BestEffort")
    page.multi(0, "Node-Selectors", _kv(sp.get("nodeSelector")))
    page.multi(0, "Tolerations", [_toleration(t) for t in sp.get("tolerations") or []])
    events_section(page, events)
    return page.render()


def _pod_containers(page: Page, pod: Obj) -> None:
    st = status(pod)
    for key, skey, title in (("initContainers", "initContainerStatuses", "Init Containers"),
                             ("containers", "containerStatuses", "Containers")):
        containers = spec(pod).get(key) or []
        if not containers:
            continue
        by_name = {s.get("name"): s for s in st.get(skey) or []}
        page.line(0, f"{title}:")
        for c in containers:
            _container(page, 1, c, by_name.get(c.get("name"), {}))


def _toleration(t: Obj) -> str:
    key = t.get("key", "")
    text = key
    if t.get("value"):
        text += f"={t['value']}"
    if t.get("effect"):
        text += f":{t['effect']}"
    if t.get("operator") == "Exists" and not t.get("value"):
        text += " op=Exists"
    if t.get("tolerationSeconds") is not None:
        text += f" for {t['tolerationSeconds']}s"
    return text


def _conditions(page: Page, conditions: list[Obj], columns: tuple[str, ...]) -> None:
    if not conditions:
        return
    page.line(0, "Conditions:")
    page.raw(1, *columns)
    page.raw(1, *("-" * len(c) for c in columns))
    keys = [c[0].lower() + c[1:] for c in columns]
    for cond in conditions:
        page.raw(1, *(str(cond.get(k, "")) for k in keys))


def describe_deployment(d: Obj, replicasets: list[Obj], events: list[Obj] | None,
                        now: _dt.datetime) -> str:
    page = Page(now)
    sp, st = spec(d), status(d)
    _header(page, d)
    page.line(0, "CreationTimestamp", timestamp(meta(d).get("creationTimestamp")))
    _labels_annotations(page, d)
    page.line(0, "Selector", printers.format_selector(sp.get("selector")))
    page.line(0, "Replicas", (
        f"{sp.get('replicas', 1)} desired | {st.get('updatedReplicas', 0)} updated | "
        f"{st.get('replicas', 0)} total | {st.get('availableReplicas', 0)} available | "
        f"{st.get('unavailableReplicas', 0)} unavailable"))
    strategy = sp.get("strategy") or {}
    page.line(0, "StrategyType", strategy.get("type") or "RollingUpdate")
    page.line(0, "MinReadySeconds", sp.get("minReadySeconds", 0))
    ru = strategy.get("rollingUpdate")
    if ru:
        page.line(0, "RollingUpdateStrategy", f"{ru.get('maxUnavailable', '25%')} max "
                  f"unavailable, {ru.get('maxSurge', '25%')} max surge")
    pod_template(page, sp.get("template") or {})
    _conditions(page, st.get("conditions") or [], ("Type", "Status", "Reason"))
    new, old = _split_replicasets(d, replicasets)
    page.line(0, "OldReplicaSets", ", ".join(_rs_summary(r) for r in old) or NONE)
    page.line(0, "NewReplicaSet", _rs_summary(new) if new else NONE)
    events_section(page, events)
    return page.render()


def _split_replicasets(d: Obj, rss: list[Obj]) -> tuple[Obj | None, list[Obj]]:
    revision = (meta(d).get("annotations") or {}).get("deployment.kubernetes.io/revision")
    new = None
    for rs in rss:
        if (meta(rs).get("annotations") or {}).get("deployment.kubernetes.io/revision") == revision:
            new = rs
    return new, [rs for rs in rss if rs is not new and spec(rs).get("replicas", 0)]


def _rs_summary(rs: Obj) -> str:
    return (f"{meta(rs).get('name')} ({status(rs).get('replicas', 0)}/"
            f"{spec(rs).get('replicas', 0)} replicas created)")


def describe_replicaset(rs: Obj, pods: list[Obj], events: list[Obj] | None,
                        now: _dt.datetime) -> str:
    page = Page(now)
    sp, st = spec(rs), status(rs)
    _header(page, rs)
    sel = sp.get("selector")
    if rs.get("kind") == "ReplicationController":
        sel = {"matchLabels": sel} if sel else None
    page.line(0, "Selector", printers.format_selector(sel))
    _labels_annotations(page, rs)
    _controlled_by(page, rs)
    page.line(0, "Replicas", f"{st.get('replicas', 0)} current / {sp.get('replicas', 1)} desired")
    phases = [status(p).get("phase") for p in pods]
    page.line(0, "Pods Status", " / ".join(
        f"{phases.count(ph)} {label}" for ph, label in (
            ("Running", "Running"), ("Pending", "Waiting"), ("Succeeded", "Succeeded"),
            ("Failed", "Failed"))))
    pod_template(page, sp.get("template") or {})
    _conditions(page, st.get("conditions") or [], ("Type", "Status", "Reason"))
    events_section(page, events)
    return page.render()


def describe_service(svc: Obj, endpoints: Obj | None, events: list[Obj] | None,
                     now: _dt.datetime) -> str:
    page = Page(now)
    sp = spec(svc)
    _header(page, svc)
    _labels_annotations(page, svc)
    page.line(0, "Selector", ",".join(_kv(sp.get("selector"))) or NONE)
    page.line(0, "Type", sp.get("type") or "ClusterIP")
    page.line(0, "IP Family Policy", sp.get("ipFamilyPolicy") or "SingleStack")
    page.line(0, "IP Families", ",".join(sp.get("ipFamilies") or ["IPv4"]))
    page.line(0, "IP", sp.get("clusterIP") or NONE)
    page.line(0, "IPs", ",".join(sp.get("clusterIPs") or [sp.get("clusterIP") or NONE]))
    ext = sp.get("externalIPs")
    if ext:
        page.line(0, "External IPs", ",".join(ext))
    for p in sp.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        page.line(0, "Port", f"{p.get('name') or '<unset>'}  {p.get('port')}/{proto}")
        page.line(0, "TargetPort", f"{p.get('targetPort', p.get('port'))}/{proto}")
        if p.get("nodePort"):
            page.line(0, "NodePort", f"{p.get('name') or '<unset>'}  {p['nodePort']}/{proto}")
        page.line(0, "Endpoints", printers.format_endpoints(endpoints or {}))
    page.line(0, "Session Affinity", sp.get("sessionAffinity") or "None")
    page.line(0, "Internal Traffic Policy", sp.get("internalTrafficPolicy") or "Cluster")
    events_section(page, events)
    return page.render()


def describe_node(node: Obj, pods: list[Obj], events: list[Obj] | None,
                  now: _dt.datetime) -> str:
    page = Page(now)
    sp, st = spec(node), status(node)
    _header(page, node, namespace=False)
    page.line(0, "Roles", printers.node_roles(node))
    _labels_annotations(page, node)
    page.line(0, "CreationTimestamp", timestamp(meta(node).get("creationTimestamp")))
    page.multi(0, "Taints", [_taint(t) for t in sp.get("taints") or []])
    page.line(0, "Unschedulable", str(bool(sp.get("unschedulable"))).lower())
    _conditions(page, st.get("conditions") or [],
                ("Type", "Status", "LastHeartbeatTime", "LastTransitionTime", "Reason",
                 "Message"))
    page.line(0, "Addresses:")
    for a in st.get("addresses") or []:
        page.line(1, a.get("type", ""), a.get("address", ""))
    for key, title in (("capacity", "Capacity"), ("allocatable", "Allocatable")):
        page.line(0, f"{title}:")
        for name, qty in sorted((st.get(key) or {}).items()):
            page.line(1, name, qty)
    _system_info(page, st.get("nodeInfo") or {})
    page.line(0, "PodCIDR", sp.get("podCIDR") or "")
    page.line(0, "PodCIDRs", ",".join(sp.get("podCIDRs") or []))
    _node_pods(page, pods)
    events_section(page, events)
    return page.render()


def _taint(t: Obj) -> str:
    value = f"={t['value']}" if t.get("value") else ""
    return f"{t.get('key', '')}{value}:{t.get('effect', '')}"


def _system_info(page: Page, info: Obj) -> None:
    page.line(0, "System Info:")
    for key in ("machineID", "systemUUID", "bootID", "kernelVersion", "osImage",
                "containerRuntimeVersion", "kubeletVersion", "kubeProxyVersion",
                "operatingSystem", "architecture"):
        if key in info:
            page.line(1, _title(key), info[key])


def _node_pods(page: Page, pods: list[Obj]) -> None:
    running = [p for p in pods if status(p).get("phase") not in ("Succeeded", "Failed")]
    page.line(0, "Non-terminated Pods", f"({len(running)} in total)")
    if not running:
        return
    page.raw(1, "Namespace", "Name", "Age")
    page.raw(1, "---------", "----", "---")
    for p in running:
        page.raw(1, meta(p).get("namespace", ""), meta(p).get("name", ""),
                 printers.age(printers.created(p), page.now))


def describe_namespace(ns: Obj, events: list[Obj] | None, now: _dt.datetime) -> str:
    page = Page(now)
    _header(page, ns, namespace=False)
    _labels_annotations(page, ns)
    page.line(0, "Status", status(ns).get("phase") or "Active")
    page.lines += ["", "No resource quota.", "", "No LimitRange resource."]
    return page.render()


def describe_configmap(cm: Obj, events: list[Obj] | None, now: _dt.datetime) -> str:
    """kubectl's ConfigMap page: each key under `Data`, its value below a `----` rule."""
    page = Page(now)
    _header(page, cm)
    _labels_annotations(page, cm)
    for title, data in (("Data", cm.get("data") or {}),
                        ("BinaryData", cm.get("binaryData") or {})):
        page.lines += ["", title, "===="]
        for key, value in sorted(data.items()):
            shown = value if title == "Data" else f"{len(str(value)) * 3 // 4} bytes"
            page.lines += [f"{key}:", "----", str(shown), ""]
    page.lines.append("")
    events_section(page, events)
    return page.render()


def describe_secret(secret: Obj, events: list[Obj] | None, now: _dt.datetime) -> str:
    """kubectl's Secret page: sizes only, never the values."""
    page = Page(now)
    _header(page, secret)
    _labels_annotations(page, secret)
    page.lines += ["", f"Type:  {secret.get('type') or 'Opaque'}", "", "Data", "===="]
    for key, value in sorted((secret.get("data") or {}).items()):
        page.line(0, key, f"{len(str(value)) * 3 // 4 - str(value).count('=')} bytes")
    events_section(page, events)
    return page.render()


# --- generic --------------------------------------------------------------------------------


def _title(key: str) -> str:
    """`creationTimestamp` → `Creation Timestamp`, as kubectl's generic describer does."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return words[:1].upper() + words[1:]


def describe_generic(obj: Obj, events: list[Obj] | None, now: _dt.datetime) -> str:
    page = Page(now)
    _header(page, obj)
    _labels_annotations(page, obj)
    for key in ("apiVersion", "kind"):
        if key in obj:
            page.line(0, _title(key), obj[key])
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata":
            value = {k: v for k, v in value.items()
                     if k not in ("name", "namespace", "labels", "annotations")}
        _generic_value(page, 0, key, value)
    events_section(page, events)
    return page.render()


def _generic_value(page: Page, level: int, key: str, value: Any) -> None:
    if isinstance(value, dict):
        if not value:
            return
        page.line(level, f"{_title(key)}:")
        for k, v in value.items():
            _generic_value(page, level + 1, k, v)
    elif isinstance(value, list):
        page.line(level, f"{_title(key)}:")
        for item in value:
            if isinstance(item, dict):
                for k, v in item.items():
                    _generic_value(page, level + 1, k, v)
            else:
                page.line(level + 1, str(item))
    else:
        page.line(level, _title(key), value)
