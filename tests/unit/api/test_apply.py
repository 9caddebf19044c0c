"""Server-side apply's merge and field ownership (api/apply.py), as pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from api import errors
from api.apply import apply, from_fields_v1, record_update, to_fields_v1
from api.apps import Deployment
from api.core import ConfigMap


def _deploy(image: str = "web:1", replicas: int | None = 2,
            env: list[dict[str, str]] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "web", "image": image}
    if env is not None:
        container["env"] = env
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "w"}}, "template": {
        "metadata": {"labels": {"app": "w"}}, "spec": {"containers": [container]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
            "spec": spec}


def _managers(obj: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {(e["manager"], e["operation"]): e["fieldsV1"]
            for e in obj["metadata"]["managedFields"]}


def test_create_records_the_appliers_fields() -> None:
    new = apply(None, _deploy(), Deployment, "kubectl", False, "apps/v1")
    fields = _managers(new)[("kubectl", "Apply")]
    assert fields["f:spec"]["f:replicas"] == {}
    containers = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert containers == {'k:{"name":"web"}': {".": {}, "f:image": {}, "f:name": {}}}


def test_reapply_changes_and_removes_what_was_left_out() -> None:
    live = apply(None, _deploy(env=[{"name": "A", "value": "1"}]), Deployment, "k", False,
                 "apps/v1")
    new = apply(live, _deploy(image="web:2", env=[]), Deployment, "k", False, "apps/v1")
    c = new["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "web:2"
    assert c.get("env") == []


def test_conflict_with_another_manager_unless_forced() -> None:
    live = apply(None, _deploy(replicas=2), Deployment, "kubectl", False, "apps/v1")
    scaled = {**live, "spec": {**live["spec"], "replicas": 5}}
    record_update(live, scaled, Deployment, "kubectl-scale", "apps/v1")
    assert ("kubectl-scale", "Update") in _managers(scaled)
    with pytest.raises(errors.Conflict, match=r'conflict with "kubectl-scale".*\.spec\.replicas'):
        apply(scaled, _deploy(replicas=3), Deployment, "kubectl", False, "apps/v1")
    forced = apply(scaled, _deploy(replicas=3), Deployment, "kubectl", True, "apps/v1")
    assert forced["spec"]["replicas"] == 3
    assert ("kubectl-scale", "Update") not in _managers(forced)
    # The same value is no conflict: both own it.
    same = apply(scaled, _deploy(replicas=5), Deployment, "kubectl", False, "apps/v1")
    assert same["spec"]["replicas"] == 5


def test_a_field_left_out_stays_when_another_manager_owns_it() -> None:
    a = apply(None, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                     "data": {"x": "1", "y": "2"}}, ConfigMap, "a", False, "v1")
    b = apply(a, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                  "data": {"y": "2"}}, ConfigMap, "b", False, "v1")
    again = apply(b, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                      "data": {}}, ConfigMap, "a", False, "v1")
    assert again["data"] == {"y": "2"}


def test_fields_v1_round_trip() -> None:
    paths = {("f:data",), ("f:data", "f:a"), ("f:metadata",), ("f:metadata", "f:labels")}
    assert from_fields_v1(to_fields_v1(paths)) == paths
