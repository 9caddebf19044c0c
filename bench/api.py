"""API machinery benchmark: the apiserver against its physical limit, raw etcd.

Two measurements, against one fresh `harness.cluster.Cluster()` (real etcd + apiserver):

1. Creates. N ConfigMap creates (~1.5 KiB JSON bodies, shaped like real ones) through the
   apiserver with `ApiClient.create` at concurrency 1, 16 and 64; then, in the same run against
   the same etcd, N raw etcd puts of the same JSON bodies with the same etcd client library the
   apiserver uses (aetcd), at the same concurrency. Every create the apiserver serves is at least
   one etcd write, so raw puts are the ceiling: the printed ratio apiserver/raw is the share of
   etcd's capacity the apiserver delivers (goal: >= 0.5 at concurrency 64).
2. Watch fan-out. W watchers (spread over C client channels) watch ConfigMaps in one namespace;
   objects are then created at a modest rate, and each watcher's ADDED is timed from the moment
   the create returned to the creating client (goal: p99 < 100 ms). The reference is etcd
   itself: one raw etcd watcher, timed the same way from a raw put returning.

All clients run in this one process, so their own decoding is part of the measured latency.
Usage: python -m bench.api [--quick] [--creates N] [--watchers W] ...   (see --help)
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/api.py`, Python puts bench/ first on sys.path, where this very file would
# shadow the `api` package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

import aetcd  # noqa: E402
import grpc  # noqa: E402

from api.proto import tinykube_pb2 as pb  # noqa: E402
from api.proto import tinykube_pb2_grpc as pb_grpc  # noqa: E402
from harness.cluster import Cluster  # noqa: E402

LEVELS = (1, 16, 64)
RATIO_GOAL = 0.5
FANOUT_P99_GOAL_MS = 100.0

_PROPERTIES = "\n".join(
    f"service.{k}={v}"
    for k, v in [
        ("name", "checkout"), ("port", "8080"), ("threads", "16"), ("timeout.ms", "2500"),
        ("retry.max", "5"), ("retry.backoff.ms", "200"), ("db.url", "postgres://db:5432/shop"),
        ("db.pool.min", "4"), ("db.pool.max", "32"), ("cache.ttl.s", "300"),
        ("feature.new-cart", "true"), ("feature.one-click", "false"), ("log.level", "info"),
        ("metrics.path", "/metrics"), ("tracing.endpoint", "http://otel-collector:4317"),
        ("tracing.sample.ratio", "0.05"), ("payments.provider", "stripe-compatible"),
    ]
)
_NGINX_CONF = """server {
    listen 80;
    server_name checkout.example.internal;
    location / {
        proxy_pass http://127.0.0.1:8080;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_read_timeout 30s;
    }
    location /healthz { return 200 'ok'; }
    gzip on;
    gzip_types application/json text/css application/javascript;
    client_max_body_size 8m;
}
"""


def configmap(name: str, namespace: str) -> dict[str, Any]:
    """A ConfigMap of the size and shape applications really store (~1.5 KiB as JSON)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "checkout",
                "app.kubernetes.io/part-of": "shop",
                "app.kubernetes.io/managed-by": "tinykube-bench",
                "tier": "backend",
            },
            "annotations": {
                "bench.tinykube.io/description": "configuration for the checkout service",
                "bench.tinykube.io/owner": "team-payments@example.internal",
                "bench.tinykube.io/source": "git@example.internal:shop/checkout.git#deploy/prod",
            },
        },
        "data": {"application.properties": _PROPERTIES, "nginx.conf": _NGINX_CONF},
    }


def body_size() -> int:
    return len(json.dumps(configmap("bench-0-00000", "default")).encode())


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


@dataclass
class Result:
    path: str
    concurrency: int
    done: int = 0
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.done / self.wall if self.wall > 0 else 0.0

    def ms(self, q: float) -> float:
        return percentile(sorted(self.latencies), q) * 1000


async def run_level(
    path: str, op: Callable[[int], Awaitable[object]], n: int, concurrency: int,
    max_seconds: float,
) -> Result:
    """Run op(0..n-1) with `concurrency` workers; stop early after max_seconds (bounded)."""
    res = Result(path, concurrency)
    counter = iter(range(n))
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        for i in counter:
            if time.perf_counter() > deadline:
                return
            t = time.perf_counter()
            try:
                await op(i)
            except Exception as e:  # counted and reported, not fatal: a benchmark reports
                res.errors += 1
                if res.errors == 1:
                    print(f"  first error ({path}, concurrency {concurrency}): {e!r}")
                continue
            res.latencies.append(time.perf_counter() - t)
            res.done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    res.wall = time.perf_counter() - t0
    return res


class _TLSEtcdClient(aetcd.Client):
    """aetcd dials plaintext only; the cluster's etcd wants TLS and a client certificate, so
    this one dials it as the apiserver does (and the raw reference pays for TLS too)."""

    def __init__(self, host: str, port: int, creds: grpc.ChannelCredentials) -> None:
        super().__init__(host=host, port=port)
        self._creds = creds

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        self.channel = aetcd.rpc.secure_channel(f"{self._host}:{self._port}", self._creds)
        self.kvstub = aetcd.rpc.KVStub(self.channel)
        self.leasestub = aetcd.rpc.LeaseStub(self.channel)
        self._watcher = aetcd.watcher.Watcher(aetcd.rpc.WatchStub(self.channel),
                                              timeout=self._timeout, metadata=self.metadata)
        self._connected.set()


def etcd_client(url: str, files: tuple[Any, Any, Any] | None = None) -> aetcd.Client:
    """A raw etcd client; `files` (CA, client certificate, key) for an https etcd."""
    u = urlparse(url)
    host, port = u.hostname or "127.0.0.1", u.port or 2379
    if files is None:
        return aetcd.Client(host=host, port=port)
    ca, cert, key = (f.read_bytes() for f in files)
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                         certificate_chain=cert)
    return _TLSEtcdClient(host, port, creds)


async def bench_creates(cluster: Cluster, n: int, max_seconds: float) -> list[Result]:
    results: list[Result] = []
    api = cluster.client
    etcd = etcd_client(cluster.etcd.url, cluster.etcd.client_cert_files)
    try:
        # Warm both paths up (connections, first-call costs) before measuring.
        for i in range(5):
            await api.create("configmaps", configmap(f"bench-warm-{i}", "default"))
            await etcd.put(f"/bench-raw/warm/{i}".encode(), b"{}")
        for c in LEVELS:
            # Bodies are serialized inside op for both paths, as a client would.
            async def via_api(i: int, c: int = c) -> object:
                return await api.create("configmaps", configmap(f"bench-{c}-{i:05d}", "default"))

            async def via_etcd(i: int, c: int = c) -> object:
                name = f"bench-{c}-{i:05d}"
                body = json.dumps(configmap(name, "default")).encode()
                return await etcd.put(f"/bench-raw/configmaps/default/{name}".encode(), body)

            for path, op in (("apiserver", via_api), ("raw etcd", via_etcd)):
                r = await run_level(path, op, n, c, max_seconds)
                results.append(r)
                print(f"  {path:<10} concurrency {c:>3}: {r.done} creates in {r.wall:.2f}s")
    finally:
        await etcd.close()
    return results


def print_creates(results: list[Result], n: int) -> None:
    print()
    print(f"creates: ConfigMap, {body_size()} B JSON body, up to {n} per level, one client "
          "channel per path")
    print(f"{'concurrency':>11}  {'path':<10} {'creates/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>6}")
    for r in results:
        print(f"{r.concurrency:>11}  {r.path:<10} {r.rate:>10.0f} {r.ms(50):>8.2f} "
              f"{r.ms(99):>8.2f} {r.errors:>6}")
    print()
    by = {(r.path, r.concurrency): r for r in results}
    for c in LEVELS:
        api, raw = by[("apiserver", c)], by[("raw etcd", c)]
        ratio = api.rate / raw.rate if raw.rate > 0 else 0.0
        verdict = ""
        if c == max(LEVELS):
            verdict = f" (goal >= {RATIO_GOAL}: {'met' if ratio >= RATIO_GOAL else 'NOT met'})"
        print(f"ratio apiserver/raw at concurrency {c}: {ratio:.2f}{verdict}")
    print("physical limit: raw etcd puts on the same etcd (one member, loopback, "
          "--unsafe-no-fsync); every create is at least one etcd write, so ratio <= 1")


@dataclass
class FanoutResult:
    watchers: int
    established: int
    objects: int
    expected: int
    received: int
    from_sent: list[float]  # per delivery: seconds from the create call starting
    from_returned: list[float]  # per delivery: seconds from the create returning (may be < 0)
    creates: list[float]  # the creates' own latencies
    raw_from_sent: list[float]  # the raw etcd reference (one watcher), from the put starting
    raw_from_returned: list[float]


async def bench_fanout(
    cluster: Cluster, watchers: int, channels: int, objects: int, rate: float,
    settle_timeout: float,
) -> FanoutResult:
    """W watches on the apiserver's Watch RPC; creates at `rate`; per-delivery latency.

    The watchers use the generated gRPC stub on their own channels (what `ApiClient` wraps) and
    only timestamp and keep each event, decoding after the run: in a real cluster every watcher
    is its own process decoding in parallel, and 1,000 JSON decodes queued on this one event
    loop would measure this process, not the apiserver's fan-out.
    """
    ns = "bench-watch"
    api = cluster.client
    await api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": ns}})
    start_rv = str((await api.list("configmaps", ns))["metadata"]["resourceVersion"])
    # Separate channels: a distinct user agent keeps gRPC from sharing one connection.
    chans = [
        cluster.channel(options=[
            ("grpc.primary_user_agent", f"tinykube-bench-watch-{i}"),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ])
        for i in range(channels)
    ]
    stubs = [pb_grpc.ApiStub(ch) for ch in chans]
    deliveries: list[tuple[float, bytes]] = []
    seen_warm = 0
    warm_done = asyncio.Event()
    watch_errors: list[str] = []
    all_delivered = asyncio.Event()
    expected = watchers * objects  # a watcher that starts late still gets every event, replayed

    async def watch(stub: pb_grpc.ApiStub) -> None:
        nonlocal seen_warm
        req = pb.ListRequest(resource="configmaps", namespace=ns,
                             options=pb.ListOptions(resource_version=start_rv))
        first = True
        try:
            async for ev in stub.Watch(req):
                now = time.perf_counter()
                if ev.type != "ADDED":
                    if ev.type == "ERROR":
                        watch_errors.append(ev.object.decode(errors="replace"))
                    continue
                if first:  # the namespace is new: a watcher's first ADDED is the warm-up
                    first = False
                    seen_warm += 1
                    if seen_warm == watchers:
                        warm_done.set()
                    continue
                deliveries.append((now, ev.object))
                if len(deliveries) >= expected:
                    all_delivered.set()
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                watch_errors.append(f"{e.code().name}: {e.details()}")

    tasks = [asyncio.create_task(watch(stubs[i % channels])) for i in range(watchers)]
    sent: dict[str, float] = {}
    returned: dict[str, float] = {}
    try:
        # Every watcher is established once it has seen this object.
        await api.create("configmaps", configmap("warm", ns))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(warm_done.wait(), settle_timeout)
        established = seen_warm
        if established < watchers:
            print(f"  only {established}/{watchers} watchers saw the warm-up object")
        interval = 1.0 / rate
        t_next = time.perf_counter()
        for i in range(objects):
            name = f"obj-{i:05d}"
            sent[name] = time.perf_counter()
            await api.create("configmaps", configmap(name, ns))
            returned[name] = time.perf_counter()
            t_next += interval
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_delivered.wait(), settle_timeout)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in chans:
            await ch.close(None)
    if watch_errors:
        print(f"  {len(watch_errors)} watch errors, first: {watch_errors[0]}")
    from_sent: list[float] = []
    from_returned: list[float] = []
    for t_recv, raw_obj in deliveries:
        name = json.loads(raw_obj)["metadata"]["name"]
        if name in returned:
            from_sent.append(t_recv - sent[name])
            from_returned.append(t_recv - returned[name])
    creates = [returned[n] - sent[n] for n in returned]
    raw_sent, raw_returned = await raw_watch_reference(cluster, objects, rate)
    return FanoutResult(watchers, established, objects, expected, len(from_sent), from_sent,
                        from_returned, creates, raw_sent, raw_returned)


async def raw_watch_reference(
    cluster: Cluster, objects: int, rate: float
) -> tuple[list[float], list[float]]:
    """etcd itself: one raw watcher; latency from a raw put starting and returning to its event."""
    etcd = etcd_client(cluster.etcd.url, cluster.etcd.client_cert_files)
    prefix = b"/bench-raw-watch/"
    got: dict[bytes, float] = {}
    put_sent: dict[bytes, float] = {}
    put_done: dict[bytes, float] = {}
    all_got = asyncio.Event()
    try:
        w = await etcd.watch_prefix(prefix)

        async def consume() -> None:
            async for ev in w:
                got.setdefault(ev.kv.key, time.perf_counter())
                if len(got) >= objects:
                    all_got.set()

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)  # let the watch register
        interval = 1.0 / rate
        t_next = time.perf_counter()
        for i in range(objects):
            key = prefix + f"obj-{i:05d}".encode()
            put_sent[key] = time.perf_counter()
            await etcd.put(key, json.dumps(configmap(f"obj-{i:05d}", "raw")).encode())
            put_done[key] = time.perf_counter()
            t_next += interval
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_got.wait(), 5)
        await w.cancel()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await etcd.close()
    keys = [k for k in got if k in put_done]
    return [got[k] - put_sent[k] for k in keys], [got[k] - put_done[k] for k in keys]


def _stats(values: list[float]) -> str:
    v = sorted(values)
    return (f"p50 {percentile(v, 50) * 1000:.1f} ms, p99 {percentile(v, 99) * 1000:.1f} ms, "
            f"max {(v[-1] if v else float('nan')) * 1000:.1f} ms")


def print_fanout(r: FanoutResult, channels: int, rate: float) -> None:
    print()
    print(f"watch fan-out: {r.watchers} watchers over {channels} client channels on ConfigMaps in "
          f"one namespace, {r.objects} creates at {rate:g}/s")
    print(f"  deliveries: {r.received}/{r.expected} ADDED events "
          f"({r.established}/{r.watchers} watchers established before the first create)")
    p99 = percentile(sorted(r.from_sent), 99) * 1000
    met = r.from_sent and p99 < FANOUT_P99_GOAL_MS and r.received >= r.expected
    # From the create call starting: write + fan-out, end to end. The create's response and
    # the watch events reach this process at about the same moment, so "from the create
    # returning" is mostly <= 0 and is shown as a second line, with how often it is negative.
    print(f"watch fan-out delivery latency: {_stats(r.from_sent)} from the create call starting "
          f"(goal p99 < {FANOUT_P99_GOAL_MS:g} ms: {'met' if met else 'NOT met'})")
    early = sum(d < 0 for d in r.from_returned)
    print(f"  from the create returning: {_stats([max(0.0, d) for d in r.from_returned])} "
          f"({early}/{len(r.from_returned)} arrived before it returned: counted as 0)")
    print(f"  the creates themselves: {_stats(r.creates)}")
    raw_early = sum(d < 0 for d in r.raw_from_returned)
    print(f"physical limit: raw etcd watch, 1 watcher: {_stats(r.raw_from_sent)} from the put "
          f"starting ({len(r.raw_from_sent)}/{r.objects} events; {raw_early} arrived before the "
          "put returned)")


async def main_async(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    async with Cluster() as cluster:
        print(f"cluster up: apiserver {cluster.server}, etcd {cluster.etcd.url}")
        print("creates:")
        results = await bench_creates(cluster, args.creates, args.max_seconds)
        print_creates(results, args.creates)
        fan = await bench_fanout(cluster, args.watchers, args.watch_channels, args.objects,
                                 args.rate, args.settle_timeout)
        print_fanout(fan, args.watch_channels, args.rate)
    print(f"\ntotal {time.perf_counter() - t0:.1f}s")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: few creates, 100 watchers (seconds, not minutes)")
    p.add_argument("--creates", type=int, default=None, help="creates per level (default 2000)")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="stop a level after this long, whatever is left (default 60)")
    p.add_argument("--watchers", type=int, default=None, help="watchers (default 1000)")
    p.add_argument("--watch-channels", type=int, default=None,
                   help="client channels the watchers share (default 20)")
    p.add_argument("--objects", type=int, default=None,
                   help="objects created while watched (default 100)")
    p.add_argument("--rate", type=float, default=None, help="creates per second (default 10)")
    p.add_argument("--settle-timeout", type=float, default=30.0,
                   help="how long to wait for watchers and deliveries (default 30)")
    a = p.parse_args(argv)
    quick = a.quick
    a.creates = a.creates or (100 if quick else 2000)
    a.watchers = a.watchers or (100 if quick else 1000)
    a.watch_channels = a.watch_channels or (5 if quick else 20)
    a.objects = a.objects or (10 if quick else 100)
    a.rate = a.rate or (20.0 if quick else 10.0)
    return a


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
