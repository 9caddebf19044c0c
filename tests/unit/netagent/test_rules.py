"""The netagent's iptables rule text (netagent/rules.py), as flannel writes it; the kernel side
(the rules applied in a host, their effect on packets) is tests/e2e/test_overlay.py's."""

from __future__ import annotations

import ipaddress

from netagent import rules

NET = ipaddress.IPv4Network("10.244.0.0/16")
POD = ipaddress.IPv4Network("10.244.3.0/24")


def test_forward_rules_accept_the_cluster_network_both_ways() -> None:
    assert rules.forward_rules(NET) == [
        '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
        '-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT']


def test_masq_rules_in_flannels_order() -> None:
    got = rules.masq_rules(NET, POD)
    c = '-m comment --comment "flanneld masq"'
    assert got == [
        f"-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {c} -j RETURN",
        f"-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.0.0/16 {c} -j RETURN",
        f"-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 {c} -j MASQUERADE --random-fully",
        f"-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.3.0/24 {c} -j RETURN",
        f"-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 {c} -j MASQUERADE --random-fully"]
    # pod → pod returns before any masquerade
    assert got.index(next(r for r in got if "-d 10.244.0.0/16" in r and "RETURN" in r)) < \
        got.index(next(r for r in got if "MASQUERADE" in r))
    assert all("--random-fully" not in r for r in rules.masq_rules(NET, POD, random_fully=False))


def test_restore_input_declares_only_our_chains() -> None:
    text = rules.restore_input(NET, POD, ip_masq=True)
    lines = text.splitlines()
    assert lines[:2] == ["*filter", ":FLANNEL-FWD - [0:0]"]
    assert [ln for ln in lines if ln.startswith(":")] == [":FLANNEL-FWD - [0:0]",
                                                          ":FLANNEL-POSTRTG - [0:0]"]
    assert lines.count("COMMIT") == 2 and text.endswith("COMMIT\n")
    # Jumps from the built-in chains are never in the restore (it runs with --noflush and
    # would append a second copy each time): they are checked with -C instead.
    assert not any(ln.startswith(("-A FORWARD", "-A POSTROUTING", "-I ")) for ln in lines)


def test_without_masquerade_the_nat_chain_is_declared_empty() -> None:
    lines = rules.restore_input(NET, POD, ip_masq=False).splitlines()
    nat = lines[lines.index("*nat"):]
    assert nat == ["*nat", ":FLANNEL-POSTRTG - [0:0]", "COMMIT"]
