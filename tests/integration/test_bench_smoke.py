"""Smoke test of the API benchmark: `bench/api.py --quick` runs and prints its verdict lines.

It asserts what the benchmark prints, never how fast anything was: timings on a shared 2-core CI
machine say nothing, and the benchmark prints its own goals.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_bench_api_quick_prints_ratios() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/api.py", "--quick"], cwd=REPO, capture_output=True, text=True,
        timeout=240, stdin=subprocess.DEVNULL,
    )
    out = proc.stdout
    assert proc.returncode == 0, (
        f"bench/api.py --quick exited {proc.returncode}\n{out}\n{proc.stderr}"
    )
    for c in (1, 16, 64):
        assert re.search(rf"^ratio apiserver/raw at concurrency {c}: \d+\.\d\d", out, re.M), out
    latency = r"^watch fan-out delivery latency: p50 [\d.]+ ms, p99 [\d.]+ ms"
    assert re.search(latency, out, re.M), out
    assert re.search(r"^physical limit: raw etcd puts", out, re.M), out
    assert re.search(r"^physical limit: raw etcd watch", out, re.M), out


def test_bench_scheduler_quick_prints_ratio() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/scheduler.py", "--quick"], cwd=REPO, capture_output=True,
        text=True, timeout=240, stdin=subprocess.DEVNULL,
    )
    out = proc.stdout
    assert proc.returncode == 0, (
        f"bench/scheduler.py --quick exited {proc.returncode}\n{out}\n{proc.stderr}"
    )
    assert re.search(r"^  tk-scheduler: 200/200 pods bound", out, re.M), out
    assert re.search(
        r"^scheduler at 10 nodes: \d+ pods/s, raw bind \d+/s, ratio scheduler/raw \d+\.\d\d",
        out, re.M), out
    assert re.search(r"^physical limit: raw Bind calls", out, re.M), out


@pytest.mark.docker
@pytest.mark.usefixtures("docker_ready")
def test_bench_pod_startup_quick_prints_ratios() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/pod_startup.py", "--quick"], cwd=REPO, capture_output=True,
        text=True, timeout=240, stdin=subprocess.DEVNULL,
    )
    out = proc.stdout
    assert proc.returncode == 0, (
        f"bench/pod_startup.py --quick exited {proc.returncode}\n{out}\n{proc.stderr}"
    )
    assert re.search(r"^raw docker: 3/3 started, p50 [\d.]+s, p99 [\d.]+s", out, re.M), out
    assert re.search(r"^tinykube: 3/3 Running, p50 [\d.]+s, p99 [\d.]+s", out, re.M), out
    assert re.search(r"^docker swarm: 3/3 running, p50 [\d.]+s, p99 [\d.]+s", out, re.M), out
    assert re.search(r"^ratio tinykube/raw docker p99: \d+\.\d\d \(goal", out, re.M), out
    assert re.search(r"^ratio tinykube/swarm all running: \d+\.\d\d \(goal", out, re.M), out
    assert re.search(r"^physical limit: raw Docker SDK calls", out, re.M), out
