"""tk-apiserver: flags → Config → run. Wiring only."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys

from api import errors
from api.durations import parse_duration
from apiserver.allocator import parse_ip_range, parse_port_range
from apiserver.authz import MODES
from apiserver.server import Config, load_material, run
from apiserver.storage import parse_endpoints
from client.flags import Parser, csv


def duration(text: str) -> float:
    """Seconds of a Go duration: 10m, 1h30m, 1s, 500ms (no bare numbers, as kube-apiserver)."""
    try:
        return parse_duration(text, bare_seconds=False)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r} (want e.g. 10m, 1h, 30s)") from None


def check_ports(p: Parser, a: argparse.Namespace) -> None:
    """Each listener a valid port of its own (the token port is off with --insecure)."""
    ports = {"--secure-port": a.secure_port, "--grpc-port": a.grpc_port}
    for flag, port in ports.items():
        if not 0 < port < 65536:
            p.error(f"{flag}: {port} is not a TCP port")
    if a.grpc_port == a.secure_port:
        p.error(f"--grpc-port: {a.grpc_port} is --secure-port too; each needs a port of its own")
    if not 0 <= a.token_port < 65536:
        p.error(f"--token-port: {a.token_port} is not a TCP port (0 = off)")
    for flag, port in ports.items():
        if a.token_port == port and not a.insecure:
            p.error(f"--token-port: {port} is {flag} too; each needs a port of its own "
                    "(0 = off)")


def parse(argv: list[str]) -> Config:
    p = Parser(prog="tk-apiserver",
               description="The tinykube API server: Kubernetes' HTTP API and gRPC, over etcd.")
    p.add_argument("--etcd-servers", default="http://127.0.0.1:2379",
                   help="comma-separated etcd client URLs")
    p.add_argument("--bind-address", default="0.0.0.0")
    p.add_argument("--secure-port", type=int, default=6443,
                   help="HTTPS: Kubernetes' HTTP API (kubectl, client libraries), client "
                   "certificates or bearer tokens (plain HTTP with --insecure)")
    p.add_argument("--grpc-port", type=int, default=6442,
                   help="gRPC (tinykube's components, tkctl): client certificates required "
                   "(plaintext with --insecure)")
    p.add_argument("--advertise-address", default="", metavar="IP",
                   help="the IPv4 address the `kubernetes` Endpoints give pods (default: "
                   "--bind-address if specific, else the default route's interface)")
    p.add_argument("--endpoint-reconciler-interval", type=duration, default=10.0,
                   metavar="DURATION", help="how often the `kubernetes` Service and Endpoints "
                   "are repaired (default 10s)")
    p.add_argument("--metrics-port", type=int, default=0,
                   help="a second, plain-HTTP Prometheus /metrics without authentication (0 = "
                   "off); /metrics on --secure-port needs `get` on it (system:monitoring)")
    p.add_argument("--metrics-bind-address", default="127.0.0.1", metavar="IP",
                   help="the address --metrics-port listens on (default loopback only; "
                   "0.0.0.0 opens it to every address)")
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
    p.add_argument("--default-not-ready-toleration-seconds", type=int, default=300,
                   metavar="SECONDS", help="tolerationSeconds of the not-ready:NoExecute "
                   "toleration added to every pod that has none")
    p.add_argument("--default-unreachable-toleration-seconds", type=int, default=300,
                   metavar="SECONDS", help="the same for unreachable:NoExecute")
    sec = p.add_argument_group("security (secure by default: `tkctl pki init` creates the files)")
    sec.add_argument("--insecure", action="store_true",
                     help="serve plaintext with no authentication or authorization (walkthroughs)")
    sec.add_argument("--tls-cert-file", default="", help="serving certificate (PEM)")
    sec.add_argument("--tls-private-key-file", default="", help="its private key (PEM)")
    sec.add_argument("--client-ca-file", default="",
                     help="CA that signs client certificates (CN = user, O = groups)")
    sec.add_argument("--token-port", type=int, default=6444,
                     help="gRPC over TLS for bearer tokens (ServiceAccounts), no client "
                     "certificate (0 = off; off with --insecure)")
    sec.add_argument("--etcd-cafile", default="", help="etcd's CA (with https:// etcd servers)")
    sec.add_argument("--etcd-certfile", default="", help="client certificate for etcd")
    sec.add_argument("--etcd-keyfile", default="", help="its private key")
    sec.add_argument("--service-account-key-file", action="append", metavar="FILE",
                     help="public key(s) verifying ServiceAccount tokens (repeatable)")
    sec.add_argument("--service-account-signing-key-file", default="",
                     help="private key signing ServiceAccount tokens")
    sec.add_argument("--service-account-issuer",
                     default="https://kubernetes.default.svc.cluster.local")
    sec.add_argument("--api-audiences", action="append", metavar="AUD",
                     help="audiences tokens must carry (default: the issuer)")
    sec.add_argument("--service-account-min-token-expiration", type=duration, default=600.0,
                     metavar="DURATION", help="shortest TokenRequest expiration (default 10m)")
    sec.add_argument("--authorization-mode", default="Node,RBAC",
                     help="comma-separated authorizers in order: Node, RBAC, AlwaysAllow")
    sec.add_argument("--audit-log-path", default="", help="audit log file (JSON lines)")
    sec.add_argument("--audit-log-maxsize", type=int, default=0, metavar="MB",
                     help="megabytes of audit log before it is rotated (0 = 100, lumberjack's "
                     "default)")
    sec.add_argument("--audit-log-maxbackup", type=int, default=0, metavar="N",
                     help="rotated audit logs to keep (0 = all)")
    sec.add_argument("--audit-log-maxage", type=int, default=0, metavar="DAYS",
                     help="days to keep rotated audit logs, by the timestamp in their name "
                     "(0 = no limit)")
    sec.add_argument("--encryption-provider-config", default="",
                     help="EncryptionConfiguration for encryption at rest")
    kub = p.add_argument_group("kubelets (pods/log, pods/exec)")
    kub.add_argument("--kubelet-client-certificate", default="",
                     help="client certificate the apiserver presents to kubelets (PEM)")
    kub.add_argument("--kubelet-client-key", default="", help="its private key (PEM)")
    kub.add_argument("--kubelet-certificate-authority", default="",
                     help="CA that signs the kubelets' serving certificates (default: "
                     "--client-ca-file)")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    try:  # the parsers' messages already name the flag
        parse_endpoints(a.etcd_servers)
        parse_ip_range(a.service_cluster_ip_range)
        parse_port_range(a.service_node_port_range)
    except ValueError as e:
        p.error(str(e))
    if a.advertise_address:
        try:
            ipaddress.IPv4Address(a.advertise_address)
        except ValueError:
            p.error(f"--advertise-address: {a.advertise_address!r} is not an IPv4 address")
    if a.endpoint_reconciler_interval <= 0:
        p.error("--endpoint-reconciler-interval: must be positive")
    check_ports(p, a)
    if a.event_ttl < 1:
        p.error("--event-ttl: must be at least 1 second")
    for flag in ("not_ready", "unreachable"):
        if getattr(a, f"default_{flag}_toleration_seconds") < 0:
            p.error(f"--default-{flag.replace('_', '-')}-toleration-seconds: must not be "
                    "negative")
    modes = csv([a.authorization_mode])
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes or len(set(modes)) != len(modes):
        p.error(f"--authorization-mode: want a comma-separated list of distinct modes of "
                f"{', '.join(MODES)} (got {a.authorization_mode!r})")
    if not 0 <= a.metrics_port < 65536:
        p.error(f"--metrics-port: {a.metrics_port} is not a TCP port (0 = off)")
    try:
        ipaddress.ip_address(a.metrics_bind_address)
    except ValueError:
        p.error(f"--metrics-bind-address: {a.metrics_bind_address!r} is not an IP address")
    for flag in ("maxsize", "maxbackup", "maxage"):
        if getattr(a, f"audit_log_{flag}") < 0:
            p.error(f"--audit-log-{flag}: must not be negative")
    if a.watch_cache_size < 1:
        p.error("--watch-cache-size: must be at least 1")
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Config(
        etcd_servers=a.etcd_servers, bind_address=a.bind_address,
        secure_port=a.secure_port, grpc_port=a.grpc_port,
        advertise_address=a.advertise_address,
        endpoint_reconciler_interval=a.endpoint_reconciler_interval,
        metrics_port=a.metrics_port, metrics_bind_address=a.metrics_bind_address,
        service_cluster_ip_range=a.service_cluster_ip_range,
        service_node_port_range=a.service_node_port_range,
        watch_cache_size=a.watch_cache_size, bookmark_interval=a.watch_bookmark_interval,
        compaction_interval=a.etcd_compaction_interval, event_ttl=a.event_ttl,
        default_not_ready_toleration_seconds=a.default_not_ready_toleration_seconds,
        default_unreachable_toleration_seconds=a.default_unreachable_toleration_seconds,
        insecure=a.insecure, tls_cert_file=a.tls_cert_file,
        tls_private_key_file=a.tls_private_key_file, client_ca_file=a.client_ca_file,
        token_port=0 if a.insecure else a.token_port, etcd_cafile=a.etcd_cafile,
        etcd_certfile=a.etcd_certfile, etcd_keyfile=a.etcd_keyfile,
        service_account_key_files=csv(a.service_account_key_file),
        service_account_signing_key_file=a.service_account_signing_key_file,
        service_account_issuer=a.service_account_issuer,
        api_audiences=csv(a.api_audiences),
        service_account_min_token_expiration=a.service_account_min_token_expiration,
        authorization_modes=modes,
        audit_log_path=a.audit_log_path, audit_log_maxsize=a.audit_log_maxsize,
        audit_log_maxbackup=a.audit_log_maxbackup, audit_log_maxage=a.audit_log_maxage,
        encryption_provider_config=a.encryption_provider_config,
        kubelet_client_certificate=a.kubelet_client_certificate,
        kubelet_client_key=a.kubelet_client_key,
        kubelet_certificate_authority=a.kubelet_certificate_authority)


def main() -> None:
    cfg = parse(sys.argv[1:])
    try:  # every file the flags name, read before anything starts: one line if one is wrong
        material = load_material(cfg)
    except ValueError as e:
        print(f"tk-apiserver: error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(run(cfg, material=material))
    except (OSError, ValueError, errors.ApiError) as e:
        print(f"tk-apiserver: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
