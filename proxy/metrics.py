"""kube-proxy's Prometheus metrics, with upstream's names, buckets and meaning.

`kubeproxy_network_programming_duration_seconds` is the one that matters for the SLO: from the
moment a change happened (the endpoints controller stamps it on the Endpoints as
`endpoints.kubernetes.io/last-change-trigger-time`) to the moment this proxy's rules for it are
in the kernel, observed after the sync that programmed it.
"""

from __future__ import annotations

import re
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge, Histogram

from client.metrics_server import serve_metrics

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
        serve_metrics(host, port, self.registry)


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
