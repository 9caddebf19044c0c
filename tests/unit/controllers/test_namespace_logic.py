"""The namespace controller's pure parts: what to delete, how long to wait, what to report."""

from __future__ import annotations

from typing import Any

from controllers.namespace import (
    ContentResult,
    conditions_for,
    deletable_resources,
    merge_conditions,
    pod_grace_estimate,
)


def test_deletable_resources_are_the_stored_namespaced_ones() -> None:
    names = {r.name for r in deletable_resources()}
    assert {"pods", "services", "configmaps", "events", "replicasets", "leases"} <= names
    assert "namespaces" not in names and "nodes" not in names
    assert "subjectaccessreviews" not in names  # virtual: nothing stored


def test_pod_grace_estimate_ignores_finished_pods() -> None:
    pods: list[dict[str, Any]] = [
        {"spec": {"terminationGracePeriodSeconds": 30}, "status": {"phase": "Running"}},
        {"spec": {"terminationGracePeriodSeconds": 90}, "status": {"phase": "Succeeded"}},
        {"spec": {"terminationGracePeriodSeconds": 5}},
    ]
    assert pod_grace_estimate(pods) == 30
    assert pod_grace_estimate([]) == 0


def test_conditions_all_clear_read_like_upstream() -> None:
    conds = conditions_for(ContentResult())
    assert [(t, s, r) for t, s, r, _ in conds] == [
        ("NamespaceDeletionDiscoveryFailure", "False", "ResourcesDiscovered"),
        ("NamespaceDeletionGroupVersionParsingFailure", "False", "ParsedGroupVersions"),
        ("NamespaceDeletionContentFailure", "False", "ContentDeleted"),
        ("NamespaceContentRemaining", "False", "ContentRemoved"),
        ("NamespaceFinalizersRemaining", "False", "ContentHasNoFinalizers"),
    ]


def test_conditions_report_what_remains() -> None:
    result = ContentResult(estimate=30, remaining={"pods": 2, "replicasets.apps": 1},
                           finalizers={"orphan": 1, "example.com/hold": 2})
    by_type = {t: (s, r, m) for t, s, r, m in conditions_for(result)}
    assert by_type["NamespaceContentRemaining"] == (
        "True", "SomeResourcesRemain",
        "Some resources are remaining: pods has 2 resource instances, replicasets.apps has 1 "
        "resource instances")
    assert by_type["NamespaceFinalizersRemaining"] == (
        "True", "SomeFinalizersRemain",
        "Some content in the namespace has finalizers remaining: example.com/hold in 2 "
        "resource instances, orphan in 1 resource instances")


def test_conditions_report_failures() -> None:
    result = ContentResult(errors=["pods: boom"])
    by_type = {t: (s, r, m) for t, s, r, m in conditions_for(result)}
    assert by_type["NamespaceDeletionContentFailure"] == (
        "True", "ContentDeletionFailed",
        "Failed to delete all resource types, 1 remaining: pods: boom")


def test_merge_keeps_transition_time_while_status_holds() -> None:
    first = merge_conditions([{"type": "Other", "status": "True"}],
                             ContentResult(remaining={"pods": 1}), "t1")
    assert first[0] == {"type": "Other", "status": "True"}  # not ours: kept as is
    second = merge_conditions(first, ContentResult(remaining={"pods": 2}), "t2")
    remaining = next(c for c in second if c["type"] == "NamespaceContentRemaining")
    assert remaining["lastTransitionTime"] == "t1"
    assert remaining["message"].endswith("pods has 2 resource instances")
    third = merge_conditions(second, ContentResult(), "t3")
    remaining = next(c for c in third if c["type"] == "NamespaceContentRemaining")
    assert (remaining["status"], remaining["lastTransitionTime"]) == ("False", "t3")
