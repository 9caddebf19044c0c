"""Secure by default, on the wire and at rest: TLS to etcd with client certificates, TLS with
client certificates to the apiserver, Secrets encrypted in etcd, and an apiserver that refuses to
start insecure unless told to, loudly."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from api import errors
from client.apiclient import ApiClient
from client.config import ClientConfig, load_config
from client.pki import CertKey, issue, new_ca
from harness.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
PLAINTEXT = "hunter2-correct-horse"


def secret(name: str, value: str = PLAINTEXT) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {"password": value}}


def apiserver(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m apiserver ARGS` that is expected to exit at once (a flag error)."""
    return subprocess.run([sys.executable, "-m", "apiserver", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


# --- etcd -------------------------------------------------------------------------------------


async def test_etcd_refuses_a_client_without_a_certificate(cluster: Cluster) -> None:
    assert cluster.etcd.url.startswith("https://")
    assert "/registry/namespaces/default" in cluster.etcd.etcdctl(
        "get", "/registry/namespaces/default", "--keys-only")
    with pytest.raises(subprocess.CalledProcessError) as e:
        cluster.etcd.etcdctl("get", "/registry/namespaces/default", client_cert=False)
    assert b"/registry/" not in e.value.stdout
    log = (cluster.etcd.dir / "etcd.log").read_text(errors="replace")
    assert "tls: client didn't provide a certificate" in log


async def test_etcd_refuses_plaintext(cluster: Cluster) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    http = cluster.etcd.url.replace("https://", "http://")
    r = subprocess.run(["etcdctl", f"--endpoints={http}", "--dial-timeout=2s",
                        "--command-timeout=3s", "get", "/registry/", "--prefix", "--keys-only"],
                       capture_output=True, env={**env, "ETCDCTL_API": "3"}, timeout=30)
    assert r.returncode != 0 and b"/registry/" not in r.stdout


# --- encryption at rest -----------------------------------------------------------------------


async def test_secrets_are_ciphertext_in_etcd_and_plaintext_through_the_api(
        cluster: Cluster, namespace: str) -> None:
    await cluster.client.create("secrets", secret("db"), namespace)
    stored = cluster.etcd.etcdctl("get", f"/registry/secrets/{namespace}/db", "--print-value-only")
    assert stored.startswith("k8s:enc:aesgcm:v1:key1:")
    encoded = base64.b64encode(PLAINTEXT.encode()).decode()
    assert PLAINTEXT not in stored and encoded not in stored and '"kind"' not in stored
    got = await cluster.client.get("secrets", "db", namespace)
    assert base64.b64decode(got["data"]["password"]).decode() == PLAINTEXT
    listed = await cluster.client.list("secrets", namespace)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["db"]
    # Other resources stay readable JSON in etcd (only Secrets are configured).
    await cluster.client.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                               "metadata": {"name": "cm"}, "data": {"k": "v"}},
                                namespace)
    assert '"data":{"k":"v"}' in cluster.etcd.etcdctl(
        "get", f"/registry/configmaps/{namespace}/cm", "--print-value-only")


def _with_key(config_path: Path, name: str, *, first: bool = True, drop: str = "") -> None:
    doc = yaml.safe_load(config_path.read_text())
    keys = doc["resources"][0]["providers"][0]["aesgcm"]["keys"]
    keys = [k for k in keys if k["name"] != drop]
    if name:
        new = {"name": name, "secret": base64.b64encode(os.urandom(32)).decode()}
        keys = [new, *keys] if first else [*keys, new]
    doc["resources"][0]["providers"][0]["aesgcm"]["keys"] = keys
    config_path.write_text(yaml.safe_dump(doc))


async def _restart(c: Cluster) -> None:
    assert c.apiserver is not None
    await c.apiserver.stop()
    await c.apiserver.start()
    await c.client.wait_ready()


def _prefix(c: Cluster, key: str) -> str:
    return ":".join(c.etcd.etcdctl("get", key, "--print-value-only").split(":")[:5])


async def test_key_rotation_old_secrets_readable_new_writes_use_the_new_key() -> None:
    async with Cluster() as c:
        assert c.apiserver is not None and c.apiserver.encryption_config is not None
        await c.client.create("secrets", secret("old", "old-value"), "default")
        assert _prefix(c, "/registry/secrets/default/old") == "k8s:enc:aesgcm:v1:key1"

        # Step 1 of upstream's rotation: a new key first (it writes), the old one still reads.
        _with_key(c.apiserver.encryption_config, "key2")
        await _restart(c)
        got = await c.client.get("secrets", "old", "default")
        assert base64.b64decode(got["data"]["password"]) == b"old-value"
        await c.client.create("secrets", secret("new", "new-value"), "default")
        assert _prefix(c, "/registry/secrets/default/new") == "k8s:enc:aesgcm:v1:key2"
        # Step 2: rewrite every Secret, so all are under the new key.
        await c.client.patch("secrets", "old", {"metadata": {"labels": {"rotated": "yes"}}},
                             "default")
        assert _prefix(c, "/registry/secrets/default/old") == "k8s:enc:aesgcm:v1:key2"

        # Step 3: the old key can go; everything still reads.
        _with_key(c.apiserver.encryption_config, "", drop="key1")
        await _restart(c)
        names = [i["metadata"]["name"] for i in (await c.client.list("secrets", "default"))
                 ["items"]]
        assert names == ["new", "old"]


async def test_value_under_an_unknown_key_is_skipped_with_a_clear_log_line() -> None:
    async with Cluster() as c:
        assert c.apiserver is not None and c.apiserver.encryption_config is not None
        await c.client.create("secrets", secret("lost"), "default")
        _with_key(c.apiserver.encryption_config, "key2", drop="key1")  # key1 thrown away
        await _restart(c)
        await c.client.create("secrets", secret("kept"), "default")
        listed = await c.client.list("secrets", "default")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["kept"]
        with pytest.raises(errors.InternalError, match="k8s:enc:aesgcm:v1:key1"):
            await c.client.get("secrets", "lost", "default")
        log = c.apiserver.logs()
        assert "/registry/secrets/default/lost" in log
        assert "k8s:enc:aesgcm:v1:key1, which no configured provider has" in log
        assert "Traceback" not in log


async def test_plaintext_written_before_encryption_was_enabled_stays_readable() -> None:
    async with Cluster() as c:
        assert c.apiserver is not None and c.apiserver.encryption_config is not None
        config = c.apiserver.encryption_config
        enabled = config.read_text()
        config.write_text(yaml.safe_dump({
            "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
            "resources": [{"resources": ["secrets"], "providers": [{"identity": {}}]}]}))
        await _restart(c)
        await c.client.create("secrets", secret("plain"), "default")
        assert '"kind":"Secret"' in c.etcd.etcdctl("get", "/registry/secrets/default/plain")
        config.write_text(enabled)
        await _restart(c)
        got = await c.client.get("secrets", "plain", "default")
        assert base64.b64decode(got["data"]["password"]).decode() == PLAINTEXT


# --- the apiserver's listeners ----------------------------------------------------------------


async def _refused(client: ApiClient) -> None:
    try:
        with pytest.raises(errors.ApiError):
            await asyncio.wait_for(client.get("namespaces", "default"), 15)
    finally:
        await client.close()


async def test_plaintext_client_against_the_secure_port_fails(cluster: Cluster) -> None:
    await _refused(ApiClient(cluster.server))


async def test_tls_client_without_a_certificate_is_refused(cluster: Cluster) -> None:
    await _refused(ApiClient(config=ClientConfig(server=cluster.server, ca_pem=cluster.ca_pem)))


async def test_certificate_from_another_ca_is_refused(cluster: Cluster) -> None:
    other = issue(new_ca("not-the-cluster-ca"), "kubernetes-admin",
                  organizations=["system:masters"], client=True)
    await _refused(ApiClient(config=ClientConfig(
        server=cluster.server, ca_pem=cluster.ca_pem, cert_pem=other.cert_pem,
        key_pem=other.key_pem)))


async def test_expired_certificate_is_refused(cluster: Cluster) -> None:
    assert cluster.pki is not None
    now = datetime.now(UTC)
    ca = CertKey.load(cluster.pki / "ca.crt", cluster.pki / "ca.key")
    expired = issue(ca, "kubernetes-admin", organizations=["system:masters"], client=True,
                    not_before=now - timedelta(hours=2), not_after=now - timedelta(hours=1))
    await _refused(ApiClient(config=ClientConfig(
        server=cluster.server, ca_pem=cluster.ca_pem, cert_pem=expired.cert_pem,
        key_pem=expired.key_pem)))


async def test_client_that_does_not_trust_the_server_fails(cluster: Cluster) -> None:
    cfg = load_config(cluster.kubeconfig)
    await _refused(ApiClient(config=ClientConfig(
        server=cfg.server, ca_pem=new_ca("some-other-ca").cert_pem, cert_pem=cfg.cert_pem,
        key_pem=cfg.key_pem)))


async def test_token_port_is_tls_and_wants_a_token(cluster: Cluster) -> None:
    anonymous = ApiClient(config=ClientConfig(server=cluster.token_address,
                                              ca_pem=cluster.ca_pem))
    try:
        with pytest.raises(errors.Unauthorized):
            await asyncio.wait_for(anonymous.get("namespaces", "default"), 15)
    finally:
        await anonymous.close()
    await _refused(ApiClient(cluster.token_address))  # plaintext


# --- start-up flags -----------------------------------------------------------------------------


def test_apiserver_refuses_to_start_without_tls_flags() -> None:
    r = apiserver("--etcd-servers", "http://127.0.0.1:1")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("tk-apiserver: error: --tls-cert-file is required")
    assert "tkctl pki init" in r.stderr and "--insecure" in r.stderr


def test_apiserver_names_each_missing_or_unreadable_file(tmp_path: Path) -> None:
    cert = tmp_path / "a.crt"
    cert.write_text("x")
    r = apiserver("--tls-cert-file", str(cert), "--tls-private-key-file", str(cert))
    assert r.returncode == 2 and "--client-ca-file is required" in r.stderr
    r = apiserver("--tls-cert-file", str(cert), "--tls-private-key-file", str(cert),
                  "--client-ca-file", str(cert))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"--tls-cert-file: {cert} is not a PEM certificate" in r.stderr
    ca = new_ca("test-ca")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "ca.key").write_bytes(ca.key_pem)
    good = ["--tls-cert-file", str(tmp_path / "ca.crt"),
            "--tls-private-key-file", str(tmp_path / "ca.key")]
    r = apiserver(*good, "--client-ca-file", str(tmp_path / "missing.crt"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "--client-ca-file: cannot read" in r.stderr and "missing.crt" in r.stderr
    r = apiserver("--tls-cert-file", str(tmp_path / "ca.crt"), "--tls-private-key-file",
                  str(tmp_path / "ca.crt"), "--client-ca-file", str(tmp_path / "ca.crt"))
    assert r.returncode == 2 and "--tls-private-key-file:" in r.stderr
    assert "is not a PEM private key" in r.stderr
    r = apiserver("--insecure", "--etcd-servers", "https://127.0.0.1:1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "https:// URLs need --etcd-cafile, --etcd-certfile and --etcd-keyfile" in r.stderr
    r = apiserver("--insecure", "--etcd-cafile", str(cert))
    assert r.returncode == 2 and "--etcd-certfile is required" in r.stderr
    r = apiserver("--insecure", "--etcd-cafile", str(cert), "--etcd-certfile", str(cert),
                  "--etcd-keyfile", str(tmp_path / "nope.key"))
    assert r.returncode == 2 and "--etcd-keyfile: cannot read" in r.stderr


def test_apiserver_names_the_encryption_config_field(tmp_path: Path) -> None:
    path = tmp_path / "enc.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": [
            {"aesgcm": {"keys": [{"name": "key1", "secret": "c2hvcnQ="}]}}]}]}))
    r = apiserver("--insecure", "--encryption-provider-config", str(path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert ("--encryption-provider-config: resources[0].providers[0].aesgcm.keys[0].secret: "
            "must be 16, 24 or 32 bytes base64-encoded") in r.stderr


async def test_insecure_apiserver_warns_and_serves_plaintext() -> None:
    async with Cluster(insecure=True) as c:
        assert c.etcd.url.startswith("http://")
        async with ApiClient(c.server) as plain:
            assert (await plain.get("namespaces", "default"))["metadata"]["name"] == "default"
        assert c.apiserver is not None
        warnings = [line for line in c.apiserver.logs().splitlines() if "WARNING" in line]
        assert len(warnings) == 1 and "--insecure" in warnings[0]
        assert "no authentication" in warnings[0]


async def test_cluster_leaves_no_directories_behind() -> None:
    """The apiserver's directory holds its log and the audit log: it goes with the Cluster."""
    async with Cluster() as c:
        assert c.apiserver is not None
        dirs = [c.dir, c.etcd.dir, c.apiserver.dir]
        assert c.apiserver.audit_log.exists()
    assert not any(d.exists() for d in dirs), dirs


async def test_bearer_token_is_not_sent_to_a_plaintext_server() -> None:
    """A kubeconfig with a token pointed at an `--insecure` apiserver (or `--server http://`)
    must not put the token on the wire in the clear."""
    async with Cluster(insecure=True) as c:
        cfg = ClientConfig(server=c.server, token="sa.token.secret")
        async with ApiClient(config=cfg) as plain:
            assert plain.metadata() is None
            assert (await plain.get("namespaces", "default"))["metadata"]["name"] == "default"


async def test_many_fresh_clients_at_once_all_complete_their_tls_handshakes(
        cluster: Cluster) -> None:
    """Sixty clients connecting at the same moment (60 TLS handshakes with client
    certificates) all get an answer. With a 100 ms connection-attempt deadline (gRPC's
    `min_reconnect_backoff_ms`, mistaken for a back-off) a loaded machine aborted handshakes,
    and tkctl blamed the certificate."""
    clients = [ApiClient(config=cluster.config()) for _ in range(60)]
    try:
        results = await asyncio.gather(*(c.list("namespaces") for c in clients),
                                       return_exceptions=True)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    assert all(r["kind"] == "NamespaceList" for r in results if isinstance(r, dict))
