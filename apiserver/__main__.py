"""tk-apiserver: flags → Config → run. Wiring only."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from api import errors
from apiserver.allocator import parse_ip_range, parse_port_range
from apiserver.server import Config, run


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"tk-apiserver: error: {message}", file=sys.stderr)
        sys.exit(2)


def parse(argv: list[str]) -> Config:
    p = _Parser(prog="tk-apiserver", description="The tinykube API server (gRPC over etcd).")
    p.add_argument("--etcd-servers", default="http://127.0.0.1:2379",
                   help="comma-separated etcd client URLs")
    p.add_argument("--bind-address", default="0.0.0.0")
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics (0 = off)")
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/16")
    p.add_argument("--service-node-port-range", default="30000-32767")
    p.add_argument("--watch-cache-size", type=int, default=1000,
                   help="events kept per resource for watches resuming from a resourceVersion")
    p.add_argument("--watch-bookmark-interval", type=float, default=10.0,
                   help="seconds between BOOKMARK events on idle watches that ask for them")
    p.add_argument("--etcd-compaction-interval", type=float, default=300.0,
                   help="seconds between etcd compactions (0 = never)")
    p.add_argument("--event-ttl", type=int, default=3600,
                   help="seconds an Event is kept before etcd expires it")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    try:  # the parsers' messages already name the flag
        parse_ip_range(a.service_cluster_ip_range)
        parse_port_range(a.service_node_port_range)
    except ValueError as e:
        p.error(str(e))
    if not 0 < a.port < 65536:
        p.error(f"--port: {a.port} is not a TCP port")
    if a.event_ttl < 1:
        p.error("--event-ttl: must be at least 1 second")
    if a.watch_cache_size < 1:
        p.error("--watch-cache-size: must be at least 1")
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Config(etcd_servers=a.etcd_servers, bind_address=a.bind_address, port=a.port,
                  metrics_port=a.metrics_port, service_cluster_ip_range=a.service_cluster_ip_range,
                  service_node_port_range=a.service_node_port_range,
                  watch_cache_size=a.watch_cache_size, bookmark_interval=a.watch_bookmark_interval,
                  compaction_interval=a.etcd_compaction_interval, event_ttl=a.event_ttl)


def main() -> None:
    cfg = parse(sys.argv[1:])
    try:
        asyncio.run(run(cfg))
    except (OSError, ValueError, errors.ApiError) as e:
        print(f"tk-apiserver: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
