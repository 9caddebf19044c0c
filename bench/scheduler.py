"""Scheduler benchmark: pods/s scheduled and bound, against its physical limit, raw Bind calls.

For each node count (100 and 1,000; `--quick`: 10), one fresh `harness.cluster.Cluster()` (real
etcd + apiserver) with that many hollow nodes (`tk-hollow-nodes`, which also play the kubelet for
every bound pod, as in a real cluster), and two measurements in the same run:

1. Raw Bind. P pods (10m cpu, 16Mi memory each) for no scheduler (`schedulerName` nobody
   serves) are created, then bound round-robin to the nodes with `ApiClient.bind` from this
   process at concurrency C (the scheduler's own limit of binds in flight), with no decision at
   all. Every scheduled pod costs one such call, so this is the ceiling.
2. tk-scheduler. P more pods of the same shape are created while no scheduler runs; then
   `tk-scheduler` starts, and a watch times every pod's first appearance with a nodeName. The
   rate is counted from the first bind to the last (process start-up and the initial list are
   printed apart), and the ratio scheduler/raw is the share of the ceiling it delivers.

Goal: >= 300 pods/s at 1,000 nodes (kube-scheduler's CI floor is 100 pods/s).
Usage: python bench/scheduler.py [--quick] [--pods P] [--nodes 100,1000] ...   (see --help)
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/scheduler.py`, Python puts bench/ first on sys.path, where bench/api.py
# would shadow the `api` package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import itertools  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

from client.apiclient import ApiClient  # noqa: E402
from harness.cluster import Cluster  # noqa: E402
from harness.wait import until  # noqa: E402
from scheduler.scheduler import MAX_BINDS_IN_FLIGHT  # noqa: E402

GOAL_PODS_PER_S = 300.0
GOAL_NODES = 1000
NOBODY = "bench-no-scheduler"
CREATE_CONCURRENCY = 64


def bench_pod(name: str, scheduler_name: str | None = None) -> dict[str, Any]:
    """A small pod shaped like a real one: one container with requests."""
    spec: dict[str, Any] = {"containers": [{
        "name": "app", "image": "registry.example/app:1.0",
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    if scheduler_name:
        spec["schedulerName"] = scheduler_name
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "bench"}}, "spec": spec}


async def bounded(n: int, concurrency: int, op: Any) -> tuple[float, int]:
    """op(0..n-1) with `concurrency` workers; returns (wall seconds, errors)."""
    counter = iter(range(n))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for i in counter:
            try:
                await op(i)
            except Exception as e:  # counted and reported: a benchmark reports, never dies
                failures += 1
                if failures == 1:
                    print(f"  first error: {e!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, failures


async def create_pods(api: ApiClient, ns: str, n: int, scheduler_name: str | None) -> None:
    wall, failed = await bounded(n, CREATE_CONCURRENCY, lambda i: api.create(
        "pods", bench_pod(f"p-{i:05d}", scheduler_name), ns))
    print(f"  created {n - failed} pods in {wall:.1f}s")


async def wait_nodes(api: ApiClient, count: int, timeout: float) -> list[str]:
    async def ready() -> list[str]:
        items, _ = await api.list_all("nodes")
        names = [n["metadata"]["name"] for n in items
                 if (n.get("status") or {}).get("allocatable")]
        return names if len(names) >= count else []
    return await until(ready, timeout=timeout, interval=0.5, what=f"{count} hollow nodes")


@dataclass
class Run:
    nodes: int
    pods: int
    raw_wall: float = 0.0
    raw_errors: int = 0
    sched_bound: int = 0
    sched_wall: float = 0.0  # first bind to last bind
    sched_startup: float = 0.0  # process start to first bind
    sched_total: float = 0.0  # process start to last bind

    @property
    def raw_rate(self) -> float:
        return (self.pods - self.raw_errors) / self.raw_wall if self.raw_wall > 0 else 0.0

    @property
    def sched_rate(self) -> float:
        return (self.sched_bound - 1) / self.sched_wall if self.sched_wall > 0 else 0.0


async def raw_bind(api: ApiClient, ns: str, nodes: list[str], run: Run) -> None:
    await create_pods(api, ns, run.pods, NOBODY)
    targets = list(itertools.islice(itertools.cycle(nodes), run.pods))
    run.raw_wall, run.raw_errors = await bounded(
        run.pods, MAX_BINDS_IN_FLIGHT, lambda i: api.bind(ns, f"p-{i:05d}", targets[i]))
    print(f"  raw bind: {run.pods - run.raw_errors} binds in {run.raw_wall:.2f}s "
          f"at concurrency {MAX_BINDS_IN_FLIGHT}")


async def scheduled(cluster: Cluster, ns: str, run: Run, max_seconds: float) -> None:
    api = cluster.client
    await create_pods(api, ns, run.pods, None)
    rv = (await api.list("pods", ns, limit=1))["metadata"]["resourceVersion"]
    bound_at: dict[str, float] = {}
    done = asyncio.Event()

    async def watch() -> None:
        async for ev in api.watch("pods", ns, resource_version=str(rv)):
            name = ev.object["metadata"]["name"]
            if ev.object.get("spec", {}).get("nodeName") and name not in bound_at:
                bound_at[name] = time.perf_counter()
                if len(bound_at) >= run.pods:
                    done.set()
                    return

    watcher = asyncio.create_task(watch())
    t_start = time.perf_counter()
    comp = cluster.start_scheduler()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max_seconds)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        comp.stop()
    times = sorted(bound_at.values())
    run.sched_bound = len(times)
    if len(times) >= 2:
        run.sched_wall = times[-1] - times[0]
        run.sched_startup = times[0] - t_start
        run.sched_total = times[-1] - t_start
    print(f"  tk-scheduler: {run.sched_bound}/{run.pods} pods bound, first "
          f"{run.sched_startup:.2f}s after process start, last {run.sched_total:.2f}s")


async def settle(api: ApiClient, ns: str, pods: int, timeout: float) -> None:
    """Let the hollow nodes finish reporting the raw-bound pods Running (their status writes
    would otherwise load the apiserver during the next measurement)."""
    async def running() -> int:
        items, _ = await api.list_all("pods", ns, field_selector="status.phase=Running")
        return len(items) if len(items) >= pods else 0
    with contextlib.suppress(TimeoutError):
        await until(running, timeout=timeout, interval=1.0, what="pods running")


async def one_size(nodes: int, pods: int, args: argparse.Namespace) -> Run:
    run = Run(nodes, pods)
    print(f"\n{nodes} hollow nodes, {pods} pods:")
    async with Cluster() as cluster:
        t0 = time.perf_counter()
        cluster.start_hollow_nodes(nodes, "--lease-interval", "10")
        names = await wait_nodes(cluster.client, nodes, args.settle_timeout)
        print(f"  {len(names)} hollow nodes registered in {time.perf_counter() - t0:.1f}s")
        raw_ns = await cluster.new_namespace("bench-raw-")
        await raw_bind(cluster.client, raw_ns, names, run)
        await settle(cluster.client, raw_ns, pods, args.settle_timeout)
        sched_ns = await cluster.new_namespace("bench-sched-")
        await scheduled(cluster, sched_ns, run, args.max_seconds)
    return run


def report(runs: list[Run]) -> None:
    print()
    print(f"{'nodes':>6} {'pods':>6} {'raw bind/s':>11} {'scheduled/s':>12} {'ratio':>6} "
          f"{'start-up s':>10} {'end-to-end s':>12}")
    for r in runs:
        ratio = r.sched_rate / r.raw_rate if r.raw_rate > 0 else 0.0
        print(f"{r.nodes:>6} {r.pods:>6} {r.raw_rate:>11.0f} {r.sched_rate:>12.0f} {ratio:>6.2f} "
              f"{r.sched_startup:>10.2f} {r.sched_total:>12.2f}")
    print()
    for r in runs:
        ratio = r.sched_rate / r.raw_rate if r.raw_rate > 0 else 0.0
        verdict = ""
        if r.nodes == GOAL_NODES:
            met = r.sched_rate >= GOAL_PODS_PER_S and r.sched_bound == r.pods
            verdict = f" (goal >= {GOAL_PODS_PER_S:g} pods/s: {'met' if met else 'NOT met'})"
        print(f"scheduler at {r.nodes} nodes: {r.sched_rate:.0f} pods/s, raw bind "
              f"{r.raw_rate:.0f}/s, ratio scheduler/raw {ratio:.2f}{verdict}")
    print("physical limit: raw Bind calls (pods/binding, no scheduling logic) against the same "
          f"apiserver at the same concurrency ({MAX_BINDS_IN_FLIGHT}); every scheduled pod is "
          "one bind, so ratio <= 1")


async def main_async(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    runs = [await one_size(n, args.pods, args) for n in args.nodes]
    report(runs)
    print(f"\ntotal {time.perf_counter() - t0:.1f}s")
    return 0


def _node_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid node counts {text!r} (want e.g. 100,1000)") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("node counts must be positive")
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 10 nodes, 200 pods (seconds, not minutes)")
    p.add_argument("--pods", type=int, default=None, help="pods per measurement (default 5000)")
    p.add_argument("--nodes", type=_node_counts, default=None,
                   help="comma-separated node counts (default 100,1000)")
    p.add_argument("--max-seconds", type=float, default=180.0,
                   help="give up on the scheduler after this long (default 180)")
    p.add_argument("--settle-timeout", type=float, default=120.0,
                   help="how long to wait for hollow nodes and pod statuses (default 120)")
    a = p.parse_args(argv)
    a.pods = a.pods or (200 if a.quick else 5000)
    a.nodes = a.nodes or ([10] if a.quick else [100, 1000])
    return a


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
