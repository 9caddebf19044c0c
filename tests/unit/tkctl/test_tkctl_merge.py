"""Client-side apply's three-way merge patch."""

from __future__ import annotations

import json

from api.patch import merge_patch as apply_merge_patch
from tkctl.merge import (
    LAST_APPLIED,
    last_applied,
    three_way_patch,
    with_last_applied,
)

MANIFEST = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "nginx", "namespace": "default", "labels": {"app": "nginx"}},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "nginx"}},
             "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [
                 {"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]}]}}},
}


def live_from(manifest: dict) -> dict:
    """What the server would hold after creating `manifest`: defaults and status added."""
    live = json.loads(json.dumps(with_last_applied(manifest)))
    live["metadata"].update(uid="u1", resourceVersion="7", creationTimestamp="2024-01-01T00:00:00Z")
    live["metadata"]["labels"]["added-by-hand"] = "yes"
    c = live["spec"]["template"]["spec"]["containers"][0]
    c.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
    c["ports"][0]["protocol"] = "TCP"
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    live["status"] = {"replicas": 3}
    return live


def test_reapplying_the_same_manifest_is_empty_despite_server_defaults() -> None:
    live = live_from(MANIFEST)
    assert three_way_patch(last_applied(live), with_last_applied(MANIFEST), live) == {}


def test_changed_field_is_set_and_annotation_updated() -> None:
    live = live_from(MANIFEST)
    edited = json.loads(json.dumps(MANIFEST))
    edited["spec"]["replicas"] = 5
    patch = three_way_patch(last_applied(live), with_last_applied(edited), live)
    assert patch["spec"] == {"replicas": 5}
    assert json.loads(patch["metadata"]["annotations"][LAST_APPLIED])["spec"]["replicas"] == 5
    assert set(patch) == {"spec", "metadata"}


def test_field_removed_from_manifest_is_deleted_but_others_fields_kept() -> None:
    live = live_from(MANIFEST)
    edited = json.loads(json.dumps(MANIFEST))
    del edited["metadata"]["labels"]
    patch = three_way_patch(last_applied(live), with_last_applied(edited), live)
    assert patch["metadata"]["labels"] is None
    # a label only added by hand would also go with the whole map; a removed key only goes alone:
    edited2 = json.loads(json.dumps(MANIFEST))
    edited2["metadata"]["labels"] = {}
    patch2 = three_way_patch(last_applied(live), with_last_applied(edited2), live)
    assert patch2["metadata"]["labels"] == {"app": None}
    result = apply_merge_patch(live, patch2)
    assert result["metadata"]["labels"] == {"added-by-hand": "yes"}
    assert result["status"] == {"replicas": 3}


def test_changed_list_is_replaced_whole() -> None:
    live = live_from(MANIFEST)
    edited = json.loads(json.dumps(MANIFEST))
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.16.1"
    patch = three_way_patch(last_applied(live), with_last_applied(edited), live)
    assert patch["spec"] == {"template": {"spec": {"containers": [
        {"name": "nginx", "image": "nginx:1.16.1", "ports": [{"containerPort": 80}]}]}}}


def test_field_removed_inside_a_list_element_resends_the_list() -> None:
    live = live_from(MANIFEST)
    edited = json.loads(json.dumps(MANIFEST))
    del edited["spec"]["template"]["spec"]["containers"][0]["ports"]
    patch = three_way_patch(last_applied(live), with_last_applied(edited), live)
    assert patch["spec"]["template"]["spec"]["containers"] == [
        {"name": "nginx", "image": "nginx:1.14.2"}]


def test_live_drift_on_a_managed_field_is_reset() -> None:
    live = live_from(MANIFEST)
    live["spec"]["replicas"] = 10  # scaled by someone else
    patch = three_way_patch(last_applied(live), with_last_applied(MANIFEST), live)
    assert patch == {"spec": {"replicas": 3}}


def test_without_previous_apply_nothing_is_deleted() -> None:
    live = live_from(MANIFEST)
    del live["metadata"]["annotations"]
    patch = three_way_patch(None, with_last_applied({**MANIFEST, "metadata": {"name": "nginx"}}),
                            live)
    assert "labels" not in patch["metadata"]
    assert LAST_APPLIED in patch["metadata"]["annotations"]


def test_last_applied_annotation_excludes_itself() -> None:
    obj = with_last_applied(with_last_applied(MANIFEST))
    recorded = json.loads(obj["metadata"]["annotations"][LAST_APPLIED])
    assert LAST_APPLIED not in (recorded["metadata"].get("annotations") or {})
    assert obj["metadata"]["annotations"][LAST_APPLIED].endswith("\n")


def test_apply_merge_patch_rfc7386() -> None:
    assert apply_merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"a": None, "b": {"c": 4}}) == {
        "b": {"c": 4, "d": 3}}
    assert apply_merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
