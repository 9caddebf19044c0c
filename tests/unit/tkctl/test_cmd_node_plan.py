"""kubectl drain's pod filters (pure): what is evicted, what is refused, what is skipped."""

from __future__ import annotations

from typing import Any

import pytest

from tkctl.cmd_node import plan_drain
from tkctl.context import UsageError
from tkctl.sorting import parse_path, sort_by, sort_events


def pod(name: str, owner: str | None = "ReplicaSet", phase: str = "Running",
        emptydir: bool = False, mirror: bool = False) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": "ns"}
    if owner:
        md["ownerReferences"] = [{"kind": owner, "name": "o", "uid": "u", "controller": True,
                                  "apiVersion": "apps/v1"}]
    if mirror:
        md["annotations"] = {"kubernetes.io/config.mirror": "hash"}
    spec: dict[str, Any] = {"volumes": [{"name": "v", "emptyDir": {}}]} if emptydir else {}
    return {"metadata": md, "spec": spec, "status": {"phase": phase}}


def names(pods: list[dict[str, Any]]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def test_managed_pods_are_evicted_and_mirror_pods_skipped() -> None:
    plan = plan_drain([pod("a"), pod("m", owner=None, mirror=True)], force=False,
                      ignore_daemonsets=False, delete_emptydir_data=False)
    assert names(plan.evict) == ["a"] and not plan.fatal and not plan.warnings


def test_unmanaged_needs_force() -> None:
    plan = plan_drain([pod("a", owner=None), pod("b", owner=None)], force=False,
                      ignore_daemonsets=False, delete_emptydir_data=False)
    assert plan.errors() == ["cannot delete Pods declare no controller (use --force to "
                             "override): ns/a, ns/b"]
    forced = plan_drain([pod("a", owner=None)], force=True, ignore_daemonsets=False,
                        delete_emptydir_data=False)
    assert names(forced.evict) == ["a"]
    assert forced.warning_line() == "deleting Pods that declare no controller: ns/a"


def test_daemonset_pods_are_refused_or_ignored_never_evicted() -> None:
    plan = plan_drain([pod("d", owner="DaemonSet")], force=True, ignore_daemonsets=False,
                      delete_emptydir_data=False)
    assert plan.errors() == ["cannot delete DaemonSet-managed Pods (use --ignore-daemonsets "
                             "to ignore): ns/d"]
    ignored = plan_drain([pod("d", owner="DaemonSet")], force=True, ignore_daemonsets=True,
                         delete_emptydir_data=False)
    assert not ignored.evict and ignored.warning_line() == \
        "ignoring DaemonSet-managed Pods: ns/d"


def test_emptydir_needs_delete_emptydir_data_unless_finished() -> None:
    plan = plan_drain([pod("e", emptydir=True)], force=False, ignore_daemonsets=False,
                      delete_emptydir_data=False)
    assert plan.errors() == ["cannot delete Pods with local storage (use "
                             "--delete-emptydir-data to override): ns/e"]
    done = plan_drain([pod("e", emptydir=True, owner=None, phase="Succeeded")], force=False,
                      ignore_daemonsets=False, delete_emptydir_data=False)
    assert names(done.evict) == ["e"] and not done.fatal


def test_sort_by_paths_and_missing_values_first() -> None:
    objs = [{"metadata": {"name": "b"}, "spec": {"replicas": 10}},
            {"metadata": {"name": "a"}, "spec": {"replicas": 9}},
            {"metadata": {"name": "c"}, "spec": {}}]
    assert names(sort_by(objs, "{.metadata.name}")) == ["a", "b", "c"]
    assert names(sort_by(objs, ".spec.replicas")) == ["c", "a", "b"]  # numeric, not text
    assert parse_path(".spec.containers[0].image") == ["spec", "containers", 0, "image"]
    with pytest.raises(UsageError, match="--sort-by"):
        parse_path("metadata.name")


def test_events_sort_by_last_timestamp_with_fallbacks() -> None:
    evs = [{"metadata": {"name": "x"}, "lastTimestamp": "2025-01-01T00:00:03Z"},
           {"metadata": {"name": "y", "creationTimestamp": "2025-01-01T00:00:01Z"}},
           {"metadata": {"name": "z"}, "eventTime": "2025-01-01T00:00:02.000000Z"}]
    assert names(sort_events(evs)) == ["y", "z", "x"]
