"""Where the apiserver is and how to prove who we are: kubeconfig files and in-cluster config.

Upstream clients find their cluster through a kubeconfig (`--kubeconfig`, `$KUBECONFIG`,
`~/.kube/config`) or, inside a pod, through the ServiceAccount files the kubelet mounts. This
module reads the same kubeconfig format (so `kubectl config view` knowledge carries over) into a
`ClientConfig`, the small flat record `ApiClient` builds its gRPC channel from.

The apiserver has two fronts (docs/deviations.md, "Two TLS ports"): Kubernetes' HTTP API on
--secure-port (6443), where a kubeconfig's `server: https://HOST:6443` points kubectl and the
official clients, and gRPC, which tinykube's own clients (this one) speak, on --grpc-port (6442,
client certificates) and --token-port (6444, bearer tokens). A kubeconfig tinykube writes names
the gRPC ports in a cluster extension, the way minikube adds one (kubectl ignores extensions it
does not know):

    clusters:
    - name: tinykube
      cluster:
        server: https://127.0.0.1:6443
        certificate-authority-data: ...
        extensions:
        - name: tinykube.io/grpc
          extension: {server: 127.0.0.1:6442, token-server: 127.0.0.1:6444}

- the gRPC target (`ClientConfig.server`) is the extension's `server` for a user with a client
  certificate (or no credentials), its `token-server` for a user with a token (`token`,
  `tokenFile`); a kubeconfig without the extension (an older one, or one written by hand) is
  dialled at its `server` URL's host:port, as before the HTTP front existed. The URL itself is
  kept as `ClientConfig.https_server`;
- in a pod (`in_cluster`): the host is $KUBERNETES_SERVICE_HOST, the port
  $KUBERNETES_SERVICE_PORT_GRPC (the `kubernetes` Service's port named `grpc`, which leads to
  the token port), else $KUBERNETES_SERVICE_PORT as client-go's;
- lookup: the `kubeconfig` argument (tkctl's `--kubeconfig`), else `$TINYKUBE_CONFIG`, else
  `~/.tinykube/config` if it exists, else no file: plaintext gRPC to `--server`/
  `$TINYKUBE_SERVER`/127.0.0.1:6442, which only an apiserver started with `--insecure` answers;
- `--server` overrides the file's gRPC target, as kubectl's overrides its server;
  `$TINYKUBE_SERVER` overrides that of a kubeconfig that was itself found through the
  environment (`$TINYKUBE_CONFIG`, the default file), never that of one passed explicitly: a
  flag beats the environment, so a stale export cannot send `--kubeconfig x` (or the test
  harness) to another cluster;
- paths in the file (`certificate-authority`, `client-certificate`, `client-key`, `tokenFile`)
  are relative to the file's directory, as kubectl resolves them.

A broken file raises `ConfigError` naming the file and the field (`admin.conf:
users["kubernetes-admin"].user.client-key-data: not valid base64`), never a stack trace.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from api import decoding

DEFAULT_SERVER = "127.0.0.1:6442"  # --grpc-port's default
SERVER_ENV = "TINYKUBE_SERVER"
CONFIG_ENV = "TINYKUBE_CONFIG"
DEFAULT_CONFIG = "~/.tinykube/config"
SERVICE_ACCOUNT_ROOT = "/var/run/secrets/kubernetes.io/serviceaccount"
# The cluster extension naming the apiserver's gRPC ports: {server: HOST:PORT (client
# certificates), token-server: HOST:PORT (bearer tokens)}.
GRPC_EXTENSION = "tinykube.io/grpc"

# Authentication methods kubeconfig can name that tinykube does not implement: refuse them
# clearly instead of silently connecting without credentials.
_UNSUPPORTED_USER_FIELDS = ("exec", "auth-provider", "username", "password", "as", "as-groups")


class ConfigError(ValueError):
    """A kubeconfig (or in-cluster file) that cannot be used; str() names the file and field."""


@dataclass(frozen=True)
class ClientConfig:
    """Everything needed to open a channel to the apiserver and authenticate on it.

    `server` is the gRPC target (`host:port`). With `ca_pem` the channel is TLS and the server's
    certificate must chain to it; `cert_pem`/`key_pem` are the client certificate; `token` (or
    `token_file`, re-read so that rotated tokens work) is sent as `authorization: Bearer`.
    `https_server` is the URL of the apiserver's Kubernetes HTTP API (the kubeconfig's `server`;
    http:// for an --insecure apiserver), for kubectl and the official clients; None without a
    kubeconfig.
    """

    server: str
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None
    token_file: str | None = None
    namespace: str | None = None
    tls_server_name: str | None = None
    https_server: str | None = None
    # Where this came from (a kubeconfig path, "in-cluster", or "" for none), for messages.
    source: str = ""

    @property
    def secure(self) -> bool:
        return self.ca_pem is not None


# --- lookup ---------------------------------------------------------------------------------


def find_kubeconfig(kubeconfig: str | None = None) -> str | None:
    """The kubeconfig path to use, or None when there is none (the documented order)."""
    if kubeconfig:
        return kubeconfig
    env = os.environ.get(CONFIG_ENV)
    if env:
        return env
    try:
        default = Path(DEFAULT_CONFIG).expanduser()
    except RuntimeError:  # no home directory (a container user without one): no default file
        return None
    return str(default) if default.is_file() else None


def load_config(kubeconfig: str | None = None, server: str | None = None) -> ClientConfig:
    """The client configuration for this process (see the module docstring for the order).

    `server` (a flag) replaces the file's server, and so does `$TINYKUBE_SERVER` unless the
    `kubeconfig` was given: `host:port` keeps the file's TLS settings, `https://…` too,
    `http://…` forces plaintext.
    """
    override = server or (None if kubeconfig else os.environ.get(SERVER_ENV)) or None
    field = "--server" if server else f"${SERVER_ENV}"  # name where the value came from
    path = find_kubeconfig(kubeconfig)
    if path is None:
        target, scheme = _target(override or DEFAULT_SERVER, field)
        if scheme == "https":
            # Without a kubeconfig there is no CA to verify the server with: refuse rather than
            # quietly dial plaintext to an address the user asked to reach over TLS.
            raise ConfigError(f'{field}: "{override}" is https, which needs the cluster CA '
                              f"from a kubeconfig: pass --kubeconfig or set ${CONFIG_ENV}")
        return ClientConfig(server=target)
    cfg = load_kubeconfig(path)
    if override is None:
        return cfg
    target, scheme = _target(override, field)
    if scheme == "http":
        return ClientConfig(server=target, token=cfg.token, token_file=cfg.token_file,
                            namespace=cfg.namespace, source=cfg.source)
    return replace(cfg, server=target)


def _target(server: str, field: str) -> tuple[str, str]:
    """(gRPC target host:port, scheme) of `https://h:p`, `http://h:p` or a bare `h:p`."""
    if "://" not in server:
        return server, ""
    try:
        parts = urlsplit(server)
    except ValueError:  # "https://[::1" and the like: the user's typo, not a crash
        raise ConfigError(f'{field}: "{server}" is not an http(s) URL or host:port') from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f'{field}: "{server}" is not an http(s) URL or host:port')
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(f'{field}: "{server}" has an invalid port') from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}", parts.scheme


def yaml_error(e: yaml.YAMLError) -> str:
    """What is wrong with a YAML file and where, WITHOUT the excerpt of the offending line that
    str(e) quotes: in a kubeconfig or an EncryptionConfiguration that line may be a key."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
        mark = e.problem_mark
        return f"{e.problem or e.context or 'syntax error'} (line {mark.line + 1}, " \
               f"column {mark.column + 1})"
    return "syntax error"


# --- kubeconfig -----------------------------------------------------------------------------


class _File:
    """One kubeconfig being read: raises ConfigError prefixed with the file name."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.dir = _expand(path, path).resolve().parent

    def fail(self, field: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {field}: {message}" if field else
                           f"{self.path}: {message}")

    def entry(self, doc: dict[str, Any], section: str, name: str, key: str) -> dict[str, Any]:
        """`clusters[name=...].cluster` and friends."""
        items = doc.get(section) or []
        if not isinstance(items, list):
            raise self.fail(section, "must be a list")
        for i, item in enumerate(items):
            if isinstance(item, dict) and item.get("name") == name:
                body = item.get(key) or {}
                if not isinstance(body, dict):
                    raise self.fail(f"{section}[{i}].{key}", "must be a mapping")
                return body
        raise self.fail(section, f'no {section[:-1]} named "{name}"')

    def text(self, body: dict[str, Any], field: str, key: str) -> str | None:
        value = body.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.fail(f"{field}.{key}", "must be a string")
        return value

    def data_or_file(self, body: dict[str, Any], field: str, key: str) -> bytes | None:
        """`<key>-data` (base64, inline) or `<key>` (a path relative to the file)."""
        data = self.text(body, field, f"{key}-data")
        if data is not None:
            try:
                return base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise self.fail(f"{field}.{key}-data", "not valid base64") from None
        name = self.text(body, field, key)
        if name is None:
            return None
        try:
            return self.resolve(name).read_bytes()
        except OSError as e:
            raise self.fail(f"{field}.{key}", f"cannot read {name}: {e.strerror}") from None

    def resolve(self, name: str) -> Path:
        p = _expand(name, self.path)
        return p if p.is_absolute() else self.dir / p


def _expand(name: str, source: str) -> Path:
    """`~/x` → the home directory's x; ConfigError (not RuntimeError) for `~nobody/x` or when
    there is no home directory to expand to."""
    try:
        return Path(name).expanduser()
    except RuntimeError:
        raise ConfigError(f"{source}: cannot expand {name!r}: no such home directory") from None


def load_kubeconfig(path: str) -> ClientConfig:
    """Read one kubeconfig file (its current context) into a ClientConfig."""
    f = _File(path)
    try:
        # Bounded (api.decoding): a kubeconfig may come from anywhere, and is YAML.
        doc = decoding.load_yaml(_expand(path, path).read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the kubeconfig: {e.strerror}") from None
    except UnicodeDecodeError:  # a binary file (a key or a certificate in DER, say)
        raise ConfigError(f"{path}: not a kubeconfig (not UTF-8 text)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {yaml_error(e)}") from None
    if not isinstance(doc, dict):
        raise f.fail("", "not a kubeconfig (expected a mapping with clusters, users, contexts)")
    context_name = _current_context(f, doc)
    context = f.entry(doc, "contexts", context_name, "context")
    cfield = f'contexts["{context_name}"].context'
    cluster_name = f.text(context, cfield, "cluster")
    if cluster_name is None:
        raise f.fail(f"{cfield}.cluster", "required")
    cluster = f.entry(doc, "clusters", cluster_name, "cluster")
    user_name = f.text(context, cfield, "user")
    user = f.entry(doc, "users", user_name, "user") if user_name else {}
    field = f'clusters["{cluster_name}"].cluster'
    kwargs = _cluster(f, cluster, field)
    kwargs.update(_user(f, user, f'users["{user_name}"].user'))
    if kwargs.pop("_https") and kwargs.get("ca_pem") is None:
        raise f.fail(f"{field}.certificate-authority-data",
                     "required for an https server (tinykube does not use system CAs)")
    extension = kwargs.pop("_grpc")
    if extension is not None:
        has_token = kwargs["cert_pem"] is None and bool(kwargs["token"] or kwargs["token_file"])
        efield = f'{field}.extensions["{GRPC_EXTENSION}"].extension'
        kwargs["server"] = _grpc_target(f, extension, efield, token=has_token)
    return ClientConfig(namespace=f.text(context, cfield, "namespace"), source=path, **kwargs)


def _current_context(f: _File, doc: dict[str, Any]) -> str:
    name = doc.get("current-context")
    if isinstance(name, str) and name:
        return name
    contexts = doc.get("contexts") or []
    if isinstance(contexts, list) and len(contexts) == 1 and isinstance(contexts[0], dict):
        return str(contexts[0].get("name", ""))  # one context: no need to name it
    raise f.fail("current-context", "not set (and the file does not have exactly one context)")


def _cluster(f: _File, body: dict[str, Any], field: str) -> dict[str, Any]:
    server = f.text(body, field, "server")
    if server is None:
        raise f.fail(f"{field}.server", "required (e.g. https://127.0.0.1:6443)")
    try:
        target, scheme = _target(server, f"{field}.server")
    except ConfigError as e:
        raise f.fail("", str(e)) from None
    if body.get("insecure-skip-tls-verify"):
        raise f.fail(f"{field}.insecure-skip-tls-verify",
                     "not supported: give the cluster CA (certificate-authority-data)")
    ca = f.data_or_file(body, field, "certificate-authority")
    if ca is not None:
        _check_cert(f, ca, f"{field}.certificate-authority")
    https = scheme != "http"
    return {
        "server": target,
        "https_server": server if scheme else f"https://{server}",
        "ca_pem": ca if https else None,
        "tls_server_name": f.text(body, field, "tls-server-name"),
        "_https": https,
        "_grpc": _grpc_extension(f, body, field),
    }


def _grpc_extension(f: _File, body: dict[str, Any], field: str) -> dict[str, str | None] | None:
    """The `tinykube.io/grpc` extension of a cluster: {"server", "token-server"} (either may be
    None), or None when the cluster has none."""
    extensions = body.get("extensions")
    if extensions is None:
        return None
    if not isinstance(extensions, list):
        raise f.fail(f"{field}.extensions", "must be a list of {name, extension}")
    for item in extensions:
        if not isinstance(item, dict) or item.get("name") != GRPC_EXTENSION:
            continue  # somebody else's (kubectl keeps what it does not know, as do we)
        efield = f'{field}.extensions["{GRPC_EXTENSION}"].extension'
        ext = item.get("extension")
        if not isinstance(ext, dict):
            raise f.fail(efield, "must be a mapping with server and/or token-server "
                                 "(HOST:PORT of the apiserver's gRPC ports)")
        out = {key: _address(f, ext, efield, key) for key in ("server", "token-server")}
        if out["server"] is None and out["token-server"] is None:
            raise f.fail(efield, "needs server and/or token-server (HOST:PORT of the "
                                 "apiserver's gRPC ports)")
        return out
    return None


def _address(f: _File, body: dict[str, Any], field: str, key: str) -> str | None:
    """A `HOST:PORT` (`[v6]:PORT`) of the extension, or None when absent."""
    value = f.text(body, field, key)
    if value is None:
        return None
    want = "want HOST:PORT (e.g. 127.0.0.1:6442)"
    if "://" in value:
        raise f.fail(f"{field}.{key}", f'"{value}" is a URL: {want}')
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2
    if (not sep or not host or not port.isdigit() or not 0 < int(port) < 65536
            or (":" in host and not bracketed) or any(c.isspace() for c in value)):
        raise f.fail(f"{field}.{key}", f'"{value}" is not an address: {want}')
    return value


def _grpc_target(f: _File, extension: dict[str, str | None], field: str, *, token: bool) -> str:
    """The gRPC port for the user: `token-server` for a user with a token (and no client
    certificate: the token port asks for none), `server` for everyone else."""
    key = "token-server" if token else "server"
    target = extension[key]
    if target is None:
        who = "a user with a token" if token else "a user with a client certificate"
        raise f.fail(f"{field}.{key}", f"required for {who} (this context's)")
    return target


def _user(f: _File, body: dict[str, Any], field: str) -> dict[str, Any]:
    for name in _UNSUPPORTED_USER_FIELDS:
        if body.get(name):
            raise f.fail(f"{field}.{name}", "not supported by tinykube (use a client "
                                           "certificate or a token)")
    cert = f.data_or_file(body, field, "client-certificate")
    key = f.data_or_file(body, field, "client-key")
    if (cert is None) != (key is None):
        missing = "client-key-data" if key is None else "client-certificate-data"
        raise f.fail(f"{field}.{missing}", "required together with the client "
                                           + ("certificate" if key is None else "key"))
    if cert is not None and key is not None:
        _check_cert(f, cert, f"{field}.client-certificate")
        _check_key(f, key, f"{field}.client-key")
    token_file = f.text(body, field, "tokenFile")
    if token_file is not None:
        resolved = f.resolve(token_file)
        if not resolved.is_file():
            raise f.fail(f"{field}.tokenFile", f"cannot read {token_file}")
        token_file = str(resolved)
    return {"cert_pem": cert, "key_pem": key, "token": f.text(body, field, "token"),
            "token_file": token_file}


def _check_cert(f: _File, pem: bytes, field: str) -> None:
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise f.fail(field, "not a PEM certificate") from None


def _check_key(f: _File, pem: bytes, field: str) -> None:
    try:
        serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise f.fail(field, "not an unencrypted PEM private key") from None


# --- in-cluster -----------------------------------------------------------------------------


def in_cluster(root: str = SERVICE_ACCOUNT_ROOT) -> ClientConfig:
    """The config of a process in a pod: the ServiceAccount token, CA and namespace the kubelet
    mounts at `root`, and the apiserver from $KUBERNETES_SERVICE_HOST/_PORT (client-go's
    `rest.InClusterConfig`), where gRPC is $KUBERNETES_SERVICE_PORT_GRPC when the kubelet set
    it (the `kubernetes` Service's `grpc` port). The token file is re-read by the client, so
    rotation works."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigError("unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST "
                          "and KUBERNETES_SERVICE_PORT must be defined")
    grpc_port = os.environ.get("KUBERNETES_SERVICE_PORT_GRPC") or port
    base = Path(root)
    token_path = base / "token"
    if not token_path.is_file():
        raise ConfigError(f"in-cluster: {token_path}: no ServiceAccount token mounted")
    try:
        ca = (base / "ca.crt").read_bytes()
    except OSError as e:
        raise ConfigError(f"in-cluster: {base / 'ca.crt'}: {e.strerror}") from None
    try:
        namespace: str | None = (base / "namespace").read_text().strip() or None
    except OSError:
        namespace = None
    where = f"[{host}]" if ":" in host else host
    return ClientConfig(server=f"{where}:{grpc_port}", ca_pem=ca, token_file=str(token_path),
                        namespace=namespace, https_server=f"https://{where}:{port}",
                        source="in-cluster")
