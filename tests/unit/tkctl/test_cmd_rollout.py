"""`tkctl rollout`'s pure parts: kubectl's status messages, history table, rollback choice and
patch, restart stamp, and the refusals that need no server."""

from __future__ import annotations

import datetime as dt
import io
import time
from typing import Any

import pytest

from tkctl import cmd_rollout as r
from tkctl.commands import execute

Obj = dict[str, Any]


def dep(gen: int = 2, observed: int = 2, want: int = 3, **status: Any) -> Obj:
    return {"metadata": {"name": "web", "generation": gen, "uid": "u1",
                         "annotations": {r.REVISION: "2", "team": "a"}},
            "spec": {"replicas": want, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}},
            "status": {"observedGeneration": observed, **status}}


def rs(rev: str, image: str, cause: str = "", owner: str = "u1") -> Obj:
    ann = {r.REVISION: rev, "deployment.kubernetes.io/desired-replicas": "3"}
    if cause:
        ann[r.CHANGE_CAUSE] = cause
    return {"metadata": {"name": f"web-{rev}", "annotations": ann,
                         "ownerReferences": [{"uid": owner, "controller": True}]},
            "spec": {"template": {
                "metadata": {"labels": {"app": "web", "pod-template-hash": f"h{rev}"}},
                "spec": {"containers": [{"name": "c", "image": image}]}}}}


@pytest.mark.parametrize(("d", "want"), [
    (dep(3, 2), ("Waiting for deployment spec update to be observed...", False)),
    (dep(updatedReplicas=1, replicas=3),
     ('Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been '
      "updated...", False)),
    (dep(updatedReplicas=3, replicas=4),
     ('Waiting for deployment "web" rollout to finish: 1 old replicas are pending '
      "termination...", False)),
    (dep(updatedReplicas=3, replicas=3, availableReplicas=2),
     ('Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are '
      "available...", False)),
    (dep(updatedReplicas=3, replicas=3, availableReplicas=3),
     ('deployment "web" successfully rolled out', True)),
])
def test_deployment_status_messages(d: Obj, want: tuple[str, bool]) -> None:
    assert r.deployment_status(d) == want


def test_deployment_status_deadline_and_revision() -> None:
    d = dep(conditions=[{"type": "Progressing", "status": "False",
                         "reason": "ProgressDeadlineExceeded"}])
    with pytest.raises(r.RolloutError, match='deployment "web" exceeded its progress deadline'):
        r.deployment_status(d)
    with pytest.raises(r.RolloutError, match=r"desired revision \(5\) is different from the "
                                             r"running revision \(2\)"):
        r.deployment_status(dep(), revision=5)


def test_history_table() -> None:
    out = r.history_table([rs("10", "a"), rs("2", "b", "kubectl set image"), rs("x", "c")])
    assert out == ("REVISION  CHANGE-CAUSE\n"
                   "2         kubectl set image\n"
                   "10        <none>")
    assert r.history_table([]) == "No rollout history found."


def test_owned_by_keeps_only_the_deployments_replica_sets() -> None:
    mine, other = rs("1", "a"), rs("2", "b", owner="u2")
    assert r.owned_by(dep(), [mine, other]) == [mine]


def test_rollback_target_previous_or_named() -> None:
    rss = [rs("1", "nginx:1"), rs("3", "nginx:3"), rs("2", "nginx:2")]
    assert r.rollback_target(dep(), rss, 0)["metadata"]["name"] == "web-2"
    assert r.rollback_target(dep(), rss, 1)["metadata"]["name"] == "web-1"
    with pytest.raises(r.RolloutError, match="unable to find specified revision 7 in history"):
        r.rollback_target(dep(), rss, 7)
    with pytest.raises(r.RolloutError, match='no rollout history found for deployment "web"'):
        r.rollback_target(dep(), [rs("1", "nginx:1")], 0)


def test_rollback_patch_restores_template_and_annotations() -> None:
    d = dep()
    patch = r.rollback_patch(d, rs("1", "nginx:1", "first"))
    assert patch is not None
    template = patch[0]["value"]
    assert patch[0]["path"] == "/spec/template"
    assert template["metadata"]["labels"] == {"app": "web"}   # the hash label is dropped
    assert template["spec"]["containers"][0]["image"] == "nginx:1"
    # The Deployment keeps its own revision; the rest comes from the ReplicaSet.
    assert patch[1] == {"op": "replace", "path": "/metadata/annotations",
                        "value": {r.REVISION: "2", r.CHANGE_CAUSE: "first"}}
    assert r.rollback_patch(d, rs("2", "nginx:2")) is None


def test_restart_patch_stamps_the_template() -> None:
    p = r.restart_patch(dep(), dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC))
    stamp = p["spec"]["template"]["metadata"]["annotations"][r.RESTARTED_AT]
    assert dt.datetime.fromisoformat(stamp) == dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def test_restart_stamp_is_go_rfc3339(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: Python's isoformat wrote "+00:00" where Go's RFC3339 writes "Z"."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert r.restart_stamp(dt.datetime(2024, 5, 1, 12, 0, 7, 999, tzinfo=dt.UTC)) == (
            "2024-05-01T12:00:07Z")
        monkeypatch.setenv("TZ", "CET-1")
        time.tzset()
        assert r.restart_stamp(dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)) == (
            "2024-05-01T13:00:00+01:00")
    finally:
        monkeypatch.undo()
        time.tzset()


def test_restart_twice_in_one_second_is_refused_like_kubectl() -> None:
    """Regression: a second restart in the same second patched nothing yet said "restarted"."""
    now = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    d = dep()
    d["spec"]["template"]["metadata"]["annotations"] = {r.RESTARTED_AT: r.restart_stamp(now)}
    with pytest.raises(r.RolloutError) as e:
        r.restart_patch(d, now)
    assert str(e.value) == (
        "failed to create patch for web: if restart has already been triggered within the "
        "past second, please wait before attempting to trigger another")


async def _tk(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await execute(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


async def test_rollout_without_subcommand_prints_help() -> None:
    code, out, _ = await _tk("rollout")
    assert code == 0 and "Available Commands:" in out and "undo" in out


async def test_rollout_usage_errors() -> None:
    assert await _tk("rollout", "frobnicate") == (
        1, "", 'error: unknown command "frobnicate" for "tkctl rollout"\n')
    code, _, err = await _tk("rollout", "undo", "deployment/x", "--to-revision", "abc")
    assert code == 1 and err.startswith('error: invalid argument "abc" for "--to-revision"')
