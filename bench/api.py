"""API machinery benchmark: the apiserver's two fronts side by side, against raw etcd.

Three measurements against one fresh `harness.cluster.Cluster()` (real secure etcd + apiserver),
every front and its reference in the same run, on the same etcd:

1. Creates. N ConfigMap creates (~1.5 KiB JSON bodies, shaped like real ones) at concurrency 1,
   16 and 64 over each front: gRPC with `ApiClient.create` (one channel), Kubernetes' HTTP API
   with an aiohttp keep-alive client holding the admin's client certificate (a connection pool
   as large as the concurrency, opened before timing, `POST /api/v1/namespaces/NS/configmaps`),
   and N raw etcd puts of the same JSON bodies with the apiserver's own etcd client library
   (aetcd) as the ceiling: every create is at least one etcd write. Each level runs the paths
   in two halves, ABC then CBA, so drift (load, etcd's growing database) touches all alike.
   Per path: creates/s, p50/p99, and CPU per create of the apiserver and etcd processes (from
   /proc/PID/stat) and of this process (the clients). Goals: gRPC >= 0.5x raw etcd and HTTP
   >= 0.8x gRPC, both at concurrency 64.
2. List. P pods (5,000) in one namespace, listed whole (no `limit`, a consistent read from etcd
   as `kubectl get` without chunking) over gRPC, over HTTP as JSON and over HTTP as a Table
   (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, kubectl's printing path), R times
   each in alternating order: median time (request to body decoded), bytes, apiserver CPU per
   list. Goal: the Table list within 1.5x the gRPC list.
3. Watch fan-out. W watchers watch ConfigMaps in one namespace from a resourceVersion, first
   over gRPC (spread over C client channels), then over HTTP (W chunked JSON streams, one TLS
   connection each, `?watch=1&resourceVersion=RV`); objects are then created over gRPC at a
   modest rate, and each watcher's ADDED is timed from the moment the create call started.
   Goal: p99 < 100 ms on both fronts. The reference is etcd itself: one raw etcd watcher, timed
   the same way from a raw put starting.

All clients run in this one process, so their own encoding and decoding is part of the measured
latency, and they share the machine's cores with etcd and the apiserver: the CPU columns say who
spent what. W HTTP watchers need W sockets here and W more in the apiserver, which inherits this
process's RLIMIT_NOFILE: the soft limit is raised before the cluster starts (see raise_nofile).
Usage: python bench/api.py [--quick] [--creates N] [--pods P] [--watchers W] ...   (see --help)
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
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import ssl  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

import aetcd  # noqa: E402
import aiohttp  # noqa: E402
import grpc  # noqa: E402

from api.proto import tinykube_pb2 as pb  # noqa: E402
from api.proto import tinykube_pb2_grpc as pb_grpc  # noqa: E402
from client.config import load_config  # noqa: E402
from harness.cluster import Cluster  # noqa: E402

LEVELS = (1, 16, 64)
GRPC = "gRPC"
HTTP = "HTTP"
RAW = "raw etcd"
CREATE_PATHS = (GRPC, HTTP, RAW)
RATIO_GOAL = 0.5  # gRPC creates / raw etcd puts at concurrency 64
HTTP_RATIO_GOAL = 0.8  # HTTP creates / gRPC creates at concurrency 64
FANOUT_P99_GOAL_MS = 100.0
TABLE_LIST_GOAL = 1.5  # HTTP Table list time / gRPC list time
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"
POD_CREATE_CONCURRENCY = 64
MAX_MESSAGE = 256 * 1024 * 1024

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


def bench_pod(name: str) -> dict[str, Any]:
    """A pod shaped like a Deployment's: labels, two containers with ports, env, requests and
    probes. No scheduler runs, so it stays Pending (a list does not care)."""
    def container(cname: str, image: str, port: int) -> dict[str, Any]:
        return {
            "name": cname, "image": image, "ports": [{"name": "http", "containerPort": port}],
            "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "PORT", "value": str(port)}],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                          "limits": {"memory": "128Mi"}},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": port},
                               "periodSeconds": 5},
        }
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "checkout",
                                              "pod-template-hash": "7d9f8c6b5"}},
        "spec": {"containers": [container("app", "registry.example/shop/checkout:1.4.2", 8080),
                                container("proxy", "registry.example/shop/envoy:1.29", 9901)]},
    }


def body_size() -> int:
    return len(json.dumps(configmap("bench-0-00000", "default")).encode())


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def raise_nofile(need: int) -> str:
    """Raise this process's soft RLIMIT_NOFILE to `need` (at most the hard limit). Children
    started afterwards (etcd, the apiserver) inherit it: W HTTP watchers are W sockets here and
    W in the apiserver. Returns what was done, for the output."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return f"RLIMIT_NOFILE: soft limit {soft} already >= {need}, unchanged"
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    short = "" if target >= need else f" (the hard limit; {need} wanted: expect failures)"
    return (f"RLIMIT_NOFILE: soft limit raised {soft} -> {target}{short}, inherited by etcd "
            "and the apiserver")


# --- CPU accounting ---------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (/proc/PID/stat utime+stime)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rpartition(")")[2].split()
    return (int(rest[11]) + int(rest[12])) / _TICK


class CpuMeter:
    """CPU seconds of the apiserver, etcd and this process (the clients), around a phase."""

    ROLES = ("apiserver", "etcd", "bench")

    def __init__(self, cluster: Cluster) -> None:
        assert cluster.apiserver is not None and cluster.apiserver.proc is not None
        assert cluster.etcd.proc is not None
        self.pids = {"apiserver": cluster.apiserver.proc.pid, "etcd": cluster.etcd.proc.pid}

    def snapshot(self) -> dict[str, float]:
        out = {role: proc_cpu(pid) for role, pid in self.pids.items()}
        out["bench"] = time.process_time()
        return out

    def since(self, before: dict[str, float]) -> dict[str, float]:
        now = self.snapshot()
        return {role: now[role] - before[role] for role in self.ROLES}


def _add(into: dict[str, float], more: dict[str, float]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0.0) + v


# --- optional: cProfile windows in the apiserver (--profile DIR) -----------------------------

# Put on the apiserver's PYTHONPATH as sitecustomize (there is none in the venv): in the
# apiserver only, SIGUSR1 starts profiling into the profile named in DIR/key (profiles
# accumulate per key), SIGUSR2 stops it and writes DIR/<key>.prof; each signal is acknowledged
# by bumping the counter in DIR/ack. Only the main thread (the event loop) is profiled, which is
# where the apiserver's Python runs, in thread CPU time. Code in C extensions without profiling
# hooks (grpc's Cython aio machinery) shows up as the own time of its Python caller, mostly
# `Context.run` (the event loop running a callback).
_SITECUSTOMIZE = """
import cProfile, os, signal, sys, time
_DIR = os.environ.get("TK_BENCH_PROFILE_DIR", "")
if _DIR and "apiserver" in sys.orig_argv:
    _profiles, _current = {}, []

    def _ack():
        path = os.path.join(_DIR, "ack")
        n = int(open(path).read()) if os.path.exists(path) else 0
        with open(path + ".tmp", "w") as f:
            f.write(str(n + 1))
        os.replace(path + ".tmp", path)

    def _on(signum, frame):
        key = open(os.path.join(_DIR, "key")).read().strip()
        # The thread's CPU clock, not the wall clock: on a shared machine, time the
        # apiserver spent preempted would otherwise land on whatever function was running.
        _profiles.setdefault(key, cProfile.Profile(time.thread_time_ns, 1e-9)).enable()
        _current[:] = [key]
        _ack()

    def _off(signum, frame):
        if _current:
            key = _current.pop()
            _profiles[key].disable()
            tmp = os.path.join(_DIR, key + ".prof.tmp")
            _profiles[key].dump_stats(tmp)
            os.replace(tmp, os.path.join(_DIR, key + ".prof"))
        _ack()

    signal.signal(signal.SIGUSR1, _on)
    signal.signal(signal.SIGUSR2, _off)
"""


class Profiler:
    """Profile phases of the apiserver with cProfile (no-op unless a directory is given).
    cProfile slows the apiserver's Python about twofold, so a profiled run's rates are not the
    benchmark's numbers: it says where the time goes, the CPU columns of a normal run how much."""

    def __init__(self, directory: str | None) -> None:
        self.dir = Path(directory).resolve() if directory else None
        self.pid = 0
        self.acks = 0
        self.keys: list[str] = []

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        """While the cluster starts: children see the sitecustomize hook."""
        if self.dir is None:
            yield
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        hook = self.dir / "hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE)
        (self.dir / "ack").unlink(missing_ok=True)
        saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "TK_BENCH_PROFILE_DIR")}
        os.environ["PYTHONPATH"] = os.pathsep.join(
            x for x in (str(hook), saved["PYTHONPATH"]) if x)
        os.environ["TK_BENCH_PROFILE_DIR"] = str(self.dir)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    async def _signal(self, sig: int) -> None:
        assert self.dir is not None
        self.acks += 1
        os.kill(self.pid, sig)
        ack = self.dir / "ack"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, ValueError):
                if int(ack.read_text()) >= self.acks:
                    return
            await asyncio.sleep(0.005)
        raise RuntimeError("the apiserver did not acknowledge a profiling signal")

    @contextlib.asynccontextmanager
    async def phase(self, key: str) -> AsyncIterator[None]:
        if self.dir is None:
            yield
            return
        (self.dir / "key").write_text(key)
        if key not in self.keys:
            self.keys.append(key)
        await self._signal(signal.SIGUSR1)
        try:
            yield
        finally:
            await self._signal(signal.SIGUSR2)

    def report(self, top: int) -> None:
        if self.dir is None:
            return
        print(f"\napiserver profiles (cProfile, main thread; {self.dir}/<phase>.prof):")
        for key in self.keys:
            print(f"\n--- {key}: top {top} by own time")
            out = io.StringIO()
            stats = pstats.Stats(str(self.dir / f"{key}.prof"), stream=out)
            stats.sort_stats("tottime").print_stats(top)
            body = out.getvalue()
            start = body.find("   ncalls")
            print(body[start:].rstrip() if start >= 0 else body.rstrip())


# --- clients ----------------------------------------------------------------------------------

class HttpFront:
    """Kubernetes' HTTP API with the admin kubeconfig's client certificate, over aiohttp."""

    def __init__(self, cluster: Cluster) -> None:
        cfg = load_config(cluster.kubeconfig)
        assert cfg.ca_pem and cfg.cert_pem and cfg.key_pem, "the admin kubeconfig has a cert"
        d = cluster.dir / "bench-http"
        d.mkdir(exist_ok=True)
        (d / "admin.crt").write_bytes(cfg.cert_pem)
        (d / "admin.key").write_bytes(cfg.key_pem)
        (d / "admin.key").chmod(0o600)
        self.ssl = ssl.create_default_context(cadata=cfg.ca_pem.decode())
        self.ssl.load_cert_chain(d / "admin.crt", d / "admin.key")
        self.url = cluster.https_url

    def session(self, limit: int) -> aiohttp.ClientSession:
        """Keep-alive connections, at most `limit` (0: one per request in flight)."""
        return aiohttp.ClientSession(
            base_url=self.url, connector=aiohttp.TCPConnector(ssl=self.ssl, limit=limit),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30))


async def http_create(s: aiohttp.ClientSession, path: str, obj: dict[str, Any]) -> object:
    """POST as a client does: encode, send, read and decode the answer."""
    async with s.post(path, data=json.dumps(obj).encode(),
                      headers={"Content-Type": "application/json"}) as r:
        raw = await r.read()
        if r.status != 201:
            raise RuntimeError(f"HTTP {r.status}: {raw[:300].decode(errors='replace')}")
        return json.loads(raw)


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


# --- 1. creates -------------------------------------------------------------------------------

@dataclass
class Result:
    path: str
    concurrency: int
    done: int = 0
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds, summed

    @property
    def rate(self) -> float:
        return self.done / self.wall if self.wall > 0 else 0.0

    def ms(self, q: float) -> float:
        return percentile(sorted(self.latencies), q) * 1000

    def cpu_us(self, role: str) -> float:
        """CPU µs of `role` per completed operation."""
        return self.cpu.get(role, 0.0) / self.done * 1e6 if self.done else float("nan")


async def run_chunk(res: Result, op: Callable[[int], Awaitable[object]], indices: range,
                    concurrency: int, max_seconds: float) -> None:
    """Run op(i) for i in `indices` with `concurrency` workers, adding to `res`; stop early after
    max_seconds (bounded)."""
    counter = iter(indices)
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
                    print(f"  first error ({res.path}, concurrency {concurrency}): {e!r}")
                continue
            res.latencies.append(time.perf_counter() - t)
            res.done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    res.wall += time.perf_counter() - t0


async def bench_creates(cluster: Cluster, http: HttpFront, cpu: CpuMeter, prof: Profiler,
                        n: int, chunks: int, max_seconds: float) -> list[Result]:
    results: list[Result] = []
    api = cluster.client
    etcd = etcd_client(cluster.etcd.url, cluster.etcd.client_cert_files)
    cm_path = "/api/v1/namespaces/default/configmaps"
    try:
        # Warm the gRPC and etcd paths up (connections, first-call costs) before measuring.
        for i in range(5):
            await api.create("configmaps", configmap(f"bench-warm-{i}", "default"))
            await etcd.put(f"/bench-raw/warm/{i}".encode(), b"{}")
        for c in LEVELS:
            async with http.session(limit=c) as session:
                # Open the pool's c connections (TLS handshakes) untimed, as the gRPC channel
                # is open: c creates at once, each on a connection of its own.
                await asyncio.gather(*(http_create(session, cm_path, configmap(
                    f"bench-warm-http-{c}-{i}", "default")) for i in range(c)))

                # Bodies are serialized inside op on every path, as a client would.
                async def via_grpc(i: int, c: int = c) -> object:
                    return await api.create("configmaps",
                                            configmap(f"bench-grpc-{c}-{i:05d}", "default"))

                async def via_http(i: int, c: int = c, s: Any = session) -> object:
                    return await http_create(s, cm_path,
                                             configmap(f"bench-http-{c}-{i:05d}", "default"))

                async def via_etcd(i: int, c: int = c) -> object:
                    name = f"bench-raw-{c}-{i:05d}"
                    body = json.dumps(configmap(name, "default")).encode()
                    return await etcd.put(f"/bench-raw/configmaps/default/{name}".encode(), body)

                ops = {GRPC: via_grpc, HTTP: via_http, RAW: via_etcd}
                level = {p: Result(p, c) for p in CREATE_PATHS}
                bounds = [n * k // chunks for k in range(chunks + 1)]
                for k in range(chunks):
                    for p in (CREATE_PATHS if k % 2 == 0 else CREATE_PATHS[::-1]):
                        before = cpu.snapshot()
                        async with prof.phase(f"create-{p}-{c}"):
                            await run_chunk(level[p], ops[p], range(bounds[k], bounds[k + 1]),
                                            c, max_seconds / chunks)
                        _add(level[p].cpu, cpu.since(before))
            for p in CREATE_PATHS:
                r = level[p]
                results.append(r)
                print(f"  {p:<8} concurrency {c:>3}: {r.done} creates in {r.wall:.2f}s")
    finally:
        await etcd.close()
    return results


def print_creates(results: list[Result], n: int) -> None:
    print()
    print(f"creates: ConfigMap, {body_size()} B JSON body, up to {n} per level; gRPC on one "
          "channel, HTTP on a keep-alive pool of `concurrency` connections")
    print(f"{'concurrency':>11}  {'path':<8} {'creates/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>6}  {'CPU µs per create: apiserver':>28} {'etcd':>6} {'bench':>6}")
    for r in results:
        print(f"{r.concurrency:>11}  {r.path:<8} {r.rate:>10.0f} {r.ms(50):>8.2f} "
              f"{r.ms(99):>8.2f} {r.errors:>6}  {r.cpu_us('apiserver'):>28.0f} "
              f"{r.cpu_us('etcd'):>6.0f} {r.cpu_us('bench'):>6.0f}")
    print()
    by = {(r.path, r.concurrency): r for r in results}
    for c in LEVELS:
        grpc_r, http_r, raw = by[(GRPC, c)], by[(HTTP, c)], by[(RAW, c)]
        ratio = grpc_r.rate / raw.rate if raw.rate > 0 else 0.0
        hratio = http_r.rate / grpc_r.rate if grpc_r.rate > 0 else 0.0
        verdict = hverdict = ""
        if c == max(LEVELS):
            verdict = f" (goal >= {RATIO_GOAL}: {_met(ratio >= RATIO_GOAL)})"
            hverdict = f" (goal >= {HTTP_RATIO_GOAL}: {_met(hratio >= HTTP_RATIO_GOAL)})"
        print(f"ratio gRPC/raw etcd at concurrency {c}: {ratio:.2f}{verdict}")
        print(f"ratio HTTP/gRPC at concurrency {c}: {hratio:.2f}{hverdict}")
    print("physical limit: raw etcd puts on the same etcd (one member, loopback, "
          "--unsafe-no-fsync); every create is at least one etcd write, so ratio <= 1")


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# --- 2. list ----------------------------------------------------------------------------------

LIST_PATHS = ("gRPC", "HTTP JSON", "HTTP Table")


@dataclass
class ListResult:
    path: str
    times: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)  # items (rows for a Table) per answer
    cpu: dict[str, float] = field(default_factory=dict)
    errors: int = 0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1000 if self.times else float("nan")

    def cpu_ms(self, role: str) -> float:
        return self.cpu.get(role, 0.0) / len(self.times) * 1000 if self.times else float("nan")


async def bench_list(cluster: Cluster, http: HttpFront, cpu: CpuMeter, prof: Profiler,
                     pods: int, reps: int) -> dict[str, ListResult]:
    ns = "bench-list"
    api = cluster.client
    await api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": ns}})
    made = Result("pods", POD_CREATE_CONCURRENCY)

    async def create_pod(i: int) -> object:
        return await api.create("pods", bench_pod(f"pod-{i:05d}"), ns)

    await run_chunk(made, create_pod, range(pods), POD_CREATE_CONCURRENCY, 600.0)
    print(f"  created {made.done} pods over gRPC in {made.wall:.1f}s ({made.errors} errors)")
    chan = cluster.channel(options=[("grpc.max_receive_message_length", MAX_MESSAGE)])
    stub = pb_grpc.ApiStub(chan)
    url = f"/api/v1/namespaces/{ns}/pods"

    async def via_grpc() -> tuple[int, int]:
        resp = await stub.List(pb.ListRequest(resource="pods", namespace=ns))
        return len(resp.object), len(json.loads(resp.object)["items"])

    async def via_http(accept: str, key: str) -> tuple[int, int]:
        async with session.get(url, headers={"Accept": accept}) as r:
            raw = await r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {raw[:300].decode(errors='replace')}")
        return len(raw), len(json.loads(raw)[key])

    ops: dict[str, Callable[[], Awaitable[tuple[int, int]]]] = {
        "gRPC": via_grpc,
        "HTTP JSON": lambda: via_http("application/json", "items"),
        "HTTP Table": lambda: via_http(TABLE_ACCEPT, "rows"),
    }
    out = {p: ListResult(p) for p in LIST_PATHS}
    try:
        async with http.session(limit=1) as session:
            for p in LIST_PATHS:  # one untimed call each: connections, first-use imports
                await ops[p]()
            for rep in range(reps):
                for p in (LIST_PATHS if rep % 2 == 0 else LIST_PATHS[::-1]):
                    r = out[p]
                    before = cpu.snapshot()
                    t0 = time.perf_counter()
                    try:
                        async with prof.phase(f"list-{p.replace(' ', '-')}"):
                            size, count = await ops[p]()
                    except Exception as e:
                        r.errors += 1
                        print(f"  {p} list failed: {e!r}")
                        continue
                    r.times.append(time.perf_counter() - t0)
                    _add(r.cpu, cpu.since(before))
                    r.sizes.append(size)
                    r.counts.append(count)
    finally:
        await chan.close(None)
    return out


def print_list(res: dict[str, ListResult], pods: int, reps: int) -> None:
    print()
    print(f"list: {pods} pods in one namespace, whole (no limit, from etcd), {reps} times each "
          "in alternating order; time from the request to the answer decoded")
    print(f"{'path':<11} {'items':>6} {'median ms':>10} {'min ms':>8} {'bytes':>10} "
          f"{'CPU ms per list: apiserver':>27} {'etcd':>6} {'bench':>6} {'errors':>6}")
    for p in LIST_PATHS:
        r = res[p]
        print(f"{p:<11} {(r.counts[-1] if r.counts else 0):>6} {r.median_ms:>10.1f} "
              f"{(min(r.times) * 1000 if r.times else float('nan')):>8.1f} "
              f"{(r.sizes[-1] if r.sizes else 0):>10} {r.cpu_ms('apiserver'):>27.1f} "
              f"{r.cpu_ms('etcd'):>6.1f} {r.cpu_ms('bench'):>6.1f} {r.errors:>6}")
    g, t, j = res["gRPC"], res["HTTP Table"], res["HTTP JSON"]
    ratio = t.median_ms / g.median_ms if g.times and t.times else float("nan")
    jratio = j.median_ms / g.median_ms if g.times and j.times else float("nan")
    print(f"ratio HTTP Table/gRPC list time: {ratio:.2f} "
          f"(goal <= {TABLE_LIST_GOAL}: {_met(ratio <= TABLE_LIST_GOAL)})")
    print(f"ratio HTTP JSON/gRPC list time: {jratio:.2f}")


# --- 3. watch fan-out -------------------------------------------------------------------------

@dataclass
class FanoutResult:
    path: str
    watchers: int
    established: int
    objects: int
    expected: int
    received: int
    from_sent: list[float]  # per delivery: seconds from the create call starting
    from_returned: list[float]  # per delivery: seconds from the create returning (may be < 0)
    creates: list[float]  # the creates' own latencies
    cpu: dict[str, float]  # from the first timed create until all were delivered
    setup: float  # seconds until every watcher had seen the warm-up object
    setup_cpu: dict[str, float]  # CPU until then


class _Tally:
    """What every watcher reports: its first ADDED (the warm-up object) and the timed ones."""

    def __init__(self, watchers: int, expected: int) -> None:
        self.watchers = watchers
        self.expected = expected
        self.seen_warm = 0
        self.warm_done = asyncio.Event()
        self.all_delivered = asyncio.Event()
        self.deliveries: list[tuple[float, bytes]] = []
        self.errors: list[str] = []

    def warm(self) -> None:
        self.seen_warm += 1
        if self.seen_warm == self.watchers:
            self.warm_done.set()

    def delivered(self, now: float, raw: bytes) -> None:
        self.deliveries.append((now, raw))
        if len(self.deliveries) >= self.expected:
            self.all_delivered.set()


async def run_fanout(
    cluster: Cluster, cpu: CpuMeter, prof: Profiler, path: str, ns: str, watchers: int,
    start_watchers: Callable[[str, str, _Tally], list[asyncio.Task[None]]],
    name_of: Callable[[bytes], str], objects: int, rate: float, settle_timeout: float,
) -> FanoutResult:
    """W watchers from `start_watchers`; creates at `rate` over gRPC; per-delivery latency.

    The watchers only timestamp and keep each event, decoding after the run: in a real
    cluster every watcher is its own process decoding in parallel, and 1,000 JSON decodes
    queued on this one event loop would measure this process, not the apiserver's fan-out.
    """
    api = cluster.client
    await api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": ns}})
    start_rv = str((await api.list("configmaps", ns))["metadata"]["resourceVersion"])
    tally = _Tally(watchers, watchers * objects)  # a late watcher still gets every event
    t_setup = time.perf_counter()
    before = cpu.snapshot()
    tasks = start_watchers(ns, start_rv, tally)
    sent: dict[str, float] = {}
    returned: dict[str, float] = {}
    used: dict[str, float] = {}
    try:
        # Every watcher is established once it has seen this object. Wait as long as watchers
        # keep arriving: timing creates while some still connect would time their replay.
        await api.create("configmaps", configmap("warm", ns))
        seen = -1
        while not tally.warm_done.is_set() and tally.seen_warm > seen:
            seen = tally.seen_warm
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tally.warm_done.wait(), settle_timeout)
        setup = time.perf_counter() - t_setup
        setup_cpu = cpu.since(before)
        established = tally.seen_warm
        if established < watchers:
            print(f"  only {established}/{watchers} {path} watchers saw the warm-up object")
        before = cpu.snapshot()
        interval = 1.0 / rate
        async with prof.phase(f"watch-{path}"):
            t_next = time.perf_counter()
            for i in range(objects):
                name = f"obj-{i:05d}"
                sent[name] = time.perf_counter()
                await api.create("configmaps", configmap(name, ns))
                returned[name] = time.perf_counter()
                t_next += interval
                await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tally.all_delivered.wait(), settle_timeout)
        used = cpu.since(before)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if tally.errors:
        print(f"  {len(tally.errors)} {path} watch errors, first: {tally.errors[0]}")
    from_sent: list[float] = []
    from_returned: list[float] = []
    for t_recv, raw in tally.deliveries:
        name = name_of(raw)
        if name in returned:
            from_sent.append(t_recv - sent[name])
            from_returned.append(t_recv - returned[name])
    creates = [returned[n] - sent[n] for n in returned]
    return FanoutResult(path, watchers, established, objects, tally.expected, len(from_sent),
                        from_sent, from_returned, creates, used, setup, setup_cpu)


async def bench_fanout_grpc(cluster: Cluster, cpu: CpuMeter, prof: Profiler, watchers: int,
                            channels: int, objects: int, rate: float,
                            settle_timeout: float) -> FanoutResult:
    """W watches on the apiserver's Watch RPC with the generated stub (what `ApiClient`
    wraps), over C channels."""
    # Separate channels: a distinct user agent keeps gRPC from sharing one connection.
    chans = [
        cluster.channel(options=[
            ("grpc.primary_user_agent", f"tinykube-bench-watch-{i}"),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ])
        for i in range(channels)
    ]
    stubs = [pb_grpc.ApiStub(ch) for ch in chans]

    async def watch(stub: pb_grpc.ApiStub, ns: str, rv: str, tally: _Tally) -> None:
        req = pb.ListRequest(resource="configmaps", namespace=ns,
                             options=pb.ListOptions(resource_version=rv))
        first = True
        try:
            async for ev in stub.Watch(req):
                now = time.perf_counter()
                if ev.type != "ADDED":
                    if ev.type == "ERROR":
                        tally.errors.append(ev.object.decode(errors="replace"))
                    continue
                if first:  # the namespace is new: a watcher's first ADDED is the warm-up
                    first = False
                    tally.warm()
                    continue
                tally.delivered(now, ev.object)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                tally.errors.append(f"{e.code().name}: {e.details()}")

    def start(ns: str, rv: str, tally: _Tally) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(watch(stubs[i % channels], ns, rv, tally))
                for i in range(watchers)]

    try:
        return await run_fanout(
            cluster, cpu, prof, GRPC, "bench-watch-grpc", watchers, start,
            lambda raw: str(json.loads(raw)["metadata"]["name"]), objects, rate, settle_timeout)
    finally:
        for ch in chans:
            await ch.close(None)


_ADDED = b'{"type":"ADDED"'


async def bench_fanout_http(cluster: Cluster, http: HttpFront, cpu: CpuMeter, prof: Profiler,
                            watchers: int, objects: int, rate: float, settle_timeout: float,
                            connect_concurrency: int = 64) -> FanoutResult:
    """W watches over Kubernetes' HTTP API: each a chunked JSON stream on its own keep-alive
    TLS connection (HTTP/1.1 has no multiplexing), as W reflectors in W processes would hold.
    At most `connect_concurrency` of them are connecting at a time."""
    gate = asyncio.Semaphore(connect_concurrency)

    async def watch(session: aiohttp.ClientSession, ns: str, rv: str, tally: _Tally) -> None:
        url = f"/api/v1/namespaces/{ns}/configmaps"
        first = True
        gated = False
        try:
            await gate.acquire()
            gated = True
            async with session.get(url, params={"watch": "1", "resourceVersion": rv},
                                   headers={"Accept": "application/json"}) as resp:
                gate.release()
                gated = False
                if resp.status != 200:
                    body = await resp.read()
                    tally.errors.append(f"HTTP {resp.status}: {body[:300]!r}")
                    return
                async for line in resp.content:
                    now = time.perf_counter()
                    if not line.startswith(_ADDED):
                        if line.startswith(b'{"type":"ERROR"'):
                            tally.errors.append(line.decode(errors="replace")[:300])
                        continue
                    if first:
                        first = False
                        tally.warm()
                        continue
                    tally.delivered(now, line)
        except (aiohttp.ClientError, OSError) as e:
            tally.errors.append(repr(e))
        finally:
            if gated:
                gate.release()

    async with http.session(limit=0) as session:
        def start(ns: str, rv: str, tally: _Tally) -> list[asyncio.Task[None]]:
            return [asyncio.create_task(watch(session, ns, rv, tally)) for _ in range(watchers)]

        return await run_fanout(
            cluster, cpu, prof, HTTP, "bench-watch-http", watchers, start,
            lambda raw: str(json.loads(raw)["object"]["metadata"]["name"]), objects, rate,
            settle_timeout)


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


def fanout_p99_ms(r: FanoutResult) -> float:
    return percentile(sorted(r.from_sent), 99) * 1000


def fanout_met(r: FanoutResult) -> bool:
    return bool(r.from_sent) and fanout_p99_ms(r) < FANOUT_P99_GOAL_MS and \
        r.received >= r.expected


def print_fanout(r: FanoutResult, how: str, rate: float) -> None:
    print()
    print(f"watch fan-out ({r.path}): {r.watchers} watchers {how} on ConfigMaps in one "
          f"namespace, {r.objects} creates over gRPC at {rate:g}/s")
    print(f"  deliveries: {r.received}/{r.expected} ADDED events "
          f"({r.established}/{r.watchers} watchers established before the first create, "
          f"after {r.setup:.1f}s)")
    # From the create call starting: write + fan-out, end to end. The create's response and
    # the watch events reach this process at about the same moment, so "from the create
    # returning" is mostly <= 0 and is shown as a second line, with how often it is negative.
    print(f"watch fan-out delivery latency ({r.path}): {_stats(r.from_sent)} from the create "
          f"call starting (goal p99 < {FANOUT_P99_GOAL_MS:g} ms: {_met(fanout_met(r))})")
    early = sum(d < 0 for d in r.from_returned)
    print(f"  from the create returning: {_stats([max(0.0, d) for d in r.from_returned])} "
          f"({early}/{len(r.from_returned)} arrived before it returned: counted as 0)")
    print(f"  the creates themselves: {_stats(r.creates)}")
    n = max(1, r.received)
    print(f"  CPU µs per delivered event: apiserver {r.cpu.get('apiserver', 0) / n * 1e6:.0f}, "
          f"bench (the watchers) {r.cpu.get('bench', 0) / n * 1e6:.0f}; CPU ms per watcher "
          f"established: apiserver {r.setup_cpu.get('apiserver', 0) / r.watchers * 1e3:.1f}, "
          f"bench {r.setup_cpu.get('bench', 0) / r.watchers * 1e3:.1f}")


def print_raw_watch(raw_from_sent: list[float], raw_from_returned: list[float],
                    objects: int) -> None:
    raw_early = sum(d < 0 for d in raw_from_returned)
    print(f"physical limit: raw etcd watch, 1 watcher: {_stats(raw_from_sent)} from the put "
          f"starting ({len(raw_from_sent)}/{objects} events; {raw_early} arrived before the "
          "put returned)")


def print_goals(creates: list[Result], lists: dict[str, ListResult],
                fanouts: Sequence[FanoutResult]) -> None:
    by = {(r.path, r.concurrency): r for r in creates}
    top = max(LEVELS)
    g, h, raw = by[(GRPC, top)], by[(HTTP, top)], by[(RAW, top)]
    hratio = h.rate / g.rate if g.rate > 0 else 0.0
    gratio = g.rate / raw.rate if raw.rate > 0 else 0.0
    t, gl = lists["HTTP Table"], lists["gRPC"]
    lratio = t.median_ms / gl.median_ms if t.times and gl.times else float("nan")
    print()
    print("goals:")
    print(f"  goal HTTP creates >= {HTTP_RATIO_GOAL}x gRPC creates at concurrency {top}: "
          f"{hratio:.2f}x ({h.rate:.0f}/s vs {g.rate:.0f}/s): {_met(hratio >= HTTP_RATIO_GOAL)}")
    for f in fanouts:
        print(f"  goal {f.path} watch fan-out p99 < {FANOUT_P99_GOAL_MS:g} ms: "
              f"{fanout_p99_ms(f):.1f} ms ({f.received}/{f.expected} delivered): "
              f"{_met(fanout_met(f))}")
    print(f"  goal {t.counts[-1] if t.counts else 0}-pod Table list <= {TABLE_LIST_GOAL}x the "
          f"gRPC list: {lratio:.2f}x ({t.median_ms:.0f} ms vs {gl.median_ms:.0f} ms): "
          f"{_met(lratio <= TABLE_LIST_GOAL)}")
    print(f"  goal gRPC creates >= {RATIO_GOAL}x raw etcd puts at concurrency {top}: "
          f"{gratio:.2f}x: {_met(gratio >= RATIO_GOAL)}")


async def main_async(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    # Sockets: W HTTP watchers here and W in the apiserver, plus pools, channels and files.
    print(raise_nofile(2 * args.watchers + 1024))
    prof = Profiler(args.profile)
    with prof.environment():
        cluster = Cluster()
        await cluster.__aenter__()
    try:
        assert cluster.apiserver is not None and cluster.apiserver.proc is not None
        prof.pid = cluster.apiserver.proc.pid
        print(f"cluster up: apiserver gRPC {cluster.server}, HTTPS {cluster.https_url}, "
              f"etcd {cluster.etcd.url}")
        if args.profile:
            print(f"PROFILING the apiserver into {args.profile}: rates below are slowed by it")
        cpu = CpuMeter(cluster)
        http = HttpFront(cluster)
        print(f"creates: ({_since(t0)})")
        results = await bench_creates(cluster, http, cpu, prof, args.creates, args.chunks,
                                      args.max_seconds)
        print_creates(results, args.creates)
        print(f"\nlist: ({_since(t0)})")
        lists = await bench_list(cluster, http, cpu, prof, args.pods, args.list_reps)
        print_list(lists, args.pods, args.list_reps)
        print(f"\nwatch fan-out: ({_since(t0)})")
        fan_grpc = await bench_fanout_grpc(cluster, cpu, prof, args.watchers,
                                           args.watch_channels, args.objects, args.rate,
                                           args.settle_timeout)
        print_fanout(fan_grpc, f"over {args.watch_channels} gRPC channels", args.rate)
        fan_http = await bench_fanout_http(cluster, http, cpu, prof, args.watchers,
                                           args.objects, args.rate, args.settle_timeout)
        print_fanout(fan_http, "on as many HTTPS connections", args.rate)
        raw_sent, raw_returned = await raw_watch_reference(cluster, args.objects, args.rate)
        print()
        print_raw_watch(raw_sent, raw_returned, args.objects)
        print_goals(results, lists, (fan_http, fan_grpc))
        prof.report(args.profile_top)
    finally:
        await cluster.__aexit__(None, None, None)
    print(f"\ntotal {time.perf_counter() - t0:.1f}s")
    return 0


def _since(t0: float) -> str:
    return f"at {time.perf_counter() - t0:.0f}s"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: few creates, 200 pods, 100 watchers (seconds, not minutes)")
    p.add_argument("--creates", type=int, default=None,
                   help="creates per level and path (default 2000)")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="stop a level's path after this long, whatever is left (default 60)")
    p.add_argument("--pods", type=int, default=None, help="pods to list (default 5000)")
    p.add_argument("--list-reps", type=int, default=None,
                   help="lists per path (default 5)")
    p.add_argument("--watchers", type=int, default=None,
                   help="watchers per front (default 1000)")
    p.add_argument("--watch-channels", type=int, default=None,
                   help="gRPC client channels the gRPC watchers share (default 20)")
    p.add_argument("--objects", type=int, default=None,
                   help="objects created while watched (default 100)")
    p.add_argument("--rate", type=float, default=None, help="creates per second (default 10)")
    p.add_argument("--settle-timeout", type=float, default=30.0,
                   help="how long to wait for deliveries, and for watchers to connect while "
                   "none arrives (default 30)")
    p.add_argument("--chunks", type=int, default=None,
                   help="each level's creates run in this many chunks per path, alternating "
                   "the order of the paths (default 4; --quick 2)")
    p.add_argument("--profile", metavar="DIR", default=None,
                   help="cProfile the apiserver during each phase into DIR/<phase>.prof and "
                   "print the top functions (slows the apiserver: not a benchmark run)")
    p.add_argument("--profile-top", type=int, default=25, help="functions per profile printed")
    a = p.parse_args(argv)
    quick = a.quick
    a.creates = a.creates or (100 if quick else 2000)
    a.chunks = a.chunks or (2 if quick else 4)
    a.pods = a.pods or (200 if quick else 5000)
    a.list_reps = a.list_reps or (2 if quick else 5)
    a.watchers = a.watchers or (100 if quick else 1000)
    a.watch_channels = a.watch_channels or (5 if quick else 20)
    a.objects = a.objects or (10 if quick else 100)
    a.rate = a.rate or (20.0 if quick else 10.0)
    return a


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
