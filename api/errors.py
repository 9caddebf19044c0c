"""Kubernetes API errors, shared by the apiserver (which raises them) and clients (which catch
them).

An error is a Kubernetes `Status` object (reason, message, code, details.causes with field paths)
mapped onto a gRPC status code. The apiserver puts the Status JSON in the trailing metadata key
`tinykube-status-bin`; the client turns it back into the same exception class, so `except
NotFound` works on both sides of the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import grpc

STATUS_METADATA_KEY = "tinykube-status-bin"


@dataclass
class Cause:
    """One reason an object is invalid: `spec.replicas: Invalid value: -1: must be >= 0`."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass
class ApiError(Exception):
    """Base of every API error; `reason` and `code` follow metav1.StatusReason and HTTP codes."""

    message: str
    kind: str = ""
    name: str = ""
    group: str = ""
    causes: list[Cause] = field(default_factory=list)
    retry_after_seconds: int = 0

    reason: ClassVar[str] = "InternalError"
    code: ClassVar[int] = 500
    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def to_status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.kind:
            details["kind"] = self.kind
        if self.group:
            details["group"] = self.group
        if self.causes:
            details["causes"] = [
                {"reason": c.reason, "message": c.message, "field": c.field} for c in self.causes
            ]
        if self.retry_after_seconds:
            details["retryAfterSeconds"] = self.retry_after_seconds
        status: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            status["details"] = details
        return status

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return ((STATUS_METADATA_KEY, json.dumps(self.to_status()).encode()),)


class BadRequest(ApiError):
    reason = "BadRequest"
    code = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class Invalid(ApiError):
    reason = "Invalid"
    code = 422
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ApiError):
    reason = "NotFound"
    code = 404
    grpc_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ApiError):
    reason = "AlreadyExists"
    code = 409
    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class Conflict(ApiError):
    reason = "Conflict"
    code = 409
    grpc_code = grpc.StatusCode.ABORTED


class Gone(ApiError):
    """The requested resourceVersion is older than what the server still has (HTTP 410)."""

    reason = "Expired"
    code = 410
    grpc_code = grpc.StatusCode.OUT_OF_RANGE


class Forbidden(ApiError):
    reason = "Forbidden"
    code = 403
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class Unauthorized(ApiError):
    reason = "Unauthorized"
    code = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class RequestEntityTooLarge(ApiError):
    reason = "RequestEntityTooLarge"
    code = 413
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class MethodNotAllowed(ApiError):
    reason = "MethodNotAllowed"
    code = 405
    grpc_code = grpc.StatusCode.UNIMPLEMENTED


class Timeout(ApiError):
    reason = "Timeout"
    code = 504
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class ServiceUnavailable(ApiError):
    reason = "ServiceUnavailable"
    code = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE


class UnsupportedMediaType(ApiError):
    """415: a body in a Content-Type the endpoint does not take (HTTP front only)."""

    reason = "UnsupportedMediaType"
    code = 415
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class NotAcceptable(ApiError):
    """406: the client accepts no representation the server can produce (HTTP front only)."""

    reason = "NotAcceptable"
    code = 406
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class InternalError(ApiError):
    reason = "InternalError"
    code = 500
    grpc_code = grpc.StatusCode.INTERNAL


_BY_REASON: dict[str, type[ApiError]] = {
    cls.reason: cls
    for cls in (
        BadRequest, Invalid, NotFound, AlreadyExists, Conflict, Gone, Forbidden, Unauthorized,
        RequestEntityTooLarge, MethodNotAllowed, Timeout, ServiceUnavailable, InternalError,
        UnsupportedMediaType, NotAcceptable,
    )
}
_BY_GRPC: dict[grpc.StatusCode, type[ApiError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: BadRequest,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.OUT_OF_RANGE: Gone,
    grpc.StatusCode.PERMISSION_DENIED: Forbidden,
    grpc.StatusCode.UNAUTHENTICATED: Unauthorized,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RequestEntityTooLarge,
    grpc.StatusCode.UNIMPLEMENTED: MethodNotAllowed,
    grpc.StatusCode.DEADLINE_EXCEEDED: Timeout,
    grpc.StatusCode.UNAVAILABLE: ServiceUnavailable,
}


def from_status(status: dict[str, Any]) -> ApiError:
    """Rebuild the exception a `Status` object describes."""
    cls = _BY_REASON.get(str(status.get("reason", "")), InternalError)
    details = status.get("details") or {}
    causes = [
        Cause(field=c.get("field", ""), message=c.get("message", ""), reason=c.get("reason", ""))
        for c in details.get("causes") or []
    ]
    return cls(
        message=str(status.get("message", "")),
        kind=details.get("kind", ""),
        name=details.get("name", ""),
        group=details.get("group", ""),
        causes=causes,
        retry_after_seconds=int(details.get("retryAfterSeconds", 0) or 0),
    )


def from_grpc(code: grpc.StatusCode, details: str, trailing: Any) -> ApiError:
    """Turn a failed RPC back into an ApiError: from the Status in trailing metadata if present."""
    for key, value in trailing or ():
        if key == STATUS_METADATA_KEY:
            try:
                raw = value if isinstance(value, bytes) else str(value).encode()
                return from_status(json.loads(raw))
            except (ValueError, TypeError):
                break
    cls = _BY_GRPC.get(code, InternalError)
    return cls(message=details or code.name)


def invalid(kind: str, name: str, causes: list[Cause]) -> Invalid:
    """An Invalid error whose message reads like Kubernetes':
    `Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be >= 0`."""
    what = f'{kind} "{name}"' if name else kind
    return Invalid(
        message=f"{what} is invalid: " + ", ".join(str(c) for c in causes),
        kind=kind,
        name=name,
        causes=causes,
    )
