"""The cluster's certificates and keys, created the way kubeadm's `init phase certs` does.

Every channel in the cluster is TLS with client certificates (DESIGN §1, issue 7): the apiserver
proves who it is with a serving certificate signed by the cluster CA, and every client (admin,
scheduler, controller-manager, kubelets, proxy) proves who it is with a client certificate whose
CN is the user name and whose O entries are the groups. etcd has its own CA so that a cluster
client certificate cannot talk to etcd directly: only the apiserver holds an etcd client
certificate. This module makes all of that, plus the ServiceAccount token signing key pair and the
at-rest encryption key for Secrets, in one directory (`tkctl pki init`):

    ca.crt ca.key, apiserver.crt/.key, apiserver-kubelet-client.crt/.key (no groups),
    apiserver-etcd-client.crt/.key, etcd/{ca,server}.crt/.key, sa.key sa.pub,
    encryption-config.yaml, admin.conf scheduler.conf controller-manager.conf proxy.conf,
    nodes/<name>/kubelet.conf kubelet.crt kubelet.key netagent.conf

A node's agents that write to the API get identities of that node alone (`tkctl pki add-node`),
which the apiserver's Node authorizer and admission limit to that node's own objects: the
kubelet `system:node:<name>` (group system:nodes), the network agent `system:netagent:<name>`
(group system:netagents). kube-proxy only reads, so one `proxy.conf` serves every node, as
upstream's one kube-proxy ServiceAccount does.

Every kubeconfig names the apiserver twice (client/config.py): `server: https://HOST:6443`, its
Kubernetes HTTP API (kubectl, the official clients), and the cluster extension
`tinykube.io/grpc` with the gRPC addresses tinykube's own clients dial, `server: HOST:6442`
(client certificates) and `token-server: HOST:6444` (bearer tokens); by default both beside the
URL's host on the apiserver's default ports.

Keys are EC P-256 in PKCS#8 PEM, written 0600 (certificates 0644). Running it again keeps what
exists (reported "exists"), so scripts can call it every time; `force=True` makes everything anew.
A kubeconfig naming other apiserver addresses than those asked for is made anew.

It lives in `client/` because both tkctl (which creates the files) and the test harness (which
makes ad-hoc users with `kubeconfig_for`) need it, and they may import only `api` and `client`.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_SERVER_URL = "https://127.0.0.1:6443"  # the apiserver's --secure-port
DEFAULT_GRPC_PORT = 6442  # --grpc-port: gRPC with client certificates
DEFAULT_TOKEN_PORT = 6444  # --token-port: gRPC with bearer tokens
GRPC_EXTENSION = "tinykube.io/grpc"  # the cluster extension naming them (client/config.py)
DEFAULT_DIR = ".tinykube/pki"
CA_VALIDITY = timedelta(days=3650)
LEAF_VALIDITY = timedelta(days=365)
CLUSTER_NAME = "tinykube"
# Names a pod or a node reaches the apiserver by (kubeadm's defaults; 10.96.0.1 is the first
# address of the default Service range, the `kubernetes` Service's ClusterIP).
APISERVER_SANS = (
    "127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local", "10.96.0.1",
)
ETCD_SANS = ("127.0.0.1", "localhost", "etcd")
# Component kubeconfigs: file name -> (user CN, groups). Bootstrap RBAC binds these names.
COMPONENT_CONFIGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin.conf": ("kubernetes-admin", ("system:masters",)),
    "scheduler.conf": ("system:kube-scheduler", ()),
    "controller-manager.conf": ("system:kube-controller-manager", ()),
    "proxy.conf": ("system:kube-proxy", ()),
}
# The kubeconfig earlier versions made for every node's network agent at once (user
# system:netagent, which could patch any Node): `init_pki` removes it (issue 20).
RETIRED_CONFIGS: dict[str, str] = {"netagent.conf": "system:netagent"}


def node_identities(node: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """A node's kubeconfigs in nodes/<node>/: file name -> (user CN, groups)."""
    return {"kubelet.conf": (f"system:node:{node}", ("system:nodes",)),
            "netagent.conf": (f"system:netagent:{node}", ("system:netagents",))}

# Clocks of the machines in a lab differ a little; a certificate valid from "now" would be
# refused by a peer whose clock is a few seconds behind.
_CLOCK_SKEW = timedelta(minutes=5)

Status = tuple[str, str]  # (path, "created" | "exists" | "removed")


@dataclass(frozen=True)
class CertKey:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("expected an EC private key")
        return key

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertKey:
        return cls(cert_path.read_bytes(), key_path.read_bytes())

    def write(self, cert_path: Path, key_path: Path) -> None:
        _write(key_path, self.key_pem, 0o600)
        _write(cert_path, self.cert_pem, 0o644)


# --- certificates ---------------------------------------------------------------------------


def _new_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key, pem


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def new_ca(common_name: str, *, validity: timedelta = CA_VALIDITY) -> CertKey:
    """A self-signed CA certificate (may sign certificates, nothing else) and its key."""
    key, key_pem = _new_key()
    now = datetime.now(UTC)
    name = _name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW).not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def issue(
    ca: CertKey, common_name: str, *, organizations: Sequence[str] = (),
    dns_names: Sequence[str] = (), ip_addresses: Sequence[str] = (), server: bool = False,
    client: bool = False, not_before: datetime | None = None, not_after: datetime | None = None,
    validity: timedelta = LEAF_VALIDITY,
) -> CertKey:
    """A leaf certificate signed by `ca`: CN = user (or host), O = groups.

    `server` and `client` choose the extended key usages (serverAuth, clientAuth). A serving
    certificate needs the names and addresses clients dial as SANs: gRPC checks them.
    `not_before`/`not_after` override the validity window (tests make expired certificates).
    """
    key, key_pem = _new_key()
    now = datetime.now(UTC)
    end = not_after or now + validity
    # An already-expired certificate (tests) still needs a window that ends after it starts.
    start = not_before or min(now - _CLOCK_SKEW, end - validity)
    ca_cert, ca_key = ca.cert, ca.key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations)).issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(_authority_key_id(ca_cert), critical=False)
    )
    usages = [u for u, on in ((ExtendedKeyUsageOID.SERVER_AUTH, server),
                              (ExtendedKeyUsageOID.CLIENT_AUTH, client)) if on]
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    sans = _san_entries(dns_names, ip_addresses)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_cert.public_key())  # type: ignore[arg-type]


def _san_entries(dns_names: Sequence[str], ips: Sequence[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for ip in dict.fromkeys(ips):
        out.append(x509.IPAddress(ipaddress.ip_address(ip)))
    for dns in dict.fromkeys(dns_names):
        out.append(x509.DNSName(dns))
    return out


def split_sans(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) from a mixed list, as kubeadm's --apiserver-cert-extra-sans."""
    dns: list[str] = []
    ips: list[str] = []
    for n in names:
        try:
            ips.append(str(ipaddress.ip_address(n)))
        except ValueError:
            dns.append(n)
    return dns, ips


def cert_organizations(cert_pem: bytes) -> list[str]:
    """The O entries (groups) of a certificate's subject, in order."""
    subject = x509.load_pem_x509_certificate(cert_pem).subject
    return [str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def cert_sans(cert_pem: bytes) -> set[str]:
    """Every DNS name and IP address a certificate is valid for, as strings."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {*ext.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))}


# --- files ----------------------------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with the final permissions from the start (a key is never readable by
    others, not even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    # A leftover temporary file (a crashed run) may have any mode, or be a symlink planted in
    # a shared directory (`--dir .`): never write into it, make a new file that is ours.
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def default_grpc_servers(server_url: str) -> tuple[str, str]:
    """The gRPC addresses beside an apiserver URL, on the default ports:
    `https://h:6443` → ("h:6442", "h:6444")."""
    host = urlsplit(server_url if "://" in server_url else f"https://{server_url}").hostname
    host = host or "127.0.0.1"
    where = f"[{host}]" if ":" in host else host
    return f"{where}:{DEFAULT_GRPC_PORT}", f"{where}:{DEFAULT_TOKEN_PORT}"


class Servers(NamedTuple):
    """Where a kubeconfig sends its user: the HTTP API's URL and the two gRPC addresses."""

    url: str
    grpc: str | None
    token: str | None

    @classmethod
    def of(cls, server_url: str, grpc_server: str | None = None,
           token_server: str | None = None) -> Servers:
        """`server_url` with the given gRPC addresses, each defaulting to the URL's host and
        the apiserver's default port."""
        grpc, token = default_grpc_servers(server_url)
        return cls(server_url, grpc_server or grpc, token_server or token)


def cluster_entry(server_url: str, ca_pem: bytes, grpc_server: str | None = None,
                  token_server: str | None = None) -> dict[str, Any]:
    """A kubeconfig's `clusters[].cluster`: the URL, the CA and, with either gRPC address, the
    `tinykube.io/grpc` extension."""
    cluster: dict[str, Any] = {"server": server_url, "certificate-authority-data": _b64(ca_pem)}
    ext = {k: v for k, v in (("server", grpc_server), ("token-server", token_server)) if v}
    if ext:
        cluster["extensions"] = [{"name": GRPC_EXTENSION, "extension": ext}]
    return cluster


def write_kubeconfig(
    path: Path, *, server_url: str, ca_pem: bytes, user: str, cert: CertKey | None = None,
    token: str | None = None, namespace: str | None = None, grpc_server: str | None = None,
    token_server: str | None = None,
) -> None:
    """A kubeconfig (kubeadm's shape: certificates inlined as `*-data`), written 0600, with the
    `tinykube.io/grpc` extension when a gRPC address is given (none is derived here)."""
    creds: dict[str, str] = {}
    if cert is not None:
        creds["client-certificate-data"] = _b64(cert.cert_pem)
        creds["client-key-data"] = _b64(cert.key_pem)
    if token is not None:
        creds["token"] = token
    context: dict[str, str] = {"cluster": CLUSTER_NAME, "user": user}
    if namespace:
        context["namespace"] = namespace
    context_name = f"{user}@{CLUSTER_NAME}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": cluster_entry(
            server_url, ca_pem, grpc_server, token_server)}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": context_name, "context": context}],
        "current-context": context_name,
        "preferences": {},
    }
    _write(path, yaml.safe_dump(doc, sort_keys=False).encode(), 0o600)


def kubeconfig_for(
    directory: Path, user_cn: str, organizations: Sequence[str] = (), *,
    server_url: str = DEFAULT_SERVER_URL, grpc_server: str | None = None,
    token_server: str | None = None, path: Path, validity: timedelta = LEAF_VALIDITY,
    not_after: datetime | None = None,
) -> Path:
    """Issue a client certificate for `user_cn` (groups `organizations`) from the CA in
    `directory` and write a kubeconfig for it at `path` (gRPC addresses: `Servers.of`)."""
    directory = Path(directory)
    ca = CertKey.load(directory / "ca.crt", directory / "ca.key")
    cert = issue(ca, user_cn, organizations=organizations, client=True, validity=validity,
                 not_after=not_after)
    servers = Servers.of(server_url, grpc_server, token_server)
    write_kubeconfig(Path(path), server_url=servers.url, ca_pem=ca.cert_pem, user=user_cn,
                     cert=cert, grpc_server=servers.grpc, token_server=servers.token)
    return Path(path)


def encryption_config() -> bytes:
    """An EncryptionConfiguration: Secrets sealed with a fresh AES-256-GCM key; `identity`
    second so that Secrets written before encryption was enabled can still be read."""
    doc = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [
                {"aesgcm": {"keys": [{"name": "key1",
                                      "secret": _b64(secrets.token_bytes(32))}]}},
                {"identity": {}},
            ],
        }],
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _signing_key_pair() -> tuple[bytes, bytes]:
    key, key_pem = _new_key()
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key_pem, pub


# --- the directory --------------------------------------------------------------------------


class _Run:
    """One `init_pki`/`add_node` run: which files to (re)make, and the report."""

    def __init__(self, directory: Path, force: bool, validity: timedelta) -> None:
        self.dir = Path(directory)
        self.force = force
        self.validity = validity
        self.report: list[Status] = []
        # A CA made in this run invalidates everything an older CA signed.
        self.fresh_cas: set[str] = set()

    def _keep(self, paths: Sequence[Path], signed_by: str | None) -> bool:
        if self.force or (signed_by is not None and signed_by in self.fresh_cas):
            return False
        return all(p.exists() for p in paths)

    def _done(self, paths: Sequence[Path], status: str) -> None:
        self.report.extend((str(p), status) for p in paths)

    def ca(self, stem: str, common_name: str) -> CertKey:
        crt, key = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        if self._keep([crt, key], None):
            self._done([crt, key], "exists")
            return CertKey.load(crt, key)
        ca = new_ca(common_name)
        ca.write(crt, key)
        self.fresh_cas.add(stem)
        self._done([crt, key], "created")
        return ca

    def leaf(
        self, stem: str, ca: CertKey, ca_stem: str, common_name: str, *,
        organizations: Sequence[str] = (), sans: Sequence[str] = (), server: bool = False,
        client: bool = False,
    ) -> None:
        crt, key = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        # A serving certificate missing a requested name is remade (a new --apiserver-san),
        # and a certificate whose groups changed (fewer privileges than an older version gave).
        dns, ips = split_sans(sans)
        if self._keep([crt, key], ca_stem):
            pem = crt.read_bytes()
            if (issued_by(pem, ca) and {*dns, *ips} <= cert_sans(pem)
                    and cert_organizations(pem) == list(organizations)):
                self._done([crt, key], "exists")
                return
        issue(ca, common_name, organizations=organizations, dns_names=dns, ip_addresses=ips,
              server=server, client=client, validity=self.validity).write(crt, key)
        self._done([crt, key], "created")

    def kubeconfig(self, name: str, ca: CertKey, user: str, groups: Sequence[str],
                   servers: Servers) -> None:
        path = self.dir / name
        if (self._keep([path], "ca") and _kubeconfig_trusts(path, ca)
                and _kubeconfig_servers(path) == servers):
            self._done([path], "exists")
            return
        cert = issue(ca, user, organizations=groups, client=True, validity=self.validity)
        write_kubeconfig(path, server_url=servers.url, ca_pem=ca.cert_pem, user=user, cert=cert,
                         grpc_server=servers.grpc, token_server=servers.token)
        self._done([path], "created")

    def retire(self, name: str, user: str) -> None:
        """Delete the kubeconfig `name` if it is for `user` (one this module once made)."""
        path = self.dir / name
        try:
            doc = yaml.safe_load(path.read_text())
            owner = doc["users"][0]["name"]
        except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError):
            return
        if owner == user:
            path.unlink()
            self._done([path], "removed")

    def secret_file(self, name: str, make: bytes) -> None:
        path = self.dir / name
        if self._keep([path], None):
            self._done([path], "exists")
            return
        _write(path, make, 0o600)
        self._done([path], "created")

    def sa_keys(self) -> None:
        key, pub = self.dir / "sa.key", self.dir / "sa.pub"
        if self._keep([key, pub], None):
            self._done([key, pub], "exists")
            return
        key_pem, pub_pem = _signing_key_pair()
        _write(key, key_pem, 0o600)
        _write(pub, pub_pem, 0o644)
        self._done([key, pub], "created")

    def node(self, ca: CertKey, name: str, ips: Sequence[str], servers: Servers) -> None:
        base = f"nodes/{name}"
        identities = node_identities(name)
        user, groups = identities.pop("kubelet.conf")
        self.kubeconfig(f"{base}/kubelet.conf", ca, user, groups, servers)
        # With no address given the kubelet is local (the single-host lab): loopback names.
        sans = [name, *ips] if ips else [name, "localhost", "127.0.0.1"]
        self.leaf(f"{base}/kubelet", ca, "ca", name, sans=sans, server=True)
        for conf, (user, groups) in identities.items():
            self.kubeconfig(f"{base}/{conf}", ca, user, groups, servers)


def issued_by(cert_pem: bytes, ca: CertKey) -> bool:
    """Whether `cert_pem` was signed by `ca`. A CA replaced by hand, or a `--force` run that
    stopped half-way, leaves certificates of the old CA behind: keeping those would give a
    cluster whose parts cannot talk to each other."""
    try:
        x509.load_pem_x509_certificate(cert_pem).verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _kubeconfig_trusts(path: Path, ca: CertKey) -> bool:
    """A kubeconfig written by `write_kubeconfig` holds `ca` and a client certificate it
    signed (see `issued_by`)."""
    try:
        doc = yaml.safe_load(path.read_text())
        cluster = doc["clusters"][0]["cluster"]
        user = doc["users"][0]["user"]
        ca_pem = base64.b64decode(cluster["certificate-authority-data"])
        cert_pem = base64.b64decode(user["client-certificate-data"])
    except (OSError, ValueError, yaml.YAMLError, KeyError, IndexError, TypeError):
        return False
    return ca_pem == ca.cert_pem and issued_by(cert_pem, ca)


def _kubeconfig_servers(path: Path) -> Servers | None:
    """The URL and gRPC addresses of a kubeconfig's first cluster, None if unreadable."""
    try:
        cluster = yaml.safe_load(path.read_text())["clusters"][0]["cluster"]
        ext: dict[str, Any] = {}
        for item in cluster.get("extensions") or []:
            if item.get("name") == GRPC_EXTENSION:
                ext = item.get("extension") or {}
        return Servers(str(cluster["server"]), ext.get("server"), ext.get("token-server"))
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError, AttributeError):
        return None


def _server_sans(servers: Servers) -> list[str]:
    """The hosts of the kubeconfigs' server URL and gRPC addresses must be in the apiserver
    certificate."""
    hosts = [urlsplit(servers.url).hostname]
    hosts += [urlsplit(f"//{a}").hostname for a in (servers.grpc, servers.token) if a]
    return list(dict.fromkeys(h for h in hosts if h))


def init_pki(
    directory: Path, *, server_url: str = DEFAULT_SERVER_URL, grpc_server: str | None = None,
    token_server: str | None = None, apiserver_sans: Sequence[str] = (),
    etcd_sans: Sequence[str] = (), nodes: Mapping[str, Sequence[str]] | None = None,
    validity: timedelta = LEAF_VALIDITY, force: bool = False,
) -> list[Status]:
    """Create the cluster's PKI in `directory` (see the module docstring for the layout).

    The kubeconfigs name `server_url` (Kubernetes' HTTP API) and the gRPC addresses
    `grpc_server` and `token_server` (default: the URL's host, ports 6442 and 6444).
    Returns (path, "created" | "exists") for every file, in creation order. Existing files are
    kept unless `force`; a certificate is remade when its CA was, or when it lacks a SAN asked
    for now, a kubeconfig when it names other addresses. `nodes` maps node name -> the node's
    IP addresses (kubelet serving certificate); each gets what `add_node` makes.
    """
    servers = Servers.of(server_url, grpc_server, token_server)
    run = _Run(Path(directory), force, validity)
    if not run.dir.exists():
        # Private from the start; an existing directory (`--dir .`) keeps its mode.
        run.dir.mkdir(parents=True, mode=0o700)
    ca = run.ca("ca", "tinykube-ca")
    run.leaf("apiserver", ca, "ca", "kube-apiserver",
             sans=[*APISERVER_SANS, *_server_sans(servers), *apiserver_sans], server=True)
    # The apiserver's identity towards kubelets (pods/log, exec): RBAC binds it
    # system:kubelet-api-admin, all it needs; not system:masters (kubeadm's choice), which
    # would make a certificate used only to call kubelets a cluster-admin credential too.
    run.leaf("apiserver-kubelet-client", ca, "ca", "kube-apiserver-kubelet-client",
             client=True)
    etcd_ca = run.ca("etcd/ca", "etcd-ca")
    run.leaf("etcd/server", etcd_ca, "etcd/ca", "etcd", sans=[*ETCD_SANS, *etcd_sans],
             server=True, client=True)
    run.leaf("apiserver-etcd-client", etcd_ca, "etcd/ca", "kube-apiserver-etcd-client",
             client=True)
    run.sa_keys()
    run.secret_file("encryption-config.yaml", encryption_config())
    for name, (user, groups) in COMPONENT_CONFIGS.items():
        run.kubeconfig(name, ca, user, groups, servers)
    for name, user in RETIRED_CONFIGS.items():
        run.retire(name, user)
    for node, ips in (nodes or {}).items():
        run.node(ca, node, ips, servers)
    return run.report


def add_node(
    directory: Path, name: str, *, ips: Sequence[str] = (), server_url: str | None = None,
    grpc_server: str | None = None, token_server: str | None = None,
    validity: timedelta = LEAF_VALIDITY, force: bool = False,
) -> list[Status]:
    """Add a node's kubeconfigs (kubelet, network agent) and kubelet serving certificate to
    an existing PKI.

    The addresses default to those of the directory's admin.conf (`_servers`).
    """
    directory = Path(directory)
    ca = CertKey.load(*_require_ca(directory))
    run = _Run(directory, force, validity)
    run.node(ca, name, ips, _servers(directory, server_url, grpc_server, token_server))
    return run.report


def add_user(
    directory: Path, name: str, groups: Sequence[str] = (), *, path: Path,
    server_url: str | None = None, grpc_server: str | None = None,
    token_server: str | None = None, validity: timedelta = LEAF_VALIDITY,
) -> Path:
    """A kubeconfig for a person (or anything else) named `name` in `groups`, with a client
    certificate from the cluster CA, like `kubeadm kubeconfig user --client-name`; the
    addresses default to those of the directory's admin.conf (`_servers`).

    What the user may do is up to RBAC: a fresh user may do nothing but discovery.
    """
    directory = Path(directory)
    _require_ca(directory)
    servers = _servers(directory, server_url, grpc_server, token_server)
    return kubeconfig_for(directory, name, groups, path=path, validity=validity,
                          server_url=servers.url, grpc_server=servers.grpc,
                          token_server=servers.token)


def _require_ca(directory: Path) -> tuple[Path, Path]:
    """The cluster CA's (certificate, key) paths; FileNotFoundError naming the fix if absent."""
    ca_crt, ca_key = directory / "ca.crt", directory / "ca.key"
    if not (ca_crt.exists() and ca_key.exists()):
        raise FileNotFoundError(
            f"no cluster CA in {directory} (ca.crt, ca.key): run `tkctl pki init` first")
    return ca_crt, ca_key


def _servers(directory: Path, server_url: str | None, grpc_server: str | None,
             token_server: str | None) -> Servers:
    """The addresses for a new kubeconfig: with `server_url`, it and the gRPC addresses given
    or beside it (`Servers.of`); without, those of the directory's admin.conf (its gRPC
    addresses replaced by those given), or the defaults when it has none."""
    if server_url:
        return Servers.of(server_url, grpc_server, token_server)
    admin = _kubeconfig_servers(directory / "admin.conf")
    if admin is None or not admin.url:
        return Servers.of(DEFAULT_SERVER_URL, grpc_server, token_server)
    return Servers(admin.url, grpc_server or admin.grpc, token_server or admin.token)
