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
    """Both fronts and raw etcd produced numbers: every create done without errors, every list
    answered whole, every watcher established and every event delivered, ratios printed."""
    proc = subprocess.run(
        [sys.executable, "bench/api.py", "--quick"], cwd=REPO, capture_output=True, text=True,
        timeout=240, stdin=subprocess.DEVNULL,
    )
    out = proc.stdout
    assert proc.returncode == 0, (
        f"bench/api.py --quick exited {proc.returncode}\n{out}\n{proc.stderr}"
    )
    assert re.search(r"^RLIMIT_NOFILE: soft limit", out, re.M), out

    # Creates: 100 per level and path (--quick), none failed, sane numbers.
    rows = re.findall(r"^ +(\d+)  (gRPC|HTTP|raw etcd) +(\d+) +([\d.]+) +([\d.]+) +(\d+)  "
                      r"+(\d+) +(\d+) +(\d+)$", out, re.M)
    assert {(int(c), path) for c, path, *_ in rows} == {
        (c, path) for c in (1, 16, 64) for path in ("gRPC", "HTTP", "raw etcd")}, out
    for c, path, rate, p50, p99, errors, *_cpu in rows:
        assert int(errors) == 0, f"{path} at concurrency {c}: {errors} errors\n{out}"
        assert int(rate) > 0 and 0 < float(p50) <= float(p99), out
    for c in (1, 16, 64):
        assert re.search(rf"^  gRPC +concurrency +{c}: 100 creates in", out, re.M), out
        assert re.search(rf"^  HTTP +concurrency +{c}: 100 creates in", out, re.M), out
        assert re.search(rf"^ratio gRPC/raw etcd at concurrency {c}: \d+\.\d\d", out, re.M), out
        assert re.search(rf"^ratio HTTP/gRPC at concurrency {c}: \d+\.\d\d", out, re.M), out
    assert re.search(r"^physical limit: raw etcd puts", out, re.M), out

    # List: 200 pods (--quick) over gRPC, HTTP JSON and HTTP Table; JSON is the same bytes on
    # both fronts, the Table smaller than the objects.
    lists = dict((path, (int(items), float(ms), int(size), int(errors))) for path, items, ms,
                 size, errors in re.findall(r"^(gRPC|HTTP JSON|HTTP Table) +(\d+) +([\d.]+) "
                                           r"+[\d.]+ +(\d+) +[\d. ]+? (\d+)$", out, re.M))
    assert set(lists) == {"gRPC", "HTTP JSON", "HTTP Table"}, out
    for path, (items, ms, size, errors) in lists.items():
        assert (items, errors) == (200, 0) and ms > 0 and size > 0, f"{path}\n{out}"
    assert lists["HTTP JSON"][2] == lists["gRPC"][2], out
    assert lists["HTTP Table"][2] < lists["HTTP JSON"][2], out
    assert re.search(r"^ratio HTTP Table/gRPC list time: \d+\.\d\d \(goal", out, re.M), out

    # Watch fan-out on both fronts: 100 watchers x 10 objects (--quick), all delivered.
    for front in ("gRPC", "HTTP"):
        m = re.search(rf"^watch fan-out \({front}\): 100 watchers .*\n  deliveries: "
                      r"(\d+)/(\d+) ADDED events \((\d+)/100 watchers established", out, re.M)
        assert m and m.group(1) == m.group(2) == "1000" and m.group(3) == "100", out
        m = re.search(rf"^watch fan-out delivery latency \({front}\): p50 ([\d.]+) ms, "
                      r"p99 ([\d.]+) ms", out, re.M)
        assert m and 0 < float(m.group(1)) <= float(m.group(2)), out
    assert re.search(r"^physical limit: raw etcd watch", out, re.M), out

    # The verdicts, whatever they are.
    for goal in (r"HTTP creates >= 0\.8x gRPC creates at concurrency 64",
                 r"HTTP watch fan-out p99 < 100 ms", r"gRPC watch fan-out p99 < 100 ms",
                 r"200-pod Table list <= 1\.5x the gRPC list",
                 r"gRPC creates >= 0\.5x raw etcd puts at concurrency 64"):
        assert re.search(rf"^  goal {goal}: .*: (met|NOT met)$", out, re.M), (goal, out)


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
