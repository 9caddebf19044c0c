"""The pure parts of apiserver/kubernetes_service.py: the ClusterIP, the advertise address and
what counts as a change to repair. The objects themselves are tested against a real apiserver
in tests/integration/test_kubernetes_service.py."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from apiserver import kubernetes_service as ks
from apiserver.__main__ import parse

ROUTES = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t00000000\t0102000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t50\t00000000\t0\t0\t0
down0\t00000000\t0101A8C0\t0002\t0\t0\t1\t00000000\t0\t0\t0
"""


def test_service_ip() -> None:
    assert ks.service_ip("10.96.0.0/16") == "10.96.0.1"
    assert ks.service_ip("10.0.0.0/24") == "10.0.0.1"
    assert ks.service_ip("10.96.7.3/16") == "10.96.0.1"  # host bits, as the flag allows


def test_default_route_interface(tmp_path: Path) -> None:
    routes = tmp_path / "route"
    routes.write_text(ROUTES)
    # The default route that is up, with the lowest metric.
    assert ks._default_route_interface(str(routes)) == "wlan0"
    routes.write_text(ROUTES.splitlines()[0] + "\n" + ROUTES.splitlines()[1] + "\n")
    assert ks._default_route_interface(str(routes)) is None
    assert ks._default_route_interface(str(tmp_path / "missing")) is None


def test_choose_advertise_address(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ks.choose_advertise_address("10.1.2.3") == "10.1.2.3"
    monkeypatch.setattr(ks, "_default_route_interface", lambda: "eth9")
    monkeypatch.setattr(ks, "_interface_ipv4", {"eth9": "192.0.2.5", "lo": "127.0.0.1",
                                                "eth1": "198.51.100.7"}.get)
    for bind in ("0.0.0.0", "127.0.0.1", "::", "localhost"):
        assert ks.choose_advertise_address(bind) == "192.0.2.5"
    # No default route: the first non-loopback address of any interface.
    monkeypatch.setattr(ks, "_default_route_interface", lambda: None)
    monkeypatch.setattr(ks.socket, "if_nameindex", lambda: [(1, "lo"), (2, "eth1")])
    assert ks.choose_advertise_address("0.0.0.0") == "198.51.100.7"
    # No network at all.
    monkeypatch.setattr(ks.socket, "if_nameindex", lambda: [(1, "lo")])
    assert ks.choose_advertise_address("0.0.0.0") == "127.0.0.1"


def test_choose_advertise_address_on_this_machine() -> None:
    ip = ipaddress.ip_address(ks.choose_advertise_address("0.0.0.0"))
    assert ip.version == 4


def test_service_needs_update() -> None:
    svc = ks.expected_service("10.96.0.1", 6443)
    assert not ks.service_needs_update(svc, 6443)
    assert ks.service_needs_update(svc, 6444)
    for change in ({"type": "NodePort"}, {"selector": {"a": "b"}},
                   {"ports": [{**ks.expected_ports(6443)[0], "nodePort": 30000}]},
                   {"ports": ks.expected_ports(6443) * 2}):
        assert ks.service_needs_update({**svc, "spec": {**svc["spec"], **change}}, 6443), change
    # Defaults the apiserver fills in are no change.
    assert not ks.service_needs_update({**svc, "spec": {
        **svc["spec"], "internalTrafficPolicy": "Cluster", "selector": {}}}, 6443)


def test_endpoints_need_update() -> None:
    good = ks.expected_endpoints("10.0.0.1", 6443)
    assert not ks.endpoints_need_update(good, "10.0.0.1", 6443)
    assert ks.endpoints_need_update(good, "10.0.0.2", 6443)
    assert ks.endpoints_need_update(good, "10.0.0.1", 6444)
    assert ks.endpoints_need_update({**good, "metadata": {}}, "10.0.0.1", 6443)
    extra = {**good, "subsets": [{**good["subsets"][0], "addresses": [
        {"ip": "10.0.0.1"}, {"ip": "10.0.0.9"}]}]}
    assert ks.endpoints_need_update(extra, "10.0.0.1", 6443)


def test_flags() -> None:
    cfg = parse(["--advertise-address", "10.1.2.3", "--endpoint-reconciler-interval", "500ms"])
    assert (cfg.advertise_address, cfg.endpoint_reconciler_interval) == ("10.1.2.3", 0.5)
    cfg = parse([])
    assert (cfg.advertise_address, cfg.endpoint_reconciler_interval) == ("", 10.0)
    for bad in (["--advertise-address", "nope"], ["--advertise-address", "::1"],
                ["--endpoint-reconciler-interval", "0s"]):
        with pytest.raises(SystemExit):
            parse(bad)
