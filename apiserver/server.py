"""The apiserver process: storage → watch cache → registry → gRPC server, and its lifecycle.

Start-up waits for etcd (in the lab it may come up after us), fills the watch cache, creates the
bootstrap namespaces and the bootstrap RBAC policy, and only then listens, so a client that
connects is served at once.

Secure by default (issue 7). Two TLS listeners share one gRPC server:
- `--port` requires a client certificate signed by `--client-ca-file` (CN = user, O = groups);
- `--token-port` is server-only TLS for bearer tokens (ServiceAccount tokens from pods), because
  gRPC Python cannot "verify a client certificate if one is presented", which is how
  kube-apiserver takes certificates and tokens on one port (docs/deviations.md).
`--insecure` serves one plaintext port with no authentication or authorization at all, with a
WARNING line; it exists for the first walkthrough only.
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
import ssl
import time
from dataclasses import dataclass, field

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from api import errors
from api.resources import RESOURCES
from apiserver import authz, bootstrap_policy, encryption, kubernetes_service, metrics
from apiserver.admission import Admission
from apiserver.allocator import Allocator
from apiserver.audit import AuditLog
from apiserver.auth import AdmissionPlugin
from apiserver.authn import Authenticator
from apiserver.handler import RequestHandler
from apiserver.kubeletproxy import KubeletProxy, KubeletTLS
from apiserver.noderestriction import NetAgentRestriction, NodeRestriction
from apiserver.rbac import EscalationCheck, RBACAuthorizer
from apiserver.registry import Registry
from apiserver.rest import app as rest_app
from apiserver.rest.app import RestFront
from apiserver.service import ApiServicer, add_to_server
from apiserver.storage import EtcdTLS, Storage, parse_endpoints, read_flag_file
from apiserver.tokens import TokenIssuer, TokenVerifier, load_public_keys
from apiserver.watchcache import WatchCache

log = logging.getLogger(__name__)

BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# Above the 1.5 MiB object limit, so an oversized object gets our clear error, not gRPC's.
MAX_MESSAGE = 8 * 1024 * 1024


@dataclass
class Config:
    etcd_servers: str = "http://127.0.0.1:2379"
    bind_address: str = "0.0.0.0"
    # Kubernetes' HTTP API (kubectl, client libraries): certificates or bearer tokens.
    secure_port: int = 6443
    # gRPC (tinykube's components, tkctl): client certificates required.
    grpc_port: int = 6442
    # Where the `kubernetes` Endpoints send pods ("" = chosen like kube-apiserver does).
    advertise_address: str = ""
    endpoint_reconciler_interval: float = kubernetes_service.INTERVAL
    # A second, plain-HTTP /metrics without authentication (0 = off), on loopback unless
    # `metrics_bind_address` opens it; the HTTPS front's /metrics asks authorization.
    metrics_port: int = 0
    metrics_bind_address: str = "127.0.0.1"
    service_cluster_ip_range: str = "10.96.0.0/16"
    service_node_port_range: str = "30000-32767"
    watch_cache_size: int = 1000
    bookmark_interval: float = 10.0
    compaction_interval: float = 300.0
    etcd_wait: float = 120.0
    event_ttl: int = 3600
    default_not_ready_toleration_seconds: int = 300
    default_unreachable_toleration_seconds: int = 300
    shutdown_grace: float = 5.0
    # Transport security (flag names as kube-apiserver's).
    insecure: bool = False
    tls_cert_file: str = ""
    tls_private_key_file: str = ""
    client_ca_file: str = ""
    token_port: int = 6444  # 0 = no token listener
    etcd_cafile: str = ""
    etcd_certfile: str = ""
    etcd_keyfile: str = ""
    # ServiceAccount tokens.
    service_account_key_files: list[str] = field(default_factory=list)
    service_account_signing_key_file: str = ""
    service_account_issuer: str = "https://kubernetes.default.svc.cluster.local"
    api_audiences: list[str] = field(default_factory=list)  # empty: the issuer
    service_account_min_token_expiration: float = 600.0
    authorization_modes: list[str] = field(default_factory=lambda: ["Node", "RBAC"])
    audit_log_path: str = ""
    # Rotation (upstream's --audit-log-maxsize/-maxbackup/-maxage, lumberjack's semantics):
    # megabytes before the log is rotated (0: lumberjack's default, 100), backups kept (0: all),
    # days a backup is kept (0: no limit).
    audit_log_maxsize: int = 0
    audit_log_maxbackup: int = 0
    audit_log_maxage: int = 0
    encryption_provider_config: str = ""
    # pods/log and pods/exec: the apiserver's client credentials towards kubelets.
    kubelet_client_certificate: str = ""
    kubelet_client_key: str = ""
    kubelet_certificate_authority: str = ""


@dataclass
class Material:
    """The contents of every file the flags name, read once before anything starts, so that a
    missing or unreadable file is one line naming its flag."""

    serving_cert: bytes | None = None
    serving_key: bytes | None = None
    client_ca: bytes | None = None
    etcd_tls: EtcdTLS | None = None
    encryption: encryption.EncryptionConfig | None = None
    issuer: TokenIssuer | None = None
    verify_keys: list[bytes] = field(default_factory=list)
    kubelet_tls: KubeletTLS | None = None


SECURE_FLAGS = (("--tls-cert-file", "tls_cert_file"),
                ("--tls-private-key-file", "tls_private_key_file"),
                ("--client-ca-file", "client_ca_file"))


def _pem(flag: str, path: str, *, key: bool = False) -> bytes:
    """A PEM certificate (bundle) or private key a flag names, checked now: gRPC would only
    fail later, at the first handshake, with a message naming neither the flag nor the file."""
    data = read_flag_file(flag, path)
    try:
        if key:
            serialization.load_pem_private_key(data, password=None)
        else:
            x509.load_pem_x509_certificates(data)
    except (ValueError, TypeError):
        what = "private key" if key else "certificate"
        raise ValueError(f"{flag}: {path} is not a PEM {what}") from None
    return data


def load_material(cfg: Config) -> Material:
    """Check the security flags and read their files; ValueError with one line otherwise."""
    m = Material()
    if not cfg.insecure:
        for flag, attr in SECURE_FLAGS:
            if not getattr(cfg, attr):
                raise ValueError(
                    f"{flag} is required: the apiserver serves TLS with client certificates "
                    "(`tkctl pki init` creates them; --insecure serves plaintext without "
                    "authentication)")
        m.serving_cert = _pem("--tls-cert-file", cfg.tls_cert_file)
        m.serving_key = _pem("--tls-private-key-file", cfg.tls_private_key_file, key=True)
        m.client_ca = _pem("--client-ca-file", cfg.client_ca_file)
        m.kubelet_tls = _kubelet_tls(cfg, m.client_ca)
    etcd_files = (cfg.etcd_cafile, cfg.etcd_certfile, cfg.etcd_keyfile)
    if any(etcd_files):
        for flag, value in zip(("--etcd-cafile", "--etcd-certfile", "--etcd-keyfile"),
                               etcd_files, strict=True):
            if not value:
                raise ValueError(f"{flag} is required with the other --etcd-* TLS flags")
        m.etcd_tls = EtcdTLS.load(*etcd_files)
    Storage.check_tls(parse_endpoints(cfg.etcd_servers)[1], m.etcd_tls)
    if cfg.encryption_provider_config:
        m.encryption = encryption.load(cfg.encryption_provider_config)
    m.verify_keys = [read_flag_file("--service-account-key-file", p)
                     for p in cfg.service_account_key_files]
    for pem in m.verify_keys:
        load_public_keys(pem)  # ValueError naming the flag
    if cfg.service_account_signing_key_file:
        signing_key = read_flag_file("--service-account-signing-key-file",
                                     cfg.service_account_signing_key_file)
        m.issuer = TokenIssuer(
            signing_key, cfg.service_account_issuer,
            audiences=cfg.api_audiences or [cfg.service_account_issuer],
            min_expiration_seconds=max(1, int(cfg.service_account_min_token_expiration)))
        # Without --service-account-key-file, verify the tokens we sign (a private key
        # counts as its public half).
        m.verify_keys = m.verify_keys or [signing_key]
    return m


def _kubelet_tls(cfg: Config, client_ca: bytes) -> KubeletTLS:
    """How the apiserver dials kubelets for pods/log and pods/exec (upstream's flags). The
    kubelets' serving certificates are verified against --kubelet-certificate-authority, by
    default the cluster CA (which signs them in tinykube's PKI); without a client certificate
    the kubelets refuse the handshake, and logs/exec say so."""
    if bool(cfg.kubelet_client_certificate) != bool(cfg.kubelet_client_key):
        raise ValueError("--kubelet-client-certificate and --kubelet-client-key go together")
    ca = (_pem("--kubelet-certificate-authority", cfg.kubelet_certificate_authority)
          if cfg.kubelet_certificate_authority else client_ca)
    if not cfg.kubelet_client_certificate:
        log.warning("no --kubelet-client-certificate: kubelets will refuse logs and exec")
        return KubeletTLS(ca)
    return KubeletTLS(ca, _pem("--kubelet-client-certificate", cfg.kubelet_client_certificate),
                      _pem("--kubelet-client-key", cfg.kubelet_client_key, key=True))


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


def _listen(server: grpc.aio.Server, cfg: Config, m: Material) -> list[str]:
    """Add the listeners; returns what each serves, for the start-up log line."""
    address = f"{cfg.bind_address}:{cfg.grpc_port}"
    if cfg.insecure:
        if server.add_insecure_port(address) == 0:
            raise OSError(f"--grpc-port: cannot listen on {address}")
        return [f"{address} (plaintext, no authentication)"]
    assert m.serving_key is not None and m.serving_cert is not None
    pair = [(m.serving_key, m.serving_cert)]
    mtls = grpc.ssl_server_credentials(pair, root_certificates=m.client_ca,
                                       require_client_auth=True)
    if server.add_secure_port(address, mtls) == 0:
        raise OSError(f"--grpc-port: cannot listen on {address}")
    out = [f"{address} (TLS, client certificates)"]
    if cfg.token_port:
        token_address = f"{cfg.bind_address}:{cfg.token_port}"
        if server.add_secure_port(token_address, grpc.ssl_server_credentials(pair)) == 0:
            raise OSError(f"--token-port: cannot listen on {token_address}")
        out.append(f"{token_address} (TLS, bearer tokens)")
    return out


async def _etcd_ok(storage: Storage) -> bool:
    """/readyz's etcd check: etcd answers within two seconds."""
    try:
        async with asyncio.timeout(2.0):
            await storage.current_revision()
    except (errors.ApiError, TimeoutError):
        return False
    return True


def _rest_tls(cfg: Config, m: Material) -> ssl.SSLContext | None:
    if cfg.insecure:
        return None
    assert m.client_ca is not None
    return rest_app.ssl_context(cfg.tls_cert_file, cfg.tls_private_key_file, m.client_ca)


def _verifier(cfg: Config, m: Material, cache: WatchCache) -> TokenVerifier | None:
    if not m.verify_keys:
        return None
    return TokenVerifier(m.verify_keys, [cfg.service_account_issuer],
                         cfg.api_audiences or [cfg.service_account_issuer], cache)


async def run(cfg: Config, stop: asyncio.Event | None = None,
              material: Material | None = None) -> None:
    m = material or load_material(cfg)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if cfg.insecure:
        log.warning("--insecure: serving plaintext on %s:%d with no authentication and no "
                    "authorization: anyone who can reach it is cluster-admin",
                    cfg.bind_address, cfg.secure_port)

    storage = Storage(cfg.etcd_servers, tls=m.etcd_tls, encryption=m.encryption)
    await storage.wait_ready(time.monotonic() + cfg.etcd_wait)
    cache = WatchCache(storage, cfg.watch_cache_size)
    await cache.start()
    allocator = Allocator(storage, cfg.service_cluster_ip_range, cfg.service_node_port_range)
    # One RBAC authorizer, so one binding index, for the chain and the escalation check.
    rbac = RBACAuthorizer(cache)
    authorizer = authz.build(["AlwaysAllow"] if cfg.insecure else cfg.authorization_modes, cache,
                             rbac)
    verifier = _verifier(cfg, m, cache)
    # Validating admission: a kubelet writes only its own Node, Lease and pods, a network agent
    # only its own Node's flannel annotations; nobody grants RBAC rights they do not hold
    # (`escalate`/`bind` asked of the whole authorizer chain).
    plugins: list[AdmissionPlugin] = [NodeRestriction(cache), NetAgentRestriction(),
                                      EscalationCheck(rbac, authorizer)]
    registry = Registry(storage, cache, Admission(
        storage, cache, allocator, plugins=plugins,
        not_ready_toleration_seconds=cfg.default_not_ready_toleration_seconds,
        unreachable_toleration_seconds=cfg.default_unreachable_toleration_seconds),
                        cfg.event_ttl, tokens=m.issuer, token_verifier=verifier,
                        authorizer=authorizer)
    await bootstrap(registry)
    await bootstrap_policy.ensure(registry)
    advertise = cfg.advertise_address
    if advertise in ("", "0.0.0.0"):  # unspecified: chosen as kube-apiserver does
        advertise = kubernetes_service.choose_advertise_address(cfg.bind_address)
    # Behind 10.96.0.1:443 is the HTTPS front, as upstream's (it takes the ServiceAccount
    # tokens pods carry).
    kubesvc = kubernetes_service.KubernetesService(
        registry, kubernetes_service.service_ip(cfg.service_cluster_ip_range), advertise,
        cfg.secure_port, cfg.token_port or cfg.grpc_port, cfg.endpoint_reconciler_interval)
    await kubesvc.reconcile_logged()
    authenticator = Authenticator(tokens=verifier, insecure=cfg.insecure)
    audit = AuditLog(cfg.audit_log_path, max_size_mb=cfg.audit_log_maxsize,
                     max_backups=cfg.audit_log_maxbackup,
                     max_age_days=cfg.audit_log_maxage) if cfg.audit_log_path else None

    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", 256 * 1024 * 1024),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ])
    kubelets = KubeletProxy(registry, m.kubelet_tls)
    handler = RequestHandler(registry, cache, cfg.bookmark_interval, authenticator=authenticator,
                             authorizer=authorizer, audit=audit, kubelets=kubelets)
    add_to_server(ApiServicer(handler), server)  # tolerant of undecodable requests
    rest = RestFront(handler, server_address=f"{advertise}:{cfg.secure_port}",
                     ready=lambda: _etcd_ok(storage))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    listeners = _listen(server, cfg, m)
    await server.start()
    await rest.start(cfg.bind_address, cfg.secure_port, _rest_tls(cfg, m))
    listeners.append(f"{cfg.bind_address}:{cfg.secure_port} (HTTPS, Kubernetes' API)"
                     if not cfg.insecure else
                     f"{cfg.bind_address}:{cfg.secure_port} (HTTP, no authentication)")
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    if cfg.metrics_port:
        metrics.serve(cfg.metrics_port, cfg.metrics_bind_address)
        listeners.append(f"{cfg.metrics_bind_address}:{cfg.metrics_port} (HTTP /metrics, no "
                         "authentication)")
    tasks = []
    if cfg.compaction_interval > 0:
        tasks.append(asyncio.create_task(compactor(storage, cfg.compaction_interval)))
    tasks.append(asyncio.create_task(kubesvc.run()))
    log.info("apiserver serving on %s (etcd %s), advertised as %s", ", ".join(listeners),
             cfg.etcd_servers, advertise)

    await stop.wait()
    log.info("shutting down")
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    for t in tasks:
        t.cancel()
    # Upstream's Stop: nobody should be sent to an apiserver that is going away (bounded: etcd
    # may be gone already).
    with contextlib.suppress(errors.ApiError, TimeoutError):
        await asyncio.wait_for(kubesvc.remove_endpoints(), 2.0)
    await cache.stop()  # ends every watch stream cleanly
    await asyncio.gather(server.stop(cfg.shutdown_grace), rest.stop())
    await kubelets.close()
    if audit is not None:
        await audit.close()
    await storage.close()
