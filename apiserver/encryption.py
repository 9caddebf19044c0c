"""Encryption at rest: upstream's EncryptionConfiguration, read and applied to values in etcd.

Anyone who can read etcd's data directory or a backup of it would otherwise read every Secret.
kube-apiserver's answer is `--encryption-provider-config`, a file like

    apiVersion: apiserver.config.k8s.io/v1
    kind: EncryptionConfiguration
    resources:
      - resources: [secrets]
        providers:
          - aesgcm: {keys: [{name: key1, secret: <base64 of 32 random bytes>}]}
          - identity: {}

and this module is that, for the providers `aesgcm` and `identity`, with upstream's storage format
so the values look the same in `etcdctl get`: `k8s:enc:aesgcm:v1:<key name>:` + 12-byte nonce +
AES-GCM ciphertext and tag, the etcd key as additional authenticated data (a value copied to
another key does not decrypt).

Rotation works as upstream: the FIRST provider (and its first key) encrypts every write; every
provider and key can decrypt. So: add a new key first, restart, rewrite the Secrets, then drop the
old key. A value with no `k8s:enc:` prefix is read as plaintext whatever the config says, so data
written before encryption was enabled stays readable (upstream needs `identity` listed for that; we
always allow it, a small deviation that makes enabling encryption on a running cluster safe).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from api import decoding
from api.resources import RESOURCES
from client.config import yaml_error

FLAG = "--encryption-provider-config"
ENC_PREFIX = b"k8s:enc:"
AESGCM_PREFIX = "k8s:enc:aesgcm:v1:"
NONCE_SIZE = 12
_KINDS = {"EncryptionConfiguration"}
_API_VERSIONS = {"apiserver.config.k8s.io/v1", "apiserver.config.k8s.io/v1beta1"}


class ConfigError(ValueError):
    """The configuration file is wrong; the message names the flag and the field."""


class TransformError(ValueError):
    """A stored value cannot be decrypted (unknown key, wrong key, tampered): it is skipped."""


class Transformer(Protocol):
    def to_storage(self, data: bytes, key: bytes) -> bytes: ...

    def from_storage(self, data: bytes, key: bytes) -> bytes: ...


class Identity:
    """Plaintext: what every resource gets without a configuration."""

    name = "identity"

    def to_storage(self, data: bytes, key: bytes) -> bytes:
        return data

    def from_storage(self, data: bytes, key: bytes) -> bytes:
        if data.startswith(ENC_PREFIX):
            raise TransformError(f"value at {key.decode(errors='replace')} is encrypted "
                                 f"({_prefix_of(data)}) but no provider is configured for it")
        return data


IDENTITY = Identity()


@dataclass(frozen=True)
class AesGcmKey:
    name: str
    aead: AESGCM

    @property
    def prefix(self) -> bytes:
        return f"{AESGCM_PREFIX}{self.name}:".encode()

    def encrypt(self, data: bytes, key: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)  # 96-bit random nonce, as upstream's aesgcm provider
        return self.prefix + nonce + self.aead.encrypt(nonce, data, key)

    def decrypt(self, body: bytes, key: bytes) -> bytes:
        nonce, ciphertext = body[:NONCE_SIZE], body[NONCE_SIZE:]
        try:
            return self.aead.decrypt(nonce, ciphertext, key)
        except InvalidTag:
            raise TransformError(
                f"value at {key.decode(errors='replace')} does not decrypt with aesgcm key "
                f"{self.name!r} (wrong key material, or the value was altered or moved)"
            ) from None


class ProviderChain:
    """The providers of one `resources[]` entry: the first writes, all read."""

    def __init__(self, writer: AesGcmKey | None, keys: Sequence[AesGcmKey]) -> None:
        self.writer = writer  # None: the first provider is identity
        self.by_prefix = {k.prefix: k for k in keys}

    def to_storage(self, data: bytes, key: bytes) -> bytes:
        return self.writer.encrypt(data, key) if self.writer else data

    def from_storage(self, data: bytes, key: bytes) -> bytes:
        if not data.startswith(ENC_PREFIX):
            return data  # plaintext, written before encryption was enabled (or by identity)
        for prefix, k in self.by_prefix.items():
            if data.startswith(prefix):
                return k.decrypt(data[len(prefix):], key)
        raise TransformError(f"value at {key.decode(errors='replace')} was written with "
                             f"{_prefix_of(data)}, which no configured provider has "
                             f"(was a key removed from {FLAG}?)")


def _prefix_of(data: bytes) -> str:
    """`k8s:enc:aesgcm:v1:key1` of a stored value, for messages (never any of the ciphertext)."""
    parts = data.split(b":", 5)
    return ":".join(p.decode(errors="replace") for p in parts[:5])


class EncryptionConfig:
    """Resource name → its ProviderChain; resources not listed are stored as plaintext."""

    def __init__(self, chains: Mapping[str, ProviderChain]) -> None:
        self.chains = dict(chains)

    def transformer_for(self, resource: str) -> Transformer:
        return self.chains.get(resource, IDENTITY)


def load(path: str | Path) -> EncryptionConfig:
    """Read and validate the file of `--encryption-provider-config`; ConfigError naming the
    field otherwise."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{FLAG}: cannot read {path}: {e.strerror or e}") from None
    try:
        doc = decoding.load_yaml(text)
    except yaml.YAMLError as e:
        # yaml_error: never str(e), which quotes the offending line (here: a key's secret).
        raise ConfigError(f"{FLAG}: {path} is not valid YAML: {yaml_error(e)}") from None
    return parse(doc)


def parse(doc: Any) -> EncryptionConfig:
    if not isinstance(doc, dict):
        raise ConfigError(f"{FLAG}: want an EncryptionConfiguration object")
    if doc.get("kind") not in _KINDS:
        raise ConfigError(f"{FLAG}: kind: must be EncryptionConfiguration "
                          f"(got {doc.get('kind')!r})")
    if doc.get("apiVersion") not in _API_VERSIONS:
        raise ConfigError(f"{FLAG}: apiVersion: must be apiserver.config.k8s.io/v1 "
                          f"(got {doc.get('apiVersion')!r})")
    entries = doc.get("resources")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{FLAG}: resources: must be a non-empty list")
    chains: dict[str, ProviderChain] = {}
    for i, entry in enumerate(entries):
        field = f"resources[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{FLAG}: {field}: must be an object")
        chain = _parse_providers(entry.get("providers"), f"{field}.providers")
        for resource in _parse_resources(entry.get("resources"), f"{field}.resources"):
            # The first entry that names a resource wins, as upstream.
            chains.setdefault(resource, chain)
    return EncryptionConfig(chains)


def _parse_resources(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{FLAG}: {field}: must be a non-empty list of resources")
    out: list[str] = []
    for j, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{FLAG}: {field}[{j}]: must be a resource name like secrets")
        names = _expand(item)
        if names is None:
            raise ConfigError(f"{FLAG}: {field}[{j}]: unknown resource {item!r} "
                              "(want e.g. secrets, deployments.apps, *.apps or *.*)")
        out.extend(names)
    return out


def _expand(item: str) -> list[str] | None:
    """`secrets`, `configmaps.` (core), `deployments.apps`, `*.apps`, `*.`, `*.*` → names."""
    resource, _, group = item.partition(".")
    if resource == "*":
        return [n for n, info in RESOURCES.items() if group == "*" or info.group == group]
    info = RESOURCES.get(resource)
    if info is None or (group and group != "*" and info.group != group):
        return None
    return [resource]


def _parse_providers(value: Any, field: str) -> ProviderChain:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{FLAG}: {field}: must be a non-empty list of providers")
    writer: AesGcmKey | None = None
    keys: list[AesGcmKey] = []
    for j, provider in enumerate(value):
        pfield = f"{field}[{j}]"
        if not isinstance(provider, dict) or len(provider) != 1:
            raise ConfigError(f"{FLAG}: {pfield}: must name exactly one provider "
                              "(aesgcm or identity)")
        (kind, body), = provider.items()
        if kind == "identity":
            continue
        if kind != "aesgcm":
            raise ConfigError(f"{FLAG}: {pfield}: provider {kind!r} is not supported "
                              "(tinykube has aesgcm and identity)")
        provider_keys = _parse_keys(body, f"{pfield}.aesgcm")
        if j == 0:
            writer = provider_keys[0]
        keys.extend(provider_keys)
    return ProviderChain(writer, keys)


def _parse_keys(body: Any, field: str) -> list[AesGcmKey]:
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ConfigError(f"{FLAG}: {field}.keys: must be a non-empty list")
    out: list[AesGcmKey] = []
    seen: set[str] = set()
    for k, entry in enumerate(keys):
        kfield = f"{field}.keys[{k}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{FLAG}: {kfield}: must be an object with name and secret")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{FLAG}: {kfield}.name: required")
        if ":" in name:
            raise ConfigError(f"{FLAG}: {kfield}.name: must not contain ':' (got {name!r})")
        if name in seen:
            raise ConfigError(f"{FLAG}: {kfield}.name: duplicate key name {name!r}")
        seen.add(name)
        out.append(AesGcmKey(name, AESGCM(_secret(entry.get("secret"), f"{kfield}.secret"))))
    return out


def _secret(value: Any, field: str) -> bytes:
    # The message never echoes the value: it is key material.
    want = f"{FLAG}: {field}: must be 16, 24 or 32 bytes base64-encoded"
    if not isinstance(value, str) or not value:
        raise ConfigError(want)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(want) from None
    if len(raw) not in (16, 24, 32):
        raise ConfigError(f"{want} (got {len(raw)} bytes)")
    return raw
