"""The cluster PKI: certificates chain to the right CA with the right names, keys stay private,
`init_pki` is idempotent, and the files work for real gRPC mutual TLS (good, foreign-CA and
expired client certificates)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from api import errors
from api.proto import tinykube_pb2 as pb
from api.proto import tinykube_pb2_grpc as pb_grpc
from client import pki
from client.apiclient import ApiClient
from client.config import ClientConfig, load_config


def cert_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def orgs(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, Exception):
        return False


@pytest.fixture(scope="module")
def pkidir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.init_pki(d, apiserver_sans=["10.1.2.3", "api.example"], etcd_sans=["etcd-0"],
                 nodes={"n1": ["192.168.0.11"], "n2": []})
    return d


# --- certificates ---------------------------------------------------------------------------


def test_ca_is_a_ca() -> None:
    ca = pki.new_ca("test-ca")
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    assert ca.key.curve.name == "secp256r1"
    assert b"BEGIN PRIVATE KEY" in ca.key_pem  # PKCS#8


def test_issue_sets_names_usages_and_chain() -> None:
    ca = pki.new_ca("test-ca")
    leaf = pki.issue(ca, "system:node:n1", organizations=["system:nodes", "x"],
                     dns_names=["n1"], ip_addresses=["10.0.0.1"], server=True, client=True)
    c = leaf.cert
    assert cn(c) == "system:node:n1" and orgs(c) == ["system:nodes", "x"]
    assert eku(c) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert pki.cert_sans(leaf.cert_pem) == {"n1", "10.0.0.1"}
    assert not c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = c.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert signed_by(c, ca.cert)
    assert not signed_by(c, pki.new_ca("other").cert)


def test_issue_validity_window() -> None:
    ca = pki.new_ca("test-ca")
    now = datetime.now(UTC)
    expired = pki.issue(ca, "old", client=True, not_before=now - timedelta(days=2),
                        not_after=now - timedelta(days=1))
    assert expired.cert.not_valid_after_utc < now
    short = pki.issue(ca, "short", client=True, validity=timedelta(hours=1))
    assert short.cert.not_valid_after_utc < now + timedelta(hours=1, minutes=1)


def test_split_sans() -> None:
    assert pki.split_sans(["1.2.3.4", "a.b", "::1"]) == (["a.b"], ["1.2.3.4", "::1"])


# --- the directory --------------------------------------------------------------------------


def test_layout_and_permissions(pkidir: Path) -> None:
    expected = [
        "ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "apiserver-kubelet-client.crt",
        "apiserver-kubelet-client.key", "apiserver-etcd-client.crt", "apiserver-etcd-client.key",
        "etcd/ca.crt", "etcd/ca.key", "etcd/server.crt", "etcd/server.key", "sa.key", "sa.pub",
        "encryption-config.yaml", "admin.conf", "scheduler.conf", "controller-manager.conf",
        "proxy.conf", "nodes/n1/kubelet.conf", "nodes/n1/kubelet.crt",
        "nodes/n1/kubelet.key", "nodes/n1/netagent.conf", "nodes/n2/kubelet.conf",
        "nodes/n2/netagent.conf",
    ]
    for name in expected:
        assert (pkidir / name).is_file(), name
    # No credential shared by every node's network agent (issue 20): each has its own.
    assert not (pkidir / "netagent.conf").exists()
    for path in pkidir.rglob("*"):
        if path.is_dir():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        private = path.suffix in (".key", ".conf", ".yaml")
        assert mode == (0o600 if private else 0o644), (path, oct(mode))
    assert stat.S_IMODE(pkidir.stat().st_mode) == 0o700


def test_chains_and_identities(pkidir: Path) -> None:
    ca, etcd_ca = cert_of(pkidir / "ca.crt"), cert_of(pkidir / "etcd/ca.crt")
    assert cn(ca) == "tinykube-ca" and cn(etcd_ca) == "etcd-ca"
    api = cert_of(pkidir / "apiserver.crt")
    assert signed_by(api, ca) and eku(api) == {ExtendedKeyUsageOID.SERVER_AUTH}
    sans = pki.cert_sans((pkidir / "apiserver.crt").read_bytes())
    assert {"127.0.0.1", "localhost", "kubernetes.default.svc", "10.96.0.1", "10.1.2.3",
            "api.example"} <= sans
    kc = cert_of(pkidir / "apiserver-kubelet-client.crt")
    # Not system:masters: RBAC gives it the kubelet API and nothing else.
    assert signed_by(kc, ca) and cn(kc) == "kube-apiserver-kubelet-client" and orgs(kc) == []
    ec_ = cert_of(pkidir / "apiserver-etcd-client.crt")
    assert signed_by(ec_, etcd_ca) and not signed_by(ec_, ca)
    assert eku(ec_) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    es = cert_of(pkidir / "etcd/server.crt")
    assert signed_by(es, etcd_ca)
    assert {"127.0.0.1", "localhost", "etcd", "etcd-0"} <= pki.cert_sans(
        (pkidir / "etcd/server.crt").read_bytes())
    n1 = pki.cert_sans((pkidir / "nodes/n1/kubelet.crt").read_bytes())
    assert n1 == {"n1", "192.168.0.11"}
    assert pki.cert_sans((pkidir / "nodes/n2/kubelet.crt").read_bytes()) == {
        "n2", "localhost", "127.0.0.1"}


def kubeconfig_identity(path: Path) -> tuple[str, list[str], dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    cfg = load_config(str(path))
    assert cfg.cert_pem is not None
    cert = x509.load_pem_x509_certificate(cfg.cert_pem)
    return cn(cert), orgs(cert), doc


@pytest.mark.parametrize("name,user,groups", [
    ("admin.conf", "kubernetes-admin", ["system:masters"]),
    ("scheduler.conf", "system:kube-scheduler", []),
    ("controller-manager.conf", "system:kube-controller-manager", []),
    ("proxy.conf", "system:kube-proxy", []),
    ("nodes/n1/kubelet.conf", "system:node:n1", ["system:nodes"]),
    ("nodes/n1/netagent.conf", "system:netagent:n1", ["system:netagents"]),
])
def test_component_kubeconfigs(pkidir: Path, name: str, user: str, groups: list[str]) -> None:
    got_user, got_groups, doc = kubeconfig_identity(pkidir / name)
    assert (got_user, got_groups) == (user, groups)
    assert doc["kind"] == "Config" and doc["current-context"] == f"{user}@tinykube"
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    # The gRPC ports beside it, for tinykube's clients (kubectl ignores the extension).
    assert doc["clusters"][0]["cluster"]["extensions"] == [{"name": "tinykube.io/grpc",
        "extension": {"server": "127.0.0.1:6442", "token-server": "127.0.0.1:6444"}}]
    cfg = load_config(str(pkidir / name))
    assert (cfg.server, cfg.https_server) == ("127.0.0.1:6442", "https://127.0.0.1:6443")
    assert cfg.ca_pem == (pkidir / "ca.crt").read_bytes()
    assert cfg.cert_pem is not None
    assert signed_by(x509.load_pem_x509_certificate(cfg.cert_pem), cert_of(pkidir / "ca.crt"))


def test_encryption_config_and_sa_keys(pkidir: Path) -> None:
    import base64

    doc = yaml.safe_load((pkidir / "encryption-config.yaml").read_text())
    assert doc["kind"] == "EncryptionConfiguration"
    assert doc["apiVersion"] == "apiserver.config.k8s.io/v1"
    res = doc["resources"][0]
    assert res["resources"] == ["secrets"]
    key = res["providers"][0]["aesgcm"]["keys"][0]
    assert key["name"] == "key1" and len(base64.b64decode(key["secret"])) == 32
    assert res["providers"][1] == {"identity": {}}
    assert b"PRIVATE KEY" in (pkidir / "sa.key").read_bytes()
    assert b"PUBLIC KEY" in (pkidir / "sa.pub").read_bytes()


def test_idempotent_then_force(tmp_path: Path) -> None:
    first = pki.init_pki(tmp_path)
    assert {s for _, s in first} == {"created"}
    ca_before = (tmp_path / "ca.crt").read_bytes()
    enc_before = (tmp_path / "encryption-config.yaml").read_bytes()
    second = pki.init_pki(tmp_path)
    assert [p for p, _ in second] == [p for p, _ in first]
    assert {s for _, s in second} == {"exists"}
    assert (tmp_path / "ca.crt").read_bytes() == ca_before
    forced = pki.init_pki(tmp_path, force=True)
    assert {s for _, s in forced} == {"created"}
    assert (tmp_path / "ca.crt").read_bytes() != ca_before
    assert (tmp_path / "encryption-config.yaml").read_bytes() != enc_before


def test_new_san_remakes_only_the_serving_cert(tmp_path: Path) -> None:
    pki.init_pki(tmp_path)
    report = dict(pki.init_pki(tmp_path, apiserver_sans=["10.9.9.9"]))
    created = sorted(p for p, s in report.items() if s == "created")
    assert created == [str(tmp_path / "apiserver.crt"), str(tmp_path / "apiserver.key")]
    assert "10.9.9.9" in pki.cert_sans((tmp_path / "apiserver.crt").read_bytes())


def test_lost_ca_remakes_what_it_signed(tmp_path: Path) -> None:
    pki.init_pki(tmp_path)
    (tmp_path / "ca.key").unlink()
    report = dict(pki.init_pki(tmp_path))
    assert report[str(tmp_path / "admin.conf")] == "created"
    assert report[str(tmp_path / "etcd/ca.crt")] == "exists"  # the etcd CA is separate
    assert signed_by(cert_of(tmp_path / "apiserver.crt"), cert_of(tmp_path / "ca.crt"))


def test_add_node(tmp_path: Path) -> None:
    pki.init_pki(tmp_path, server_url="https://10.0.0.1:6443", grpc_server="10.0.0.2:7442")
    report = pki.add_node(tmp_path, "w1", ips=["10.0.0.7"])
    assert {s for _, s in report} == {"created"}
    doc = yaml.safe_load((tmp_path / "nodes/w1/kubelet.conf").read_text())
    assert doc["clusters"][0]["cluster"]["server"] == "https://10.0.0.1:6443"
    # admin.conf's addresses, the gRPC ones included.
    assert doc["clusters"][0]["cluster"]["extensions"][0]["extension"] == {
        "server": "10.0.0.2:7442", "token-server": "10.0.0.1:6444"}
    assert pki.cert_sans((tmp_path / "nodes/w1/kubelet.crt").read_bytes()) == {"w1", "10.0.0.7"}
    assert {s for _, s in pki.add_node(tmp_path, "w1", ips=["10.0.0.7"])} == {"exists"}
    with pytest.raises(FileNotFoundError, match="tkctl pki init"):
        pki.add_node(tmp_path / "nope", "w1")
    agent = yaml.safe_load((tmp_path / "nodes/w1/netagent.conf").read_text())
    assert agent["users"][0]["name"] == "system:netagent:w1"
    assert agent["clusters"] == doc["clusters"]


def test_a_certificate_whose_groups_changed_is_remade(tmp_path: Path) -> None:
    """A PKI from a version that put the apiserver's kubelet client in system:masters gets
    the certificate anew, without the group; the others stay."""
    pki.init_pki(tmp_path)
    ca = pki.CertKey.load(tmp_path / "ca.crt", tmp_path / "ca.key")
    crt, key = tmp_path / "apiserver-kubelet-client.crt", tmp_path / "apiserver-kubelet-client.key"
    pki.issue(ca, "kube-apiserver-kubelet-client", organizations=("system:masters",),
              client=True).write(crt, key)
    report = dict(pki.init_pki(tmp_path))
    assert report[str(crt)] == "created" and report[str(tmp_path / "apiserver.crt")] == "exists"
    assert pki.cert_organizations(crt.read_bytes()) == []


def test_init_removes_the_shared_netagent_kubeconfig(tmp_path: Path) -> None:
    """A PKI made before per-node network agent identities has one netagent.conf for every
    node (user system:netagent); the next `init` removes it, and only that file."""
    pki.init_pki(tmp_path)
    shared = tmp_path / "netagent.conf"
    pki.kubeconfig_for(tmp_path, "system:netagent", path=shared)
    backup = tmp_path / "netagent.conf.bak"
    backup.write_bytes(shared.read_bytes())
    report = pki.init_pki(tmp_path)
    assert (str(shared), "removed") in report and not shared.exists()
    assert backup.exists()
    assert all(status == "exists" for path, status in report if path != str(shared))
    pki.kubeconfig_for(tmp_path, "jane", path=shared)  # somebody else's file of that name
    assert (str(shared), "removed") not in pki.init_pki(tmp_path) and shared.exists()


def test_kubeconfig_for(pkidir: Path, tmp_path: Path) -> None:
    path = pki.kubeconfig_for(pkidir, "alice", ["dev", "qa"], server_url="https://x:1",
                              path=tmp_path / "alice.conf")
    user, groups, _ = kubeconfig_identity(path)
    assert (user, groups) == ("alice", ["dev", "qa"])
    cfg = load_config(str(path))
    assert (cfg.server, cfg.https_server) == ("x:6442", "https://x:1")  # the default gRPC port
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path = pki.kubeconfig_for(pkidir, "bob", server_url="https://x:1", grpc_server="y:2",
                              token_server="y:3", path=tmp_path / "bob.conf")
    assert load_config(str(path)).server == "y:2"


def test_default_grpc_servers() -> None:
    assert pki.default_grpc_servers("https://10.0.0.1:6443") == ("10.0.0.1:6442", "10.0.0.1:6444")
    assert pki.default_grpc_servers("https://[fd00::1]:6443") == ("[fd00::1]:6442",
                                                                  "[fd00::1]:6444")
    assert pki.default_grpc_servers("api.lab:6443") == ("api.lab:6442", "api.lab:6444")


def test_kubeconfigs_pointing_elsewhere_are_made_anew(tmp_path: Path) -> None:
    """Addresses asked for now win over those of an existing kubeconfig (one written before the
    gRPC extension existed, say); everything else is kept."""
    pki.init_pki(tmp_path)
    old = yaml.safe_load((tmp_path / "admin.conf").read_text())
    del old["clusters"][0]["cluster"]["extensions"]
    (tmp_path / "admin.conf").write_text(yaml.safe_dump(old))
    report = dict(pki.init_pki(tmp_path))
    assert report[str(tmp_path / "admin.conf")] == "created"
    assert report[str(tmp_path / "scheduler.conf")] == "exists"
    assert load_config(str(tmp_path / "admin.conf")).server == "127.0.0.1:6442"
    report = dict(pki.init_pki(tmp_path, token_server="127.0.0.1:7444"))
    assert {s for p, s in report.items() if p.endswith(".conf")} == {"created"}
    assert {s for p, s in report.items() if not p.endswith(".conf")} == {"exists"}


def test_add_user_addresses(tmp_path: Path) -> None:
    pki.init_pki(tmp_path, server_url="https://10.0.0.1:6443")
    conf = pki.add_user(tmp_path, "jane", path=tmp_path / "jane.conf")
    ext = yaml.safe_load(conf.read_text())["clusters"][0]["cluster"]["extensions"][0]
    assert ext["extension"] == {"server": "10.0.0.1:6442", "token-server": "10.0.0.1:6444"}
    conf = pki.add_user(tmp_path, "joe", path=tmp_path / "joe.conf",
                        server_url="https://api.lab:443")
    cfg = load_config(str(conf))
    assert (cfg.server, cfg.https_server) == ("api.lab:6442", "https://api.lab:443")


def test_grpc_hosts_are_in_the_serving_certificate(tmp_path: Path) -> None:
    pki.init_pki(tmp_path, server_url="https://api.lab:6443", grpc_server="grpc.lab:6442",
                 token_server="[fd00::7]:6444")
    assert {"api.lab", "grpc.lab", "fd00::7"} <= pki.cert_sans(
        (tmp_path / "apiserver.crt").read_bytes())


# --- real mutual TLS ------------------------------------------------------------------------


class _Echo(pb_grpc.ApiServicer):
    """Answers Discovery with the caller's certificate CN and its metadata."""

    async def Discovery(self, request: Any, context: Any) -> pb.ObjectResponse:
        pem = (context.auth_context().get("x509_pem_cert") or [b""])[0]
        user = cn(x509.load_pem_x509_certificate(pem)) if pem else ""
        md = [[k, v] for k, v in context.invocation_metadata() if not k.startswith(":")]
        return pb.ObjectResponse(object=json.dumps({"user": user, "md": md}).encode())


async def start_server(pkidir: Path, host: str) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    pb_grpc.add_ApiServicer_to_server(_Echo(), server)
    creds = grpc.ssl_server_credentials(
        [((pkidir / "apiserver.key").read_bytes(), (pkidir / "apiserver.crt").read_bytes())],
        root_certificates=(pkidir / "ca.crt").read_bytes(), require_client_auth=True,
    )
    port = server.add_secure_port(f"{host}:0", creds)
    await server.start()
    return server, f"https://{host}:{port}"


@pytest.fixture
async def tls_server(pkidir: Path) -> AsyncIterator[str]:
    server, url = await start_server(pkidir, "127.0.0.1")
    yield url
    await server.stop(None)


def rewrite_server(src: Path, dst: Path, url: str, **cluster: str) -> Path:
    """A copy of a kubeconfig pointing at the gRPC server `url` (its gRPC extension too)."""
    doc = yaml.safe_load(src.read_text())
    doc["clusters"][0]["cluster"]["server"] = url
    address = url.split("://", 1)[1]
    doc["clusters"][0]["cluster"]["extensions"] = [{"name": "tinykube.io/grpc", "extension": {
        "server": address, "token-server": address}}]
    doc["clusters"][0]["cluster"].update(cluster)
    dst.write_text(yaml.safe_dump(doc))
    return dst


async def test_mutual_tls_with_admin_kubeconfig(pkidir: Path, tls_server: str,
                                                tmp_path: Path) -> None:
    conf = rewrite_server(pkidir / "admin.conf", tmp_path / "a.conf", tls_server)
    async with ApiClient(config=load_config(str(conf)), impersonate_user="bob",
                         impersonate_groups=["g1", "g2"]) as c:
        got = await c.discovery()
    assert got["user"] == "kubernetes-admin"
    assert ["impersonate-user", "bob"] in got["md"]
    assert [m for m in got["md"] if m[0] == "impersonate-group"] == [
        ["impersonate-group", "g1"], ["impersonate-group", "g2"]]


async def test_bearer_token_from_file_is_sent(pkidir: Path, tls_server: str,
                                              tmp_path: Path) -> None:
    conf = rewrite_server(pkidir / "admin.conf", tmp_path / "a.conf", tls_server)
    (tmp_path / "tok").write_text("abc.def\n")
    cfg = replace(load_config(str(conf)), token_file=str(tmp_path / "tok"))
    async with ApiClient(config=cfg) as c:
        got = await c.discovery()
    assert ["authorization", "Bearer abc.def"] in got["md"]


async def test_tls_server_name_override(pkidir: Path, tmp_path: Path) -> None:
    # 127.0.0.2 is not among the apiserver certificate's SANs: dialling it fails the hostname
    # check unless tls-server-name names one that is.
    server, url = await start_server(pkidir, "127.0.0.2")
    try:
        bad = rewrite_server(pkidir / "admin.conf", tmp_path / "bad.conf", url)
        async with ApiClient(config=load_config(str(bad))) as c:
            with pytest.raises(errors.ServiceUnavailable):
                await c.discovery()
        good = rewrite_server(pkidir / "admin.conf", tmp_path / "good.conf", url,
                              **{"tls-server-name": "kubernetes"})
        async with ApiClient(config=load_config(str(good))) as c:
            assert (await c.discovery())["user"] == "kubernetes-admin"
    finally:
        await server.stop(None)


async def test_foreign_ca_and_expired_certs_are_refused(pkidir: Path, tls_server: str,
                                                        tmp_path: Path) -> None:
    other = tmp_path / "other"
    pki.init_pki(other)
    foreign = rewrite_server(other / "admin.conf", tmp_path / "f.conf", tls_server)
    # The foreign config trusts its own CA: swap in ours so only the client cert is foreign.
    doc = yaml.safe_load(foreign.read_text())
    doc["clusters"][0]["cluster"]["certificate-authority-data"] = yaml.safe_load(
        (pkidir / "admin.conf").read_text())["clusters"][0]["cluster"][
        "certificate-authority-data"]
    foreign.write_text(yaml.safe_dump(doc))
    now = datetime.now(UTC)
    expired = pki.kubeconfig_for(pkidir, "old", server_url=tls_server, path=tmp_path / "e.conf",
                                 grpc_server=tls_server.split("://")[1],
                                 not_after=now - timedelta(hours=1))
    for conf in (foreign, expired):
        async with ApiClient(config=load_config(str(conf))) as c:
            with pytest.raises(errors.ServiceUnavailable):
                await c.discovery()


async def test_bearer_token_never_sent_in_plaintext(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("abc.def\n")
    plain = ApiClient(config=ClientConfig(server="127.0.0.1:1", token="inline",
                                          token_file=str(tmp_path / "tok")),
                      impersonate_user="bob")
    try:
        assert plain.metadata() == (("impersonate-user", "bob"),)
    finally:
        await plain.close()


def test_leaf_of_another_ca_is_remade(tmp_path: Path) -> None:
    """A CA replaced by hand (or a --force run cut short) must not leave certificates and
    kubeconfigs of the old CA reported as "exists"."""
    pki.init_pki(tmp_path)
    other = pki.new_ca("tinykube-ca")
    other.write(tmp_path / "ca.crt", tmp_path / "ca.key")
    report = dict(pki.init_pki(tmp_path))
    assert report[str(tmp_path / "ca.crt")] == "exists"
    for name in ("apiserver.crt", "apiserver-kubelet-client.crt", "admin.conf", "proxy.conf"):
        assert report[str(tmp_path / name)] == "created", name
    assert report[str(tmp_path / "etcd/server.crt")] == "exists"
    assert pki.issued_by((tmp_path / "apiserver.crt").read_bytes(), other)
    assert {s for _, s in pki.init_pki(tmp_path)} == {"exists"}


def test_stale_temporary_file_is_not_written_through(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    key = tmp_path / "x.key"
    (tmp_path / f".x.key.tmp{os.getpid()}").symlink_to(target)
    pki.CertKey(b"cert", b"secret key").write(tmp_path / "x.crt", key)
    assert target.read_text() == "untouched"
    assert key.read_bytes() == b"secret key" and stat.S_IMODE(key.stat().st_mode) == 0o600
