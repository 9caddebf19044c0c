"""tk-proxy's flags: bad input is one line naming the flag and exit 2; IPVS on a kernel
without it is one line and exit 1 (before any apiserver is contacted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proxy import ipvs
from proxy.__main__ import parse
from proxy.metrics import PROGRAMMING_BUCKETS, SYNC_BUCKETS, parse_trigger_time

ROOT = Path(__file__).resolve().parents[3]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", "--server", "127.0.0.1:1", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize("args, flag", [
    (["--cluster-cidr", "10.0.0.0/33"], "--cluster-cidr"),
    (["--masquerade-bit", "32"], "--masquerade-bit"),
    (["--min-sync-period", "1m", "--sync-period", "10s"], "--min-sync-period"),
    (["--sync-period", "-1s"], "--sync-period"),
    (["--metrics-bind-address", "localhost"], "--metrics-bind-address"),
    (["--proxy-mode", "userspace"], "--proxy-mode"),
])
def test_bad_flags_are_one_line_exit_2(args: list[str], flag: str) -> None:
    p = _run(*args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tk-proxy: error: ") and flag in lines[0]


def test_defaults() -> None:
    a, _ = parse(["--hostname-override", "n1"])
    assert (a.proxy_mode, a.min_sync_period, a.sync_period, a.masquerade_bit) == \
        ("iptables", 1.0, 30.0, 14)
    assert a.metrics == ("127.0.0.1", 10249)
    assert parse(["--metrics-bind-address", "0"])[0].metrics is None
    assert parse(["--cluster-cidr", "10.244.1.0/16"])[0].cluster_cidr == "10.244.0.0/16"


def test_ipvs_mode_without_ipvs_is_one_line_exit_1() -> None:
    reason = ipvs.ipvs_unavailable()
    if reason is None:
        pytest.skip("this kernel has IPVS (ip_vs): the refusal cannot be observed here")
    p = _run("--proxy-mode", "ipvs")
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [
        f"tk-proxy: --proxy-mode ipvs: this kernel has no IPVS ({reason}); use "
        "--proxy-mode iptables"]


def test_trigger_time_parsing() -> None:
    assert parse_trigger_time("2024-05-01T10:00:00Z") == 1714557600.0
    # Go's RFC3339Nano: nine digits (microseconds are what a float keeps anyway).
    assert parse_trigger_time("2024-05-01T10:00:00.123456789Z") == pytest.approx(
        1714557600.123456)
    assert parse_trigger_time("2024-05-01T12:00:00.5+02:00") == 1714557600.5
    assert parse_trigger_time("yesterday") is None
    assert parse_trigger_time("2024-05-01T10:00:00") is None  # no zone: not RFC 3339


def test_buckets_as_upstream() -> None:
    assert SYNC_BUCKETS[0] == 0.001 and len(SYNC_BUCKETS) == 15
    assert PROGRAMMING_BUCKETS[:3] == [0.25, 0.5, 1] and PROGRAMMING_BUCKETS[-1] == 300


def test_cleanup_also_removes_what_ipvs_mode_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tk-proxy --cleanup` (in whatever mode) removes IPVS leftovers too, as upstream's
    CleanupLeftovers: kube-ipvs0 would otherwise keep every ClusterIP a local address."""
    import proxy.__main__ as main_mod
    from proxy.iptables import IptablesBackend

    calls: list[str] = []
    monkeypatch.setattr(IptablesBackend, "cleanup", lambda self: calls.append("iptables"))
    monkeypatch.setattr(ipvs.IpvsBackend, "cleanup", lambda self: calls.append("ipvs"))
    monkeypatch.setattr(sys, "argv", ["tk-proxy", "--cleanup"])
    main_mod.main()
    assert calls == ["iptables", "ipvs"]


def test_metrics_server_does_no_reverse_dns_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """http.server's bind looks its address up with socket.getfqdn, which waited ~10 s for an
    unreachable resolver inside a node's network namespace: the proxy's server must not."""
    import socket
    import urllib.request

    from proxy.metrics import Metrics

    def no_dns(name: str = "") -> str:
        raise AssertionError(f"reverse DNS lookup of {name!r}")

    monkeypatch.setattr(socket, "getfqdn", no_dns)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = Metrics()
    m.serve("127.0.0.1", port)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    assert b"kubeproxy_network_programming_duration_seconds_bucket" in body
