"""The audit log: who did what to which object, and how it ended, one JSON line per request.

Every mutating request, and every request refused for who sent it (401, 403) whatever its verb,
is written as an audit.k8s.io/v1 `Event` at level Metadata, the shape kube-apiserver's log
backend writes (`--audit-log-path`), so tools that read those logs read ours: auditID, stage
ResponseComplete, verb, user, impersonatedUser, sourceIPs, userAgent, objectRef, responseStatus
and the two timestamps. Metadata level means no request or response bodies: the log never holds
a Secret's data or a token (a TokenRequest's answer is a body).

Lines are written by a thread, so a slow disk never stalls the event loop; what is queued is
written and flushed at once, in one write, so the log is current when a request's answer
reaches the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import queue
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apiserver.auth import MUTATING_VERBS, UserInfo

log = logging.getLogger(__name__)

_STOP = object()


def timestamp(when: dt.datetime | None = None) -> str:
    """RFC 3339 with microseconds, as upstream's audit events (`MicroTime`)."""
    return (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def audit_id() -> str:
    """A random (version 4) UUID, as upstream's auditID.

    Not `uuid.uuid4()`: it reads os.urandom on every call, a system call per request, and an
    audit ID needs to be unique, not unguessable.
    """
    h = f"{random.getrandbits(128) & _V4_CLEAR | _V4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class AuditRecord:
    """What the servicer knows about one request, filled in as it is served."""

    verb: str
    resource: str = ""
    subresource: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    user: UserInfo | None = None
    impersonated: UserInfo | None = None
    source_ips: list[str] = field(default_factory=list)
    user_agent: str = ""
    received: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    code: int = 200
    reason: str = ""
    message: str = ""

    def wanted(self) -> bool:
        """Whether this request goes in the log: mutating, or refused for who sent it."""
        return self.verb in MUTATING_VERBS or self.code in (401, 403)

    def request_uri(self) -> str:
        """The REST path the request would have upstream (what `requestURI` shows there)."""
        if not self.resource:
            return self.path
        base = f"/apis/{self.api_group}/{self.api_version}" if self.api_group else (
            f"/api/{self.api_version or 'v1'}")
        parts = [base]
        if self.namespace:
            parts.append(f"namespaces/{self.namespace}")
        parts.append(self.resource)
        if self.name:
            parts.append(self.name)
        if self.subresource:
            parts.append(self.subresource)
        return "/".join(parts)

    def event(self) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": audit_id(), "stage": "ResponseComplete",
            "requestURI": self.request_uri(), "verb": self.verb,
            "user": self.user.to_dict() if self.user else {"username": ""},
        }
        if self.impersonated is not None:
            ev["impersonatedUser"] = self.impersonated.to_dict()
        ev["sourceIPs"] = self.source_ips
        if self.user_agent:
            ev["userAgent"] = self.user_agent
        if self.resource:
            ref: dict[str, Any] = {"resource": self.resource}
            for key, value in (("namespace", self.namespace), ("name", self.name),
                               ("apiGroup", self.api_group), ("apiVersion", self.api_version),
                               ("subresource", self.subresource)):
                if value:
                    ref[key] = value
            ev["objectRef"] = ref
        status: dict[str, Any] = {"metadata": {}, "code": self.code}
        if self.code >= 400:
            status["status"] = "Failure"
            if self.reason:
                status["reason"] = self.reason
            # Authentication and authorization refusals are written by us and name only the
            # user and the request; other errors' messages may quote object content.
            if self.message and self.code in (401, 403):
                status["message"] = self.message
        ev["responseStatus"] = status
        ev["requestReceivedTimestamp"] = timestamp(self.received)
        ev["stageTimestamp"] = timestamp()
        return ev


class AuditLog:
    """Appends audit events to `path` (created 0600: it names users and objects)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(mode=0o600, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name="audit-log", daemon=True)
        self._thread.start()

    def record(self, rec: AuditRecord) -> None:
        """Log one finished request, if it is one the audit log keeps."""
        if rec.wanted():
            self._queue.put(json.dumps(rec.event(), separators=(",", ":")))

    def _write_loop(self) -> None:
        while True:
            # Everything queued meanwhile goes out in one write and one flush: under load, a
            # system call per line would cost more than the lines.
            lines = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(lines) < 1024:
                    lines.append(self._queue.get_nowait())
            stop = _STOP in lines
            text = "".join(f"{line}\n" for line in lines if line is not _STOP)
            try:
                if text:
                    self._file.write(text)
                    self._file.flush()
            except OSError as e:  # a full disk must not take the apiserver down
                log.error("audit log %s: %s", self.path, e)
            if stop:
                return

    async def close(self) -> None:
        """Write what is queued, then close the file."""
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._file.close()
