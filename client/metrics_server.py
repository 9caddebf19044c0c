"""Serving a component's Prometheus metrics over HTTP, without a reverse DNS lookup.

prometheus-client's `start_http_server` binds through http.server, whose `server_bind` looks the
bound address up with `socket.getfqdn`. On a node whose resolver is unreachable (a fresh network
namespace, an air-gapped machine) that lookup waits for the resolver's whole timeout, about
10 s, before the component starts. Every component serves its metrics through this instead.
"""

from __future__ import annotations

import socketserver
import threading
from http.server import ThreadingHTTPServer

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import MetricsHandler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # without HTTPServer's getfqdn
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


def serve_metrics(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve `registry` on http://host:port/metrics from a daemon thread."""
    server = _Server((host, port), MetricsHandler.factory(registry))
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
