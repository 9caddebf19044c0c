"""Reading kubeconfigs and in-cluster config: every supported field, relative paths, the lookup
order, and a ConfigError naming the file and the field for every broken file."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from client import pki
from client.config import ClientConfig, ConfigError, in_cluster, load_config, load_kubeconfig

CA = pki.new_ca("test-ca")
LEAF = pki.issue(CA, "alice", organizations=["dev"], client=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None,
               context: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster if cluster is not None else {
            "server": "https://10.0.0.1:6443", "certificate-authority-data": b64(CA.cert_pem)}}],
        "users": [{"name": "u", "user": user if user is not None else {
            "client-certificate-data": b64(LEAF.cert_pem),
            "client-key-data": b64(LEAF.key_pem)}}],
        "contexts": [{"name": "ctx", "context": context or {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    doc.update(top)
    return doc


def write(tmp_path: Path, doc: Any, name: str = "config") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return str(path)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("TINYKUBE_CONFIG", "TINYKUBE_SERVER", "KUBERNETES_SERVICE_HOST",
                "KUBERNETES_SERVICE_PORT", "KUBERNETES_SERVICE_PORT_GRPC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# --- fields ---------------------------------------------------------------------------------


def test_inline_data(tmp_path: Path) -> None:
    cfg = load_kubeconfig(write(tmp_path, kubeconfig(context={
        "cluster": "c", "user": "u", "namespace": "team"})))
    assert cfg == ClientConfig(server="10.0.0.1:6443", ca_pem=CA.cert_pem, cert_pem=LEAF.cert_pem,
                               key_pem=LEAF.key_pem, namespace="team",
                               https_server="https://10.0.0.1:6443",
                               source=str(tmp_path / "config"))
    assert cfg.secure


def test_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    d = tmp_path / "conf"
    (d / "certs").mkdir(parents=True)
    (d / "certs/ca.crt").write_bytes(CA.cert_pem)
    (d / "certs/me.crt").write_bytes(LEAF.cert_pem)
    (d / "certs/me.key").write_bytes(LEAF.key_pem)
    (d / "token").write_text("t0k\n")
    doc = kubeconfig(
        cluster={"server": "https://api:7443", "certificate-authority": "certs/ca.crt",
                 "tls-server-name": "kubernetes"},
        user={"client-certificate": "certs/me.crt", "client-key": "certs/me.key",
              "tokenFile": "token"})
    cfg = load_kubeconfig(write(d, doc))
    assert cfg.server == "api:7443" and cfg.tls_server_name == "kubernetes"
    assert (cfg.ca_pem, cfg.cert_pem, cfg.key_pem) == (CA.cert_pem, LEAF.cert_pem, LEAF.key_pem)
    assert cfg.token_file == str((d / "token").resolve())


def test_token_only_and_default_ports(tmp_path: Path) -> None:
    cfg = load_kubeconfig(write(tmp_path, kubeconfig(
        cluster={"server": "https://api.example", "certificate-authority-data": b64(CA.cert_pem)},
        user={"token": "abc"})))
    assert cfg.server == "api.example:443" and cfg.token == "abc" and cfg.cert_pem is None


def test_ipv6_server(tmp_path: Path) -> None:
    cfg = load_kubeconfig(write(tmp_path, kubeconfig(
        cluster={"server": "https://[::1]:6443", "certificate-authority-data": b64(CA.cert_pem)})))
    assert cfg.server == "[::1]:6443"


def test_http_server_is_plaintext(tmp_path: Path) -> None:
    cfg = load_kubeconfig(write(tmp_path, kubeconfig(
        cluster={"server": "http://127.0.0.1:6443"}, user={})))
    assert cfg.server == "127.0.0.1:6443" and not cfg.secure


def test_single_context_needs_no_current_context(tmp_path: Path) -> None:
    doc = kubeconfig()
    del doc["current-context"]
    assert load_kubeconfig(write(tmp_path, doc)).server == "10.0.0.1:6443"


# --- errors name the file and the field -----------------------------------------------------


BAD = [
    (kubeconfig(cluster={"certificate-authority-data": b64(CA.cert_pem)}),
     'clusters["c"].cluster.server: required'),
    (kubeconfig(cluster={"server": "https://a:1"}),
     'clusters["c"].cluster.certificate-authority-data: required for an https server'),
    (kubeconfig(cluster={"server": "https://a:1", "certificate-authority-data": "!!"}),
     'clusters["c"].cluster.certificate-authority-data: not valid base64'),
    (kubeconfig(cluster={"server": "https://a:1", "certificate-authority-data": b64(b"junk")}),
     'clusters["c"].cluster.certificate-authority: not a PEM certificate'),
    (kubeconfig(cluster={"server": "https://a:1", "certificate-authority": "missing.crt"}),
     'clusters["c"].cluster.certificate-authority: cannot read missing.crt'),
    (kubeconfig(cluster={"server": "https://a:1", "insecure-skip-tls-verify": True}),
     'clusters["c"].cluster.insecure-skip-tls-verify: not supported'),
    (kubeconfig(cluster={"server": "ftp://a:1"}), '"ftp://a:1" is not an http(s) URL'),
    (kubeconfig(user={"client-certificate-data": b64(LEAF.cert_pem)}),
     'users["u"].user.client-key-data: required together with the client certificate'),
    (kubeconfig(user={"client-key-data": b64(LEAF.key_pem)}),
     'users["u"].user.client-certificate-data: required together with the client key'),
    (kubeconfig(user={"client-certificate-data": b64(LEAF.cert_pem),
                      "client-key-data": b64(LEAF.cert_pem)}),
     'users["u"].user.client-key: not an unencrypted PEM private key'),
    (kubeconfig(user={"exec": {"command": "x"}}), 'users["u"].user.exec: not supported'),
    (kubeconfig(user={"tokenFile": "nope"}), 'users["u"].user.tokenFile: cannot read nope'),
    (kubeconfig(**{"current-context": "other"}), 'contexts: no context named "other"'),
    (kubeconfig(context={"user": "u"}), 'contexts["ctx"].context.cluster: required'),
    (kubeconfig(context={"cluster": "zz", "user": "u"}), 'clusters: no cluster named "zz"'),
    (kubeconfig(context={"cluster": "c", "user": "zz"}), 'users: no user named "zz"'),
    ({**kubeconfig(), "contexts": [], "current-context": ""}, "current-context: not set"),
    ("clusters: [", "not valid YAML"),
    ("- a\n- b\n", "not a kubeconfig"),
]


@pytest.mark.parametrize("doc,message", BAD)
def test_bad_kubeconfig(tmp_path: Path, doc: Any, message: str) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as e:
        load_kubeconfig(path)
    assert str(e.value).startswith(path + ": ")
    assert message in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.conf: cannot read the kubeconfig"):
        load_config(str(tmp_path / "nope.conf"))


# --- lookup order ---------------------------------------------------------------------------


def named(tmp_path: Path, name: str, server: str) -> str:
    return write(tmp_path, kubeconfig(cluster={
        "server": server, "certificate-authority-data": b64(CA.cert_pem)}), name)


def test_precedence_flag_env_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config() == ClientConfig(server="127.0.0.1:6442")  # nothing at all
    home = tmp_path / "home/.tinykube"
    home.mkdir(parents=True)
    named(home, "config", "https://default:1")
    assert load_config().server == "default:1"
    monkeypatch.setenv("TINYKUBE_CONFIG", named(tmp_path, "env.conf", "https://env:2"))
    assert load_config().server == "env:2"
    assert load_config(named(tmp_path, "flag.conf", "https://flag:3")).server == "flag:3"


def test_server_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = named(tmp_path, "c.conf", "https://file:1")
    assert load_config(path, "other:2") == replace(load_config(path), server="other:2")
    assert load_config(path, "https://other:3").secure
    plain = load_config(path, "http://other:4")
    assert plain.server == "other:4" and not plain.secure and plain.cert_pem is None
    monkeypatch.setenv("TINYKUBE_SERVER", "env:5")
    assert load_config().server == "env:5" and not load_config().secure
    assert load_config(path).server == "file:1"  # an explicit file beats the environment
    assert load_config(path, "flag:6").server == "flag:6"
    monkeypatch.setenv("TINYKUBE_CONFIG", path)
    assert load_config().server == "env:5" and load_config().secure


# --- in-cluster -----------------------------------------------------------------------------


def test_in_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("jwt")
    (tmp_path / "ca.crt").write_bytes(CA.cert_pem)
    (tmp_path / "namespace").write_text("apps\n")
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT"):
        in_cluster(str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6444")
    cfg = in_cluster(str(tmp_path))
    assert cfg == ClientConfig(server="10.96.0.1:6444", ca_pem=CA.cert_pem,
                               token_file=str(tmp_path / "token"), namespace="apps",
                               https_server="https://10.96.0.1:6444", source="in-cluster")
    # What the kubelet sets for the `kubernetes` Service: `https` 443 first, then `grpc`.
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT_GRPC", "6444")
    cfg = in_cluster(str(tmp_path))
    assert (cfg.server, cfg.https_server) == ("10.96.0.1:6444", "https://10.96.0.1:443")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    assert in_cluster(str(tmp_path)).server == "[fd00::1]:6444"
    (tmp_path / "token").unlink()
    with pytest.raises(ConfigError, match="no ServiceAccount token"):
        in_cluster(str(tmp_path))


# --- malformed input: a ConfigError, never a stack trace -------------------------------------


def test_binary_file_is_not_a_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "ca.der"
    path.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(ConfigError, match="ca.der: not a kubeconfig"):
        load_kubeconfig(str(path))


@pytest.mark.parametrize("server", ["https://[::1:6443", "https://[zz]:1"])
def test_malformed_url_server(tmp_path: Path, server: str) -> None:
    path = write(tmp_path, kubeconfig(cluster={
        "server": server, "certificate-authority-data": b64(CA.cert_pem)}))
    with pytest.raises(ConfigError, match="is not an http.s. URL"):
        load_kubeconfig(path)
    with pytest.raises(ConfigError, match="--server: .* is not an http.s. URL"):
        load_config(server=server)


def test_unknown_home_in_paths(tmp_path: Path) -> None:
    for user in ({"tokenFile": "~no-such-user-tk/token"},
                 {"client-certificate": "~no-such-user-tk/c", "client-key": "~no-such-user-tk/k"}):
        with pytest.raises(ConfigError, match="cannot expand '~no-such-user-tk"):
            load_kubeconfig(write(tmp_path, kubeconfig(user=user)))


def test_https_server_without_kubeconfig_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # No CA to verify it with: dialling plaintext instead would silently ignore the "https".
    with pytest.raises(ConfigError, match="--server: .*needs the cluster CA"):
        load_config(server="https://10.0.0.1:6443")
    monkeypatch.setenv("TINYKUBE_SERVER", "https://10.0.0.1:6443")
    with pytest.raises(ConfigError, match=r"\$TINYKUBE_SERVER: .*TINYKUBE_CONFIG"):
        load_config()
    assert load_config(server="http://10.0.0.1:6443").server == "10.0.0.1:6443"


def test_yaml_syntax_error_never_echoes_the_key(tmp_path: Path) -> None:
    key = b64(LEAF.key_pem)
    path = write(tmp_path, f"users:\n- name: u\n  user:\n    client-key-data: {key} : oops\n")
    with pytest.raises(ConfigError) as e:
        load_kubeconfig(path)
    assert str(e.value) == (f"{path}: not valid YAML: mapping values are not allowed here "
                            f"(line 4, column {len('    client-key-data: ' + key) + 2})")


# --- the tinykube.io/grpc extension: where gRPC is, beside the HTTPS server ------------------


def with_grpc(extension: Any, user: dict[str, Any] | None = None,
              server: str = "https://10.0.0.1:6443") -> dict[str, Any]:
    return kubeconfig(cluster={
        "server": server, "certificate-authority-data": b64(CA.cert_pem),
        "extensions": [{"name": "someone.else/x", "extension": {"server": "no"}},
                       {"name": "tinykube.io/grpc", "extension": extension}]}, user=user)


GRPC = {"server": "10.0.0.1:6442", "token-server": "10.0.0.1:6444"}


def test_extension_certificate_user_dials_server(tmp_path: Path) -> None:
    cfg = load_kubeconfig(write(tmp_path, with_grpc(GRPC)))
    assert (cfg.server, cfg.https_server) == ("10.0.0.1:6442", "https://10.0.0.1:6443")
    assert cfg.secure and cfg.cert_pem == LEAF.cert_pem


@pytest.mark.parametrize("user", [{"token": "abc"}, {"tokenFile": "tok"}])
def test_extension_token_user_dials_token_server(tmp_path: Path, user: dict[str, Any]) -> None:
    (tmp_path / "tok").write_text("abc")
    cfg = load_kubeconfig(write(tmp_path, with_grpc(GRPC, user=user)))
    assert (cfg.server, cfg.https_server) == ("10.0.0.1:6444", "https://10.0.0.1:6443")


def test_extension_user_with_both_dials_server(tmp_path: Path) -> None:
    """A client certificate is what the certificate port checks; the token rides along."""
    user = {"client-certificate-data": b64(LEAF.cert_pem), "client-key-data": b64(LEAF.key_pem),
            "token": "abc"}
    assert load_kubeconfig(write(tmp_path, with_grpc(GRPC, user=user))).server == "10.0.0.1:6442"


def test_extension_user_without_credentials_dials_server(tmp_path: Path) -> None:
    assert load_kubeconfig(write(tmp_path, with_grpc(GRPC, user={}))).server == "10.0.0.1:6442"


def test_extension_ipv6_and_insecure(tmp_path: Path) -> None:
    cfg = load_kubeconfig(write(tmp_path, with_grpc({"server": "[fd00::1]:6442"})))
    assert cfg.server == "[fd00::1]:6442"
    plain = load_kubeconfig(write(tmp_path, kubeconfig(cluster={
        "server": "http://127.0.0.1:8080",
        "extensions": [{"name": "tinykube.io/grpc", "extension": {"server": "127.0.0.1:9090"}}]},
        user={}), "plain"))
    assert (plain.server, plain.https_server, plain.secure) == (
        "127.0.0.1:9090", "http://127.0.0.1:8080", False)


def test_without_extension_the_url_is_the_grpc_target(tmp_path: Path) -> None:
    cfg = load_kubeconfig(write(tmp_path, kubeconfig(user={"token": "abc"})))
    assert (cfg.server, cfg.https_server) == ("10.0.0.1:6443", "https://10.0.0.1:6443")


def test_server_flag_overrides_the_extension(tmp_path: Path) -> None:
    path = write(tmp_path, with_grpc(GRPC))
    cfg = load_config(path, "10.9.9.9:1")
    assert (cfg.server, cfg.https_server) == ("10.9.9.9:1", "https://10.0.0.1:6443")


def test_written_by_pki_and_read_back(tmp_path: Path) -> None:
    pki.write_kubeconfig(tmp_path / "a.conf", server_url="https://h:6443", ca_pem=CA.cert_pem,
                         user="u", cert=LEAF, grpc_server="h:6442", token_server="h:6444")
    pki.write_kubeconfig(tmp_path / "t.conf", server_url="https://h:6443", ca_pem=CA.cert_pem,
                         user="sa", token="abc", grpc_server="h:6442", token_server="h:6444")
    assert load_kubeconfig(str(tmp_path / "a.conf")).server == "h:6442"
    assert load_kubeconfig(str(tmp_path / "t.conf")).server == "h:6444"


EXT = 'clusters["c"].cluster.extensions["tinykube.io/grpc"].extension'
BAD_EXTENSIONS = [
    ({"extensions": {"name": "tinykube.io/grpc"}}, None,
     'clusters["c"].cluster.extensions: must be a list'),
    ({"extensions": [{"name": "tinykube.io/grpc", "extension": "10.0.0.1:6442"}]}, None,
     f"{EXT}: must be a mapping with server and/or token-server"),
    ({"extensions": [{"name": "tinykube.io/grpc", "extension": {}}]}, None,
     f"{EXT}: needs server and/or token-server"),
    ({"extensions": [{"name": "tinykube.io/grpc", "extension": {"server": 6442}}]}, None,
     f"{EXT}.server: must be a string"),
    ({"extensions": [{"name": "tinykube.io/grpc",
                      "extension": {"server": "https://10.0.0.1:6442"}}]}, None,
     f'{EXT}.server: "https://10.0.0.1:6442" is a URL: want HOST:PORT'),
    ({"extensions": [{"name": "tinykube.io/grpc", "extension": {"server": "10.0.0.1"}}]}, None,
     f'{EXT}.server: "10.0.0.1" is not an address: want HOST:PORT'),
    ({"extensions": [{"name": "tinykube.io/grpc", "extension": {"server": "h:99999"}}]}, None,
     f'{EXT}.server: "h:99999" is not an address'),
    ({"extensions": [{"name": "tinykube.io/grpc", "extension": {"server": "::1:6442"}}]}, None,
     f'{EXT}.server: "::1:6442" is not an address'),
    ({"extensions": [{"name": "tinykube.io/grpc", "extension": {"token-server": ":6444"}}]},
     None, f'{EXT}.token-server: ":6444" is not an address'),
    ({"extensions": [{"name": "tinykube.io/grpc", "extension": {"token-server": "h:6444"}}]},
     None, f"{EXT}.server: required for a user with a client certificate"),
    ({"extensions": [{"name": "tinykube.io/grpc", "extension": {"server": "h:6442"}}]},
     {"token": "abc"}, f"{EXT}.token-server: required for a user with a token"),
]


@pytest.mark.parametrize("extra,user,message", BAD_EXTENSIONS)
def test_bad_extension(tmp_path: Path, extra: dict[str, Any], user: dict[str, Any] | None,
                       message: str) -> None:
    path = write(tmp_path, kubeconfig(cluster={
        "server": "https://10.0.0.1:6443", "certificate-authority-data": b64(CA.cert_pem),
        **extra}, user=user))
    with pytest.raises(ConfigError) as e:
        load_kubeconfig(path)
    assert str(e.value).startswith(path + ": ")
    assert message in str(e.value), str(e.value)
