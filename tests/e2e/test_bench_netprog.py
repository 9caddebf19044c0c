"""Smoke test of the network programming benchmark: `bench/netprog.py` with tiny numbers.

It runs the whole pipeline (a cluster, a host running tk-proxy, the poller, the physical limit
and the peer) and checks the summary lines are printed; never how fast anything was: timings
on a shared 2-core machine prove nothing, and the benchmark prints its own verdict.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_bench_netprog_small_prints_summary_lines() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/netprog.py", "--services", "5", "--changes", "3",
         "--burst", "2", "--min-sync-period", "100ms"],
        cwd=REPO, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    out = proc.stdout
    assert proc.returncode == 0, f"bench/netprog.py exited {proc.returncode}\n{out}\n{proc.stderr}"
    num = r"\d+ ms"
    assert re.search(rf"^full iptables-restore at 5 services: {num}", out, re.M), out
    assert re.search(rf"^naive per-rule iptables at 5 services: {num}", out, re.M), out
    assert re.search(rf"^tk-proxy spaced at 5 services: 3 changes, p50 {num}, p99 {num}",
                     out, re.M), out
    assert re.search(rf"^tk-proxy burst at 5 services: 2 changes at once, p50 {num}", out,
                     re.M), out
    # tk-proxy observed the changes' trigger times itself (at least the spaced ones).
    m = re.search(r"^tk-proxy histogram at 5 services: (\d+) observations", out, re.M)
    assert m and int(m.group(1)) >= 3, out
    assert re.search(r"^ratio tk-proxy p99/full restore at 5 services: \d+\.\d\d", out, re.M), out
    assert re.search(r"^ratio naive apply/tk-proxy p50 at 5 services: \d+\.\d\d", out, re.M), out
    assert re.search(r"^physical limit: one bare iptables-restore", out, re.M), out
    assert re.search(r"^goal p99 < 1 s at 1000 services: not measured", out, re.M), out


def test_bench_netprog_bad_flag_is_one_line_exit_2() -> None:
    proc = subprocess.run([sys.executable, "bench/netprog.py", "--services", "ten"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--services" in proc.stderr and "Traceback" not in proc.stderr
