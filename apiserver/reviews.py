"""The create-only, never-stored API calls of authentication and authorization.

Upstream answers these in the apiserver itself rather than from storage, and so does tinykube:
- SelfSubjectAccessReview: "may I do this?" — the request's own user through the authorizer
  (`tkctl auth can-i`);
- SubjectAccessReview: the same question about any user and groups (who may ask is RBAC's say:
  create on subjectaccessreviews);
- SelfSubjectReview: "who am I?" (`tkctl auth whoami`);
- TokenReview: "whose is this token?";
- TokenRequest, the body of `serviceaccounts/NAME/token`: sign a ServiceAccount token for some
  audiences and a lifetime, optionally bound to a Pod or Secret so that it dies with it.
Each answer is the request with its `status` filled. The registry hands these creates here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from api import errors
from api.codec import decode_model
from api.defaults import apply_defaults
from api.meta import TypedObject, format_rfc3339, now_rfc3339
from api.resources import RESOURCES, TOKEN_REQUEST_MODEL, ResourceInfo
from api.validation import validate
from apiserver.admission import Admission
from apiserver.auth import Attributes, Authorizer, UserInfo, current_user
from apiserver.storage import Storage, object_key
from apiserver.tokens import BoundObject, InvalidToken, TokenIssuer, TokenVerifier

Obj = dict[str, Any]
_TOKEN_REQUEST = "TokenRequest.authentication.k8s.io"
_BINDABLE = {"Pod": "pods", "Secret": "secrets"}


def _duration(seconds: int) -> str:
    if seconds % 60 == 0 and seconds >= 60:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _rfc3339(epoch: int) -> str:
    return format_rfc3339(dt.datetime.fromtimestamp(epoch, dt.UTC))


class Reviews:
    def __init__(self, storage: Storage, admission: Admission, *,
                 tokens: TokenIssuer | None = None, token_verifier: TokenVerifier | None = None,
                 authorizer: Authorizer | None = None) -> None:
        self.storage = storage
        self.admission = admission
        self.tokens = tokens
        self.token_verifier = token_verifier
        self.authorizer = authorizer

    async def create(self, info: ResourceInfo, model: TypedObject) -> Obj:
        """Answer a review (already decoded, defaulted and validated)."""
        out = model.to_dict()
        spec = out.get("spec") or {}
        if info.name == "selfsubjectreviews":
            out["status"] = {"userInfo": self._user().to_dict()}
        elif info.name == "selfsubjectaccessreviews":
            out["status"] = self._access(self._user(), spec)
        elif info.name == "subjectaccessreviews":
            extra = {k: tuple(v) for k, v in (spec.get("extra") or {}).items()}
            user = UserInfo(spec.get("user") or "", tuple(spec.get("groups") or ()),
                            spec.get("uid") or "", extra)
            out["status"] = self._access(user, spec)
        elif info.name == "tokenreviews":
            out["status"] = await self._token_review(spec)
            spec.pop("token", None)  # the answer need not carry the credential back
        else:  # pragma: no cover - every virtual resource is handled above
            raise errors.MethodNotAllowed(message=f"{info.qualified_name}: create not supported")
        return out

    @staticmethod
    def _user() -> UserInfo:
        user = current_user()
        if user is None:
            raise errors.BadRequest(message="no user on this request")
        return user

    def _access(self, user: UserInfo, spec: Obj) -> Obj:
        if self.authorizer is None:
            raise errors.MethodNotAllowed(message="this apiserver has no authorizer configured")
        res, non = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if res is not None:
            attrs = Attributes(user, res.get("verb") or "", resource=res.get("resource") or "",
                               subresource=res.get("subresource") or "",
                               api_group=res.get("group") or "",
                               namespace=res.get("namespace") or "", name=res.get("name") or "")
        else:
            attrs = Attributes(user, (non or {}).get("verb") or "",
                               path=(non or {}).get("path") or "")
        decision = self.authorizer.authorize(attrs)
        status: Obj = {"allowed": decision.allowed}
        if decision.reason:
            status["reason"] = decision.reason
        return status

    async def _token_review(self, spec: Obj) -> Obj:
        token = spec.get("token")
        if not token:
            raise errors.BadRequest(message="token is required for TokenReview in "
                                    "authentication")
        if self.token_verifier is None:
            return {"authenticated": False, "error": "no token authenticator is configured"}
        try:
            user, audiences = await self.token_verifier.verify(token, spec.get("audiences"))
        except InvalidToken as e:
            return {"authenticated": False, "error": f"invalid bearer token, {e}"}
        return {"authenticated": True, "user": user.to_dict(), "audiences": audiences}

    # --- serviceaccounts/token ----------------------------------------------------------------

    async def token_request(self, ns: str, name: str, data: Obj, dry_run: bool) -> Obj:
        """Sign a token for ServiceAccount ns/name as the TokenRequest `data` asks."""
        if self.tokens is None:
            raise errors.NotFound(
                message="the server could not find the requested resource "
                "(serviceaccounts/token): the apiserver has no "
                "--service-account-signing-key-file", kind="serviceaccounts")
        model, _ = decode_model(TOKEN_REQUEST_MODEL, data)
        apply_defaults(model)
        causes = validate("TokenRequest", model, None)
        seconds = int(model.spec.expiration_seconds or 0)
        if seconds < self.tokens.min_expiration_seconds:
            causes.append(errors.Cause(
                "spec.expirationSeconds", f"Invalid value: {seconds}: may not specify a "
                f"duration less than {_duration(self.tokens.min_expiration_seconds)}"))
        if causes:
            raise errors.invalid(_TOKEN_REQUEST, name, causes)
        sa = await self._get("serviceaccounts", ns, name)
        tr = model.to_dict()
        tr["metadata"] = {**(tr.get("metadata") or {}), "name": name, "namespace": ns}
        spec = tr.setdefault("spec", {})
        spec["audiences"] = spec.get("audiences") or list(self.tokens.audiences)
        # Admission sees the request as sent: _bound fills in the bound object's uid, and
        # NodeRestriction must see whether the node named it (upstream validates first too).
        info = RESOURCES["serviceaccounts"]
        await self.admission.validate("CREATE", info, "token", ns, name, tr, sa)
        bound = await self._bound(ns, name, spec.get("boundObjectRef"))
        tr["metadata"]["creationTimestamp"] = now_rfc3339()
        if dry_run:
            tr["status"] = {"token": "", "expirationTimestamp": ""}
            return tr
        token, expires = self.tokens.issue(
            ns, name, str((sa.get("metadata") or {}).get("uid", "")), audiences=spec["audiences"],
            expiration_seconds=seconds, bound=bound)
        tr["status"] = {"token": token, "expirationTimestamp": _rfc3339(expires)}
        return tr

    async def _bound(self, ns: str, sa_name: str, ref: Obj | None) -> BoundObject | None:
        if not ref:
            return None
        kind, version = ref.get("kind") or "", ref.get("apiVersion") or "v1"
        resource = _BINDABLE.get(kind) if version == "v1" else None
        if resource is None:
            raise errors.BadRequest(message=f"cannot bind token to object of type {version}, "
                                    f"Kind={kind}")
        obj = await self._get(resource, ns, ref["name"])
        if resource == "pods":
            running_as = (obj.get("spec") or {}).get("serviceAccountName")
            if running_as != sa_name:
                raise errors.BadRequest(
                    message=f'cannot bind token for serviceaccount "{sa_name}" to pod running '
                    "with different serviceaccount name.")
        uid = str((obj.get("metadata") or {}).get("uid", ""))
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.Conflict(
                message=f'Operation cannot be fulfilled on {kind} "{ref["name"]}": the UID in '
                f"the bound object reference ({ref['uid']}) does not match the UID in record. "
                "The object might have been deleted and then recreated", kind=kind,
                name=ref["name"])
        ref["uid"] = uid
        ref["apiVersion"] = version
        return BoundObject(kind, ref["name"], uid)

    async def _get(self, resource: str, ns: str, name: str) -> Obj:
        obj = await self.storage.get(object_key(resource, ns, name))
        if obj is None:
            raise errors.NotFound(message=f'{resource} "{name}" not found', kind=resource,
                                  name=name)
        return obj
