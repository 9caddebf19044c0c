"""The generic registry: what each API verb means, for every resource, on top of storage.

This is Kubernetes' `genericregistry.Store` plus the per-kind strategies, in one place:
decode → default → validate → admit → compare-and-swap, with the rules that make an API server
more than a key-value store:
- create sets uid, creationTimestamp and generation, refuses objects in a missing or terminating
  namespace, resets status that only controllers may write, and generates names;
- update is optimistic (a stale resourceVersion is a Conflict; without one the server retries on
  its own), keeps system metadata, keeps status (only the `status` subresource changes it), bumps
  `generation` only on spec changes, and is a no-op when nothing changed;
- patch is a read-modify-update loop over JSON merge patch or JSON patch;
- delete honours preconditions, grace periods (pods), finalizers (deletionTimestamp first, the
  object goes with its last finalizer) and records the propagation policy as the garbage
  collector's finalizer (`orphan`, `foregroundDeletion`).
"""

from __future__ import annotations

import base64
import binascii
import builtins
import copy
import datetime as dt
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
from api.meta import LabelSelector, TypedObject, format_rfc3339, now_rfc3339
from api.patch import merge_patch
from api.policy import DeleteOptions, Eviction, Preconditions
from api.proto import tinykube_pb2 as pb
from api.resources import RESOURCES, SCALE_MODEL, ResourceInfo
from api.selectors import from_label_selector, from_map, parse_field_selector, parse_label_selector
from api.strategicpatch import strategic_merge_patch
from api.validation import validate
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
from apiserver.tokens import TokenIssuer, TokenVerifier
from apiserver.watchcache import WatchCache

log = logging.getLogger(__name__)

MAX_OBJECT_BYTES = 1536 * 1024  # etcd's default request limit, as kube-apiserver enforces
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet
_SYSTEM_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                "generation")
# Kinds that Kubernetes lets an update create (AllowCreateOnUpdate).
_CREATE_ON_UPDATE = {"endpoints", "events", "leases", "services"}
_GC_FINALIZERS = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}
_PROTECTED_NAMESPACES = {"default", "kube-system", "kube-node-lease", "kube-public"}
# Kinds whose writes admission.allocate fills in (ClusterIP, NodePorts).
_ALLOCATING = {"services"}

Obj = dict[str, Any]
# Writes one attempt (object, its allocation side effects, its etcd lease); returns the new rv.
Write = Callable[[Obj, SideEffects, int], Awaitable[int]]


@dataclass
class Result:
    object: Obj
    warnings: list[str]


def _not_found(info: ResourceInfo, name: str) -> errors.NotFound:
    return errors.NotFound(message=f'{info.qualified_name} "{name}" not found', kind=info.name,
                           name=name, group=info.group)


def _conflict(info: ResourceInfo, name: str, why: str = "") -> errors.Conflict:
    why = why or ("the object has been modified; please apply your changes to the latest "
                  "version and try again")
    return errors.Conflict(
        message=f'Operation cannot be fulfilled on {info.qualified_name} "{name}": {why}',
        kind=info.name, name=name, group=info.group)


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

    async def _lease_for(self, info: ResourceInfo) -> int:
        return await self.event_leases.lease() if info.name == "events" else 0

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

    def _validate(self, info: ResourceInfo, obj: Obj, old: Obj | None) -> None:
        """Validate `obj`; an update passes `old`, or None for a status update.

        A status update changes nothing but `status`, and the update rules (immutable fields,
        selectors, roleRefs) compare only what lies outside it, so they are checked against the
        new object itself: the same checks, without parsing the stored object a second time.
        """
        model = info.model.model_validate(obj)
        old_model = info.model.model_validate(old) if old is not None else model
        self._validate_model(info, model, old_model)

    @staticmethod
    def _validate_model(info: ResourceInfo, model: TypedObject,
                        old: TypedObject | None = None) -> None:
        causes = validate(info.kind, model, old)
        if causes:
            raise errors.invalid(f"{info.kind}{'.' + info.group if info.group else ''}",
                                 model.metadata.name or "", causes)

    def _check_size(self, info: ResourceInfo, obj: Obj) -> None:
        size = len(json.dumps(obj, separators=(",", ":")))
        if size > MAX_OBJECT_BYTES:
            raise errors.RequestEntityTooLarge(
                message=f'{info.qualified_name} "{_md(obj).get("name", "")}" is too large: {size} '
                f"bytes; the limit is {MAX_OBJECT_BYTES} bytes (1.5 MiB)")

    def _namespace_for(self, info: ResourceInfo, request_ns: str, obj: Obj) -> str:
        md = _md(obj)
        if not info.namespaced:
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
        model, warnings = self._decode(info, data)
        # Validated once, here: what admission adds later is valid by construction.
        self._validate_model(info, model)
        if info.virtual:
            return Result(await self.reviews.create(info, model), warnings)
        obj = model.to_dict()
        ns = self._namespace_for(info, namespace, obj)
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
                return Result(await self._create_once(info, ns, obj, dry_run), warnings)
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
            rv = await self._add_disruption_target(info, ns, name, opts)
            if opts.precondition_resource_version:
                # We changed the pod: the caller's resourceVersion held for the version we
                # updated, so the delete checks ours (as upstream bumps it).
                opts.precondition_resource_version = rv
        await self.delete(info, ns, name, opts)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}

    async def _add_disruption_target(self, info: ResourceInfo, ns: str, name: str,
                                     opts: pb.DeleteOptions) -> str:
        """Condition DisruptionTarget=True (EvictionByEvictionAPI) on the pod before an eviction
        deletes it, as upstream does since PodDisruptionConditions (GA 1.31), so the pod's
        owner can tell an eviction from a failure. The delete's preconditions are checked
        against the pod updated here. Returns the pod's resourceVersion afterwards."""
        def transform(cur: Obj) -> Obj:
            self._check_preconditions(info, name, cur, opts)
            new = copy.deepcopy(cur)
            conds = (new.setdefault("status", {}).get("conditions") or [])
            old = next((c for c in conds if c.get("type") == "DisruptionTarget"), None)
            want = {"type": "DisruptionTarget", "status": "True",
                    "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}
            if old is not None and all(old.get(k) == v for k, v in want.items()):
                return new
            since = old.get("lastTransitionTime") if old and old.get("status") == "True" \
                else None
            new["status"]["conditions"] = [c for c in conds if c is not old] + [
                {**want, "lastTransitionTime": since or now_rfc3339()}]
            return new
        out = await self._update_loop(info, ns, name, "status", transform, "", False)
        return str(_md(out).get("resourceVersion") or "")

    async def _create_once(self, info: ResourceInfo, ns: str, obj: Obj, dry_run: bool) -> Obj:
        obj = copy.deepcopy(obj)
        md = _md(obj)
        md.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            md.pop(k, None)
        self.admission.prepare_for_create(info, obj)
        await self.admission.validate("CREATE", info, "", ns, md["name"], obj, None)
        if ns:
            await self.admission.check_namespace(ns)
        self._check_size(info, obj)
        if dry_run:
            await self.admission.allocate(info, obj, None)
            return obj
        key = object_key(info.name, ns, md["name"])
        try:
            return await self._write_allocating(
                info, obj, None, lambda o, fx, lease: self.storage.create(key, o, fx, lease))
        except errors.AlreadyExists:
            raise errors.AlreadyExists(
                message=f'{info.qualified_name} "{md["name"]}" already exists', kind=info.name,
                name=md["name"], group=info.group) from None

    async def _write_allocating(self, info: ResourceInfo, obj: Obj, old: Obj | None,
                                write: Write) -> Obj:
        """Allocate the object's ClusterIP/NodePorts and write it, in one transaction.

        Allocation writes what it picks into the object, so each attempt starts from a fresh
        copy: when another request claimed a picked value first (ClaimTaken), the next attempt
        picks again instead of insisting on a value that is now someone else's.
        """
        for _ in range(16):
            # Only allocation writes into the object: anything else shares `obj`'s subtrees
            # (read only from here on) and needs its own metadata for the resourceVersion.
            attempt = (copy.deepcopy(obj) if info.name in _ALLOCATING
                       else {**obj, "metadata": dict(_md(obj))})
            fx = await self.admission.allocate(info, attempt, old)
            try:
                rv = await write(attempt, fx, await self._lease_for(info))
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
        obj = await self._current(info, ns if info.namespaced else "", name)
        return self._scale_of(info, obj) if subresource == "scale" else obj

    def _check_subresource(self, info: ResourceInfo, sub: str, allowed: tuple[str, ...]) -> None:
        if sub and (sub not in info.subresources or sub not in allowed):
            raise errors.NotFound(
                message=f'the server could not find the requested resource '
                f'({info.qualified_name}/{sub})', kind=info.name)

    def matcher(self, info: ResourceInfo, opts: pb.ListOptions) -> Callable[[Obj], bool]:
        label = parse_label_selector(opts.label_selector)
        fields = parse_field_selector(opts.field_selector, info.field_selectors)
        if label.empty and not opts.field_selector:
            return lambda _o: True
        return lambda o: label.matches(_labels_of(o)) and fields.matches(o)

    async def list(self, info: ResourceInfo, ns: str, opts: pb.ListOptions) -> Obj:
        ns = ns if info.namespaced else ""
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
        ns = ns if info.namespaced else ""
        data = _json_object(raw)
        if subresource == "scale":
            self._check_subresource(info, subresource, ("scale",))
            return Result(await self._update_scale(info, ns, name, data, dry_run), [])
        self._check_subresource(info, subresource, ("", "status", "finalize"))
        obj, warnings = self._prepare(info, data)
        md = _md(obj)
        if md.get("name") and md["name"] != name:
            raise errors.BadRequest(message=f"the name of the object ({md['name']}) does not "
                                    f"match the name on the URL ({name})")
        md["name"] = name
        obj_ns = self._namespace_for(info, ns, obj)
        user_rv = str(md.get("resourceVersion") or "")
        try:
            result = await self._update_loop(
                info, ns, name, subresource,
                (lambda cur: obj) if subresource == "status" else (lambda cur: copy.deepcopy(obj)),
                user_rv, dry_run)
        except errors.NotFound:
            if subresource or info.name not in _CREATE_ON_UPDATE:
                raise
            self._authorize_create(info, obj_ns)
            md.pop("resourceVersion", None)
            return await self.create(info, ns, json.dumps(obj).encode(), dry_run)
        return Result(result, warnings)

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
        ns = ns if info.namespaced else ""
        patch = _parse_patch(patch_type, raw)
        if subresource == "scale":
            self._check_subresource(info, subresource, ("scale",))
            cur_scale = self._scale_of(info, await self._current(info, ns, name))
            scale = _apply_patch(cur_scale, patch_type, patch, SCALE_MODEL)
            if scale.get("metadata", {}).get("resourceVersion") == cur_scale["metadata"].get(
                    "resourceVersion"):
                # Read here, not sent by the client: no precondition, so a concurrent status
                # write does not fail the patch (upstream patches inside its update retry).
                scale["metadata"].pop("resourceVersion", None)
            return Result(await self._update_scale(info, ns, name, scale, dry_run), [])
        self._check_subresource(info, subresource, ("", "status"))
        if patch_type == "apply":
            return await self._server_side_apply(info, ns, name, subresource, patch, dry_run)
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
        result = await self._update_loop(info, ns, name, subresource, transform, user_rv, dry_run)
        return Result(result, warnings)

    async def _server_side_apply(self, info: ResourceInfo, ns: str, name: str,
                                 subresource: str, applied: Obj, dry_run: bool) -> Result:
        """A manager's applied configuration merged into the object, or the object created
        from it (api/apply.py: ownership, conflicts, removals)."""
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
            out = await self._update_loop(info, ns, name, subresource, transform, "", dry_run)
        except errors.NotFound:
            if subresource:
                raise
            self._authorize_create(info, ns)
            obj = server_side_apply.apply(None, applied, info.model, manager, force,
                                          info.api_version)
            if info.namespaced:
                obj["metadata"]["namespace"] = ns
            return await self.create(info, ns, json.dumps(obj).encode(), dry_run)
        return Result(out, warnings)

    async def _update_loop(self, info: ResourceInfo, ns: str, name: str, subresource: str,
                           transform: Callable[[Obj], Obj], user_rv: str, dry_run: bool) -> Obj:
        """Read, transform, compare-and-swap; retried on conflict unless the caller pinned RV.

        `transform` returns an object of its own each time: the merge and the write fill it in
        (except on `status`, whose merge copies what it changes).

        The first read is the watch cache's (`_cached`); a refusal, a conflict or a no-op
        found against it is checked again against etcd before it is answered. A dry run
        writes nothing that a compare-and-swap could check, so it reads etcd.
        """
        cached = not dry_run
        for _ in range(33):
            cur = self._cached(info, ns, name) if cached else None
            if cur is None:
                cached = False
                cur = await self._current(info, ns, name)
            try:
                if user_rv and user_rv != _md(cur)["resourceVersion"]:
                    raise _conflict(info, name)
                new = self._merge_update(info, cur, transform(cur), subresource)
                if not subresource:
                    # Who owns what this write changed (server-side apply's record); the
                    # managedFields a client left out are kept.
                    server_side_apply.record_update(cur, new, info.model, FIELD_MANAGER.get(),
                                                    info.api_version)
            except errors.ApiError:
                if not cached:
                    raise
                cached = False
                continue
            try:
                out = await self._write_update(info, ns, name, subresource, cur, new, dry_run)
            except errors.Conflict:
                if user_rv and not cached:
                    raise _conflict(info, name) from None
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
        raise _conflict(info, name, "too many concurrent writers; try again")

    def _merge_update(self, info: ResourceInfo, cur: Obj, new: Obj, subresource: str) -> Obj:
        """The object to store: what the caller may change, on top of what only we may."""
        if subresource == "status":
            # Shallow: `cur` may be the watch cache's own object, and only `status` (taken
            # whole from `new`) and the resourceVersion (in a metadata copy) differ from it.
            merged = {**cur, "metadata": dict(_md(cur))}
            merged["status"] = new.get("status")
            if merged["status"] is None:
                merged.pop("status")
            return merged
        if subresource == "finalize":  # namespaces: only spec.finalizers changes
            merged = copy.deepcopy(cur)
            merged.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get(
                "finalizers") or []
            return merged
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
            raise _conflict(info, cur_md.get("name", ""), "Precondition failed: UID in "
                            f"precondition: {md['uid']}, UID in object meta: {cur_md.get('uid')}")
        for k in _SYSTEM_META:
            if k in cur_md:
                md[k] = cur_md[k]
            else:
                md.pop(k, None)
        if "status" in info.subresources:
            if "status" in cur:
                new["status"] = cur["status"]
            else:
                new.pop("status", None)
        if info.name == "namespaces":  # only the `finalize` subresource changes these
            new.setdefault("spec", {})["finalizers"] = (cur.get("spec") or {}).get(
                "finalizers") or []
        if info.has_generation and new.get("spec") != cur.get("spec"):
            md["generation"] = int(cur_md.get("generation") or 1) + 1
        added = set(md.get("finalizers") or []) - set(cur_md.get("finalizers") or [])
        if cur_md.get("deletionTimestamp") and added:
            raise errors.invalid(info.kind, md.get("name", ""), [errors.Cause(
                "metadata.finalizers",
                f"Forbidden: no new finalizers can be added if the object is being deleted, "
                f"found new finalizers {sorted(added)}", "FieldValueForbidden")])
        self.admission.keep_allocations(info, new, cur)
        return new

    async def _write_update(self, info: ResourceInfo, ns: str, name: str, subresource: str,
                            cur: Obj, new: Obj, dry_run: bool) -> Obj:
        # Admission sees even a no-op write: whether the caller may write is not a question of
        # whether the write changes anything.
        await self.admission.validate("UPDATE", info, subresource, ns, name, new, cur)
        rv = _rv(cur)
        _md(new)["resourceVersion"] = str(rv)
        if _strip_rv(new) == _strip_rv(cur):
            return cur  # nothing changed: no write, no new resourceVersion, no watch event
        self._validate(info, new, None if subresource == "status" else cur)
        self._check_size(info, new)
        if dry_run:
            return new
        key = object_key(info.name, ns, name)
        if self._finalized(info, new):
            fx = self.admission.release(info, cur)
            # As upstream's store: the object returned carries the deletion's revision (the
            # update that removed the last finalizer did change it; clients compare).
            _md(new)["resourceVersion"] = str(await self.storage.delete(key, rv, fx))
            return new
        return await self._write_allocating(
            info, new, cur, lambda o, fx, lease: self.storage.update(key, o, rv, fx, lease))

    @staticmethod
    def _finalized(info: ResourceInfo, obj: Obj) -> bool:
        """Being deleted and nothing left to wait for: the object goes now."""
        md = _md(obj)
        if not md.get("deletionTimestamp") or md.get("finalizers"):
            return False
        if info.name == "namespaces" and (obj.get("spec") or {}).get("finalizers"):
            return False
        # A pod in graceful deletion is removed by its kubelet (delete with grace 0), not here.
        return info.name != "pods" or int(md.get("deletionGracePeriodSeconds") or 0) == 0

    # --- scale ----------------------------------------------------------------------------

    def _scale_of(self, info: ResourceInfo, obj: Obj) -> Obj:
        md, spec, status = _md(obj), obj.get("spec") or {}, obj.get("status") or {}
        sel = spec.get("selector")
        if info.group:  # apps/v1: a LabelSelector
            selector = str(from_label_selector(LabelSelector.model_validate(sel or {})))
        else:
            selector = str(from_map(sel or {}))
        return {
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                            "creationTimestamp") if k in md},
            "spec": {"replicas": int(spec.get("replicas") or 0)},
            "status": {"replicas": int(status.get("replicas") or 0), "selector": selector},
        }

    async def _update_scale(self, info: ResourceInfo, ns: str, name: str, scale: Obj,
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

        def transform(cur: Obj) -> Obj:
            new = copy.deepcopy(cur)
            new.setdefault("spec", {})["replicas"] = replicas
            return new

        obj = await self._update_loop(info, ns, name, "", transform, user_rv, dry_run)
        return self._scale_of(info, obj)

    # --- delete ---------------------------------------------------------------------------

    async def delete(self, info: ResourceInfo, ns: str, name: str,
                     opts: pb.DeleteOptions) -> Obj:
        ns = ns if info.namespaced else ""
        policy = opts.propagation_policy
        if policy not in ("", "Background", "Foreground", "Orphan"):
            raise errors.BadRequest(message=f'propagationPolicy: Unsupported value: "{policy}": '
                                    'supported values: "Background", "Foreground", "Orphan"')
        if info.name == "namespaces" and name in _PROTECTED_NAMESPACES:
            raise errors.Forbidden(message=f'namespaces "{name}" is forbidden: this namespace '
                                   "may not be deleted", kind="namespaces", name=name)
        for _ in range(32):
            cur = await self._current(info, ns, name)
            self._check_preconditions(info, name, cur, opts)
            await self.admission.validate("DELETE", info, "", ns, name, None, cur)
            new = self._deletion_state(info, cur, opts)
            try:
                if new is None:
                    if not opts.dry_run:
                        fx = self.admission.release(info, cur)
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
        raise _conflict(info, name, "too many concurrent writers; try again")

    @staticmethod
    def _check_preconditions(info: ResourceInfo, name: str, cur: Obj,
                             opts: pb.DeleteOptions) -> None:
        md = _md(cur)
        if opts.precondition_uid and opts.precondition_uid != md.get("uid"):
            raise _conflict(info, name, f"Precondition failed: UID in precondition: "
                            f"{opts.precondition_uid}, UID in object meta: {md.get('uid')}")
        if (opts.precondition_resource_version
                and opts.precondition_resource_version != md.get("resourceVersion")):
            raise _conflict(info, name, "Precondition failed: ResourceVersion in precondition: "
                            f"{opts.precondition_resource_version}, ResourceVersion in object "
                            f"meta: {md.get('resourceVersion')}")

    def _deletion_state(self, info: ResourceInfo, cur: Obj, opts: pb.DeleteOptions) -> Obj | None:
        """The object as it should be stored while being deleted, or None to remove it now."""
        new = copy.deepcopy(cur)
        md = _md(new)
        finalizers = list(md.get("finalizers") or [])
        policy = opts.propagation_policy
        if not policy and not set(finalizers) & set(_GC_FINALIZERS.values()):
            # No policy and none chosen by an earlier delete: the resource's default (core/v1
            # ReplicationControllers orphan); kubectl and tkctl always send a policy.
            policy = info.default_propagation
        gc = _GC_FINALIZERS.get(policy)
        if gc:
            finalizers = [f for f in finalizers if f not in _GC_FINALIZERS.values()] + [gc]
        elif policy == "Background":
            finalizers = [f for f in finalizers if f not in _GC_FINALIZERS.values()]
        grace = self._grace_period(info, cur, opts)
        if info.name == "namespaces":
            if (new.get("spec") or {}).get("finalizers") or finalizers:
                new.setdefault("status", {})["phase"] = "Terminating"
                return self._mark_deleting(new, finalizers, 0)
            return None
        if grace > 0 or finalizers:
            return self._mark_deleting(new, finalizers, grace)
        return None

    @staticmethod
    def _grace_period(info: ResourceInfo, cur: Obj, opts: pb.DeleteOptions) -> int:
        """Pods stop gracefully on their node; everything else goes at once."""
        if info.name != "pods":
            return 0
        spec, md = cur.get("spec") or {}, _md(cur)
        grace = opts.grace_period_seconds
        if grace < 0:
            grace = int(spec.get("terminationGracePeriodSeconds", 30))
        phase = (cur.get("status") or {}).get("phase")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0  # nothing runs it: no kubelet will ever confirm the stop
        current = md.get("deletionGracePeriodSeconds")
        if current is not None:
            grace = min(grace, int(current))  # a delete can shorten, never lengthen, the grace
        return grace

    @staticmethod
    def _mark_deleting(obj: Obj, finalizers: builtins.list[str], grace: int) -> Obj:
        md = _md(obj)
        now = dt.datetime.now(dt.UTC)
        if not md.get("deletionTimestamp") or grace < int(
                md.get("deletionGracePeriodSeconds") or 0):
            md["deletionTimestamp"] = format_rfc3339(now + dt.timedelta(seconds=grace))
        md["deletionGracePeriodSeconds"] = grace
        if finalizers:
            md["finalizers"] = finalizers
        else:
            md.pop("finalizers", None)
        return obj

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
        info = RESOURCES["pods"]
        binding = _json_object(raw, "binding")
        target, meta = binding.get("target"), binding.get("metadata")
        if not isinstance(target, dict) or not isinstance(meta, dict | None):
            raise errors.BadRequest(message="a Binding must have an object `target` "
                                    "(and `metadata`)")
        node = target.get("name")
        if not node or not isinstance(node, str):
            raise errors.invalid("Binding", name, [errors.Cause(
                "target.name", "Required value", "FieldValueRequired")])
        if target.get("kind", "Node") not in ("Node", ""):
            raise errors.invalid("Binding", name, [errors.Cause(
                "target.kind", f'Unsupported value: "{target.get("kind")}": supported values: '
                '"Node"', "FieldValueNotSupported")])
        uid = (meta or {}).get("uid")

        def transform(cur: Obj) -> Obj:
            md, spec = _md(cur), cur.get("spec") or {}
            if uid and uid != md.get("uid"):
                raise _conflict(info, name, f"Precondition failed: UID in precondition: {uid}, "
                                f"UID in object meta: {md.get('uid')}")
            if md.get("deletionTimestamp"):
                raise _conflict(info, name, f"pod {name} is being deleted, cannot be assigned "
                                "to a host")
            if spec.get("nodeName"):
                raise _conflict(info, name, f'pod {name} is already assigned to node '
                                f'"{spec["nodeName"]}"')
            # Copied only along the paths that change: the rest is shared with `cur` (maybe
            # the watch cache's own object) and only read, to be encoded.
            status = cur.get("status") or {}
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True",
                          "lastTransitionTime": now_rfc3339()})
            return {**cur, "metadata": dict(md), "spec": {**spec, "nodeName": node},
                    "status": {**status, "conditions": conds}}

        # Binding writes spec and status at once, which no ordinary update may: go around
        # _merge_update with a direct compare-and-swap loop. The first attempt starts from the
        # watch cache (`_cached`); a refusal or a conflict is answered only from etcd's copy.
        cached = True
        for _ in range(33):
            cur = self._cached(info, ns, name) if cached else None
            if cur is None:
                cached = False
                cur = await self._current(info, ns, name)
            try:
                new = transform(cur)
            except errors.ApiError:
                if not cached:
                    raise
                cached = False
                continue
            try:
                rv = await self.storage.update(object_key("pods", ns, name), new, _rv(cur))
            except errors.Conflict:
                cached = False
                continue
            except errors.NotFound:
                raise _not_found(info, name) from None
            _md(new)["resourceVersion"] = str(rv)
            return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success",
                    "code": 201}
        raise _conflict(info, name, "too many concurrent writers; try again")


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
