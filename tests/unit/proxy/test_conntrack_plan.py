"""proxy.conntrack.stale_flows: which UDP conntrack entries a sync makes stale."""

from __future__ import annotations

from dataclasses import replace

from proxy.conntrack import StaleFlow, matching, stale_flows
from proxy.iptables import IptablesBackend
from proxy.model import Endpoint, ServiceMap, ServicePort, ServicePortName

DNS = ServicePortName("kube-system", "dns", "dns", "UDP")
WEB = ServicePortName("default", "web", "http", "TCP")


def udp(*ips: str, node_port: int = 0, external: tuple[str, ...] = ()) -> ServicePort:
    return ServicePort(DNS, "10.96.0.10", 53, node_port=node_port, external_ips=external,
                       endpoints=tuple(Endpoint(ip, 5353) for ip in ips))


def smap(*sps: ServicePort) -> ServiceMap:
    return {sp.name: sp for sp in sps}


def test_nothing_known_before_plans_nothing() -> None:
    assert stale_flows(None, smap(udp("10.244.1.5"))) == []


def test_unchanged_plans_nothing() -> None:
    m = smap(udp("10.244.1.5", "10.244.2.6"))
    assert stale_flows(m, dict(m)) == []


def test_gone_endpoint_on_every_frontend() -> None:
    old = smap(udp("10.244.1.5", "10.244.2.6", node_port=30053, external=("192.0.2.7",)))
    new = smap(udp("10.244.2.6", node_port=30053, external=("192.0.2.7",)))
    assert stale_flows(old, new) == [
        StaleFlow(53, "10.96.0.10", "10.244.1.5"),
        StaleFlow(53, "192.0.2.7", "10.244.1.5"),
        StaleFlow(30053, None, "10.244.1.5"),
    ]


def test_endpoint_replaced() -> None:
    assert stale_flows(smap(udp("10.244.1.5")), smap(udp("10.244.2.6"))) == [
        StaleFlow(53, "10.96.0.10", "10.244.1.5")]


def test_ip_still_serving_on_another_port_is_not_stale() -> None:
    old = smap(udp("10.244.1.5"))
    moved = replace(old[DNS], endpoints=(Endpoint("10.244.1.5", 5354),))
    assert stale_flows(old, smap(moved)) == []


def test_last_endpoint_gone_and_service_deleted() -> None:
    old = smap(udp("10.244.1.5"))
    flow = [StaleFlow(53, "10.96.0.10", "10.244.1.5")]
    assert stale_flows(old, smap(udp())) == flow
    assert stale_flows(old, {}) == flow


def test_zero_to_some_endpoints_clears_every_flow_to_the_frontends() -> None:
    old = smap(udp(node_port=30053, external=("192.0.2.7",)))
    new = smap(udp("10.244.1.5", node_port=30053, external=("192.0.2.7",)))
    assert stale_flows(old, new) == [
        StaleFlow(53, "10.96.0.10"), StaleFlow(53, "192.0.2.7"), StaleFlow(30053)]
    # A service port new to the map with endpoints at once counts as well.
    assert stale_flows({}, new) == stale_flows(old, new)
    # From none to none: nothing.
    assert stale_flows(old, dict(old)) == []


def test_frontends_of_the_old_service_are_used_for_gone_endpoints() -> None:
    old = smap(udp("10.244.1.5", external=("192.0.2.7",)))
    new = smap(udp("10.244.2.6"))
    assert StaleFlow(53, "192.0.2.7", "10.244.1.5") in stale_flows(old, new)


def test_tcp_is_left_alone() -> None:
    tcp = ServicePort(WEB, "10.96.0.20", 80, node_port=30080,
                      endpoints=(Endpoint("10.244.1.5", 8080),))
    assert stale_flows(smap(tcp), smap(replace(tcp, endpoints=()))) == []
    assert stale_flows(smap(replace(tcp, endpoints=())), smap(tcp)) == []


def test_matching() -> None:
    flows = [StaleFlow(53, "10.96.0.10", "10.244.1.5"), StaleFlow(30053, None, "10.244.1.5"),
             StaleFlow(54, "10.96.0.11")]
    assert matching(flows, "10.96.0.10", 53, "10.244.1.5")
    assert not matching(flows, "10.96.0.10", 53, "10.244.2.6")  # DNAT'd to a live endpoint
    assert not matching(flows, "10.96.0.10", 5353, "10.244.1.5")
    assert matching(flows, "172.18.0.3", 30053, "10.244.1.5")  # NodePort on any address
    assert matching(flows, "10.96.0.11", 54, "10.96.0.11")  # not DNAT'd (no endpoints then)
    assert matching(flows, "10.96.0.11", 54, "10.244.9.9")


def test_backend_cleans_after_successful_restores_only(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import proxy.iptables as ipt

    calls: list[tuple[ServiceMap | None, ServiceMap]] = []
    fail = [False]

    def restore(text: str) -> None:
        if fail[0]:
            raise ipt.RestoreError("boom")

    monkeypatch.setattr(ipt, "restore", restore)
    monkeypatch.setattr(ipt, "set_sysctls", lambda: None)
    monkeypatch.setattr(ipt, "ensure_jump_rules", lambda: None)
    monkeypatch.setattr(ipt, "save", lambda table: "")
    be = IptablesBackend(clean_conntrack=lambda old, new: calls.append((old, new)))
    m1, m2, m3 = smap(udp("10.244.1.5")), smap(udp("10.244.2.6")), smap(udp())
    be.sync(m1, [])
    assert calls == [(None, m1)]
    fail[0] = True
    try:
        be.sync(m2, [])
    except ipt.RestoreError:
        pass
    assert len(calls) == 1  # a failed restore changed nothing: no clean-up
    fail[0] = False
    be.sync(m3, [])
    assert calls[-1] == (m1, m3)  # compared with what the kernel last really had
