"""The endpoints controller's pure decisions: which pods, which ports, how subsets are packed."""

from __future__ import annotations

from typing import Any

from api.core import Pod, Service
from controllers.endpoints import (
    HEADLESS_LABEL,
    desired_labels,
    desired_subsets,
    find_port,
    has_selector,
    pod_endpoints_changed,
    repack_subsets,
    should_be_in_endpoints,
)


def svc(ports: list[dict[str, Any]] | None = None, selector: dict[str, str] | None = None,
        **spec: Any) -> Service:
    return Service.model_validate({
        "metadata": {"name": "web", "namespace": "ns", "labels": {"team": "a"}},
        "spec": {"selector": {"app": "web"} if selector is None else selector,
                 "ports": ports if ports is not None else [
                     {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
                 **spec}})


def pod(name: str, ip: str = "10.0.0.1", ready: bool = True, port_name: str = "http",
        port: int = 8080, **extra: Any) -> Pod:
    spec = {"nodeName": "n1", "containers": [{"name": "c", "ports": [
        {"name": port_name, "containerPort": port, "protocol": "TCP"}]}],
        **extra.pop("spec", {})}
    status = {"phase": extra.pop("phase", "Running"), **({"podIP": ip} if ip else {}),
              "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    md = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": {"app": "web"},
          **extra}
    return Pod.model_validate({"metadata": md, "spec": spec, "status": status})


def ref(name: str) -> dict[str, str]:
    return {"kind": "Pod", "namespace": "ns", "name": name, "uid": f"uid-{name}"}


def test_ready_and_not_ready_addresses_with_resolved_named_port() -> None:
    subsets = desired_subsets(svc(), [pod("a", "10.0.0.2"), pod("b", "10.0.0.1", ready=False)])
    assert subsets == [{
        "addresses": [{"ip": "10.0.0.2", "nodeName": "n1", "targetRef": ref("a")}],
        "notReadyAddresses": [{"ip": "10.0.0.1", "nodeName": "n1", "targetRef": ref("b")}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]


def test_publish_not_ready_addresses_puts_every_pod_in_addresses() -> None:
    subsets = desired_subsets(svc(publishNotReadyAddresses=True),
                              [pod("a", "10.0.0.1", ready=False)])
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.0.0.1"]
    assert "notReadyAddresses" not in subsets[0]


def test_pods_whose_named_port_differs_end_in_different_subsets() -> None:
    subsets = desired_subsets(svc(), [pod("a", "10.0.0.1", port=8080),
                                      pod("b", "10.0.0.2", port=9090),
                                      pod("c", "10.0.0.3", port_name="other")])
    assert [(s["ports"][0]["port"], [a["ip"] for a in s["addresses"]]) for s in subsets] == [
        (8080, ["10.0.0.1"]), (9090, ["10.0.0.2"])]


def test_multiport_service_packs_ports_of_the_same_addresses_together() -> None:
    s = svc(ports=[{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                   {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}])
    subsets = desired_subsets(s, [pod("b", "10.0.0.2"), pod("a", "10.0.0.1")])
    assert len(subsets) == 1
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.0.0.1", "10.0.0.2"]
    assert [p["port"] for p in subsets[0]["ports"]] == [8080, 8443]


def test_pods_without_ip_terminating_or_finished_are_skipped() -> None:
    finished = pod("done", "10.0.0.4", phase="Succeeded", spec={"restartPolicy": "Never"})
    dying = pod("dying", "10.0.0.5", deletionTimestamp="2024-01-01T00:00:00Z")
    assert desired_subsets(svc(), [pod("noip", ip=""), finished, dying]) == []
    assert not should_be_in_endpoints(dying, include_terminating=False)
    assert should_be_in_endpoints(dying, include_terminating=True)
    failed_always = pod("f", phase="Failed")
    assert should_be_in_endpoints(failed_always, False)  # restartPolicy Always: it restarts


def test_hostname_only_when_subdomain_names_the_service() -> None:
    named = pod("a", spec={"hostname": "a-0", "subdomain": "web"})
    other = pod("b", "10.0.0.2", spec={"hostname": "b-0", "subdomain": "elsewhere"})
    addrs = desired_subsets(svc(), [named, other])[0]["addresses"]
    assert [a.get("hostname") for a in addrs] == ["a-0", None]


def test_headless_service_without_ports_lists_addresses() -> None:
    headless = svc(ports=[], clusterIP="None")
    assert desired_subsets(headless, [pod("a")]) == [
        {"addresses": [{"ip": "10.0.0.1", "nodeName": "n1", "targetRef": ref("a")}]}]
    assert desired_subsets(svc(ports=[]), [pod("a")]) == []
    assert desired_labels(headless) == {"team": "a", HEADLESS_LABEL: ""}
    assert desired_labels(svc()) == {"team": "a"}


def test_find_port_numeric_and_named_with_protocol() -> None:
    s = svc(ports=[{"port": 53, "targetPort": "dns", "protocol": "UDP"},
                   {"port": 80, "targetPort": 8080, "protocol": "TCP"}])
    assert s.spec is not None and s.spec.ports is not None
    p = pod("a", port_name="dns", port=5353)  # TCP in the pod, UDP wanted
    assert find_port(p, s.spec.ports[0]) is None
    assert find_port(p, s.spec.ports[1]) == 8080


def test_selectorless_and_external_name_services_are_not_managed() -> None:
    assert has_selector(svc())
    assert not has_selector(svc(selector={}))
    assert not has_selector(svc(type="ExternalName", externalName="example.com"))


def test_repack_merges_same_address_sets_and_ready_wins() -> None:
    a = {"ip": "10.0.0.1", "targetRef": ref("a")}
    packed = repack_subsets([
        {"addresses": [a], "ports": [{"name": "x", "port": 1, "protocol": "TCP"}]},
        {"addresses": [a], "ports": [{"name": "y", "port": 2, "protocol": "TCP"}]},
        {"notReadyAddresses": [a], "ports": [{"name": "x", "port": 1, "protocol": "TCP"}]},
    ])
    assert packed == [{"addresses": [a], "ports": [{"name": "x", "port": 1, "protocol": "TCP"},
                                                   {"name": "y", "port": 2, "protocol": "TCP"}]}]


def test_pod_changes_that_matter() -> None:
    base = pod("a")
    assert pod_endpoints_changed(base, base) == (False, False)
    assert pod_endpoints_changed(base, pod("a", ready=False)) == (True, False)
    assert pod_endpoints_changed(base, pod("a", "10.0.0.9")) == (True, False)
    relabeled = base.model_copy(deep=True)
    relabeled.metadata.labels = {"app": "other"}
    assert pod_endpoints_changed(base, relabeled) == (False, True)


def test_stale_tracker_flags_the_version_an_update_replaced() -> None:
    """Upstream's staleEndpointsTracker: after updating from resourceVersion 7, a cache still
    holding 7 is out of date (a sync must not compare with it), one holding 8 is not."""
    from controllers.endpoints import StaleEndpointsTracker

    t = StaleEndpointsTracker()
    assert not t.is_stale("ns/svc", "7")
    t.stale("ns/svc", "7")
    assert t.is_stale("ns/svc", "7")
    assert not t.is_stale("ns/svc", "8")
    assert not t.is_stale("ns/other", "7")
    t.delete("ns/svc")
    assert not t.is_stale("ns/svc", "7")
