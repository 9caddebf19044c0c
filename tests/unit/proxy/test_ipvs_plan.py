"""IPVS backend planning: ServiceMap → virtual/real servers/bound addresses, and the diff.

Pure functions, so they are tested here in full; their application to a kernel's IPVS is in
tests/e2e/test_ipvs.py (skipped where the kernel lacks IPVS, as on these machines).
"""

from __future__ import annotations

import subprocess

import pytest
from pyroute2.netlink.generic import ipvs as genl_ipvs

from proxy.ipvs import (
    FLAG_PERSISTENT,
    FWD_MASQ,
    IpvsState,
    RealServer,
    VirtualServer,
    _rs_request,
    _vs_request,
    diff,
    iptables_rules,
    owned,
    parse_dest,
    parse_service,
    plan,
)
from proxy.model import ServiceMap, build_service_map

NODE_IPS = ["172.30.1.2", "10.0.0.7"]


def svc(name: str, ip: str, ports: list[dict], **spec: object) -> dict:
    return {"metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": ip, "ports": ports, **spec}}


def eps(name: str, addrs: list[tuple[str, str]], ports: list[dict]) -> dict:
    return {"metadata": {"namespace": "default", "name": name},
            "subsets": [{"addresses": [{"ip": ip, "nodeName": node} for ip, node in addrs],
                         "ports": ports}]}


def smap(services: list[dict], endpoints: list[dict]) -> ServiceMap:
    return build_service_map(services, endpoints)


def test_cluster_ip_service_one_virtual_server_with_its_endpoints_bound_on_dummy() -> None:
    m = smap([svc("web", "10.96.0.10", [{"port": 80, "targetPort": 9376}])],
             [eps("web", [("10.244.1.3", "a"), ("10.244.0.2", "b")], [{"port": 9376}])])
    st = plan(m, NODE_IPS)
    vs = VirtualServer("10.96.0.10", 80, "TCP", "rr", 0)
    assert st.services == {vs.key: vs}
    assert st.dests[vs.key] == {("10.244.0.2", 9376): RealServer("10.244.0.2", 9376, 1),
                                ("10.244.1.3", 9376): RealServer("10.244.1.3", 9376, 1)}
    assert st.bound == {"10.96.0.10"}


def test_multi_port_and_udp_get_one_virtual_server_each() -> None:
    m = smap([svc("dns", "10.96.0.53", [{"name": "dns", "port": 53, "protocol": "UDP"},
                                         {"name": "dns-tcp", "port": 53, "protocol": "TCP"}])],
             [eps("dns", [("10.244.0.5", "a")],
                  [{"name": "dns", "port": 5353, "protocol": "UDP"},
                   {"name": "dns-tcp", "port": 5354, "protocol": "TCP"}])])
    st = plan(m, NODE_IPS)
    assert set(st.services) == {("10.96.0.53", 53, "UDP"), ("10.96.0.53", 53, "TCP")}
    assert list(st.dests[("10.96.0.53", 53, "UDP")]) == [("10.244.0.5", 5353)]
    assert list(st.dests[("10.96.0.53", 53, "TCP")]) == [("10.244.0.5", 5354)]
    assert st.bound == {"10.96.0.53"}


def test_client_ip_affinity_makes_the_virtual_server_persistent_with_the_timeout() -> None:
    m = smap([svc("s", "10.96.0.11", [{"port": 80}], sessionAffinity="ClientIP",
                  sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
              svc("d", "10.96.0.12", [{"port": 80}], sessionAffinity="ClientIP")], [])
    st = plan(m, NODE_IPS)
    assert st.services[("10.96.0.11", 80, "TCP")].timeout == 60
    assert st.services[("10.96.0.12", 80, "TCP")].timeout == 10800  # upstream's default
    req = _vs_request(st.services[("10.96.0.11", 80, "TCP")])
    assert req["timeout"] == 60 and req["flags"]["flags"] & FLAG_PERSISTENT
    assert req["sched_name"] == "rr"


def test_no_endpoints_still_a_virtual_server_without_real_servers() -> None:
    st = plan(smap([svc("empty", "10.96.0.20", [{"port": 80}])], []), NODE_IPS)
    assert st.dests[("10.96.0.20", 80, "TCP")] == {}


def test_node_port_on_every_node_ip_not_bound() -> None:
    m = smap([svc("np", "10.96.0.30", [{"port": 80, "nodePort": 30080}], type="NodePort")],
             [eps("np", [("10.244.1.3", "a")], [{"port": 9376}])])
    st = plan(m, NODE_IPS)
    assert set(st.services) == {("10.96.0.30", 80, "TCP"), ("172.30.1.2", 30080, "TCP"),
                                ("10.0.0.7", 30080, "TCP")}
    assert st.bound == {"10.96.0.30"}  # node IPs are local already
    for ip in NODE_IPS:
        assert list(st.dests[(ip, 30080, "TCP")]) == [("10.244.1.3", 9376)]


def test_node_port_ignored_for_cluster_ip_type() -> None:
    m = smap([svc("c", "10.96.0.31", [{"port": 80, "nodePort": 30081}])], [])
    assert set(plan(m, NODE_IPS).services) == {("10.96.0.31", 80, "TCP")}


def test_external_ips_are_virtual_servers_and_bound() -> None:
    m = smap([svc("x", "10.96.0.40", [{"port": 80}], externalIPs=["192.0.2.9"])], [])
    st = plan(m, NODE_IPS)
    assert ("192.0.2.9", 80, "TCP") in st.services
    assert st.bound == {"10.96.0.40", "192.0.2.9"}


def test_external_traffic_policy_local_keeps_local_endpoints_for_node_ports_only() -> None:
    m = smap([svc("l", "10.96.0.50", [{"port": 80, "nodePort": 30050}], type="NodePort",
                  externalTrafficPolicy="Local")],
             [eps("l", [("10.244.0.2", "me"), ("10.244.1.2", "other")], [{"port": 80}])])
    st = plan(m, NODE_IPS, node_name="me")
    assert list(st.dests[("172.30.1.2", 30050, "TCP")]) == [("10.244.0.2", 80)]
    assert len(st.dests[("10.96.0.50", 80, "TCP")]) == 2  # the ClusterIP: every endpoint
    # No local endpoint: fall back to all (upstream #97081), not to an empty service.
    st = plan(m, NODE_IPS, node_name="elsewhere")
    assert len(st.dests[("172.30.1.2", 30050, "TCP")]) == 2


def test_headless_and_external_name_have_nothing() -> None:
    m = smap([svc("h", "None", [{"port": 80}]),
              {"metadata": {"namespace": "default", "name": "e"},
               "spec": {"type": "ExternalName", "externalName": "example.com"}}], [])
    st = plan(m, NODE_IPS)
    assert st.services == {} and st.bound == set()


def test_not_ready_addresses_are_not_real_servers() -> None:
    e = eps("web", [("10.244.1.3", "a")], [{"port": 80}])
    e["subsets"][0]["notReadyAddresses"] = [{"ip": "10.244.1.4"}]
    st = plan(smap([svc("web", "10.96.0.10", [{"port": 80}])], [e]), NODE_IPS)
    assert list(st.dests[("10.96.0.10", 80, "TCP")]) == [("10.244.1.3", 80)]


# --- diff ---------------------------------------------------------------------------------------

def _state(*entries: tuple[VirtualServer, list[RealServer]], bound: set[str] | None = None
           ) -> IpvsState:
    st = IpvsState(bound=set(bound or ()))
    for vs, reals in entries:
        st.add(vs, reals)
    return st


A = VirtualServer("10.96.0.1", 80)
B = VirtualServer("10.96.0.2", 443)
R1, R2, R3 = RealServer("10.244.0.1", 80), RealServer("10.244.0.2", 80), RealServer(
    "10.244.0.3", 80)


def test_diff_from_empty_adds_everything() -> None:
    want = _state((A, [R1, R2]), (B, []), bound={"10.96.0.1", "10.96.0.2"})
    d = diff(IpvsState(), want)
    assert d.add_services == [A, B]
    assert d.add_dests == [(A, R1), (A, R2)]
    assert d.bind == ["10.96.0.1", "10.96.0.2"]
    assert not (d.update_services or d.delete_services or d.delete_dests or d.unbind)


def test_diff_of_equal_states_is_empty() -> None:
    a = _state((A, [R1, R2]), bound={"10.96.0.1"})
    b = _state((A, [R2, R1]), bound={"10.96.0.1"})
    d = diff(a, b)
    assert d.empty() and len(d) == 0


def test_one_endpoint_change_is_one_add_and_one_delete() -> None:
    d = diff(_state((A, [R1, R2]), bound={"10.96.0.1"}),
             _state((A, [R1, R3]), bound={"10.96.0.1"}))
    assert d.add_dests == [(A, R3)] and d.delete_dests == [(A, R2)]
    assert len(d) == 2


def test_changed_affinity_updates_in_place_and_keeps_real_servers() -> None:
    sticky = VirtualServer(A.address, A.port, A.protocol, "rr", 60)
    d = diff(_state((A, [R1])), _state((sticky, [R1])))
    assert d.update_services == [sticky]
    assert not (d.add_services or d.delete_services or d.add_dests or d.delete_dests)


def test_changed_weight_updates_the_real_server() -> None:
    d = diff(_state((A, [RealServer(R1.address, R1.port, 0)])), _state((A, [R1])))
    assert d.update_dests == [(A, R1)] and not d.add_dests and not d.delete_dests


def test_deleted_service_deletes_it_alone_and_unbinds_after() -> None:
    d = diff(_state((A, [R1]), (B, [R2]), bound={"10.96.0.1", "10.96.0.2"}),
             _state((A, [R1]), bound={"10.96.0.1"}))
    assert d.delete_services == [B]
    assert d.delete_dests == []  # its real servers go with it
    assert d.unbind == ["10.96.0.2"]


def test_resync_after_restart_plan_then_diff_against_identical_kernel_state_is_empty() -> None:
    m = smap([svc("web", "10.96.0.10", [{"port": 80, "nodePort": 30080}], type="NodePort")],
             [eps("web", [("10.244.1.3", "a")], [{"port": 9376}])])
    want = plan(m, NODE_IPS)
    assert diff(want, plan(m, NODE_IPS)).empty()


def test_owned_leaves_foreign_virtual_servers_alone() -> None:
    foreign = VirtualServer("192.168.50.5", 80)
    node_port = VirtualServer(NODE_IPS[0], 30080)
    kernel = _state((A, [R1]), (foreign, [R2]), (node_port, []), bound={"10.96.0.1"})
    mine = owned(kernel, NODE_IPS)
    assert set(mine.services) == {A.key, node_port.key}
    d = diff(mine, IpvsState())
    assert foreign not in d.delete_services and set(d.delete_services) == {A, node_port}


# --- netlink messages ---------------------------------------------------------------------------

def _roundtrip(cmd: int, attrs: list) -> genl_ipvs.ipvsmsg:
    m = genl_ipvs.ipvsmsg()
    m["cmd"], m["version"], m["attrs"] = cmd, 1, attrs
    m.encode()
    out = genl_ipvs.ipvsmsg(m.data)
    out.decode()
    return out


@pytest.mark.parametrize("vs", [VirtualServer("10.96.0.10", 80, "TCP", "rr", 0),
                                VirtualServer("10.96.0.53", 53, "UDP", "rr", 10800)])
def test_service_request_encodes_and_parses_back(vs: VirtualServer) -> None:
    msg = _roundtrip(genl_ipvs.IPVS_CMD_NEW_SERVICE,
                     [("IPVS_CMD_ATTR_SERVICE", _vs_request(vs).dump_nla())])
    assert parse_service(msg) == vs


def test_dest_request_is_masquerading_weight_one_and_parses_back() -> None:
    rs = RealServer("10.244.1.3", 9376)
    req = _rs_request(rs)
    # pyroute2's default forwarding method is 3 (direct routing): it must be masquerade.
    assert req["fwd_method"] == FWD_MASQ and req["weight"] == 1
    msg = _roundtrip(genl_ipvs.IPVS_CMD_NEW_DEST,
                     [("IPVS_CMD_ATTR_SERVICE", _vs_request(A).dump_key()),
                      ("IPVS_CMD_ATTR_DEST", req.dump_nla())])
    assert parse_dest(msg) == rs


# --- iptables -----------------------------------------------------------------------------------

def test_iptables_rules_masquerade_off_cluster_vip_traffic_and_node_ports() -> None:
    m = smap([svc("np", "10.96.0.30", [{"port": 80, "nodePort": 30080}], type="NodePort"),
              svc("u", "10.96.0.31", [{"port": 53, "protocol": "UDP"}])], [])
    rules = iptables_rules(m, "10.244.0.0/16", 14)
    lines = rules.splitlines()
    assert ('-A KUBE-SERVICES ! -s 10.244.0.0/16 -d 10.96.0.30/32 -p tcp -m tcp --dport 80 '
            '-m comment --comment "default/np VIP" -j KUBE-MARK-MASQ') in lines
    assert any("-d 10.96.0.31/32 -p udp -m udp --dport 53" in x for x in lines)
    assert ('-A KUBE-NODE-PORT -p tcp -m tcp --dport 30080 -m comment --comment '
            '"default/np nodePort" -j KUBE-MARK-MASQ') in lines
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000" in lines
    assert "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN" in lines
    assert lines.count("COMMIT") == 2


def test_iptables_rules_are_accepted_by_iptables_restore_test_mode() -> None:
    """`iptables-restore --test` parses and checks every rule without committing anything."""
    m = smap([svc("np", "10.96.0.30", [{"port": 80, "nodePort": 30080}], type="NodePort",
                  externalIPs=["192.0.2.9"])], [])
    # In a throwaway network namespace: the root netns' tables are never touched.
    r = subprocess.run(["unshare", "--net", "iptables-restore", "--test", "--noflush"],
                       input=iptables_rules(m, "10.244.0.0/16", 14), text=True,
                       capture_output=True)
    assert r.returncode == 0, r.stderr
