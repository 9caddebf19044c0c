"""The audit log: one audit.k8s.io/v1 Event per mutating or refused request, metadata only."""

from __future__ import annotations

import json
from pathlib import Path

from apiserver.audit import AuditLog, AuditRecord
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
