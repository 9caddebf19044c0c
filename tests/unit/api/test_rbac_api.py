"""The RBAC and review kinds: registration, defaults, validation wording, and their tables."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from api import rbac
from api.codec import decode
from api.defaults import apply_defaults
from api.resources import RESOURCES, TOKEN_REQUEST_MODEL, lookup
from api.validation import validate
from tkctl import printers
from tkctl.printers import TableOptions, format_table


def causes(resource: str, data: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    info = RESOURCES[resource]
    obj, _ = decode(info, data)
    apply_defaults(obj)
    old_obj = None
    if old is not None:
        old_obj, _ = decode(info, old)
        apply_defaults(old_obj)
    return [str(c) for c in validate(info.kind, obj, old_obj)]


def role(**extra: Any) -> dict[str, Any]:
    return {"apiVersion": rbac.API_VERSION, "kind": "Role",
            "metadata": {"name": "pod-reader", "namespace": "default"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}], **extra}


def binding(kind: str = "RoleBinding", **extra: Any) -> dict[str, Any]:
    md: dict[str, Any] = {"name": "read-pods"}
    if kind == "RoleBinding":
        md["namespace"] = "default"
    return {"apiVersion": rbac.API_VERSION, "kind": kind, "metadata": md,
            "subjects": [{"kind": "User", "name": "jane"}],
            "roleRef": {"kind": "ClusterRole", "name": "view"}, **extra}


# --- registration ---------------------------------------------------------------------------


def test_kinds_are_registered_like_upstream() -> None:
    for name, kind, namespaced in (("roles", "Role", True), ("clusterroles", "ClusterRole", False),
                                   ("rolebindings", "RoleBinding", True),
                                   ("clusterrolebindings", "ClusterRoleBinding", False)):
        info = RESOURCES[name]
        assert (info.kind, info.group, info.namespaced) == (kind, rbac.GROUP, namespaced)
        assert not info.virtual and "create" in info.verbs and "watch" in info.verbs
        assert lookup(f"{name}.rbac.authorization.k8s.io") is info
    for name in ("selfsubjectaccessreviews", "subjectaccessreviews", "selfsubjectreviews",
                 "tokenreviews"):
        info = RESOURCES[name]
        assert info.virtual and info.verbs == ("create",) and not info.namespaced
    assert "token" in RESOURCES["serviceaccounts"].subresources
    assert TOKEN_REQUEST_MODEL.KIND == "TokenRequest"


def test_camel_case_wire_names_round_trip() -> None:
    data = {"apiVersion": rbac.API_VERSION, "kind": "ClusterRole", "metadata": {"name": "x"},
            "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
                      {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"],
                       "verbs": ["get"]}],
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}}
    obj, warnings = decode(RESOURCES["clusterroles"], data)
    assert warnings == []
    assert obj.to_dict() == data


# --- defaults ---------------------------------------------------------------------------------


def test_binding_defaults_fill_the_rbac_api_group() -> None:
    data = binding(subjects=[{"kind": "User", "name": "jane"}, {"kind": "Group", "name": "g"},
                             {"kind": "ServiceAccount", "name": "sa"}])
    obj, _ = decode(RESOURCES["rolebindings"], data)
    apply_defaults(obj)
    out = obj.to_dict()
    assert out["roleRef"] == {"apiGroup": rbac.GROUP, "kind": "ClusterRole", "name": "view"}
    assert [s.get("apiGroup") for s in out["subjects"]] == [rbac.GROUP, rbac.GROUP, None]


def test_token_request_defaults_to_an_hour() -> None:
    obj, _ = decode_token_request({"spec": {"audiences": ["api"]}})
    assert obj.to_dict()["spec"]["expirationSeconds"] == 3600


def decode_token_request(data: dict[str, Any]) -> tuple[Any, list[str]]:
    obj = TOKEN_REQUEST_MODEL.model_validate(data)
    apply_defaults(obj)
    return obj, [str(c) for c in validate("TokenRequest", obj)]


# --- validation ---------------------------------------------------------------------------------


def test_valid_objects_pass() -> None:
    assert causes("roles", role()) == []
    assert causes("rolebindings", binding()) == []
    assert causes("clusterrolebindings", binding("ClusterRoleBinding")) == []
    cr = {"kind": "ClusterRole", "metadata": {"name": "system:kube-scheduler"},
          "rules": [{"nonResourceURLs": ["/api/*"], "verbs": ["get"]}]}
    assert causes("clusterroles", cr) == []


def test_rbac_names_are_path_segments() -> None:
    assert causes("roles", {**role(), "metadata": {"name": "a:b", "namespace": "d"}}) == []
    assert causes("roles", {**role(), "metadata": {"name": "a/b", "namespace": "d"}}) == [
        "metadata.name: Invalid value: \"a/b\": may not contain '/'"]
    assert causes("clusterroles", {"metadata": {"name": ".."}}) == [
        "metadata.name: Invalid value: \"..\": may not be '..'"]


def test_policy_rule_messages() -> None:
    rules = [{"apiGroups": [""], "resources": ["pods"]},
             {"verbs": ["get"]},
             {"verbs": ["get"], "nonResourceURLs": ["/healthz"], "resources": ["pods"]}]
    assert causes("roles", role(rules=rules)) == [
        "rules[0].verbs: Required value: verbs must contain at least one value",
        "rules[1].apiGroups: Required value: resource rules must supply at least one api group",
        "rules[1].resources: Required value: resource rules must supply at least one resource",
        'rules[2].nonResourceURLs: Invalid value: []string{"/healthz"}: namespaced rules '
        "cannot apply to non-resource URLs",
        'rules[2].nonResourceURLs: Invalid value: []string{"/healthz"}: rules cannot apply to '
        "both regular resources and non-resource URLs",
    ]


def test_aggregation_rule_needs_a_selector() -> None:
    cr = {"metadata": {"name": "agg"}, "aggregationRule": {}}
    assert causes("clusterroles", cr) == [
        "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector "
        "required if aggregationRule is non-nil"]


def test_role_ref_rules() -> None:
    assert causes("rolebindings", binding(roleRef={})) == [
        'roleRef.kind: Unsupported value: "": supported values: "ClusterRole", "Role"',
        "roleRef.name: Required value",
    ]
    assert causes("clusterrolebindings", binding("ClusterRoleBinding",
                                                 roleRef={"kind": "Role", "name": "r"})) == [
        'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"']
    assert causes("rolebindings", binding(roleRef={"apiGroup": "x", "kind": "Role",
                                                   "name": "r"})) == [
        'roleRef.apiGroup: Unsupported value: "x": supported values: '
        '"rbac.authorization.k8s.io"']


def test_role_ref_is_immutable() -> None:
    old = binding()
    new = binding(roleRef={"kind": "ClusterRole", "name": "edit"})
    assert causes("rolebindings", new, old) == [
        'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", '
        'Kind:"ClusterRole", Name:"edit"}: cannot change roleRef']
    assert causes("rolebindings", binding(subjects=[]), old) == []


def test_subject_rules() -> None:
    subjects = [{"kind": "Robot", "name": "r2"}, {"kind": "User"},
                {"kind": "ServiceAccount", "name": "Bad_Name"},
                {"kind": "ServiceAccount", "name": "sa", "apiGroup": "rbac.authorization.k8s.io"},
                {"kind": "Group", "name": "g", "apiGroup": "example.com"}]
    got = causes("rolebindings", binding(subjects=subjects))
    assert got[0] == ('subjects[0].kind: Unsupported value: "Robot": supported values: '
                      '"Group", "ServiceAccount", "User"')
    assert got[1] == "subjects[1].name: Required value"
    assert got[2].startswith('subjects[2].name: Invalid value: "Bad_Name": a lowercase RFC 1123')
    assert got[3] == ('subjects[3].apiGroup: Unsupported value: "rbac.authorization.k8s.io": '
                      'supported values: ""')
    assert got[4] == ('subjects[4].apiGroup: Unsupported value: "example.com": supported '
                      'values: "rbac.authorization.k8s.io"')
    # A ServiceAccount subject of a RoleBinding may omit its namespace (the binding's own);
    # a ClusterRoleBinding's may not.
    sa = [{"kind": "ServiceAccount", "name": "sa"}]
    assert causes("rolebindings", binding(subjects=sa)) == []
    assert causes("clusterrolebindings", binding("ClusterRoleBinding", subjects=sa)) == [
        "subjects[0].namespace: Required value"]


def test_access_review_validation() -> None:
    ok = {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}}
    assert causes("selfsubjectaccessreviews", ok) == []
    assert causes("selfsubjectaccessreviews", {"spec": {}}) == [
        "spec.resourceAttributes: Invalid value: null: exactly one of nonResourceAttributes or "
        "resourceAttributes must be specified"]
    both = {"spec": {"resourceAttributes": {"verb": "get"},
                     "nonResourceAttributes": {"path": "/api", "verb": "get"}}}
    assert causes("selfsubjectaccessreviews", both)[0].startswith(
        "spec.nonResourceAttributes: Invalid value: ")
    assert causes("subjectaccessreviews", ok) == [
        'spec.user: Invalid value: "": at least one of user or group must be specified']
    named = {**ok, "metadata": {"name": "x"}}
    assert causes("selfsubjectaccessreviews", named)[0].endswith("must be empty")


def test_token_request_validation() -> None:
    assert decode_token_request({"spec": {"expirationSeconds": 600}})[1] == []
    assert decode_token_request({"spec": {"expirationSeconds": -1}})[1] == [
        "spec.expirationSeconds: Invalid value: -1: must be greater than 0"]
    assert decode_token_request({"spec": {"expirationSeconds": 1 << 33}})[1] == [
        f"spec.expirationSeconds: Invalid value: {1 << 33}: may not specify a duration larger "
        "than 2^32 seconds"]
    assert decode_token_request({"spec": {"boundObjectRef": {"kind": "Pod"}}})[1] == [
        "spec.boundObjectRef.name: Required value"]


@pytest.mark.parametrize("resource", ["tokenreviews", "selfsubjectreviews"])
def test_other_reviews_need_no_name(resource: str) -> None:
    assert causes(resource, {}) == []


# --- tkctl tables -----------------------------------------------------------------------------

NOW = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def test_role_and_binding_tables() -> None:
    r = {**role(), "metadata": {"name": "pod-reader", "creationTimestamp": "2024-01-01T11:00:00Z"}}
    assert format_table([r], TableOptions(), NOW) == [
        "NAME         CREATED AT", "pod-reader   2024-01-01T11:00:00Z"]
    b = binding(subjects=[{"kind": "User", "name": "jane"}, {"kind": "User", "name": "bob"},
                          {"kind": "Group", "name": "devs"},
                          {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}])
    b["metadata"]["creationTimestamp"] = "2024-01-01T11:59:00Z"
    assert printers.headers_for("RoleBinding", TableOptions(wide=True)) == [
        "NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert printers.row_for(b, TableOptions(wide=True), NOW) == [
        "read-pods", "ClusterRole/view", "60s", "jane, bob", "devs", "tools/ci"]
    crb = {**binding("ClusterRoleBinding"), "kind": "ClusterRoleBinding"}
    assert printers.headers_for("ClusterRoleBinding", TableOptions()) == ["NAME", "ROLE", "AGE"]
    assert printers.row_for(crb, TableOptions(), NOW)[:2] == ["read-pods", "ClusterRole/view"]
