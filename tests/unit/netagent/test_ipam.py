"""host-local IPAM and subnet selection of the CNI plugin (netagent/ipam.py): pure logic on
a temporary directory, no network namespaces."""

from __future__ import annotations

import ipaddress
import multiprocessing
import os
from pathlib import Path

import pytest

from netagent import ipam


def rng(cidr: str = "10.199.0.0/29") -> ipam.Range:
    return ipam.make_range(cidr, field="ipam.subnet")


def test_range_defaults_gateway_first_and_skips_broadcast() -> None:
    r = rng("10.199.0.0/24")
    assert (str(r.gateway), str(r.start), str(r.end)) == ("10.199.0.1", "10.199.0.1",
                                                          "10.199.0.254")
    # flannel's form: the address given is the gateway, the subnet is its network
    r = ipam.make_range("10.244.3.1/24", field="FLANNEL_SUBNET")
    assert str(r.subnet) == "10.244.3.0/24" and str(r.gateway) == "10.244.3.1"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"subnet": "nope"}, r"ipam.subnet: 'nope' is not an IPv4 CIDR"),
    ({"subnet": 7}, r"ipam.subnet: 7 is not a CIDR"),
    ({"subnet": "10.0.0.0/31"}, r"too small"),
    ({"subnet": "10.0.0.0/24", "gateway": "10.0.1.1"}, r"ipam.gateway: 10.0.1.1 is not in"),
    ({"subnet": "10.0.0.0/24", "start": "x"}, r"ipam.rangeStart: 'x' is not an IPv4"),
    ({"subnet": "10.0.0.0/24", "start": "10.0.0.9", "end": "10.0.0.3"}, r"is after rangeEnd"),
])
def test_range_errors_name_the_field(kwargs: dict[str, object], match: str) -> None:
    subnet = kwargs.pop("subnet")
    with pytest.raises(ipam.ConfigError, match=match):
        ipam.make_range(subnet, field="ipam.subnet", **kwargs)


def test_parse_subnet_env() -> None:
    text = ("# written by the network agent\nFLANNEL_NETWORK=10.244.0.0/16\n"
            "FLANNEL_SUBNET=10.244.1.1/24\n\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
    assert ipam.parse_subnet_env(text) == {
        "FLANNEL_NETWORK": "10.244.0.0/16", "FLANNEL_SUBNET": "10.244.1.1/24",
        "FLANNEL_MTU": "1450", "FLANNEL_IPMASQ": "true"}


def test_choose_subnet_order(tmp_path: Path) -> None:
    conf = {"runtimeConfig": {"ipRanges": [[{"subnet": "10.199.2.0/24"}]]},
            "ipam": {"subnet": "10.199.3.0/24"}}
    missing = str(tmp_path / "absent.env")
    chosen = ipam.choose_subnet(conf, missing)
    assert (str(chosen.range.subnet), chosen.source) == ("10.199.2.0/24",
                                                         "runtimeConfig.ipRanges")
    chosen = ipam.choose_subnet({"ipam": conf["ipam"]}, missing)
    assert (str(chosen.range.subnet), chosen.source) == ("10.199.3.0/24", "ipam.subnet")
    env = tmp_path / "subnet.env"
    env.write_text("FLANNEL_SUBNET=10.199.4.1/24\nFLANNEL_MTU=1450\n")
    chosen = ipam.choose_subnet(conf, str(env))
    assert (str(chosen.range.subnet), chosen.mtu) == ("10.199.4.0/24", 1450)
    # IPv6 ranges are skipped in favour of an IPv4 one
    v6 = {"runtimeConfig": {"ipRanges": [[{"subnet": "fd00::/64"}], [{"subnet": "10.1.0.0/24"}]]}}
    assert str(ipam.choose_subnet(v6, missing).range.subnet) == "10.1.0.0/24"


def test_choose_subnet_errors(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.env")
    with pytest.raises(ipam.ConfigError, match=r"^no pod subnet: .*absent.env does not exist"):
        ipam.choose_subnet({}, missing)
    with pytest.raises(ipam.ConfigError, match=r"runtimeConfig.ipRanges\[0\]\[0\].subnet"):
        ipam.choose_subnet({"runtimeConfig": {"ipRanges": [[{"subnet": "bad"}]]}}, missing)
    env = tmp_path / "subnet.env"
    env.write_text("FLANNEL_NETWORK=10.244.0.0/16\n")
    with pytest.raises(ipam.ConfigError, match="has no FLANNEL_SUBNET"):
        ipam.choose_subnet({}, str(env))
    env.write_text("FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=big\n")
    with pytest.raises(ipam.ConfigError, match="FLANNEL_MTU .* is not a number"):
        ipam.choose_subnet({}, str(env))


def test_allocate_release_round_robin(tmp_path: Path) -> None:
    store = ipam.Store(str(tmp_path), "net")
    r = rng()  # .1 gateway, .2-.6 usable
    with store.locked():
        got = [str(store.allocate(f"c{i}", "eth0", r)) for i in range(5)]
        assert got == [f"10.199.0.{i}" for i in range(2, 7)]
        with pytest.raises(ipam.Exhausted, match="no IP addresses available in range set"):
            store.allocate("c5", "eth0", r)
        # a repeated ADD of the same container gets the address it holds
        assert str(store.allocate("c3", "eth0", r)) == "10.199.0.5"
        assert [str(a) for a in store.release("c1", "eth0")] == ["10.199.0.3"]
        assert store.release("c1", "eth0") == []  # idempotent
        assert store.release("unknown", "eth0") == []
        assert str(store.allocate("c9", "eth0", r)) == "10.199.0.3"
        store.release("c2", "eth0")
        store.release("c0", "eth0")
        # round robin: after .3 comes .4 (free now), not the lowest free .2
        assert str(store.allocate("c10", "eth0", r)) == "10.199.0.4"
    assert (tmp_path / "net" / "10.199.0.4").read_bytes() == b"c10\r\neth0"  # as host-local
    assert (tmp_path / "net" / "last_reserved_ip.0").read_text() == "10.199.0.4"


def test_allocation_moves_when_the_subnet_changes(tmp_path: Path) -> None:
    store = ipam.Store(str(tmp_path), "net")
    with store.locked():
        old = store.allocate("c", "eth0", rng("10.199.0.0/24"))
        new = store.allocate("c", "eth0", rng("10.199.1.0/24"))
        assert new in ipaddress.ip_network("10.199.1.0/24")
        assert store.find("c", "eth0") == [new]
    assert not (tmp_path / "net" / str(old)).exists()


def test_bad_network_name(tmp_path: Path) -> None:
    with pytest.raises(ipam.ConfigError, match="name: '../x' is not a usable network name"):
        ipam.Store(str(tmp_path), "../x")


def _allocate_many(data_dir: str, worker: int, q: multiprocessing.Queue) -> None:
    store = ipam.Store(data_dir, "net")
    r = ipam.make_range("10.199.0.0/24", field="ipam.subnet")
    out = []
    for i in range(20):
        with store.locked():
            out.append(str(store.allocate(f"w{worker}-{i}", "eth0", r)))
    q.put(out)


def test_concurrent_processes_never_share_an_address(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    q: multiprocessing.Queue = ctx.Queue()
    procs = [ctx.Process(target=_allocate_many, args=(str(tmp_path), w, q)) for w in range(6)]
    for p in procs:
        p.start()
    got = [ip for _ in procs for ip in q.get(timeout=60)]
    for p in procs:
        p.join(timeout=60)
    assert len(got) == 120 and len(set(got)) == 120
    files = [n for n in os.listdir(tmp_path / "net") if n[0].isdigit()]
    assert sorted(files) == sorted(got)
