"""The audit log: one audit.k8s.io/v1 Event per mutating or refused request, metadata only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from apiserver.__main__ import parse
from apiserver.audit import (
    AuditLog,
    AuditRecord,
    RotatingFile,
    backup_stamp,
    parse_backup_stamp,
)
from apiserver.auth import UserInfo

ALICE = UserInfo("alice", ("dev", "system:authenticated"))


async def test_mutating_and_refused_requests_are_logged_reads_are_not(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.log"
    audit = AuditLog(path)
    audit.record(AuditRecord("create", "pods", namespace="default", name="web", api_version="v1",
                             user=ALICE, source_ips=["127.0.0.1"], user_agent="tkctl",
                             code=201))
    audit.record(AuditRecord("get", "pods", namespace="default", name="web", user=ALICE))
    audit.record(AuditRecord("list", "secrets", namespace="kube-system", user=ALICE, code=403,
                             reason="Forbidden", message='secrets is forbidden: User "alice"'))
    audit.record(AuditRecord("update", "deployments", subresource="scale", api_group="apps",
                             api_version="v1", namespace="ns", name="web", user=ALICE, code=409,
                             reason="Conflict", message="the object has been modified"))
    await audit.close()
    assert path.stat().st_mode & 0o777 == 0o600
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["verb"] for e in events] == ["create", "list", "update"]
    created, refused, conflict = events
    assert created["apiVersion"] == "audit.k8s.io/v1" and created["kind"] == "Event"
    assert created["level"] == "Metadata" and created["stage"] == "ResponseComplete"
    assert created["user"] == {"username": "alice", "groups": ["dev", "system:authenticated"]}
    assert created["objectRef"] == {"resource": "pods", "namespace": "default", "name": "web",
                                    "apiVersion": "v1"}
    assert created["responseStatus"] == {"metadata": {}, "code": 201}
    assert created["requestURI"] == "/api/v1/namespaces/default/pods/web"
    assert created["sourceIPs"] == ["127.0.0.1"] and created["userAgent"] == "tkctl"
    assert created["auditID"] and created["requestReceivedTimestamp"].endswith("Z")
    assert "requestObject" not in created and "responseObject" not in created
    assert refused["responseStatus"]["code"] == 403
    assert refused["responseStatus"]["reason"] == "Forbidden"
    assert "message" in refused["responseStatus"]
    # Other errors' messages may quote object content: only the reason is kept.
    assert conflict["responseStatus"] == {"metadata": {}, "code": 409, "status": "Failure",
                                          "reason": "Conflict"}
    assert conflict["requestURI"] == "/apis/apps/v1/namespaces/ns/deployments/web/scale"


async def test_impersonation_keeps_both_users(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "a.log")
    audit.record(AuditRecord("delete", "nodes", name="n1", user=ALICE,
                             impersonated=UserInfo("bob", ("system:authenticated",))))
    await audit.close()
    (event,) = [json.loads(x) for x in (tmp_path / "a.log").read_text().splitlines()]
    assert event["user"]["username"] == "alice"
    assert event["impersonatedUser"]["username"] == "bob"
    assert event["objectRef"] == {"resource": "nodes", "name": "n1"}


async def test_appends_across_restarts(tmp_path: Path) -> None:
    for _ in range(2):
        audit = AuditLog(tmp_path / "a.log")
        audit.record(AuditRecord("create", "pods", user=ALICE))
        await audit.close()
    assert len((tmp_path / "a.log").read_text().splitlines()) == 2


# --- rotation (--audit-log-maxsize, --audit-log-maxbackup, --audit-log-maxage) ----------------

MB = 1024 * 1024
DAY = 24 * 3600


class Clock:
    """A clock that advances one second per reading, so every rotation has its own second."""

    def __init__(self, start: float = 1_714_557_600.0) -> None:  # 2024-05-01T10:00:00Z
        self.now = start

    def __call__(self) -> float:
        self.now += 1
        return self.now


def big_record(i: int) -> AuditRecord:
    # ~10 KiB per line (a long user agent), so a few hundred lines pass 1 MB.
    return AuditRecord("create", "configmaps", namespace="default", name=f"cm-{i}",
                       user=ALICE, user_agent="x" * 10_000, code=201)


def lines_of(paths: list[Path]) -> list[dict[str, object]]:
    return [json.loads(line) for p in paths for line in p.read_text().splitlines()]


async def test_rotates_at_maxsize_and_keeps_maxbackup_backups(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path, max_size_mb=1, max_backups=2, clock=Clock())
    for i in range(400):  # ~4 MB: three rotations at least
        audit.record(big_record(i))
    await audit.close()
    backups = sorted(p for p in tmp_path.iterdir() if p != path)
    assert len(backups) == 2, backups
    for p in [path, *backups]:
        assert p.stat().st_size <= MB, p
        assert p.stat().st_mode & 0o777 == 0o600
    # lumberjack's names: <name>-<UTC time, milliseconds>.<ext>
    assert [p.name[:6] for p in backups] == ["audit-", "audit-"]
    assert all(re.fullmatch(r"audit-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}\.log", p.name)
               for p in backups), backups
    # Whole lines only, the newest events kept, in order.
    names = [e["objectRef"]["name"] for e in lines_of([*backups, path])]  # type: ignore[index]
    assert names == [f"cm-{i}" for i in range(400 - len(names), 400)]


async def test_without_maxbackup_every_event_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path, max_size_mb=1, clock=Clock())
    for i in range(250):
        audit.record(big_record(i))
    await audit.close()
    files = sorted(tmp_path.iterdir(), key=lambda p: (p == path, p.name))
    assert len(files) == 3
    names = [e["objectRef"]["name"] for e in lines_of(files)]  # type: ignore[index]
    assert names == [f"cm-{i}" for i in range(250)]


async def test_maxage_removes_old_backups_by_the_time_in_their_name(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "audit.log"
    old = tmp_path / f"audit-{backup_stamp(clock.now - 10 * DAY)}.log"
    recent = tmp_path / f"audit-{backup_stamp(clock.now - 2 * DAY)}.log"
    unrelated = [tmp_path / "audit-notes.log", tmp_path / "other-2020-01-01T00-00-00.000.log"]
    for p in (old, recent, *unrelated):
        p.write_text("{}\n")
    audit = AuditLog(path, max_age_days=7, clock=clock)
    audit.record(big_record(0))  # the first write opens the file: old backups go then
    await audit.close()
    assert not old.exists()
    assert recent.exists() and all(p.exists() for p in unrelated)


async def test_a_full_log_found_at_start_is_rotated_first(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b"{}\n" * (MB // 3))  # just under 1 MB
    audit = AuditLog(path, max_size_mb=1, clock=Clock())
    audit.record(big_record(0))
    await audit.close()
    backup, = (p for p in tmp_path.iterdir() if p != path)
    assert backup.read_bytes() == b"{}\n" * (MB // 3)
    assert [e["objectRef"]["name"] for e in lines_of([path])] == ["cm-0"]  # type: ignore[index]


def test_an_oversized_line_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    f = RotatingFile(path, max_size_mb=1, clock=Clock())
    huge = b"y" * (MB + 10) + b"\n"
    f.write_lines([b"a\n", huge, b"b\n"])
    f.close()
    contents = sorted(p.read_bytes() for p in tmp_path.iterdir())
    assert contents == [b"a\n", b"b\n", huge]


def test_rotations_within_one_millisecond_get_distinct_names(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    f = RotatingFile(path, max_size_mb=1, clock=lambda: 1_714_557_600.0)
    line = b"z" * (MB // 2 - 10) + b"\n"  # two to a file
    f.write_lines([line] * 6)
    f.close()
    assert len(list(tmp_path.iterdir())) == 3 and len(f.backups()) == 2


def test_backup_stamp_is_lumberjacks_format() -> None:
    assert backup_stamp(1_714_557_600.1239) == "2024-05-01T10-00-00.123"
    assert parse_backup_stamp("2024-05-01T10-00-00.123") == 1_714_557_600.123
    assert parse_backup_stamp("2024-13-01T10-00-00.123") is None
    assert parse_backup_stamp("notes") is None


def test_rotation_flags() -> None:
    cfg = parse(["--audit-log-path", "/tmp/a.log", "--audit-log-maxsize", "20",
                 "--audit-log-maxbackup", "5", "--audit-log-maxage", "30"])
    assert (cfg.audit_log_maxsize, cfg.audit_log_maxbackup, cfg.audit_log_maxage) == (20, 5, 30)
    assert (parse([]).audit_log_maxsize, parse([]).audit_log_maxbackup) == (0, 0)
    for flag in ("--audit-log-maxsize", "--audit-log-maxbackup", "--audit-log-maxage"):
        with pytest.raises(SystemExit):
            parse([flag, "-1"])


def test_metrics_port_is_on_loopback_unless_opened() -> None:
    assert parse(["--metrics-port", "9090"]).metrics_bind_address == "127.0.0.1"
    assert parse(["--metrics-bind-address", "0.0.0.0"]).metrics_bind_address == "0.0.0.0"
    for bad in (["--metrics-bind-address", "localhost"], ["--metrics-port", "70000"]):
        with pytest.raises(SystemExit):
            parse(bad)
