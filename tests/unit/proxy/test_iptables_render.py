"""The iptables proxier's rules, compared with upstream's shapes (pkg/proxy/iptables
proxier_test.go: same chain names for the same service port names and endpoints)."""

from __future__ import annotations

from proxy import iptables as ipt
from proxy.model import Endpoint, ServicePort, ServicePortName, build_service_map

CFG = ipt.Config(cluster_cidr="10.0.0.0/8")
SVC1 = ServicePortName("ns1", "svc1", "p80")


def _eps(*ips: str, port: int = 80) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(ip, port) for ip in ips)


def _nat_rules(text: str) -> list[str]:
    nat = text.split("*nat\n", 1)[1]
    return [line for line in nat.splitlines() if line.startswith("-A ")]


def test_chain_names_hash_like_upstream() -> None:
    # The names upstream's proxier_test.go expects for ns1/svc1:p80 and endpoint 10.180.0.1:80.
    assert ipt.svc_chain(SVC1) == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert ipt.ext_chain(SVC1) == "KUBE-EXT-XPGD46QRK7WJZT7O"
    assert ipt.sep_chain(SVC1, Endpoint("10.180.0.1", 80)) == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    # Protocol is part of the hash: a UDP port of the same name is another chain.
    udp = ServicePortName("ns1", "svc1", "p80", "UDP")
    assert ipt.svc_chain(udp) != ipt.svc_chain(SVC1)


def test_probabilities() -> None:
    assert [ipt.probability(n) for n in (3, 2)] == ["0.3333333333", "0.5000000000"]


def test_cluster_ip_with_three_endpoints() -> None:
    sp = ServicePort(SVC1, "172.30.0.41", 80, endpoints=_eps("10.180.0.1", "10.180.0.2",
                                                              "10.180.0.3"))
    text = ipt.render_map({SVC1: sp}, CFG)
    svc = "KUBE-SVC-XPGD46QRK7WJZT7O"
    seps = [ipt.sep_chain(SVC1, ep) for ep in sp.endpoints]
    assert seps[0] == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    expected = [
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
        '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp '
        f"-d 172.30.0.41 --dport 80 -j {svc}",
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must '
        'be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
        f'-A {svc} -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp '
        "-d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
        f'-A {svc} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic '
        f"--mode random --probability 0.3333333333 -j {seps[0]}",
        f'-A {svc} -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -m statistic '
        f"--mode random --probability 0.5000000000 -j {seps[1]}",
        f'-A {svc} -m comment --comment "ns1/svc1:p80 -> 10.180.0.3:80" -j {seps[2]}',
    ]
    for i, sep in enumerate(seps, 1):
        expected += [
            f"-A {sep} -m comment --comment ns1/svc1:p80 -s 10.180.0.{i}/32 -j KUBE-MARK-MASQ",
            f"-A {sep} -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT "
            f"--to-destination 10.180.0.{i}:80",
        ]
    assert _nat_rules(text) == expected
    # Every chain it uses is declared (flushed) in the same restore; nothing else is.
    nat_chains = [ln for ln in text.split("*nat\n")[1].splitlines() if ln.startswith(":")]
    assert nat_chains == [f":{c} - [0:0]" for c in (
        "KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", svc, *seps)]
    # With endpoints there is no REJECT.
    assert "REJECT" not in text


def test_no_cluster_cidr_no_masquerade_rule_in_svc_chain() -> None:
    sp = ServicePort(SVC1, "172.30.0.41", 80, endpoints=_eps("10.180.0.1"))
    text = ipt.render_map({SVC1: sp}, ipt.Config())
    svc_rules = [r for r in _nat_rules(text) if r.startswith("-A KUBE-SVC-")]
    assert svc_rules == ['-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment '
                         '"ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ']


def test_nodeport_goes_through_ext_chain() -> None:
    sp = ServicePort(SVC1, "172.30.0.41", 80, node_port=3001, endpoints=_eps("10.180.0.1"))
    rules = _nat_rules(ipt.render_map({SVC1: sp}, CFG))
    ext, svc = "KUBE-EXT-XPGD46QRK7WJZT7O", "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert (f"-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 "
            f"-j {ext}") in rules
    i = rules.index(f'-A {ext} -m comment --comment "masquerade traffic for ns1/svc1:p80 '
                    'external destinations" -j KUBE-MARK-MASQ')
    assert rules[i + 1] == f"-A {ext} -j {svc}"
    # The NodePort jump is the last rule of KUBE-SERVICES.
    services = [r for r in rules if r.startswith("-A KUBE-SERVICES ")]
    assert services[-1].endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")


def test_external_ip() -> None:
    sp = ServicePort(SVC1, "172.30.0.41", 80, external_ips=("192.168.99.11",),
                     endpoints=_eps("10.180.0.1"))
    rules = _nat_rules(ipt.render_map({SVC1: sp}, CFG))
    assert ('-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp '
            "-d 192.168.99.11 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O") in rules


def test_session_affinity_uses_recent() -> None:
    sp = ServicePort(SVC1, "172.30.0.41", 80, affinity_timeout=300,
                     endpoints=_eps("10.180.0.1", "10.180.0.2"))
    rules = _nat_rules(ipt.render_map({SVC1: sp}, CFG))
    svc = "KUBE-SVC-XPGD46QRK7WJZT7O"
    sep1, sep2 = (ipt.sep_chain(SVC1, ep) for ep in sp.endpoints)
    svc_rules = [r for r in rules if r.startswith(f"-A {svc} ")]
    # After the masquerade rule: the affinity checks, before any random choice.
    assert svc_rules[1:3] == [
        f'-A {svc} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m recent '
        f"--name {sep1} --rcheck --seconds 300 --reap -j {sep1}",
        f'-A {svc} -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -m recent '
        f"--name {sep2} --rcheck --seconds 300 --reap -j {sep2}",
    ]
    assert "--probability 0.5000000000" in svc_rules[3]
    assert (f"-A {sep2} -m comment --comment ns1/svc1:p80 -m recent --name {sep2} --set "
            "-m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80") in rules


def test_no_endpoints_rejects_in_filter() -> None:
    sp = ServicePort(SVC1, "172.30.0.41", 80, node_port=3001, external_ips=("1.2.3.4",))
    text = ipt.render_map({SVC1: sp}, CFG)
    filt = text.split("*nat\n")[0].splitlines()
    assert filt[:5] == ["*filter", ":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]",
                        ":KUBE-FORWARD - [0:0]", ":KUBE-NODEPORTS - [0:0]"]
    assert filt[5:8] == [
        '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp '
        "-d 172.30.0.41 --dport 80 -j REJECT",
        '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" '
        "-m tcp -p tcp -d 1.2.3.4 --dport 80 -j REJECT",
        '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" '
        "-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j REJECT",
    ]
    assert filt[8:] == [
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" '
        "-m mark --mark 0x4000/0x4000 -j ACCEPT",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "COMMIT",
    ]
    # No nat chain of its own: nothing to DNAT to.
    assert not [r for r in _nat_rules(text) if "SVC1" in r or "KUBE-SVC-" in r]


def test_masquerade_bit() -> None:
    text = ipt.render_map({}, ipt.Config(masquerade_bit=5))
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x20\n" in text
    assert "--mark 0x20/0x20 -j ACCEPT" in text


def test_partial_render_writes_only_changed_chains_and_deletes_stale() -> None:
    a = ServicePort(SVC1, "172.30.0.41", 80, endpoints=_eps("10.180.0.1"))
    b_name = ServicePortName("ns2", "svc2", "")
    b = ServicePort(b_name, "172.30.0.42", 80, endpoints=_eps("10.180.0.2"))
    fa, fb = ipt.render_service(a, CFG), ipt.render_service(b, CFG)
    rs = ipt.render([fa, fb], CFG, write=[fb], delete={"KUBE-SEP-OLD", *fa.chains})
    lines = rs.text.splitlines()
    # The unchanged service's chains are neither declared nor written…
    assert not [ln for ln in lines if ln.startswith(f":{ipt.svc_chain(SVC1)}")]
    assert not [ln for ln in lines if ln.startswith(f"-A {ipt.svc_chain(SVC1)}")]
    # …but it stays in KUBE-SERVICES (rewritten whole every time).
    assert any(ln.startswith("-A KUBE-SERVICES") and ipt.svc_chain(SVC1) in ln for ln in lines)
    assert f":{ipt.svc_chain(b_name)} - [0:0]" in lines
    # The stale chain is flushed (declared) then deleted, after every rule.
    assert ":KUBE-SEP-OLD - [0:0]" in lines
    assert lines[-2:] == ["-X KUBE-SEP-OLD", "COMMIT"]
    assert rs.chains == {*fa.chains, *fb.chains}


def test_from_api_objects_only_ready_endpoints() -> None:
    svc = {"metadata": {"namespace": "ns1", "name": "svc1"},
           "spec": {"clusterIP": "172.30.0.41", "ports": [{"name": "p80", "port": 80}]}}
    eps = {"metadata": {"namespace": "ns1", "name": "svc1"},
           "subsets": [{"addresses": [{"ip": "10.180.0.1"}],
                        "notReadyAddresses": [{"ip": "10.180.0.9"}],
                        "ports": [{"name": "p80", "port": 80}]}]}
    text = ipt.render_map(build_service_map([svc], [eps]), CFG)
    assert "10.180.0.1:80" in text
    assert "10.180.0.9" not in text


def test_cleanup_text_removes_only_kube_chains_and_jumps() -> None:
    nat = "\n".join([
        "*nat", ":PREROUTING ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]",
        ":KUBE-SERVICES - [0:0]", ":KUBE-SVC-X - [0:0]", ":FLANNEL-POSTRTG - [0:0]",
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-A POSTROUTING -j FLANNEL-POSTRTG",
        "-A KUBE-SERVICES -d 10.0.0.1/32 -j KUBE-SVC-X", "COMMIT", ""])
    text = ipt.cleanup_text("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", nat)
    assert text.splitlines() == [
        "*filter", "COMMIT", "*nat", ":KUBE-SERVICES - [0:0]", ":KUBE-SVC-X - [0:0]",
        '-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-X KUBE-SERVICES", "-X KUBE-SVC-X", "COMMIT"]
