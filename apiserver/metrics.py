"""Prometheus metrics of the apiserver, named as kube-apiserver names them where one exists.

The same dashboards and PromQL habits carry over: requests by verb/resource/code, request
latency, registered watchers, etcd latency. Served as upstream serves them, at `/metrics` on the
HTTPS front to those allowed to `get` that path (RBAC's `system:monitoring`; rest/app.py), since
metrics name resources, users' request rates and internals an attacker may use; and, for a
scraper on the same machine, on `--metrics-port` in plain HTTP without authentication, bound to
loopback unless `--metrics-bind-address` says otherwise.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

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


def exposition() -> tuple[bytes, str]:
    """Every metric in Prometheus' text format, and its Content-Type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
