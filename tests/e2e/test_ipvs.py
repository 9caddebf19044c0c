"""tk-proxy's IPVS mode against the kernel: detection, and the backend applied for real.

(a) on a kernel without IPVS (these machines), `ipvs_unavailable()` names what is missing in
one line (tests/unit/proxy/test_proxy_flags.py checks that `tk-proxy --proxy-mode ipvs` then
exits 1 with exactly that line). (b) programs a real kernel's IPVS inside a network namespace
the test creates and reads it back over netlink; it is skipped, with `ipvs_unavailable()`'s own
reason, where the kernel has no IPVS; the planning it applies is unit-tested everywhere
(tests/unit/proxy/test_ipvs_plan.py).
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.netns import Host, Underlay
from proxy.ipvs import ipvs_unavailable

REPO = Path(__file__).resolve().parents[2]
REASON = ipvs_unavailable()


def test_ipvs_unavailable_names_the_missing_piece() -> None:
    if REASON is None:
        pytest.skip("this kernel has IPVS: nothing is missing to name")
    assert "IPVS" in REASON and "\n" not in REASON


# --- (b) a real kernel's IPVS -------------------------------------------------------------------

@pytest.fixture
def host() -> Iterator[Host]:
    underlay = Underlay.create()
    try:
        yield underlay.add_host()
    finally:
        underlay.delete()


# Runs inside the host: syncs a ServiceMap, prints the kernel's state as JSON.
SCRIPT = textwrap.dedent("""
    import json, sys
    from proxy.ipvs import IpvsBackend
    from proxy.model import build_service_map
    services, endpoints, node_ips, cleanup = json.loads(sys.stdin.read())
    b = IpvsBackend("10.244.0.0/16", 14, node_name="n1")
    if cleanup:
        b.cleanup()
    else:
        b.sync(build_service_map(services, endpoints), node_ips)
    st = b.read_state(node_ips)
    print(json.dumps({
        "services": sorted([vs.address, vs.port, vs.protocol, vs.scheduler, vs.timeout]
                           for vs in st.services.values()),
        "dests": sorted([k[0], k[1], k[2], r.address, r.port, r.weight]
                        for k, rs in st.dests.items() for r in rs.values()),
        "bound": sorted(st.bound), "changes": len(b.last_diff)}))
""")


def _sync(host: Host, services: list, endpoints: list, cleanup: bool = False) -> dict:
    r = host.run("env", f"PYTHONPATH={REPO}", sys.executable, "-c", SCRIPT, check=False,
                 timeout=60,
                 input=json.dumps([services, endpoints, [host.ip], cleanup]))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _svc(name: str, ip: str, **spec: object) -> dict:
    return {"metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": ip, "ports": [{"port": 80, "nodePort": 30080}], **spec}}


def _eps(name: str, *ips: str) -> dict:
    return {"metadata": {"namespace": "default", "name": name},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips], "ports": [{"port": 9376}]}]}


@pytest.mark.skipif(REASON is not None, reason=f"kernel has no IPVS: {REASON}")
def test_ipvs_backend_programs_converges_and_cleans_up(host: Host) -> None:
    np = _svc("web", "10.96.0.10", type="NodePort")
    sticky = _svc("sticky", "10.96.0.11", sessionAffinity="ClientIP",
                  sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    st = _sync(host, [np, sticky], [_eps("web", "10.244.1.2", "10.244.2.2"),
                                    _eps("sticky", "10.244.1.3")])
    assert st["services"] == [["10.96.0.10", 80, "TCP", "rr", 0],
                              ["10.96.0.11", 80, "TCP", "rr", 60],
                              [host.ip, 30080, "TCP", "rr", 0]]
    assert ["10.96.0.10", 80, "TCP", "10.244.1.2", 9376, 1] in st["dests"]
    assert ["10.96.0.10", 80, "TCP", "10.244.2.2", 9376, 1] in st["dests"]
    assert [host.ip, 30080, "TCP", "10.244.2.2", 9376, 1] in st["dests"]
    assert st["bound"] == ["10.96.0.10", "10.96.0.11"]
    nat = host.run("iptables-save", "-t", "nat").stdout
    assert "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN" in nat

    # The same state again: nothing to do (a restart resyncs without churn).
    again = _sync(host, [np, sticky], [_eps("web", "10.244.1.2", "10.244.2.2"),
                                       _eps("sticky", "10.244.1.3")])
    assert again["changes"] == 0 and again["services"] == st["services"]

    # One endpoint replaced, one service gone: only those change, its VIP is unbound.
    st = _sync(host, [np], [_eps("web", "10.244.1.2", "10.244.3.2")])
    assert [s[0] for s in st["services"]] == ["10.96.0.10", host.ip]
    web = sorted(d[3] for d in st["dests"] if d[0] == "10.96.0.10")
    assert web == ["10.244.1.2", "10.244.3.2"]
    assert st["bound"] == ["10.96.0.10"]

    st = _sync(host, [], [], cleanup=True)
    assert st["services"] == [] and st["bound"] == []
    assert "KUBE-POSTROUTING" not in host.run("iptables-save", "-t", "nat").stdout
