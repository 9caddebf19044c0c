"""Prometheus metrics of the apiserver, named as kube-apiserver names them where one exists.

Served on `--metrics-port` (`/metrics`), so the same dashboards and PromQL habits carry over:
requests by verb/resource/code, request latency, registered watchers, etcd latency.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from client.metrics_server import serve_metrics

REQUESTS = Counter(
    "apiserver_request_total", "Requests by verb, resource and response code.",
    ["verb", "resource", "code"],
)
LATENCY = Histogram(
    "apiserver_request_duration_seconds", "Request latency by verb and resource.",
    ["verb", "resource"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
WATCHERS = Gauge("apiserver_registered_watchers", "Open watches by resource.", ["resource"])
ETCD_LATENCY = Histogram(
    "etcd_request_duration_seconds", "etcd request latency by operation.", ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
WATCH_CACHE_EVENTS = Counter(
    "apiserver_watch_cache_events_received_total", "Events the watch cache took from etcd.",
    ["resource"],
)
WATCH_EVENTS_SENT = Counter(
    "apiserver_watch_events_total", "Watch events sent to clients.", ["resource"]
)


def serve(port: int, addr: str) -> None:
    serve_metrics(addr, port)
