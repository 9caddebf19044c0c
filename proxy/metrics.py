"""kube-proxy's Prometheus metrics, with upstream's names, buckets and meaning.

`kubeproxy_network_programming_duration_seconds` is the one that matters for the SLO: from the
moment a change happened (the endpoints controller stamps it on the Endpoints as
`endpoints.kubernetes.io/last-change-trigger-time`) to the moment this proxy's rules for it are
in the kernel, observed after the sync that programmed it.
"""

from __future__ import annotations

import re
import socketserver
import threading
from datetime import datetime
from http.server import ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.exposition import MetricsHandler

TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"


def _linear(start: float, width: float, count: int) -> list[float]:
    return [start + i * width for i in range(count)]


# upstream: ExponentialBuckets(0.001, 2, 15) and the merged linear buckets of metrics.go.
SYNC_BUCKETS = [0.001 * 2 ** i for i in range(15)]
PROGRAMMING_BUCKETS = (_linear(0.25, 0.25, 2) + _linear(1, 1, 59) + _linear(60, 5, 12)
                       + _linear(120, 30, 7))


class Metrics:
    """The proxy's metrics, in their own registry (tests create as many as they like)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sync_duration = Histogram(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds", buckets=SYNC_BUCKETS, registry=self.registry)
        self.network_programming = Histogram(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            buckets=PROGRAMMING_BUCKETS, registry=self.registry)
        self.last_sync = Gauge(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced", registry=self.registry)

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics on host:port from a daemon thread."""
        server = _Server((host, port), MetricsHandler.factory(self.registry))
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


class _Server(ThreadingHTTPServer):
    """http.server without its reverse DNS lookup of the bound address (`socket.getfqdn` in
    HTTPServer.server_bind, which prometheus-client's start_http_server goes through): on a
    node whose resolver is unreachable, as inside a fresh network namespace, it held the
    proxy's start-up for the resolver's whole timeout, about 10 s."""

    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_trigger_time(text: str) -> float | None:
    """An RFC 3339 time (fractional seconds allowed, Go's up to 9 digits) as a UNIX time."""
    try:
        dt = datetime.fromisoformat(_FRACTION.sub(r"\1", text.strip()).replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return dt.timestamp()
