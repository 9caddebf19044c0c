"""Kubernetes API errors, shared by the apiserver (which raises them) and clients (which catch
them).

An error is a Kubernetes `Status` object (reason, message, code, details.causes with field paths)
mapped onto a gRPC status code. The apiserver puts the Status JSON in the trailing metadata key
`tinykube-status-bin`; the client turns it back into the same exception class, so `except
NotFound` works on both sides of the wire.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import grpc

STATUS_METADATA_KEY = "tinykube-status-bin"
# gRPC clients refuse a response whose metadata exceeds 8 KiB (grpc.max_metadata_size; some
# refusals start there, all at 16 KiB), and the error then reads "received metadata size
# exceeds limit" instead of what was wrong. The message (`grpc-message`, percent-encoded: up
# to 3 bytes per byte) and the Status (base64: 4 bytes per 3) must fit together, whatever a
# client put into a name or a value that the message quotes: so both are bounded here.
GRPC_MESSAGE_MAX = 1024  # UTF-8 bytes of grpc-message
STATUS_METADATA_MAX = 3072  # bytes of the Status JSON
_CAUSE_PART_MAX = 256  # bytes of a cause's field or message in a clipped Status


_QUOTED = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_QUOTED_MAX = 128  # characters of a quoted value kept in a clipped message


def _shorten(match: re.Match[str]) -> str:
    quoted = match.group(0)
    if len(quoted) <= _QUOTED_MAX:
        return quoted
    return f"{quoted[:_QUOTED_MAX - 1]}...\" ({len(quoted) - 2} characters)"


def clip(text: str, limit: int) -> str:
    """`text` in at most `limit` UTF-8 bytes: first the long quoted values it cites
    (`Invalid value: "aaaa...": must be no more than 253 characters`) are shortened, so that
    what is wrong stays readable; then, if still too long, the end is cut."""
    if len(text.encode("utf-8", "surrogatepass")) <= limit:
        return text
    text = _QUOTED.sub(_shorten, text)
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text
    suffix = f"... ({len(raw)} bytes in all)"
    return raw[:max(0, limit - len(suffix))].decode("utf-8", "ignore") + suffix


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

    def grpc_details(self) -> str:
        """The message as a gRPC status' details: bounded (see GRPC_MESSAGE_MAX)."""
        return clip(self.message, GRPC_MESSAGE_MAX)

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        """The Status for gRPC's trailing metadata, at most STATUS_METADATA_MAX bytes: as it
        is when it fits; otherwise with the message, name and causes clipped, and the last
        causes left out until it fits (the message still names them)."""
        status = self.to_status()
        data = _json_bytes(status)
        if len(data) > STATUS_METADATA_MAX:
            data = _json_bytes(_bounded(status))
        return ((STATUS_METADATA_KEY, data),)


def _json_bytes(status: dict[str, Any]) -> bytes:
    # UTF-8, not \u escapes: the key is binary metadata, and its size is what is bounded.
    return json.dumps(status, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _bounded(status: dict[str, Any]) -> dict[str, Any]:
    status["message"] = clip(str(status.get("message", "")), GRPC_MESSAGE_MAX)
    details = status.get("details") or {}
    for key in ("name", "kind", "group"):
        if key in details:
            details[key] = clip(str(details[key]), _CAUSE_PART_MAX)
    causes = details.pop("causes", None) or []
    # Whole causes, in order, as many as fit (one pass: each one's size is known alone).
    room = STATUS_METADATA_MAX - len(_json_bytes(status)) - len(', "causes": []')
    kept = []
    for c in causes:
        c = {**c, "field": clip(str(c.get("field", "")), _CAUSE_PART_MAX),
             "message": clip(str(c.get("message", "")), _CAUSE_PART_MAX)}
        room -= len(_json_bytes(c)) + 2
        if room < 0:
            break
        kept.append(c)
    if kept:
        details["causes"] = kept
    return status


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
