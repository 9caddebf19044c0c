"""The endpoints controller: a Service's selector, resolved to the pod addresses behind it.

For every Service with a selector, an Endpoints object of the same name lists the IPs of the
selected pods: ready pods under `addresses`, the others under `notReadyAddresses` (all under
`addresses` when the Service publishes not-ready addresses), each with its node and a reference
to its pod, and the ports resolved per pod (a named targetPort is looked up in that pod's
containers, so pods that name the port differently land in different subsets). Subsets are
repacked like upstream's RepackSubsets: one subset per distinct set of addresses, carrying every
port those addresses serve. The proxy programs its rules from these objects.

Services without a selector are left alone: their Endpoints are the user's. Deleting a Service
deletes its Endpoints; writes that would change nothing are skipped.

Every write that changes an Endpoints object carries `endpoints.kubernetes.io/last-change-trigger-
time` (upstream's TriggerTimeTracker): when the change that caused it happened, so that kube-proxy
can measure network programming latency (kubeproxy_network_programming_duration_seconds) from
the cause to its rules being in the kernel, not from our write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from api import errors
from api.core import Endpoints, Pod, Service, ServicePort
from api.meta import parse_rfc3339
from api.podutil import is_pod_ready, is_terminating, pod_phase
from api.selectors import from_map
from client.store import NAMESPACE_INDEX, split_meta_namespace_key
from controllers.base import Controller, namespace_terminating

HEADLESS_LABEL = "service.kubernetes.io/headless"
# Endpoints objects that leader election used to hold carry this; never ours to delete.
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
Obj = dict[str, Any]


# --- pure logic -------------------------------------------------------------------------------

def has_selector(svc: Service) -> bool:
    """Whether this controller manages the Service's Endpoints (an empty map means none, as an
    empty map and an absent one are the same thing in upstream's JSON)."""
    return bool(svc.spec and svc.spec.selector) and (svc.spec.type if svc.spec else None) != (
        "ExternalName")


def pod_ip(pod: Pod) -> str:
    st = pod.status
    if st is None:
        return ""
    if st.pod_ip:
        return st.pod_ip
    return next((p.ip for p in st.pod_ips or [] if p.ip), "")


def should_be_in_endpoints(pod: Pod, include_terminating: bool) -> bool:
    """endpointsliceutil.ShouldPodBeInEndpoints: it has an IP, is not being deleted (unless
    terminating pods are published) and is not finished for good."""
    if not pod_ip(pod):
        return False
    if not include_terminating and is_terminating(pod):
        return False
    policy = (pod.spec.restart_policy if pod.spec else None) or "Always"
    phase = pod_phase(pod)
    if policy == "Never":
        return phase not in ("Failed", "Succeeded")
    if policy == "OnFailure":
        return phase != "Succeeded"
    return True


def find_port(pod: Pod, port: ServicePort) -> int | None:
    """podutil.FindPort: a numeric targetPort as is; a named one from the pod's containers
    (same name and protocol); None if this pod has no such port."""
    target = port.target_port if port.target_port not in (None, "", 0) else port.port
    if isinstance(target, int):
        return target
    if target.isdigit():
        return int(target)
    protocol = port.protocol or "TCP"
    for c in (pod.spec.containers if pod.spec else None) or []:
        for cp in c.ports or []:
            if cp.name == target and (cp.protocol or "TCP") == protocol:
                return cp.container_port
    return None


def endpoint_address(pod: Pod, svc: Service) -> Obj:
    addr: Obj = {"ip": pod_ip(pod)}
    spec = pod.spec
    # A pod with a hostname in the subdomain named after this Service gets a DNS name.
    if spec and spec.hostname and spec.subdomain == svc.name and pod.namespace == svc.namespace:
        addr["hostname"] = spec.hostname
    if spec and spec.node_name:
        addr["nodeName"] = spec.node_name
    addr["targetRef"] = {"kind": "Pod", "namespace": pod.namespace, "name": pod.name,
                         "uid": pod.metadata.uid}
    return addr


def endpoint_port(port: ServicePort, number: int) -> Obj:
    out: Obj = {}
    if port.name:
        out["name"] = port.name
    out["port"] = number
    out["protocol"] = port.protocol or "TCP"
    if port.app_protocol:
        out["appProtocol"] = port.app_protocol
    return out


def _addr_key(addr: Obj) -> tuple[str, str]:
    return addr["ip"], (addr.get("targetRef") or {}).get("uid") or ""


def _port_key(port: Obj) -> tuple[str, int, str, str]:
    return (port.get("name") or "", port.get("port", -1), port.get("protocol") or "",
            port.get("appProtocol") or "")


def repack_subsets(subsets: Iterable[Obj]) -> list[Obj]:
    """endpoints.RepackSubsets: one subset per distinct set of (address, ready) pairs, with
    every port that set serves; an address ready on a port in any input is ready there.

    Order is canonical (addresses by IP then pod uid, ports by name/number/protocol, subsets by
    their first port then first address) so that equal contents compare equal.
    """
    addrs: dict[tuple[str, str], Obj] = {}
    by_port: dict[tuple[str, int, str, str], dict[tuple[str, str], bool]] = {}
    ports: dict[tuple[str, int, str, str], Obj] = {}
    for s in subsets:
        for port in s.get("ports") or [{"port": -1}]:  # no ports: a sentinel keeps them
            pk = _port_key(port)
            ports.setdefault(pk, port)
            ready_map = by_port.setdefault(pk, {})
            for ready, field in ((True, "addresses"), (False, "notReadyAddresses")):
                for a in s.get(field) or []:
                    ak = _addr_key(a)
                    addrs.setdefault(ak, a)
                    ready_map[ak] = ready_map.get(ak, False) or ready
    groups: dict[tuple[tuple[tuple[str, str], bool], ...], list[Obj]] = {}
    for pk, ready_map in by_port.items():
        key = tuple(sorted(ready_map.items()))
        members = groups.setdefault(key, [])
        if ports[pk].get("port", -1) > 0:
            members.append(ports[pk])
    out = []
    for key, port_list in groups.items():
        subset: Obj = {}
        ready_addrs = [addrs[ak] for ak, r in key if r]
        not_ready = [addrs[ak] for ak, r in key if not r]
        if ready_addrs:
            subset["addresses"] = ready_addrs
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if port_list:
            subset["ports"] = sorted(port_list, key=_port_key)
        out.append(subset)
    return sorted(out, key=_subset_key)


def _subset_key(s: Obj) -> tuple[Any, ...]:
    ports = tuple(_port_key(p) for p in s.get("ports") or [])
    first = (s.get("addresses") or s.get("notReadyAddresses") or [{"ip": ""}])[0]
    return ports, _addr_key(first)


def desired_subsets(svc: Service, pods: Iterable[Pod]) -> list[Obj]:
    """What syncService computes for one Service from the pods it selects."""
    spec = svc.spec
    publish = bool(spec and spec.publish_not_ready_addresses)
    svc_ports = (spec.ports if spec else None) or []
    headless = bool(spec and spec.cluster_ip == "None")
    subsets: list[Obj] = []
    for pod in pods:
        if not should_be_in_endpoints(pod, publish):
            continue
        addr = endpoint_address(pod, svc)
        field = "addresses" if publish or is_pod_ready(pod) else "notReadyAddresses"
        if not svc_ports:
            if headless:  # a headless Service may have no ports at all
                subsets.append({field: [addr]})
            continue
        for port in svc_ports:
            number = find_port(pod, port)
            if number is None:
                continue
            subsets.append({field: [addr], "ports": [endpoint_port(port, number)]})
    return repack_subsets(subsets)


def desired_labels(svc: Service) -> dict[str, str]:
    labels = dict(svc.metadata.labels or {})
    if svc.spec and svc.spec.cluster_ip == "None":
        labels[HEADLESS_LABEL] = ""
    else:
        labels.pop(HEADLESS_LABEL, None)
    return labels


def pod_endpoints_changed(old: Pod, new: Pod) -> tuple[bool, bool]:
    """(what the Endpoints show of the pod changed, its service membership may have changed)."""
    o_spec, n_spec = old.spec, new.spec
    labels_changed = old.metadata.labels != new.metadata.labels or (
        (o_spec.hostname, o_spec.subdomain) if o_spec else None) != (
        (n_spec.hostname, n_spec.subdomain) if n_spec else None)
    changed = (is_terminating(old) != is_terminating(new)
               or is_pod_ready(old) != is_pod_ready(new)
               or pod_ip(old) != pod_ip(new)
               or pod_phase(old) != pod_phase(new)
               or (o_spec.node_name if o_spec else None) != (n_spec.node_name if n_spec else None))
    return changed, labels_changed


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def pod_trigger_time(pod: Pod) -> dt.datetime | None:
    """getPodTriggerTime: the last transition of the pod's Ready condition (becoming ready or
    unready is what changes its place in the Endpoints)."""
    for c in (pod.status.conditions if pod.status else None) or []:
        if c.type == "Ready":
            return _parse_time(c.last_transition_time)
    return None


def service_trigger_time(svc: Service) -> dt.datetime | None:
    """getServiceTriggerTime: the Service's creation (upstream tracks nothing finer)."""
    return _parse_time(svc.metadata.creation_timestamp)


def format_trigger_time(when: dt.datetime) -> str:
    """Go's time.RFC3339Nano in UTC, as upstream writes the annotation: fractional seconds
    with trailing zeros dropped (none at all for a whole second)."""
    when = when.astimezone(dt.UTC)
    frac = f"{when.microsecond:06d}".rstrip("0")
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


class TriggerTimeTracker:
    """upstream's util/endpoint TriggerTimeTracker.

    Per Service it remembers the trigger times seen at the last sync (the Service's, and each
    selected pod's); a sync's trigger time is the *earliest* of those that changed since —
    the oldest change not yet reflected, so the measured latency is the worst one. A Service
    seen for the first time reports its creation. None: nothing to report (no annotation).
    Like upstream, a pod that changes twice between two syncs counts once (its latest time).
    """

    def __init__(self) -> None:
        self._states: dict[str, tuple[dt.datetime | None, dict[str, dt.datetime]]] = {}

    def compute(self, key: str, svc: Service, pods: Iterable[Pod]) -> dt.datetime | None:
        known = key in self._states
        last_svc, last_pods = self._states.get(key, (None, {}))
        earliest: dt.datetime | None = None
        pod_times: dict[str, dt.datetime] = {}
        for pod in pods:
            t = pod_trigger_time(pod)
            if t is None:
                continue
            pod_times[pod.name] = t
            prev = last_pods.get(pod.name)
            if prev is None or t > prev:
                earliest = t if earliest is None or t < earliest else earliest
        svc_time = service_trigger_time(svc)
        if svc_time is not None and (last_svc is None or svc_time > last_svc):
            earliest = svc_time if earliest is None or svc_time < earliest else earliest
        self._states[key] = (svc_time, pod_times)
        if not known:
            return svc_time
        return earliest

    def delete(self, key: str) -> None:
        self._states.pop(key, None)


class StaleEndpointsTracker:
    """Which cached Endpoints are known to be older than what this controller wrote.

    After an update the informer may still hold the version the update replaced. A sync that
    compared the desired subsets with that stale copy could find them equal and skip the write,
    leaving the stored object (our previous write, from an older view of the pods) wrong until
    something else changes; nothing would, since Endpoints updates enqueue nothing. Upstream's
    staleEndpointsTracker: remember the resourceVersion each update replaced, and treat a cache
    still holding it as out of date (the sync is retried shortly).
    """

    def __init__(self) -> None:
        self._replaced: dict[str, str] = {}

    def stale(self, key: str, replaced_rv: str | None) -> None:
        if replaced_rv:
            self._replaced[key] = replaced_rv

    def is_stale(self, key: str, cached_rv: str | None) -> bool:
        return cached_rv is not None and self._replaced.get(key) == cached_rv

    def delete(self, key: str) -> None:
        self._replaced.pop(key, None)


# --- the controller ---------------------------------------------------------------------------

class EndpointsController(Controller):
    name = "endpoint"
    component = "endpoint-controller"

    def setup(self) -> None:
        self.services = self.factory.informer_for(Service)
        self.services.add_event_handler(on_add=self.enqueue,
                                        on_update=lambda old, new: self.enqueue(new),
                                        on_delete=self.enqueue)
        self.pods = self.factory.informer_for(Pod)
        self.pods.add_event_handler(on_add=self._add_pod, on_update=self._update_pod,
                                    on_delete=self._add_pod)
        self.endpoints = self.factory.informer_for(Endpoints)
        self.endpoints.add_event_handler(on_delete=self._endpoints_deleted)
        self.trigger_times = TriggerTimeTracker()
        self.stale = StaleEndpointsTracker()

    async def run(self) -> None:
        self._check_leftover_endpoints()
        await super().run()

    def _check_leftover_endpoints(self) -> None:
        """Endpoints whose Service went while we were down: sync their key, which deletes
        them (upstream's checkLeftoverEndpoints, once at start)."""
        for ep in self.endpoints.store.list():
            if LEADER_ANNOTATION in (ep.metadata.annotations or {}):
                continue
            if self.services.lister.get(ep.name, ep.namespace) is None:
                self.enqueue(ep)

    def _services_for(self, pod: Pod) -> set[str]:
        keys = set()
        for svc in self.services.store.by_index(NAMESPACE_INDEX, pod.namespace):
            if has_selector(svc) and from_map(
                    svc.spec.selector if svc.spec else None).matches(pod.metadata.labels):
                keys.add(svc.key)
        return keys

    def _add_pod(self, pod: Pod) -> None:
        for key in self._services_for(pod):
            self.queue.add(key)

    def _update_pod(self, old: Pod, new: Pod) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        changed, labels_changed = pod_endpoints_changed(old, new)
        if not changed and not labels_changed:
            return
        keys = self._services_for(new)
        if labels_changed:
            before = self._services_for(old)
            # A pod that changed itself matters to both sides; one that only moved between
            # services matters to those it left or joined.
            keys = keys | before if changed else keys ^ before
        for key in keys:
            self.queue.add(key)

    def _endpoints_deleted(self, ep: Endpoints) -> None:
        svc = self.services.lister.get(ep.name, ep.namespace)
        if svc is not None and has_selector(svc):
            self.enqueue(svc)

    async def sync(self, key: str) -> None:
        ns, name = split_meta_namespace_key(key)
        svc = self.services.lister.get(name, ns)
        if svc is None:
            self.trigger_times.delete(key)
            self.stale.delete(key)
            try:
                await self.client.delete("endpoints", name, ns)
            except errors.NotFound:
                pass
            return
        if not has_selector(svc):
            return
        current = self.endpoints.lister.get(name, ns)
        if current is not None and self.stale.is_stale(key, current.metadata.resource_version):
            # Our last update is not in the cache yet: comparing with what it replaced could
            # wrongly skip this write. Look again when the cache has caught up (before the
            # trigger-time tracker marks anything as reported).
            self.queue.add_after(key, 0.2)
            return
        selector = from_map(svc.spec.selector if svc.spec else None)
        pods = [p for p in self.pods.store.by_index(NAMESPACE_INDEX, ns)
                if selector.matches(p.metadata.labels)]
        trigger = self.trigger_times.compute(key, svc, pods)
        await self._write(svc, desired_subsets(svc, pods), trigger)

    async def _write(self, svc: Service, subsets: list[Obj],
                     trigger: dt.datetime | None = None) -> None:
        current = self.endpoints.lister.get(svc.name, svc.namespace)
        labels = desired_labels(svc)
        if current is None:
            body: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                         "metadata": {"name": svc.name, "namespace": svc.namespace,
                                      **({"labels": labels} if labels else {})}}
            if trigger is not None:
                body["metadata"]["annotations"] = {
                    TRIGGER_TIME_ANNOTATION: format_trigger_time(trigger)}
            if subsets:
                body["subsets"] = subsets
            try:
                await self.client.create("endpoints", body, svc.namespace)
            except errors.Forbidden as e:
                if not namespace_terminating(e):  # else: the namespace is going away
                    raise
            except errors.AlreadyExists:
                # Our cache lags a create (ours or the user's): look again shortly.
                self.queue.add_after(svc.key, 0.5)
            return
        have = current.to_dict()
        if (have.get("subsets") or []) == subsets and (current.metadata.labels or {}) == labels:
            return  # nothing would change: skip the write
        have["subsets"] = subsets
        have["metadata"]["labels"] = labels
        # As upstream: the annotation describes this change; with no known trigger, a stale
        # one from an earlier change would lie, so it goes.
        annotations = dict(have["metadata"].get("annotations") or {})
        if trigger is not None:
            annotations[TRIGGER_TIME_ANNOTATION] = format_trigger_time(trigger)
        else:
            annotations.pop(TRIGGER_TIME_ANNOTATION, None)
        have["metadata"]["annotations"] = annotations
        if not subsets:
            have.pop("subsets")
        await self.client.update("endpoints", have, svc.namespace)
        self.stale.stale(svc.key, current.metadata.resource_version)

