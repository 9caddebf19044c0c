"""Objects in etcd: keys, compare-and-swap writes, consistent paginated reads, the raw watch.

Kubernetes' storage contract, over the etcd v3 protocol (aetcd's generated stubs, so that we
control `limit`, read revision, compaction and the watch stream ourselves):
- key `/registry/<resource>/<namespace>/<name>` (cluster-scoped: `/registry/<resource>/<name>`),
  value the object's JSON *without* `metadata.resourceVersion`;
- `resourceVersion` is the key's `mod_revision`, filled in on every read;
- every write is one etcd transaction guarded by a compare (create: the key does not exist;
  update/delete: `mod_revision` equals the version the caller read), so concurrent writers get a
  Conflict instead of losing an update. Extra keys (ClusterIP/NodePort claims) ride in the same
  transaction, so an allocation can never leak or be given twice.

Values go through one place each way (`Storage.encode` / `Storage.decode`), where the
`--encryption-provider-config` transformer of the key's resource applies (encryption.py). The
channel to etcd is TLS with a client certificate when `--etcd-servers` are https:// URLs: etcd is
started with client-certificate auth, and the apiserver is its only client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import grpc
from aetcd import rpc

from api import errors
from apiserver import metrics
from apiserver.encryption import IDENTITY, EncryptionConfig, Transformer

log = logging.getLogger(__name__)

REGISTRY = "/registry/"
T = TypeVar("T")


def object_key(resource: str, namespace: str, name: str) -> str:
    if namespace:
        return f"{REGISTRY}{resource}/{namespace}/{name}"
    return f"{REGISTRY}{resource}/{name}"


def prefix_of(resource: str, namespace: str = "") -> str:
    return f"{REGISTRY}{resource}/{namespace}/" if namespace else f"{REGISTRY}{resource}/"


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with `prefix` (etcd's range_end)."""
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\0"


def decode_value(value: bytes, mod_revision: int) -> dict[str, Any]:
    """The stored object with its resourceVersion; ValueError for anything but a JSON object
    (someone wrote the key by hand: the object is unreadable, the server must not fall over)."""
    obj = json.loads(value)
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict):
        raise ValueError("stored value is not a Kubernetes object")
    obj.setdefault("metadata", {})["resourceVersion"] = str(mod_revision)
    return obj


def encode_value(obj: dict[str, Any]) -> bytes:
    md = obj.get("metadata") or {}
    stored = {**obj, "metadata": {k: v for k, v in md.items() if k != "resourceVersion"}}
    return json.dumps(stored, separators=(",", ":")).encode()


@dataclass
class SideEffects:
    """Keys a write claims (must not exist; created with it) or releases (deleted with it)."""

    claims: dict[str, str] = field(default_factory=dict)
    releases: list[str] = field(default_factory=list)

    def compares(self) -> list[rpc.Compare]:
        return [_cmp_absent(k) for k in self.claims]

    def ops(self) -> list[rpc.RequestOp]:
        puts = [_put(k, v.encode()) for k, v in self.claims.items()]
        dels = [_delete(k) for k in self.releases if k not in self.claims]
        return puts + dels


class ClaimTaken(Exception):
    """A key in SideEffects.claims already existed: the caller re-allocates and retries."""


def _cmp_absent(key: str) -> rpc.Compare:
    return rpc.Compare(
        key=key.encode(), target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0
    )


def _cmp_mod(key: str, rev: int) -> rpc.Compare:
    return rpc.Compare(
        key=key.encode(), target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=rev
    )


def _put(key: str, value: bytes, lease: int = 0) -> rpc.RequestOp:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key.encode(), value=value, lease=lease))


def _delete(key: str) -> rpc.RequestOp:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key.encode()))


@dataclass(frozen=True)
class EtcdTLS:
    """The etcd CA and the apiserver's etcd client certificate and key (PEM bytes)."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def load(cls, cafile: str, certfile: str, keyfile: str) -> EtcdTLS:
        """Read the three files; ValueError naming the flag of a file that cannot be read."""
        return cls(read_flag_file("--etcd-cafile", cafile),
                   read_flag_file("--etcd-certfile", certfile),
                   read_flag_file("--etcd-keyfile", keyfile))


def read_flag_file(flag: str, path: str) -> bytes:
    """The bytes of a file a flag names; ValueError `--flag: cannot read PATH: reason`."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{flag}: cannot read {path}: {e.strerror or e}") from None


def parse_endpoints(servers: str) -> tuple[list[str], bool]:
    """host:port of every URL of `--etcd-servers`, and whether they are https (all or none)."""
    out, schemes = [], set()
    for url in (s.strip() for s in servers.split(",")):
        if not url:
            continue
        u = urlparse(url if "://" in url else f"http://{url}")
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"--etcd-servers: not an etcd URL: {url!r} (want https://HOST:PORT)")
        schemes.add(u.scheme)
        out.append(f"{u.hostname}:{u.port or 2379}")
    if not out:
        raise ValueError("--etcd-servers: at least one URL is required")
    if len(schemes) > 1:
        raise ValueError("--etcd-servers: mixes http:// and https:// URLs")
    return out, schemes == {"https"}


class Storage:
    """One gRPC channel to etcd and the verbs the registry needs. All methods raise ApiErrors."""

    def __init__(self, servers: str, timeout: float = 10.0, *, tls: EtcdTLS | None = None,
                 encryption: EncryptionConfig | None = None) -> None:
        self.endpoints, https = parse_endpoints(servers)
        self.check_tls(https, tls)
        self.timeout = timeout
        self.encryption = encryption
        # grpc's round_robin over every endpoint: a dead member is skipped by the channel.
        target = self.endpoints[0]
        if len(self.endpoints) > 1:
            target = "ipv4:" + ",".join(self.endpoints)
        options: list[tuple[str, Any]] = [
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.max_receive_message_length", 256 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        if tls is None:
            self.channel = grpc.aio.insecure_channel(target, options=options)
        else:
            if len(self.endpoints) > 1:
                # An ipv4: target has no single authority; every member's certificate must
                # carry the first URL's host (etcd's server certificates share their SANs).
                options.append(("grpc.ssl_target_name_override",
                                self.endpoints[0].rsplit(":", 1)[0]))
            creds = grpc.ssl_channel_credentials(
                root_certificates=tls.ca_pem, private_key=tls.key_pem,
                certificate_chain=tls.cert_pem)
            self.channel = grpc.aio.secure_channel(target, creds, options=options)
        self.kv = rpc.KVStub(self.channel)
        self.watch_stub = rpc.WatchStub(self.channel)
        self.maintenance = rpc.MaintenanceStub(self.channel)
        self.lease_stub = rpc.LeaseStub(self.channel)

    @staticmethod
    def check_tls(https: bool, tls: EtcdTLS | None) -> None:
        """https:// etcd URLs go with the three --etcd-* TLS flags, http:// without them."""
        if https and tls is None:
            raise ValueError("--etcd-servers: https:// URLs need --etcd-cafile, --etcd-certfile "
                             "and --etcd-keyfile")
        if tls is not None and not https:
            raise ValueError("--etcd-servers: use https:// URLs with --etcd-cafile, "
                             "--etcd-certfile and --etcd-keyfile")

    async def close(self) -> None:
        await self.channel.close()

    def _transformer(self, key: bytes) -> Transformer:
        if self.encryption is None:
            return IDENTITY
        parts = key_parts(key)
        return self.encryption.transformer_for(parts[0]) if parts else IDENTITY

    def encode(self, key: str, obj: dict[str, Any]) -> bytes:
        """The bytes stored at `key`: JSON, encrypted when the resource is configured so."""
        k = key.encode()
        return self._transformer(k).to_storage(encode_value(obj), k)

    def decode(self, kv: Any) -> dict[str, Any]:
        """The object in an etcd KeyValue, with its resourceVersion. ValueError when it cannot
        be read (undecryptable, or not a Kubernetes object): callers log it and skip it."""
        return decode_value(self._transformer(kv.key).from_storage(kv.value, kv.key),
                            kv.mod_revision)

    async def _rpc(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        start = time.perf_counter()
        try:
            return await fn()
        except grpc.aio.AioRpcError as e:
            raise _etcd_error(e) from None
        finally:
            metrics.ETCD_LATENCY.labels(op).observe(time.perf_counter() - start)

    async def wait_ready(self, deadline: float) -> None:
        """Wait until etcd answers (it may start after us, as in a docker-compose lab)."""
        while True:
            try:
                await self.current_revision()
                return
            except errors.ApiError as e:
                if time.monotonic() > deadline:
                    raise
                log.info("waiting for etcd at %s: %s", ",".join(self.endpoints), e)
                await asyncio.sleep(1.0)

    async def current_revision(self) -> int:
        resp = await self._rpc(
            "range",
            lambda: self.kv.Range(
                rpc.RangeRequest(key=b"\0", count_only=True, limit=1), timeout=self.timeout
            ),
        )
        return int(resp.header.revision)

    async def get(self, key: str) -> dict[str, Any] | None:
        resp = await self._rpc(
            "get", lambda: self.kv.Range(rpc.RangeRequest(key=key.encode()), timeout=self.timeout)
        )
        if not resp.kvs:
            return None
        try:
            return self.decode(resp.kvs[0])
        except ValueError as e:
            log.error("cannot read %s: %s", key, e)
            raise errors.InternalError(message=f"cannot read {key} from storage: {e}") from None

    async def range(
        self, start: bytes, end: bytes, limit: int = 0, revision: int = 0, keys_only: bool = False
    ) -> tuple[list[Any], bool, int, int]:
        """(kvs, more, count, header revision) of [start, end) as of `revision` (0 = now)."""
        req = rpc.RangeRequest(
            key=start, range_end=end, limit=limit, revision=revision, keys_only=keys_only
        )
        resp = await self._rpc("list", lambda: self.kv.Range(req, timeout=self.timeout))
        return list(resp.kvs), bool(resp.more), int(resp.count), int(resp.header.revision)

    async def _txn(
        self, compares: list[rpc.Compare], success: list[rpc.RequestOp], op: str,
        failure: list[rpc.RequestOp] | None = None,
    ) -> Any:
        req = rpc.TxnRequest(compare=compares, success=success, failure=failure or [])
        return await self._rpc(op, lambda: self.kv.Txn(req, timeout=self.timeout))

    async def grant_lease(self, ttl: int) -> int:
        """An etcd lease: keys attached to it vanish `ttl` seconds later (event expiry)."""
        resp = await self._rpc(
            "lease", lambda: self.lease_stub.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl),
                                                        timeout=self.timeout))
        return int(resp.ID)

    async def create(self, key: str, obj: dict[str, Any], fx: SideEffects | None = None,
                     lease: int = 0) -> int:
        """Store a new object; returns its resourceVersion. AlreadyExists / ClaimTaken."""
        fx = fx or SideEffects()
        resp = await self._txn(
            [_cmp_absent(key), *fx.compares()],
            [_put(key, self.encode(key, obj), lease), *fx.ops()],
            "create", failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key.encode()))],
        )
        if resp.succeeded:
            return int(resp.header.revision)
        if resp.responses[0].response_range.kvs:
            raise errors.AlreadyExists(message="already exists")
        raise ClaimTaken()

    async def update(
        self, key: str, obj: dict[str, Any], expected_rv: int, fx: SideEffects | None = None,
        lease: int = 0,
    ) -> int:
        """Compare-and-swap on mod_revision; returns the new resourceVersion.

        Conflict when the object changed since `expected_rv`, NotFound when it is gone,
        ClaimTaken when a claimed key was taken meanwhile.
        """
        fx = fx or SideEffects()
        resp = await self._txn(
            [_cmp_mod(key, expected_rv), *fx.compares()],
            [_put(key, self.encode(key, obj), lease), *fx.ops()],
            "update", failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key.encode()))],
        )
        if resp.succeeded:
            return int(resp.header.revision)
        self._raise_cas_failure(resp, expected_rv)
        raise ClaimTaken()

    async def delete(self, key: str, expected_rv: int, fx: SideEffects | None = None) -> int:
        fx = fx or SideEffects()
        resp = await self._txn(
            [_cmp_mod(key, expected_rv)], [_delete(key), *fx.ops()], "delete",
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key.encode()))],
        )
        if resp.succeeded:
            return int(resp.header.revision)
        self._raise_cas_failure(resp, expected_rv)
        raise errors.Conflict(message="the object has been modified")  # pragma: no cover

    @staticmethod
    def _raise_cas_failure(resp: Any, expected_rv: int) -> None:
        kvs = resp.responses[0].response_range.kvs
        if not kvs:
            raise errors.NotFound(message="not found")
        if kvs[0].mod_revision != expected_rv:
            raise errors.Conflict(
                message="the object has been modified; please apply your changes to the latest "
                "version and try again"
            )

    async def compact(self, revision: int) -> None:
        await self._rpc(
            "compact",
            lambda: self.kv.Compact(rpc.CompactionRequest(revision=revision), timeout=self.timeout),
        )

    async def watch(self, start_revision: int) -> AsyncIterator[Any]:
        """Every change to every key from `start_revision` on, in revision order (with prev_kv).

        Yields etcd WatchResponses. Raises errors.Gone when `start_revision` was compacted.
        """
        requests: asyncio.Queue[rpc.WatchRequest] = asyncio.Queue()
        await requests.put(rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
            key=b"\0", range_end=b"\0", start_revision=start_revision, prev_kv=True,
            progress_notify=True,
        )))

        async def request_iter() -> AsyncIterator[rpc.WatchRequest]:
            while True:
                yield await requests.get()

        call = self.watch_stub.Watch(request_iter())
        try:
            async for resp in call:
                if resp.compact_revision:
                    raise errors.Gone(
                        message=f"etcd watch from {start_revision}: compacted at "
                        f"{resp.compact_revision}"
                    )
                if resp.canceled:
                    raise errors.ServiceUnavailable(message=f"etcd watch canceled: "
                                                    f"{resp.cancel_reason}")
                yield resp
        except grpc.aio.AioRpcError as e:
            raise _etcd_error(e) from None
        finally:
            call.cancel()


def _etcd_error(e: grpc.aio.AioRpcError) -> errors.ApiError:
    details = e.details() or ""
    if "compacted" in details:
        return errors.Gone(message=f"etcd: {details}")
    if "future revision" in details:
        return errors.BadRequest(message=f"etcd: {details}")
    if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return errors.ServiceUnavailable(message=f"etcd unavailable: {details}")
    if "request is too large" in details:
        return errors.RequestEntityTooLarge(message=f"etcd: {details}")
    return errors.InternalError(message=f"etcd: {e.code().name}: {details}")


def key_parts(key: bytes) -> tuple[str, str, str] | None:
    """(resource, namespace, name) of a registry key, or None for keys that are not objects."""
    s = key.decode(errors="replace")
    if not s.startswith(REGISTRY):
        return None
    parts = s[len(REGISTRY):].split("/")
    if len(parts) == 2:
        return parts[0], "", parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return None



class LeaseReuse:
    """Hands out etcd leases for keys that expire (Events), one lease per window of writes.

    Granting a lease per write would double the etcd traffic of every event; upstream's lease
    manager shares one lease among the writes of a short window and pads its TTL by that window,
    so no key lives less than the asked TTL. Same here.
    """

    def __init__(self, storage: Storage, ttl: int, window: float = 60.0) -> None:
        self.storage = storage
        self.ttl = ttl
        self.window = min(window, max(ttl * 0.05, 1.0))
        self._lease = 0
        self._granted = 0.0
        self._lock = asyncio.Lock()

    async def lease(self) -> int:
        async with self._lock:
            now = time.monotonic()
            if not self._lease or now - self._granted > self.window:
                self._lease = await self.storage.grant_lease(int(self.ttl + self.window))
                self._granted = now
            return self._lease
