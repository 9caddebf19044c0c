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


def test_two_ports_https_first() -> None:
    """`https` 443 → the secure port (upstream's, first: KUBERNETES_SERVICE_PORT stays 443),
    then `grpc` 6444 → the gRPC port for tokens."""
    svc = ks.expected_service("10.96.0.1", 6443, 6444)
    assert svc["spec"]["ports"] == [
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443},
        {"name": "grpc", "port": 6444, "protocol": "TCP", "targetPort": 6444}]
    ep = ks.expected_endpoints("10.0.0.1", 6443, 6444)
    assert ep["subsets"] == [{"addresses": [{"ip": "10.0.0.1"}], "ports": [
        {"name": "https", "port": 6443, "protocol": "TCP"},
        {"name": "grpc", "port": 6444, "protocol": "TCP"}]}]


def test_service_needs_update() -> None:
    svc = ks.expected_service("10.96.0.1", 6443, 6444)
    assert not ks.service_needs_update(svc, 6443, 6444)
    assert ks.service_needs_update(svc, 6445, 6444)
    assert ks.service_needs_update(svc, 6443, 6442)
    https, grpc = ks.expected_ports(6443, 6444)
    for change in ({"type": "NodePort"}, {"selector": {"a": "b"}},
                   {"ports": [{**https, "nodePort": 30000}, grpc]},
                   {"ports": [https]}, {"ports": [grpc, https]},
                   {"ports": [https, grpc, https]}):
        assert ks.service_needs_update({**svc, "spec": {**svc["spec"], **change}}, 6443,
                                       6444), change
    # Defaults the apiserver fills in are no change.
    assert not ks.service_needs_update({**svc, "spec": {
        **svc["spec"], "internalTrafficPolicy": "Cluster", "selector": {}}}, 6443, 6444)


def test_endpoints_need_update() -> None:
    good = ks.expected_endpoints("10.0.0.1", 6443, 6444)
    assert not ks.endpoints_need_update(good, "10.0.0.1", 6443, 6444)
    assert ks.endpoints_need_update(good, "10.0.0.2", 6443, 6444)
    assert ks.endpoints_need_update(good, "10.0.0.1", 6444, 6444)
    assert ks.endpoints_need_update(good, "10.0.0.1", 6443, 6442)
    assert ks.endpoints_need_update({**good, "metadata": {}}, "10.0.0.1", 6443, 6444)
    extra = {**good, "subsets": [{**good["subsets"][0], "addresses": [
        {"ip": "10.0.0.1"}, {"ip": "10.0.0.9"}]}]}
    assert ks.endpoints_need_update(extra, "10.0.0.1", 6443, 6444)
    one_port = {**good, "subsets": [{**good["subsets"][0],
                                     "ports": good["subsets"][0]["ports"][:1]}]}
    assert ks.endpoints_need_update(one_port, "10.0.0.1", 6443, 6444)
    # The order of a subset's ports is no change (the registry may sort them).
    swapped = {**good, "subsets": [{**good["subsets"][0],
                                    "ports": good["subsets"][0]["ports"][::-1]}]}
    assert not ks.endpoints_need_update(swapped, "10.0.0.1", 6443, 6444)


def test_the_endpoints_controllers_leftover_is_repaired() -> None:
    """What the endpoints controller writes while someone gave default/kubernetes a selector
    (no pods: no subsets, the Service's labels, its trigger time) is put back whole: even with
    the subsets already right again, its trigger-time annotation would describe a change the
    apiserver has undone (issue 20's flaky test found it left over)."""
    good = ks.expected_endpoints("10.0.0.1", 6443, 6444)
    mark = {"endpoints.kubernetes.io/last-change-trigger-time": "2024-01-01T00:00:00Z"}
    controllers = {**good, "metadata": {
        "name": "kubernetes", "namespace": "default", "resourceVersion": "7",
        "labels": {"component": "apiserver", "provider": "kubernetes"},
        "annotations": {**mark, "note": "keep"}}}
    controllers.pop("subsets")
    assert ks.endpoints_need_update(controllers, "10.0.0.1", 6443, 6444)
    fixed = ks.repaired_endpoints(controllers, "10.0.0.1", 6443, 6444)
    assert not ks.endpoints_need_update(fixed, "10.0.0.1", 6443, 6444)
    assert fixed["subsets"] == good["subsets"]
    assert fixed["metadata"]["annotations"] == {"note": "keep"}
    assert fixed["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes",
                                           "endpointslice.kubernetes.io/skip-mirror": "true"}
    assert fixed["metadata"]["resourceVersion"] == "7"  # an update of what was read
    # Subsets right, annotation left: still a repair, and no empty annotations map after it.
    only_mark = {**good, "metadata": {**good["metadata"], "annotations": dict(mark)}}
    assert ks.endpoints_need_update(only_mark, "10.0.0.1", 6443, 6444)
    assert "annotations" not in ks.repaired_endpoints(
        only_mark, "10.0.0.1", 6443, 6444)["metadata"]


def test_flags() -> None:
    cfg = parse(["--advertise-address", "10.1.2.3", "--endpoint-reconciler-interval", "500ms"])
    assert (cfg.advertise_address, cfg.endpoint_reconciler_interval) == ("10.1.2.3", 0.5)
    cfg = parse([])
    assert (cfg.advertise_address, cfg.endpoint_reconciler_interval) == ("", 10.0)
    for bad in (["--advertise-address", "nope"], ["--advertise-address", "::1"],
                ["--endpoint-reconciler-interval", "0s"]):
        with pytest.raises(SystemExit):
            parse(bad)


def test_port_flags() -> None:
    cfg = parse([])
    assert (cfg.secure_port, cfg.grpc_port, cfg.token_port) == (6443, 6442, 6444)
    cfg = parse(["--secure-port", "7443", "--grpc-port", "7442", "--token-port", "0"])
    assert (cfg.secure_port, cfg.grpc_port, cfg.token_port) == (7443, 7442, 0)
    # --insecure has no token port, so the default 6444 is no conflict there.
    cfg = parse(["--insecure", "--grpc-port", "6444"])
    assert (cfg.grpc_port, cfg.token_port) == (6444, 0)


@pytest.mark.parametrize(("args", "message"), [
    (["--secure-port", "0"], "--secure-port: 0 is not a TCP port"),
    (["--secure-port", "65536"], "--secure-port: 65536 is not a TCP port"),
    (["--grpc-port", "-1"], "--grpc-port: -1 is not a TCP port"),
    (["--grpc-port", "6443"], "--grpc-port: 6443 is --secure-port too"),
    (["--token-port", "70000"], "--token-port: 70000 is not a TCP port"),
    (["--token-port", "6442"], "--token-port: 6442 is --grpc-port too"),
    (["--token-port", "6443"], "--token-port: 6443 is --secure-port too"),
    (["--port", "6443"], "unrecognized arguments: --port"),
])
def test_bad_port_flags_name_the_flag(args: list[str], message: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("tk-apiserver: error: ") and message in err, err
    assert err.count("\n") == 1, err
