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

The file rotates as kube-apiserver's does, which hands it to lumberjack (`--audit-log-maxsize`,
`--audit-log-maxbackup`, `--audit-log-maxage`): a busy cluster writes tens of megabytes an hour,
and an audit log that only grows ends by filling the control plane's disk. `RotatingFile` is
lumberjack's behaviour for one writer; see its docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
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


MEGABYTE = 1024 * 1024
DEFAULT_MAX_SIZE_MB = 100  # lumberjack's size when MaxSize is 0 (kube-apiserver's default)
_DAY = 24 * 3600
# lumberjack's backupTimeFormat, "2006-01-02T15-04-05.000", in UTC:
# `audit-2024-05-01T10-00-00.123.log`.
_BACKUP_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})\.(\d{3})")


def backup_stamp(when: float) -> str:
    """A UNIX time as the timestamp lumberjack puts in a backup's name (UTC, milliseconds)."""
    ms = int(when * 1000)  # truncated, as Go's Format
    return time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}"


def parse_backup_stamp(text: str) -> float | None:
    """The UNIX time of a `backup_stamp`, None if `text` is not one."""
    m = _BACKUP_TIME.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, sec, ms = (int(g) for g in m.groups())
    try:
        when = dt.datetime(y, mo, d, h, mi, sec, ms * 1000, tzinfo=dt.UTC)
    except ValueError:
        return None
    return when.timestamp()


class RotatingFile:
    """A file that rotates like lumberjack.Logger (what kube-apiserver's audit log writes to):

    - a write that would take the file past `max_size_mb` megabytes (0: 100) first moves it
      aside as `<name>-<UTC time>.<ext>` (`audit-2024-05-01T10-00-00.123.log`) and starts a
      new, empty file under the original name; the check happens at every write and when an
      existing file is reopened at start;
    - after a rotation (and at the first open), backups beyond the newest `max_backups` are
      deleted (0: keep all), and so are backups older than `max_age_days` days by the time in
      their name (0: no limit); files that do not look like backups are never touched.

    Differences, each so that an audit event is never lost: a write larger than the limit
    goes whole into a file of its own (lumberjack refuses it), and two rotations within one
    millisecond get distinct names (lumberjack's second rename would replace the first backup).
    Not thread-safe: one writer (AuditLog's thread). `clock` is for tests.
    """

    def __init__(self, path: str | Path, *, max_size_mb: int = 0, max_backups: int = 0,
                 max_age_days: int = 0, mode: int = 0o600,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.max_bytes = (max_size_mb or DEFAULT_MAX_SIZE_MB) * MEGABYTE
        self.max_backups = max_backups
        self.max_age_days = max_age_days
        self.mode = mode
        self.clock = clock
        self._fd: int | None = None
        self._size = 0
        self._last_backup = 0.0
        stem, ext = os.path.splitext(self.path.name)  # "audit.log" → ("audit", ".log")
        self._prefix, self._ext = f"{stem}-", ext

    def write_lines(self, lines: Sequence[bytes]) -> None:
        """Append `lines` (each ending with its newline), rotating between two lines where the
        limit falls: a line is never split across files."""
        if self._fd is None:
            self._open_existing_or_new(len(lines[0]) if lines else 0)
        chunk: list[bytes] = []
        pending = 0
        for line in lines:
            if chunk or self._size:
                if self._size + pending + len(line) > self.max_bytes:
                    self._write(b"".join(chunk))
                    chunk, pending = [], 0
                    self._rotate()
            chunk.append(line)
            pending += len(line)
        if chunk:
            self._write(b"".join(chunk))

    def backups(self) -> list[tuple[float, Path]]:
        """The rotated files beside the log, newest first, with the time in their names."""
        out = []
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return []
        for name in names:
            if not (name.startswith(self._prefix) and name.endswith(self._ext)):
                continue
            stamp = name[len(self._prefix):len(name) - len(self._ext)] if self._ext else (
                name[len(self._prefix):])
            when = parse_backup_stamp(stamp)
            if when is not None:
                out.append((when, self.path.parent / name))
        out.sort(reverse=True)
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- lumberjack's steps -------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:  # os.write may write less than asked (a full disk raises instead)
            n = os.write(self._fd, view)
            view = view[n:]
            self._size += n

    def _open_existing_or_new(self, first_write: int) -> None:
        self._mill()
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            self._open_new()
            return
        if size and size + first_write >= self.max_bytes:
            self._rotate()
            return
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.mode)
        self._size = size

    def _rotate(self) -> None:
        self.close()
        self._open_new()
        self._mill()

    def _open_new(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            # Never the same name twice, even for rotations within one millisecond.
            when = max(self.clock(), self._last_backup + 0.001)
            backup = self._backup_path(when)
            while backup.exists():
                when += 0.001
                backup = self._backup_path(when)
            os.replace(self.path, backup)
            self._last_backup = when
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC,
                           self.mode)
        os.fchmod(self._fd, self.mode)  # whatever the umask
        self._size = 0

    def _backup_path(self, when: float) -> Path:
        return self.path.with_name(f"{self._prefix}{backup_stamp(when)}{self._ext}")

    def _mill(self) -> None:
        """Delete the backups beyond --audit-log-maxbackup and older than --audit-log-maxage."""
        if not self.max_backups and not self.max_age_days:
            return
        files = self.backups()
        doomed = []
        if self.max_backups and len(files) > self.max_backups:
            doomed, files = files[self.max_backups:], files[:self.max_backups]
        if self.max_age_days:
            cutoff = self.clock() - self.max_age_days * _DAY
            doomed += [f for f in files if f[0] < cutoff]
        for _, path in doomed:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.error("audit log: cannot remove old backup %s: %s", path, e)


class AuditLog:
    """Appends audit events to `path` (created 0600: it names users and objects), rotated by
    size with `RotatingFile` (the keyword arguments are its own)."""

    def __init__(self, path: str | Path, *, max_size_mb: int = 0, max_backups: int = 0,
                 max_age_days: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Created now, so a path the apiserver cannot write fails at start, not at a request.
        self.path.touch(mode=0o600, exist_ok=True)
        self._file = RotatingFile(self.path, max_size_mb=max_size_mb, max_backups=max_backups,
                                  max_age_days=max_age_days, clock=clock)
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
            data = [f"{line}\n".encode() for line in lines if line is not _STOP]
            try:
                if data:
                    self._file.write_lines(data)
            except OSError as e:  # a full disk must not take the apiserver down
                log.error("audit log %s: %s", self.path, e)
            if stop:
                return

    async def close(self) -> None:
        """Write what is queued, then close the file."""
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._file.close()
