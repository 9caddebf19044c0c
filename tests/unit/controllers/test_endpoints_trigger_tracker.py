"""The endpoints controller's last-change-trigger-time: which change a sync reports, and its format.

Mirrors upstream's trigger_time_tracker_test.go: a new Service reports its creation; later syncs
report the earliest trigger time that changed since the previous sync; nothing changed: none.
"""

from __future__ import annotations

import datetime as dt

from api.core import Pod, Service
from controllers.endpoints import TriggerTimeTracker, format_trigger_time

T0 = "2024-05-01T10:00:00Z"
T1 = "2024-05-01T10:00:01Z"
T2 = "2024-05-01T10:00:02Z"
T3 = "2024-05-01T10:00:03Z"


def at(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def svc(created: str = T0) -> Service:
    return Service.model_validate({"metadata": {"name": "web", "namespace": "ns",
                                                "creationTimestamp": created},
                                   "spec": {"selector": {"app": "web"}}})


def pod(name: str, ready_at: str | None) -> Pod:
    cond = {"type": "Ready", "status": "True",
            **({"lastTransitionTime": ready_at} if ready_at else {})}
    return Pod.model_validate({"metadata": {"name": name, "namespace": "ns"},
                               "status": {"conditions": [cond]}})


def test_new_service_reports_its_creation() -> None:
    t = TriggerTimeTracker()
    assert t.compute("ns/web", svc(T0), [pod("a", T2)]) == at(T0)


def test_later_sync_reports_the_earliest_changed_pod_time() -> None:
    t = TriggerTimeTracker()
    t.compute("ns/web", svc(T0), [pod("a", T1), pod("b", T1)])
    # a changed at T3, c appeared at T2: the oldest unreflected change is T2.
    assert t.compute("ns/web", svc(T0), [pod("a", T3), pod("b", T1), pod("c", T2)]) == at(T2)


def test_nothing_changed_reports_none() -> None:
    t = TriggerTimeTracker()
    t.compute("ns/web", svc(T0), [pod("a", T1)])
    assert t.compute("ns/web", svc(T0), [pod("a", T1)]) is None
    # A pod going away is not a trigger time of its own (upstream: only times that moved).
    assert t.compute("ns/web", svc(T0), []) is None


def test_pods_without_ready_transition_time_are_ignored() -> None:
    t = TriggerTimeTracker()
    t.compute("ns/web", svc(T0), [])
    assert t.compute("ns/web", svc(T0), [pod("a", None)]) is None


def test_recreated_service_is_new_again() -> None:
    t = TriggerTimeTracker()
    t.compute("ns/web", svc(T0), [pod("a", T1)])
    t.delete("ns/web")
    assert t.compute("ns/web", svc(T3), [pod("a", T1)]) == at(T3)


def test_format_is_go_rfc3339nano_in_utc() -> None:
    assert format_trigger_time(at(T1)) == "2024-05-01T10:00:01Z"
    when = dt.datetime(2024, 5, 1, 12, 0, 1, 250000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert format_trigger_time(when) == "2024-05-01T10:00:01.25Z"
    assert format_trigger_time(at("2024-05-01T10:00:01.000123Z")) == "2024-05-01T10:00:01.000123Z"
