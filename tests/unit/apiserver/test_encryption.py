"""Encryption at rest: the EncryptionConfiguration parser, the storage format, rotation."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from apiserver import encryption
from apiserver.encryption import AESGCM_PREFIX, ConfigError, TransformError
from apiserver.storage import Storage

KEY = b"/registry/secrets/default/s1"


def secret(n: int = 32) -> str:
    return base64.b64encode(os.urandom(n)).decode()


def config(*providers: dict[str, Any], resources: list[str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": resources or ["secrets"], "providers": list(providers)}],
    }


def aesgcm(*keys: tuple[str, str]) -> dict[str, Any]:
    return {"aesgcm": {"keys": [{"name": n, "secret": s} for n, s in keys]}}


IDENTITY: dict[str, Any] = {"identity": {}}


def test_aesgcm_value_has_upstream_prefix_and_round_trips() -> None:
    t = encryption.parse(config(aesgcm(("key1", secret())), IDENTITY)).transformer_for("secrets")
    plain = b'{"data":{"password":"hunter2"}}'
    stored = t.to_storage(plain, KEY)
    assert stored.startswith(f"{AESGCM_PREFIX}key1:".encode())
    assert b"hunter2" not in stored
    # prefix + 12-byte nonce + ciphertext + 16-byte GCM tag, as upstream
    assert len(stored) == len(f"{AESGCM_PREFIX}key1:") + 12 + len(plain) + 16
    assert t.from_storage(stored, KEY) == plain


def test_nonce_is_fresh_for_every_write() -> None:
    t = encryption.parse(config(aesgcm(("k", secret())))).transformer_for("secrets")
    assert t.to_storage(b"{}", KEY) != t.to_storage(b"{}", KEY)


def test_etcd_key_is_authenticated_data() -> None:
    t = encryption.parse(config(aesgcm(("k", secret())))).transformer_for("secrets")
    stored = t.to_storage(b"{}", KEY)
    with pytest.raises(TransformError, match="does not decrypt with aesgcm key 'k'"):
        t.from_storage(stored, b"/registry/secrets/default/other")


def test_tampered_value_is_refused() -> None:
    t = encryption.parse(config(aesgcm(("k", secret())))).transformer_for("secrets")
    stored = bytearray(t.to_storage(b"{}", KEY))
    stored[-1] ^= 1
    with pytest.raises(TransformError):
        t.from_storage(bytes(stored), KEY)


def test_rotation_first_key_writes_all_keys_read() -> None:
    old, new = ("key1", secret()), ("key2", secret())
    before = encryption.parse(config(aesgcm(old), IDENTITY)).transformer_for("secrets")
    written_before = before.to_storage(b'{"a":1}', KEY)
    after = encryption.parse(config(aesgcm(new, old), IDENTITY)).transformer_for("secrets")
    assert after.from_storage(written_before, KEY) == b'{"a":1}'
    assert after.to_storage(b"{}", KEY).startswith(f"{AESGCM_PREFIX}key2:".encode())


def test_keys_of_later_providers_read_too() -> None:
    old = ("key1", secret())
    written = encryption.parse(config(aesgcm(old))).transformer_for("secrets").to_storage(
        b"{}", KEY)
    # Decrypting with the old key while writing plaintext: the step before removing encryption.
    t = encryption.parse(config(IDENTITY, aesgcm(old))).transformer_for("secrets")
    assert t.from_storage(written, KEY) == b"{}"
    assert t.to_storage(b"{}", KEY) == b"{}"


def test_plaintext_written_before_encryption_stays_readable() -> None:
    t = encryption.parse(config(aesgcm(("k", secret())))).transformer_for("secrets")
    assert t.from_storage(b'{"kind":"Secret"}', KEY) == b'{"kind":"Secret"}'


def test_removed_key_is_a_clear_error_without_ciphertext() -> None:
    written = encryption.parse(config(aesgcm(("gone", secret())))).transformer_for(
        "secrets").to_storage(b"{}", KEY)
    t = encryption.parse(config(aesgcm(("k", secret())))).transformer_for("secrets")
    with pytest.raises(TransformError, match="k8s:enc:aesgcm:v1:gone, which no configured") as e:
        t.from_storage(written, KEY)
    assert "\\x" not in str(e.value)
    with pytest.raises(TransformError, match="no provider is configured"):
        encryption.parse(config(aesgcm(("k", secret())))).transformer_for(
            "configmaps").from_storage(written, KEY)


def test_unlisted_resources_are_plaintext() -> None:
    cfg = encryption.parse(config(aesgcm(("k", secret()))))
    assert cfg.transformer_for("configmaps").to_storage(b"{}", KEY) == b"{}"


def test_resource_names_with_groups_and_wildcards() -> None:
    cfg = encryption.parse(config(aesgcm(("k", secret())),
                                  resources=["configmaps.", "deployments.apps"]))
    assert set(cfg.chains) == {"configmaps", "deployments"}
    cfg = encryption.parse(config(aesgcm(("k", secret())), resources=["*.apps"]))
    assert "deployments" in cfg.chains and "secrets" not in cfg.chains
    cfg = encryption.parse(config(aesgcm(("k", secret())), resources=["*.*"]))
    assert {"secrets", "pods", "deployments"} <= set(cfg.chains)


@pytest.mark.parametrize(("doc", "message"), [
    (config(aesgcm(("key1", base64.b64encode(b"short").decode()))),
     "--encryption-provider-config: resources[0].providers[0].aesgcm.keys[0].secret: must be "
     "16, 24 or 32 bytes base64-encoded (got 5 bytes)"),
    (config(aesgcm(("key1", "not base64!"))),
     "--encryption-provider-config: resources[0].providers[0].aesgcm.keys[0].secret: must be "
     "16, 24 or 32 bytes base64-encoded"),
    (config(IDENTITY, aesgcm(("a", secret()), ("", secret()))),
     "resources[0].providers[1].aesgcm.keys[1].name: required"),
    (config(aesgcm(("a", secret()), ("a", secret()))),
     "resources[0].providers[0].aesgcm.keys[1].name: duplicate key name 'a'"),
    (config(aesgcm(("a:b", secret()))), "keys[0].name: must not contain ':'"),
    (config({"aescbc": {"keys": []}}),
     "resources[0].providers[0]: provider 'aescbc' is not supported"),
    (config({"aesgcm": {}}), "resources[0].providers[0].aesgcm.keys: must be a non-empty list"),
    (config(IDENTITY, resources=["widgets"]), "resources[0].resources[0]: unknown resource"),
    (config(IDENTITY, resources=["deployments.batch"]), "unknown resource 'deployments.batch'"),
    ({**config(IDENTITY), "kind": "Config"}, "kind: must be EncryptionConfiguration"),
    ({**config(IDENTITY), "resources": []}, "resources: must be a non-empty list"),
    (config(), "resources[0].providers: must be a non-empty list"),
])
def test_config_errors_name_the_field(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        encryption.parse(doc)
    assert message in str(e.value)
    assert str(e.value).startswith("--encryption-provider-config: ")


def test_error_never_echoes_the_secret() -> None:
    bad = base64.b64encode(b"0123456789").decode()
    with pytest.raises(ConfigError) as e:
        encryption.parse(config(aesgcm(("k", bad))))
    assert bad not in str(e.value)


def test_load_reads_yaml_and_names_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "enc.yaml"
    path.write_text(f"""\
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aesgcm:
          keys:
            - name: key1
              secret: {secret()}
      - identity: {{}}
""")
    assert "secrets" in encryption.load(path).chains
    with pytest.raises(ConfigError, match=r"^--encryption-provider-config: cannot read .*missing"):
        encryption.load(tmp_path / "missing")
    path.write_text("resources: [")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        encryption.load(path)


async def test_storage_encodes_and_decodes_through_the_resource_transformer() -> None:
    # async: Storage opens grpc.aio channels, which need a current event loop. A sync test had
    # one only when an earlier async test on the same xdist worker had left it set, so this
    # failed in some test orders ("There is no current event loop in thread 'MainThread'").
    cfg = encryption.parse(config(aesgcm(("key1", secret()))))
    storage = Storage("http://127.0.0.1:1", encryption=cfg)
    obj = {"kind": "Secret", "metadata": {"name": "s1", "resourceVersion": "9"},
           "data": {"p": "aHVudGVyMg=="}}
    stored = storage.encode(KEY.decode(), obj)
    assert stored.startswith(b"k8s:enc:aesgcm:v1:key1:") and b"aHVudGVyMg" not in stored
    back = storage.decode(SimpleNamespace(key=KEY, value=stored, mod_revision=12))
    assert back["data"] == obj["data"] and back["metadata"]["resourceVersion"] == "12"
    cm_key = "/registry/configmaps/default/c"
    assert storage.encode(cm_key, {"metadata": {}}) == b'{"metadata":{}}'


async def test_storage_tls_flags_go_with_https() -> None:
    with pytest.raises(ValueError, match="https:// URLs need --etcd-cafile"):
        Storage("https://127.0.0.1:2379")
    with pytest.raises(ValueError, match="mixes http:// and https://"):
        Storage("https://127.0.0.1:2379,http://127.0.0.2:2379")


def test_yaml_syntax_error_never_echoes_the_secret(tmp_path: Path) -> None:
    """PyYAML's messages quote the offending line: here that line holds the key."""
    secret = base64.b64encode(b"s" * 32).decode()
    path = tmp_path / "enc.yaml"
    path.write_text("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n"
                    "resources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n"
                    f"      keys:\n      - name: k\n        secret: {secret} : oops\n")
    with pytest.raises(ConfigError) as e:
        encryption.load(path)
    assert "not valid YAML: mapping values are not allowed here (line 9" in str(e.value)
    assert secret[-12:] not in str(e.value) and secret[:12] not in str(e.value)
