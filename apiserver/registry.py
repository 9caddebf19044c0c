"""The generic registry: what each API verb means, for every resource, on top of storage.

This is Kubernetes' `genericregistry.Store`: decode → default → validate → admit →
compare-and-swap, written once for every resource, with the rules that make an API server more
than a key-value store. What differs between kinds it asks the kind's strategy
(apiserver/strategies.py, `strategy_for(info)`, as upstream's store asks its
RESTCreateStrategy/RESTUpdateStrategy/RESTDeleteStrategy); it never asks a resource's name.
- create sets uid, creationTimestamp and generation, refuses objects in a missing or terminating
  namespace, lets the strategy prepare the object (status a client may not set, a kind's
  initial state) and admission default it, and generates names;
- update is optimistic (a stale resourceVersion is a Conflict; without one the server retries on
  its own), keeps system metadata, keeps what the strategy says a plain update may not change
  (status: only the `status` subresource changes it; generation bumps on spec changes), and is
  a no-op when nothing changed; an update of a missing object creates it where the strategy
  allows;
- patch is the same read-modify-update loop over JSON merge patch, JSON patch or strategic merge
  patch (api/strategicpatch.py), or server-side apply (api/apply.py: field ownership in
  managedFields, conflicts between managers, create when missing);
- delete honours preconditions, the strategy's grace period (pods) and deletion state
  (namespaces turn Terminating), finalizers (deletionTimestamp first, the object goes with its
  last finalizer) and records the propagation policy as the garbage collector's finalizer
  (`orphan`, `foregroundDeletion`);
- every write goes through one compare-and-swap loop (`_guaranteed_update`): the updates, the
  patches, the scale subresource, pods/binding and the eviction's pod condition.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import copy
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jsonpatch

from api import apply as server_side_apply
from api import errors
from api.codec import decode, decode_model
from api.defaults import apply_defaults
from api.meta import TypedObject, now_rfc3339
from api.patch import merge_patch
from api.policy import DeleteOptions, Eviction, Preconditions
from api.proto import tinykube_pb2 as pb
from api.resources import SCALE_MODEL, ResourceInfo
from api.selectors import parse_field_selector, parse_label_selector
from api.strategicpatch import strategic_merge_patch
from apiserver.admission import Admission
from apiserver.auth import (
    FIELD_MANAGER,
    FIELD_VALIDATION,
    FORCE_APPLY,
    Attributes,
    Authorizer,
    current_user,
)
from apiserver.authz import require
from apiserver.reviews import Reviews
from apiserver.storage import (
    ClaimTaken,
    LeaseReuse,
    SideEffects,
    Storage,
    object_key,
    prefix_end,
    prefix_of,
)
from apiserver.strategies import Strategy, UpdateStrategy, conflict, pod_strategy, strategy_for
from apiserver.tokens import TokenIssuer, TokenVerifier
from apiserver.watchcache import WatchCache

log = logging.getLogger(__name__)

MAX_OBJECT_BYTES = 1536 * 1024  # etcd's default request limit, as kube-apiserver enforces
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet
_SYSTEM_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                "generation")
_GC_FINALIZERS = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}

Obj = dict[str, Any]
# Writes one attempt (object, its allocation side effects, its etcd lease); returns the new rv.
Write = Callable[[Obj, SideEffects, int], Awaitable[int]]
# One attempt of a compare-and-swap loop: from the stored object, the object to write...
Prepare = Callable[[Obj], Obj]
# ... and the write of it (stored, new) → what the verb answers; raises Conflict when the
# stored object changed meanwhile.
Commit = Callable[[Obj, Obj], Awaitable[Obj]]


@dataclass
class Result:
    object: Obj
    warnings: list[str]


def _not_found(info: ResourceInfo, name: str) -> errors.NotFound:
    return errors.NotFound(message=f'{info.qualified_name} "{name}" not found', kind=info.name,
                           name=name, group=info.group)


def _no_subresource(info: ResourceInfo, sub: str) -> errors.NotFound:
    return errors.NotFound(message=f"the server could not find the requested resource "
                           f"({info.qualified_name}/{sub})", kind=info.name)


def _json_object(raw: bytes, what: str = "object") -> Obj:
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.BadRequest(message=f"{what} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise errors.BadRequest(message=f"{what} must be a JSON object, got "
                                f"{type(data).__name__}")
    return data


def _md(obj: Obj) -> dict[str, Any]:
    md = obj.setdefault("metadata", {})
    assert isinstance(md, dict)
    return md


def _rv(obj: Obj) -> int:
    return int(_md(obj).get("resourceVersion") or 0)


def _strip_rv(obj: Obj) -> Obj:
    return {**obj, "metadata": {k: v for k, v in _md(obj).items() if k != "resourceVersion"}}


def _labels_of(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


class Registry:
    def __init__(self, storage: Storage, cache: WatchCache, admission: Admission,
                 event_ttl: int = 3600, *, tokens: TokenIssuer | None = None,
                 token_verifier: TokenVerifier | None = None,
                 authorizer: Authorizer | None = None) -> None:
        self.storage = storage
        self.cache = cache
        self.admission = admission
        self.authorizer = authorizer
        # Reviews and TokenRequests: creates that are answered, never stored.
        self.reviews = Reviews(storage, admission, tokens=tokens, token_verifier=token_verifier,
                               authorizer=authorizer)
        # Events expire like upstream's --event-ttl: their keys ride on an etcd lease.
        self.event_leases = LeaseReuse(storage, event_ttl)

    # --- decoding and preparing -----------------------------------------------------------

    @staticmethod
    def _decode(info: ResourceInfo, data: Obj) -> tuple[TypedObject, list[str]]:
        """Parse and default one object; unknown fields come back as warnings, or refuse the
        request, or are dropped silently, as the request's fieldValidation asks."""
        model, warnings = decode(info, data)
        if warnings:
            mode = FIELD_VALIDATION.get()
            if mode == "Strict":
                raise errors.BadRequest(message="strict decoding error: " + ", ".join(warnings))
            if mode == "Ignore":
                warnings = []
        apply_defaults(model)
        return model, warnings

    def _prepare(self, info: ResourceInfo, data: Obj) -> tuple[Obj, list[str]]:
        """`_decode`, normalized back to the JSON form we store."""
        model, warnings = self._decode(info, data)
        return model.to_dict(), warnings

    def _check_size(self, info: ResourceInfo, obj: Obj) -> None:
        size = len(json.dumps(obj, separators=(",", ":")))
        if size > MAX_OBJECT_BYTES:
            raise errors.RequestEntityTooLarge(
                message=f'{info.qualified_name} "{_md(obj).get("name", "")}" is too large: {size} '
                f"bytes; the limit is {MAX_OBJECT_BYTES} bytes (1.5 MiB)")

    @staticmethod
    def _namespace_for(strategy: Strategy, request_ns: str, obj: Obj) -> str:
        md = _md(obj)
        if not strategy.namespace_scoped:
            md.pop("namespace", None)
            return ""
        obj_ns = md.get("namespace") or ""
        if request_ns and obj_ns and request_ns != obj_ns:
            raise errors.BadRequest(
                message="the namespace of the provided object does not match the namespace "
                f"sent on the request ({obj_ns} != {request_ns})")
        ns = request_ns or obj_ns or "default"
        md["namespace"] = ns
        return ns

    # --- create ---------------------------------------------------------------------------

    async def create(self, info: ResourceInfo, namespace: str, raw: bytes,
                     dry_run: bool = False, *, name: str = "", subresource: str = "") -> Result:
        data = _json_object(raw)
        if subresource:
            return await self._create_subresource(info, namespace, name, subresource, data,
                                                  dry_run)
        strategy = strategy_for(info)
        model, warnings = self._decode(info, data)
        # Validated once, here: what the strategy and admission add later is valid by
        # construction.
        strategy.validate(model)
        if info.virtual:
            return Result(await self.reviews.create(info, model), warnings)
        obj = model.to_dict()
        ns = self._namespace_for(strategy, namespace, obj)
        md = _md(obj)
        if md.get("resourceVersion"):
            raise errors.BadRequest(
                message="resourceVersion should not be set on objects to be created")
        if not md.get("name") and not md.get("generateName"):
            raise errors.invalid(info.kind, "", [errors.Cause(
                "metadata.name", "Required value: name or generateName is required",
                "FieldValueRequired")])
        generated = not md.get("name")
        for _ in range(8):
            if generated:
                # Upstream's limit: the prefix is cut so that prefix + 5 characters fit in 63.
                md["name"] = md["generateName"][:58] + "".join(random.choices(_NAME_CHARS, k=5))
            try:
                return Result(await self._create_once(strategy, ns, obj, dry_run), warnings)
            except errors.AlreadyExists:
                if not generated:
                    raise
        raise errors.AlreadyExists(
            message=f'{info.qualified_name} "{md["name"]}" already exists: could not generate a '
            "unique name; try again", kind=info.name, name=md["name"])

    async def _create_subresource(self, info: ResourceInfo, ns: str, name: str, sub: str,
                                  data: Obj, dry_run: bool) -> Result:
        """A create on a subresource of an existing object: serviceaccounts/NAME/token,
        pods/NAME/eviction."""
        self._check_subresource(info, sub, ("token", "eviction"))
        if not name:
            raise errors.BadRequest(message=f"{info.qualified_name}/{sub}: a create on a "
                                    "subresource needs the object's name")
        if sub == "eviction":
            return Result(await self._evict(info, ns, name, data, dry_run), [])
        return Result(await self.reviews.token_request(ns, name, data, dry_run), [])

    async def _evict(self, info: ResourceInfo, ns: str, name: str, data: Obj,
                     dry_run: bool) -> Obj:
        """pods/eviction: a graceful delete with the Eviction's deleteOptions.

        Upstream first checks the PodDisruptionBudgets that cover the pod (429 when one would
        be violated); tinykube has none, so every eviction is allowed. The answer is upstream's:
        201 with a Status of Success.
        """
        version = data.get("apiVersion") if data.get("apiVersion") == "policy/v1beta1" else None
        model, _ = decode_model(Eviction, data, api_version=version)
        if model.metadata.name and model.metadata.name != name:
            raise errors.BadRequest(message="name in URL does not match name in Eviction object",
                                    kind="Eviction", name=name)
        if model.metadata.namespace and model.metadata.namespace != ns:
            raise errors.BadRequest(
                message="namespace in URL does not match namespace in Eviction object",
                kind="Eviction", name=name)
        o = model.delete_options or DeleteOptions()
        pre = o.preconditions or Preconditions()
        if o.grace_period_seconds is not None and o.grace_period_seconds < 0:
            raise errors.invalid("Eviction", name, [errors.Cause(
                "deleteOptions.gracePeriodSeconds",
                f"Invalid value: {o.grace_period_seconds}: must be >= 0", "FieldValueInvalid")])
        opts = pb.DeleteOptions(
            grace_period_seconds=-1 if o.grace_period_seconds is None else o.grace_period_seconds,
            propagation_policy=o.propagation_policy or "", precondition_uid=pre.uid or "",
            precondition_resource_version=pre.resource_version or "",
            dry_run=dry_run or "All" in (o.dry_run or []))
        if not opts.dry_run:
            rv = await self._add_disruption_target(ns, name, opts)
            if opts.precondition_resource_version:
                # We changed the pod: the caller's resourceVersion held for the version we
                # updated, so the delete checks ours (as upstream bumps it).
                opts.precondition_resource_version = rv
        await self.delete(info, ns, name, opts)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}

    async def _add_disruption_target(self, ns: str, name: str, opts: pb.DeleteOptions) -> str:
        """The pod's DisruptionTarget condition (the pod strategy's), written through its status
        before an eviction deletes it. The delete's preconditions are checked against the pod
        updated here. Returns the pod's resourceVersion afterwards."""
        pods = pod_strategy()

        def transform(cur: Obj) -> Obj:
            self._check_preconditions(pods.info, name, cur, opts)
            return pods.with_disruption_target(cur)
        out = await self._update_loop(pods, ns, name, "status", transform, "", False)
        return str(_md(out).get("resourceVersion") or "")

    async def _create_once(self, strategy: Strategy, ns: str, obj: Obj, dry_run: bool) -> Obj:
        info = strategy.info
        obj = copy.deepcopy(obj)
        md = _md(obj)
        md.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            md.pop(k, None)
        strategy.prepare_for_create(obj)
        self.admission.mutate(strategy, obj)
        strategy.canonicalize(obj)
        await self.admission.validate("CREATE", info, "", ns, md["name"], obj, None)
        if ns:
            await self.admission.check_namespace(ns)
        self._check_size(info, obj)
        if dry_run:
            await self.admission.allocate(strategy, obj, None)
            return obj
        key = object_key(info.name, ns, md["name"])
        try:
            return await self._write_allocating(
                strategy, obj, None, lambda o, fx, lease: self.storage.create(key, o, fx, lease))
        except errors.AlreadyExists:
            raise errors.AlreadyExists(
                message=f'{info.qualified_name} "{md["name"]}" already exists', kind=info.name,
                name=md["name"], group=info.group) from None

    async def _write_allocating(self, strategy: Strategy, obj: Obj, old: Obj | None,
                                write: Write) -> Obj:
        """Allocate the object's ClusterIP/NodePorts and write it, in one transaction.

        Allocation writes what it picks into the object, so each attempt starts from a fresh
        copy: when another request claimed a picked value first (ClaimTaken), the next attempt
        picks again instead of insisting on a value that is now someone else's.
        """
        for _ in range(16):
            # Only allocation writes into the object: anything else shares `obj`'s subtrees
            # (read only from here on) and needs its own metadata for the resourceVersion.
            attempt = (copy.deepcopy(obj) if strategy.allocates
                       else {**obj, "metadata": dict(_md(obj))})
            fx = await self.admission.allocate(strategy, attempt, old)
            try:
                rv = await write(attempt, fx, await strategy.lease(self.event_leases))
            except ClaimTaken:
                continue
            _md(attempt)["resourceVersion"] = str(rv)
            return attempt
        raise errors.InternalError(message="could not allocate: too much contention")

    # --- get / list -----------------------------------------------------------------------

    async def _current(self, info: ResourceInfo, ns: str, name: str) -> Obj:
        obj = await self.storage.get(object_key(info.name, ns, name))
        if obj is None:
            raise _not_found(info, name)
        return obj

    def _cached(self, info: ResourceInfo, ns: str, name: str) -> Obj | None:
        """The object as the watch cache holds it, for the first attempt of a write.

        Every write is a compare-and-swap on the resourceVersion it read, so a copy a few
        milliseconds stale costs a Conflict and a second attempt from etcd, never a lost
        update; what a write *decides* without writing (a refusal, a no-op) is only trusted
        from etcd. Upstream's GuaranteedUpdate starts from its cache the same way, and this
        saves one etcd round trip per write. The object is the cache's own: read it, never
        modify it.
        """
        return self.cache.get(info.name, f"{ns}/{name}" if ns else name)

    async def get(self, info: ResourceInfo, ns: str, name: str, subresource: str = "") -> Obj:
        self._check_subresource(info, subresource, ("", "status", "scale"))
        strategy = strategy_for(info)
        obj = await self._current(info, ns if strategy.namespace_scoped else "", name)
        return strategy.scale_of(obj) if subresource == "scale" else obj

    @staticmethod
    def _check_subresource(info: ResourceInfo, sub: str, allowed: tuple[str, ...]) -> None:
        if sub and (sub not in info.subresources or sub not in allowed):
            raise _no_subresource(info, sub)

    def matcher(self, info: ResourceInfo, opts: pb.ListOptions) -> Callable[[Obj], bool]:
        label = parse_label_selector(opts.label_selector)
        fields = parse_field_selector(opts.field_selector, strategy_for(info).field_selectors)
        if label.empty and not opts.field_selector:
            return lambda _o: True
        return lambda o: label.matches(_labels_of(o)) and fields.matches(o)

    async def list(self, info: ResourceInfo, ns: str, opts: pb.ListOptions) -> Obj:
        ns = ns if strategy_for(info).namespace_scoped else ""
        matches = self.matcher(info, opts)
        if opts.limit < 0:
            raise errors.BadRequest(message=f"limit: Invalid value: {opts.limit}: must be >= 0")
        if opts.resource_version == "0" and not opts.continue_token:
            items, rv = self.cache.list(info.name, ns, matches)
            return self._list_obj(info, items, rv, "", None)
        return await self._list_etcd(info, ns, opts, matches)

    async def _list_etcd(self, info: ResourceInfo, ns: str, opts: pb.ListOptions,
                         matches: Callable[[Obj], bool]) -> Obj:
        prefix = prefix_of(info.name, ns).encode()
        end = prefix_end(prefix)
        start, revision = prefix, 0
        if opts.continue_token:
            start, revision = _decode_continue(opts.continue_token, prefix)
        limit = opts.limit
        items: builtins.list[Obj] = []
        unfiltered = not opts.label_selector and not opts.field_selector
        while True:
            batch = limit - len(items) if limit else 0
            if limit and not unfiltered:
                batch = max(batch, 100)  # keep reading until `limit` objects match
            try:
                kvs, more, count, header_rev = await self.storage.range(
                    start, end, limit=batch, revision=revision)
            except errors.Gone:
                raise errors.Gone(
                    message="The provided continue parameter is too old to display a consistent "
                    "list result. You can start a new list without the continue parameter."
                ) from None
            except errors.BadRequest:
                raise errors.BadRequest(message="continue key is not valid: its revision is in "
                                        "the future") from None
            revision = revision or header_rev
            for i, kv in enumerate(kvs):
                try:
                    obj = self.storage.decode(kv)
                except ValueError:
                    log.error("skipping undecodable value at %r", kv.key)
                    continue
                if matches(obj):
                    items.append(obj)
                if limit and len(items) >= limit and (i < len(kvs) - 1 or more):
                    token = _encode_continue(kv.key + b"\0", revision)
                    remaining = count - (i + 1) if unfiltered else None
                    return self._list_obj(info, items, revision, token, remaining)
            if not more or not kvs:
                return self._list_obj(info, items, revision, "", None)
            start = kvs[-1].key + b"\0"

    @staticmethod
    def _list_obj(info: ResourceInfo, items: builtins.list[Obj], rv: int, token: str,
                  remaining: int | None) -> Obj:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if token:
            meta["continue"] = token
        if remaining:
            meta["remainingItemCount"] = remaining
        return {"apiVersion": info.api_version, "kind": info.list_kind, "metadata": meta,
                "items": items}

    # --- update / patch -------------------------------------------------------------------

    async def update(self, info: ResourceInfo, ns: str, name: str, subresource: str, raw: bytes,
                     dry_run: bool = False) -> Result:
        strategy = strategy_for(info)
        ns = ns if strategy.namespace_scoped else ""
        data = _json_object(raw)
        if subresource == "scale":
            self._check_subresource(info, subresource, ("scale",))
            return Result(await self._update_scale(strategy, ns, name, data, dry_run), [])
        update = self._update_strategy(strategy, subresource)  # NotFound if none is served
        obj, warnings = self._prepare(info, data)
        md = _md(obj)
        if md.get("name") and md["name"] != name:
            raise errors.BadRequest(message=f"the name of the object ({md['name']}) does not "
                                    f"match the name on the URL ({name})")
        md["name"] = name
        obj_ns = self._namespace_for(strategy, ns, obj)
        user_rv = str(md.get("resourceVersion") or "")
        try:
            result = await self._update_loop(
                strategy, ns, name, subresource,
                # Each attempt gets its own copy when the merge fills it in.
                (lambda cur: copy.deepcopy(obj)) if update.modifies_new else (lambda cur: obj),
                user_rv, dry_run)
        except errors.NotFound:
            if subresource or not strategy.allow_create_on_update:
                raise
            self._authorize_create(info, obj_ns)
            md.pop("resourceVersion", None)
            return await self.create(info, ns, json.dumps(obj).encode(), dry_run)
        return Result(result, warnings)

    @staticmethod
    def _update_strategy(strategy: Strategy, subresource: str) -> UpdateStrategy:
        update = strategy.for_update(subresource)
        if update is None:
            raise _no_subresource(strategy.info, subresource)
        return update

    def _authorize_create(self, info: ResourceInfo, ns: str) -> None:
        """An update that creates must also be allowed to create, as upstream's update
        handler asks the authorizer (`create`, no name) before it turns into a create."""
        user = current_user()
        if self.authorizer is None or user is None:
            return  # the apiserver's own writes
        require(self.authorizer, Attributes(user, "create", resource=info.name,
                                            api_group=info.group, namespace=ns))

    async def patch(self, info: ResourceInfo, ns: str, name: str, subresource: str,
                    patch_type: str, raw: bytes, dry_run: bool = False) -> Result:
        strategy = strategy_for(info)
        ns = ns if strategy.namespace_scoped else ""
        patch = _parse_patch(patch_type, raw)
        if subresource == "scale":
            self._check_subresource(info, subresource, ("scale",))
            cur_scale = strategy.scale_of(await self._current(info, ns, name))
            scale = _apply_patch(cur_scale, patch_type, patch, SCALE_MODEL)
            if scale.get("metadata", {}).get("resourceVersion") == cur_scale["metadata"].get(
                    "resourceVersion"):
                # Read here, not sent by the client: no precondition, so a concurrent status
                # write does not fail the patch (upstream patches inside its update retry).
                scale["metadata"].pop("resourceVersion", None)
            return Result(await self._update_scale(strategy, ns, name, scale, dry_run), [])
        self._check_subresource(info, subresource, ("", "status"))
        if patch_type == "apply":
            return await self._server_side_apply(strategy, ns, name, subresource, patch, dry_run)
        warnings: list[str] = []

        def transform(cur: Obj) -> Obj:
            patched = _apply_patch(cur, patch_type, patch, info.model)
            obj, w = self._prepare(info, patched)
            warnings[:] = w
            return obj

        # A resourceVersion inside the patch is a precondition, as in Kubernetes.
        user_rv = ""
        if isinstance(patch, dict) and isinstance(patch.get("metadata"), dict):
            user_rv = str(patch["metadata"].get("resourceVersion") or "")
        result = await self._update_loop(strategy, ns, name, subresource, transform, user_rv,
                                         dry_run)
        return Result(result, warnings)

    async def _server_side_apply(self, strategy: Strategy, ns: str, name: str,
                                 subresource: str, applied: Obj, dry_run: bool) -> Result:
        """A manager's applied configuration merged into the object, or the object created
        from it (api/apply.py: ownership, conflicts, removals)."""
        info = strategy.info
        manager = FIELD_MANAGER.get()
        if not manager:
            raise errors.invalid("PatchOptions.meta.k8s.io", "", [errors.Cause(
                "fieldManager", "Required value: is required for apply patch",
                "FieldValueRequired")])
        md = applied.get("metadata")
        if not isinstance(md, dict) or md.get("name", name) != name:
            raise errors.BadRequest(message="the name of the applied object must match the "
                                    f'name in the URL ("{name}")')
        if applied.get("apiVersion") != info.api_version or applied.get("kind") != info.kind:
            raise errors.BadRequest(message=f"an apply to {info.qualified_name} must be a "
                                    f"{info.kind} of apiVersion {info.api_version}")
        force = FORCE_APPLY.get()
        warnings: list[str] = []

        def transform(cur: Obj) -> Obj:
            new = server_side_apply.apply(cur, applied, info.model, manager, force,
                                          info.api_version)
            obj, w = self._prepare(info, new)
            warnings[:] = w
            return obj

        try:
            out = await self._update_loop(strategy, ns, name, subresource, transform, "",
                                          dry_run)
        except errors.NotFound:
            if subresource:
                raise
            self._authorize_create(info, ns)
            obj = server_side_apply.apply(None, applied, info.model, manager, force,
                                          info.api_version)
            if strategy.namespace_scoped:
                obj["metadata"]["namespace"] = ns
            return await self.create(info, ns, json.dumps(obj).encode(), dry_run)
        return Result(out, warnings)

    async def _guaranteed_update(self, info: ResourceInfo, ns: str, name: str,
                                 prepare: Prepare, commit: Commit, user_rv: str = "",
                                 cached: bool = True) -> Obj:
        """Read, prepare, compare-and-swap; retried on conflict unless the caller pinned RV.

        The one loop every write of an existing object goes through (upstream's
        GuaranteedUpdate): `prepare` turns the stored object into the one to write (or refuses,
        with an ApiError), `commit` writes it with a compare-and-swap on the resourceVersion
        read. With `cached`, the first read is the watch cache's (`_cached`); a refusal, a
        conflict or a no-op (`commit` answering the stored object itself) found against it is
        checked again against etcd before it is answered.
        """
        for _ in range(33):
            cur = self._cached(info, ns, name) if cached else None
            if cur is None:
                cached = False
                cur = await self._current(info, ns, name)
            try:
                if user_rv and user_rv != _md(cur)["resourceVersion"]:
                    raise conflict(info, name)
                new = prepare(cur)
            except errors.ApiError:
                if not cached:
                    raise
                cached = False
                continue
            try:
                out = await commit(cur, new)
            except errors.Conflict:
                if user_rv and not cached:
                    raise conflict(info, name) from None
                cached = False
                continue
            except errors.NotFound:
                raise _not_found(info, name) from None
            except errors.ApiError:
                if not cached:
                    raise
                cached = False
                continue
            if cached and out is cur:
                cached = False  # "nothing changed" holds only against etcd's copy
                continue
            return out
        raise conflict(info, name, "too many concurrent writers; try again")

    async def _update_loop(self, strategy: Strategy, ns: str, name: str, subresource: str,
                           transform: Callable[[Obj], Obj], user_rv: str, dry_run: bool) -> Obj:
        """An update of the object or of a subresource, merged by its update strategy.

        `transform` returns the object the client wants from the stored one; it returns an
        object of its own each time when the update strategy fills it in (`modifies_new`).
        A dry run writes nothing that a compare-and-swap could check, so it reads etcd.
        """
        info = strategy.info
        update = self._update_strategy(strategy, subresource)

        def prepare(cur: Obj) -> Obj:
            new = self._merge_update(strategy, update, cur, transform(cur))
            if update.records_managed_fields:
                # Who owns what this write changed (server-side apply's record); the
                # managedFields a client left out are kept.
                server_side_apply.record_update(cur, new, info.model, FIELD_MANAGER.get(),
                                                info.api_version)
            return new

        def commit(cur: Obj, new: Obj) -> Awaitable[Obj]:
            return self._write_update(strategy, update, ns, name, subresource, cur, new,
                                      dry_run)

        return await self._guaranteed_update(info, ns, name, prepare, commit, user_rv,
                                             cached=not dry_run)

    def _merge_update(self, strategy: Strategy, update: UpdateStrategy, cur: Obj,
                      new: Obj) -> Obj:
        """The object to store: what the caller may change, on top of what only we may."""
        if update is not strategy:
            return update.prepare_for_update(new, cur)  # a subresource: its own rules
        info = strategy.info
        md, cur_md = _md(new), _md(cur)
        # The object stays under its key: a patch that drops (null, "") name or namespace
        # gets them back, as upstream fills them from the request. Validation refuses only a
        # *different* value, and a RoleBinding stored without its namespace would read as a
        # ClusterRoleBinding.
        for k in ("name", "namespace"):
            if cur_md.get(k):
                md[k] = md.get(k) or cur_md[k]
            else:
                md.pop(k, None)
        if md.get("uid") and md["uid"] != cur_md.get("uid"):
            raise conflict(info, cur_md.get("name", ""), "Precondition failed: UID in "
                           f"precondition: {md['uid']}, UID in object meta: {cur_md.get('uid')}")
        for k in _SYSTEM_META:
            if k in cur_md:
                md[k] = cur_md[k]
            else:
                md.pop(k, None)
        added = set(md.get("finalizers") or []) - set(cur_md.get("finalizers") or [])
        if cur_md.get("deletionTimestamp") and added:
            raise errors.invalid(info.kind, md.get("name", ""), [errors.Cause(
                "metadata.finalizers",
                f"Forbidden: no new finalizers can be added if the object is being deleted, "
                f"found new finalizers {sorted(added)}", "FieldValueForbidden")])
        return strategy.prepare_for_update(new, cur)

    async def _write_update(self, strategy: Strategy, update: UpdateStrategy, ns: str,
                            name: str, subresource: str, cur: Obj, new: Obj,
                            dry_run: bool) -> Obj:
        info = strategy.info
        # Admission sees even a no-op write: whether the caller may write is not a question of
        # whether the write changes anything.
        await self.admission.validate("UPDATE", info, subresource, ns, name, new, cur)
        rv = _rv(cur)
        _md(new)["resourceVersion"] = str(rv)
        if _strip_rv(new) == _strip_rv(cur):
            return cur  # nothing changed: no write, no new resourceVersion, no watch event
        update.validate_update(new, cur)
        strategy.canonicalize(new)
        self._check_size(info, new)
        if dry_run:
            return new
        key = object_key(info.name, ns, name)
        if strategy.finalized(new):
            fx = self.admission.release(strategy, cur)
            # As upstream's store: the object returned carries the deletion's revision (the
            # update that removed the last finalizer did change it; clients compare).
            _md(new)["resourceVersion"] = str(await self.storage.delete(key, rv, fx))
            return new
        return await self._write_allocating(
            strategy, new, cur, lambda o, fx, lease: self.storage.update(key, o, rv, fx, lease))

    # --- scale ----------------------------------------------------------------------------

    async def _update_scale(self, strategy: Strategy, ns: str, name: str, scale: Obj,
                            dry_run: bool) -> Obj:
        spec, meta = scale.get("spec"), scale.get("metadata")
        if not isinstance(spec, dict) or not isinstance(meta, dict | None):
            raise errors.BadRequest(message="a Scale must have an object `spec` (and `metadata`)")
        replicas = spec.get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid("Scale", name, [errors.Cause(
                "spec.replicas", f"Invalid value: {json.dumps(replicas)}: must be greater than "
                "or equal to 0")])
        user_rv = str((meta or {}).get("resourceVersion") or "")
        obj = await self._update_loop(strategy, ns, name, "",
                                      lambda cur: strategy.set_replicas(cur, replicas), user_rv,
                                      dry_run)
        return strategy.scale_of(obj)

    # --- delete ---------------------------------------------------------------------------

    async def delete(self, info: ResourceInfo, ns: str, name: str,
                     opts: pb.DeleteOptions) -> Obj:
        strategy = strategy_for(info)
        ns = ns if strategy.namespace_scoped else ""
        policy = opts.propagation_policy
        if policy not in ("", "Background", "Foreground", "Orphan"):
            raise errors.BadRequest(message=f'propagationPolicy: Unsupported value: "{policy}": '
                                    'supported values: "Background", "Foreground", "Orphan"')
        if strategy.protected(name):
            raise errors.Forbidden(message=f'{info.qualified_name} "{name}" is forbidden: this '
                                   f"{info.singular} may not be deleted", kind=info.name,
                                   name=name)
        for _ in range(32):
            cur = await self._current(info, ns, name)
            self._check_preconditions(info, name, cur, opts)
            await self.admission.validate("DELETE", info, "", ns, name, None, cur)
            new = self._deletion_state(strategy, cur, opts)
            try:
                if new is None:
                    if not opts.dry_run:
                        fx = self.admission.release(strategy, cur)
                        deleted = await self.storage.delete(object_key(info.name, ns, name),
                                                            _rv(cur), fx)
                        # A new metadata dict: `cur` may be the watch cache's own copy.
                        cur = {**cur, "metadata": {**_md(cur), "resourceVersion": str(deleted)}}
                    return cur
                if opts.dry_run or _strip_rv(new) == _strip_rv(cur):
                    return cur if not opts.dry_run else new
                rv = await self.storage.update(object_key(info.name, ns, name), new, _rv(cur))
                _md(new)["resourceVersion"] = str(rv)
                return new
            except errors.Conflict:
                continue
            except errors.NotFound:
                raise _not_found(info, name) from None
        raise conflict(info, name, "too many concurrent writers; try again")

    @staticmethod
    def _check_preconditions(info: ResourceInfo, name: str, cur: Obj,
                             opts: pb.DeleteOptions) -> None:
        md = _md(cur)
        if opts.precondition_uid and opts.precondition_uid != md.get("uid"):
            raise conflict(info, name, f"Precondition failed: UID in precondition: "
                           f"{opts.precondition_uid}, UID in object meta: {md.get('uid')}")
        if (opts.precondition_resource_version
                and opts.precondition_resource_version != md.get("resourceVersion")):
            raise conflict(info, name, "Precondition failed: ResourceVersion in precondition: "
                           f"{opts.precondition_resource_version}, ResourceVersion in object "
                           f"meta: {md.get('resourceVersion')}")

    @staticmethod
    def _deletion_state(strategy: Strategy, cur: Obj, opts: pb.DeleteOptions) -> Obj | None:
        """The object as it should be stored while being deleted, or None to remove it now:
        the garbage collector's finalizer for the propagation policy here, the grace period
        and the rest of the deletion state from the strategy."""
        new = copy.deepcopy(cur)
        md = _md(new)
        finalizers = list(md.get("finalizers") or [])
        policy = opts.propagation_policy
        if not policy and not set(finalizers) & set(_GC_FINALIZERS.values()):
            # No policy and none chosen by an earlier delete: the resource's default (core/v1
            # ReplicationControllers orphan); kubectl and tkctl always send a policy.
            policy = strategy.default_propagation
        gc = _GC_FINALIZERS.get(policy)
        if gc:
            finalizers = [f for f in finalizers if f not in _GC_FINALIZERS.values()] + [gc]
        elif policy == "Background":
            finalizers = [f for f in finalizers if f not in _GC_FINALIZERS.values()]
        return strategy.deletion_state(new, finalizers, strategy.grace_period(cur, opts))

    async def delete_collection(self, info: ResourceInfo, ns: str, list_opts: pb.ListOptions,
                                opts: pb.DeleteOptions) -> Obj:
        listed = await self._list_etcd(info, ns if info.namespaced else "",
                                       pb.ListOptions(label_selector=list_opts.label_selector,
                                                      field_selector=list_opts.field_selector),
                                       self.matcher(info, list_opts))
        deleted = []
        for item in listed["items"]:
            md = _md(item)
            try:
                deleted.append(await self.delete(info, md.get("namespace", ""), md["name"], opts))
            except errors.NotFound:
                continue
        return self._list_obj(info, deleted, int(listed["metadata"]["resourceVersion"]), "",
                              None)

    # --- pods/binding ---------------------------------------------------------------------

    async def bind(self, ns: str, name: str, raw: bytes) -> Obj:
        """pods/binding: assign a pod to a node, through the same compare-and-swap loop as
        every update, with the pod strategy's own change instead of an update strategy's
        merge (it sets spec and status at once, which no update may), and the plain write
        upstream's BindingREST does: no update admission (the handler authorized the
        Binding's create), no update validation (the change is valid by construction)."""
        pods = pod_strategy()
        info = pods.info
        assign = pods.binding_update(name, _json_object(raw, "binding"))
        key = object_key(info.name, ns, name)

        async def commit(cur: Obj, new: Obj) -> Obj:
            _md(new)["resourceVersion"] = str(await self.storage.update(key, new, _rv(cur)))
            return new

        await self._guaranteed_update(info, ns, name, assign, commit)
        return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success",
                "code": 201}


def _encode_continue(start: bytes, revision: int) -> str:
    token = {"v": 1, "rv": revision, "start": base64.b64encode(start).decode()}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode()


def _decode_continue(token: str, prefix: bytes) -> tuple[bytes, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        start = base64.b64decode(data["start"])
        rv = int(data["rv"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise errors.BadRequest(message="continue key is not valid: not a token this server "
                                "issued") from None
    if not start.startswith(prefix) or rv <= 0:
        raise errors.BadRequest(message="continue key is not valid: it belongs to another list")
    return start, rv


def _parse_patch(patch_type: str, raw: bytes) -> Any:
    if patch_type not in _PATCH_TYPES:
        raise errors.BadRequest(
            message=f'patch type "{patch_type}" is not supported: use "merge" (JSON merge patch, '
            'RFC 7386), "json" (JSON patch, RFC 6902) or "strategic" (strategic merge patch, '
            "what kubectl apply and kubectl patch send)")
    try:
        patch = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise errors.BadRequest(message=f"patch is not valid JSON: {e}") from None
    if patch_type != "json" and not isinstance(patch, dict):
        raise errors.BadRequest(message=f"a {_PATCH_TYPES[patch_type]} must be a JSON object")
    if patch_type == "json" and not isinstance(patch, list):
        raise errors.BadRequest(message="a JSON patch must be a JSON array of operations")
    return patch


_PATCH_TYPES = {"merge": "JSON merge patch", "json": "JSON patch",
                "strategic": "strategic merge patch", "apply": "server-side apply"}


def _apply_patch(cur: Obj, patch_type: str, patch: Any, model: type[TypedObject]) -> Obj:
    """`patch` applied to `cur`, the JSON of a `model` object; `model` tells strategic merge
    patch which lists merge by key (api.patchmeta)."""
    if patch_type == "merge":
        out = merge_patch(cur, patch)
    elif patch_type == "strategic":
        out = strategic_merge_patch(cur, patch, model)
    else:
        try:
            out = jsonpatch.apply_patch(cur, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError,
                ValueError) as e:
            raise errors.invalid("patch", "", [errors.Cause("", f"the JSON patch could not be "
                                                        f"applied: {e}")]) from None
    if not isinstance(out, dict):
        raise errors.BadRequest(message="the patched object is not a JSON object")
    return out
