"""The apiserver process: storage → watch cache → registry → gRPC server, and its lifecycle.

Start-up waits for etcd (in the lab it may come up after us), fills the watch cache, creates the
bootstrap namespaces, and only then listens, so a client that connects is served at once.
Shutdown on SIGTERM is graceful: health goes NOT_SERVING, open watches end cleanly (clients
resume from their last resourceVersion elsewhere or after restart), in-flight calls get a grace
period. etcd is compacted periodically, as kube-apiserver does, which is what makes old
resourceVersions eventually answer Gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from api import errors
from api.proto import tinykube_pb2_grpc as pb_grpc
from api.resources import RESOURCES
from apiserver import metrics
from apiserver.admission import Admission
from apiserver.allocator import Allocator
from apiserver.registry import Registry
from apiserver.service import ApiServicer
from apiserver.storage import Storage
from apiserver.watchcache import WatchCache

log = logging.getLogger(__name__)

BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# Above the 1.5 MiB object limit, so an oversized object gets our clear error, not gRPC's.
MAX_MESSAGE = 8 * 1024 * 1024


@dataclass
class Config:
    etcd_servers: str = "http://127.0.0.1:2379"
    bind_address: str = "0.0.0.0"
    port: int = 6443
    metrics_port: int = 0
    service_cluster_ip_range: str = "10.96.0.0/16"
    service_node_port_range: str = "30000-32767"
    watch_cache_size: int = 1000
    bookmark_interval: float = 10.0
    compaction_interval: float = 300.0
    etcd_wait: float = 120.0
    event_ttl: int = 3600
    shutdown_grace: float = 5.0


async def bootstrap(registry: Registry) -> None:
    info = RESOURCES["namespaces"]
    for name in BOOTSTRAP_NAMESPACES:
        body = json.dumps({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": name}}).encode()
        with contextlib.suppress(errors.AlreadyExists):
            await registry.create(info, "", body)


async def compactor(storage: Storage, interval: float) -> None:
    """Every interval, compact etcd to the revision seen one interval ago (kube-apiserver's
    scheme: clients always have at least one interval to resume a watch or a paginated list)."""
    last = 0
    while True:
        await asyncio.sleep(interval)
        try:
            current = await storage.current_revision()
            if last:
                await storage.compact(last)
                log.info("compacted etcd to revision %d", last)
            last = current
        except errors.ApiError as e:
            log.warning("compaction failed: %s", e)


async def run(cfg: Config, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    storage = Storage(cfg.etcd_servers)
    await storage.wait_ready(time.monotonic() + cfg.etcd_wait)
    cache = WatchCache(storage, cfg.watch_cache_size)
    await cache.start()
    allocator = Allocator(storage, cfg.service_cluster_ip_range, cfg.service_node_port_range)
    registry = Registry(storage, cache, Admission(storage, cache, allocator), cfg.event_ttl)
    await bootstrap(registry)

    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", 256 * 1024 * 1024),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ])
    pb_grpc.add_ApiServicer_to_server(ApiServicer(registry, cache, cfg.bookmark_interval), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{cfg.bind_address}:{cfg.port}"
    if server.add_insecure_port(address) == 0:
        raise OSError(f"--port: cannot listen on {address}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    if cfg.metrics_port:
        metrics.serve(cfg.metrics_port, cfg.bind_address)
    tasks = []
    if cfg.compaction_interval > 0:
        tasks.append(asyncio.create_task(compactor(storage, cfg.compaction_interval)))
    log.info("apiserver serving on %s (etcd %s)", address, cfg.etcd_servers)

    await stop.wait()
    log.info("shutting down")
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    for t in tasks:
        t.cancel()
    await cache.stop()  # ends every watch stream cleanly
    await server.stop(cfg.shutdown_grace)
    await storage.close()
