"""Strategic merge patch (api.strategicpatch) and its metadata table (api.patchmeta).

Cases follow upstream's documented behaviour: the kubectl apply / kubectl patch flows of the
Kubernetes docs and the vectors of k8s.io/apimachinery's strategicpatch tests, on our models.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from api import apps, autoscaling, core, errors, meta, patchmeta
from api.patch import merge_patch
from api.patchmeta import FieldMeta, field_meta, field_model, patched_fields, unwrap_model
from api.strategicpatch import strategic_merge_patch as smp


def names(*ns: str) -> list[dict[str, Any]]:
    return [{"name": n} for n in ns]


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "finalizers": ["a", "b"]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.25",
                         "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                        {"name": "sidecar", "image": "busybox:1"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "tolerations": [{"key": "k1", "operator": "Exists"},
                                    {"key": "k2", "operator": "Exists"}],
                },
            },
        },
    }


def pod_spec(d: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = d["spec"]["template"]["spec"]
    return spec


def template(patch: dict[str, Any]) -> dict[str, Any]:
    """A patch of the Deployment's pod spec."""
    return {"spec": {"template": {"spec": patch}}}


# --- kubectl apply / kubectl patch of a Deployment ----------------------------------------


def test_changing_one_image_keeps_the_rest_of_the_containers() -> None:
    # What kubectl apply sends when only the image changed in the manifest.
    out = smp(deployment(), template({
        "$setElementOrder/containers": names("web", "sidecar"),
        "containers": [{"name": "web", "image": "nginx:1.26"}]}), apps.Deployment)
    want = deployment()
    pod_spec(want)["containers"][0]["image"] = "nginx:1.26"
    assert out == want


def test_patch_of_one_container_without_order_keeps_the_order() -> None:
    out = smp(deployment(), template({"containers": [{"name": "sidecar", "image": "b:2"}]}),
              apps.Deployment)
    assert [(c["name"], c["image"]) for c in pod_spec(out)["containers"]] == [
        ("web", "nginx:1.25"), ("sidecar", "b:2")]


def test_adding_an_env_var_by_name() -> None:
    out = smp(deployment(), template({"containers": [{
        "name": "web", "$setElementOrder/env": names("A", "B", "C"),
        "env": [{"name": "C", "value": "3"}]}]}), apps.Deployment)
    assert pod_spec(out)["containers"][0]["env"] == [
        {"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}]


def test_changing_an_env_var_keeps_its_other_fields() -> None:
    out = smp(deployment(), template({"containers": [{
        "name": "web", "env": [{"name": "B", "value": None,
                                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}),
        apps.Deployment)
    assert pod_spec(out)["containers"][0]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]


def test_removing_an_env_var_with_patch_delete() -> None:
    out = smp(deployment(), template({"containers": [{
        "name": "web", "env": [{"$patch": "delete", "name": "A"}]}]}), apps.Deployment)
    assert pod_spec(out)["containers"][0]["env"] == [{"name": "B", "value": "2"}]


def test_deleting_a_container_and_a_missing_one() -> None:
    out = smp(deployment(), template({"containers": [{"$patch": "delete", "name": "sidecar"},
                                                     {"$patch": "delete", "name": "nope"}]}),
              apps.Deployment)
    assert [c["name"] for c in pod_spec(out)["containers"]] == ["web"]


def test_adding_a_container_puts_the_patch_items_first_as_upstream() -> None:
    # Without $setElementOrder upstream orders the patch's items first, then keeps each item
    # only the server has before the first patch item that followed it on the server: the
    # kubernetes.io "kubectl patch" task shows the added container first.
    out = smp(deployment(), template({"containers": [{"name": "new", "image": "redis"}]}),
              apps.Deployment)
    assert [c["name"] for c in pod_spec(out)["containers"]] == ["new", "web", "sidecar"]


def test_set_element_order_places_a_new_container() -> None:
    out = smp(deployment(), template({
        "$setElementOrder/containers": names("web", "new", "sidecar"),
        "containers": [{"name": "new", "image": "redis"}]}), apps.Deployment)
    assert [c["name"] for c in pod_spec(out)["containers"]] == ["web", "new", "sidecar"]
    assert pod_spec(out)["containers"][1] == {"name": "new", "image": "redis"}


def test_set_element_order_alone_reorders() -> None:
    out = smp(deployment(), template({"$setElementOrder/containers": names("sidecar", "web")}),
              apps.Deployment)
    assert [c["name"] for c in pod_spec(out)["containers"]] == ["sidecar", "web"]
    assert pod_spec(out)["containers"][1] == pod_spec(deployment())["containers"][0]


def test_patch_replace_on_a_list_replaces_it() -> None:
    out = smp(deployment(), template({"containers": [{"$patch": "replace"},
                                                     {"name": "only", "image": "x"}]}),
              apps.Deployment)
    assert pod_spec(out)["containers"] == [{"name": "only", "image": "x"}]


def test_patch_replace_with_no_items_empties_the_list() -> None:
    out = smp(deployment(), template({"volumes": [{"$patch": "replace"}]}), apps.Deployment)
    assert pod_spec(out)["volumes"] == []


def test_patch_replace_on_a_map_replaces_it() -> None:
    out = smp(deployment(), {"metadata": {"labels": {"$patch": "replace", "tier": "fe"}}},
              apps.Deployment)
    assert out["metadata"]["labels"] == {"tier": "fe"}


def test_patch_delete_on_a_map_empties_it() -> None:
    out = smp(deployment(), {"metadata": {"labels": {"$patch": "delete"}}}, apps.Deployment)
    assert out["metadata"]["labels"] == {}


def test_patch_merge_is_the_default() -> None:
    out = smp(deployment(), {"metadata": {"labels": {"$patch": "merge", "tier": "fe"}}},
              apps.Deployment)
    assert out["metadata"]["labels"] == {"app": "web", "tier": "fe"}


def test_directives_in_a_field_the_object_lacks() -> None:
    d = deployment()
    del d["spec"]["strategy"]
    out = smp(d, {"spec": {"strategy": {"$patch": "replace", "type": "Recreate"},
                           "paused": None, "revisionHistoryLimit": 3,
                           "minReadySeconds": {"$patch": "delete"}}}, apps.Deployment)
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    assert out["spec"]["revisionHistoryLimit"] == 3
    assert "paused" not in out["spec"] and "minReadySeconds" not in out["spec"]


def test_null_deletes_a_merged_list_and_a_label() -> None:
    out = smp(deployment(), {"metadata": {"labels": {"app": None}},
                             "spec": {"template": {"spec": {"volumes": None}}}},
              apps.Deployment)
    assert out["metadata"]["labels"] == {}
    assert "volumes" not in pod_spec(out)


# --- primitive lists: finalizers -----------------------------------------------------------


def test_finalizers_merge_as_a_set() -> None:
    out = smp(deployment(), {"metadata": {"finalizers": ["b", "c"]}}, apps.Deployment)
    assert out["metadata"]["finalizers"] == ["a", "b", "c"]


def test_delete_from_primitive_list() -> None:
    out = smp(deployment(), {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "x"]}},
              apps.Deployment)
    assert out["metadata"]["finalizers"] == ["b"]


def test_delete_from_primitive_list_never_adds_the_list() -> None:
    d = deployment()
    del d["metadata"]["finalizers"]
    out = smp(d, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, apps.Deployment)
    assert "finalizers" not in out["metadata"]


def test_kubectl_apply_of_finalizers_with_order_and_deletion() -> None:
    out = smp(deployment(), {"metadata": {"$setElementOrder/finalizers": ["c", "b"],
                                          "finalizers": ["c"],
                                          "$deleteFromPrimitiveList/finalizers": ["a"]}},
              apps.Deployment)
    assert out["metadata"]["finalizers"] == ["c", "b"]


def test_primitive_merge_upstream_vectors() -> None:
    def run(orig: list[str], patch: list[str]) -> list[str]:
        out = smp({"finalizers": orig}, {"finalizers": patch}, meta.ObjectMeta)
        return list(out["finalizers"])

    assert run(["1", "2"], ["2", "3"]) == ["1", "2", "3"]
    assert run(["1", "2", "3"], ["3", "1", "2"]) == ["3", "1", "2"]
    assert run(["1", "2", "3"], ["3", "1"]) == ["2", "3", "1"]
    assert run(["1", "2"], []) == ["1", "2"]


def test_atomic_primitive_list_is_replaced() -> None:
    out = smp({"spec": {"containers": [{"name": "c", "args": ["a", "b"]}]}},
              {"spec": {"containers": [{"name": "c", "args": ["b"]}]}}, core.Pod)
    assert out["spec"]["containers"][0]["args"] == ["b"]


# --- retainKeys ------------------------------------------------------------------------------


def test_retain_keys_switching_strategy_to_recreate() -> None:
    # kubectl apply of `strategy: {type: Recreate}`: the old rollingUpdate must go.
    out = smp(deployment(), {"spec": {"strategy": {"$retainKeys": ["type"],
                                                   "type": "Recreate"}}}, apps.Deployment)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_without_retain_keys_the_strategy_merges() -> None:
    out = smp(deployment(), {"spec": {"strategy": {"type": "Recreate"}}}, apps.Deployment)
    assert out["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%",
                                                        "maxUnavailable": "25%"}


def test_retain_keys_of_a_volume_source() -> None:
    out = smp(deployment(), template({"volumes": [{
        "$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cm"}}]}),
        apps.Deployment)
    assert pod_spec(out)["volumes"] == [{"name": "data", "configMap": {"name": "cm"}}]


def test_retain_keys_must_name_what_the_patch_sets() -> None:
    with pytest.raises(errors.Invalid, match=r"spec\.strategy\.\$retainKeys: .*'rollingUpdate'"):
        smp(deployment(), {"spec": {"strategy": {
            "$retainKeys": ["type"], "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1}}}}, apps.Deployment)


# --- atomic lists, unknown and loose fields -------------------------------------------------


def test_tolerations_are_atomic() -> None:
    out = smp(deployment(), template({"tolerations": [{"key": "k3", "operator": "Exists"}]}),
              apps.Deployment)
    assert pod_spec(out)["tolerations"] == [{"key": "k3", "operator": "Exists"}]


def test_node_taints_are_atomic() -> None:
    node = {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}
    out = smp(node, {"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}, core.Node)
    assert out["spec"]["taints"] == [{"key": "b", "effect": "NoExecute"}]


def test_unknown_fields_merge_like_json_merge_patch() -> None:
    d = deployment()
    d["spec"]["future"] = {"a": 1, "b": [1, 2], "c": {"x": 1}}
    out = smp(d, {"spec": {"future": {"a": None, "b": [3], "c": {"y": 2}}, "other": [1]}},
              apps.Deployment)
    assert out["spec"]["future"] == {"b": [3], "c": {"x": 1, "y": 2}}
    assert out["spec"]["other"] == [1]


def test_loose_dict_fields_merge_by_key() -> None:
    pod = {"spec": {"securityContext": {"runAsUser": 1, "fsGroup": 2,
                                        "sysctls": [{"name": "a", "value": "1"}]}}}
    out = smp(pod, {"spec": {"securityContext": {"fsGroup": None, "runAsGroup": 3,
                                                 "sysctls": [{"name": "b", "value": "2"}]}}},
              core.Pod)
    assert out["spec"]["securityContext"] == {"runAsUser": 1, "runAsGroup": 3,
                                              "sysctls": [{"name": "b", "value": "2"}]}


def test_map_of_quantities_merges() -> None:
    node = {"status": {"capacity": {"cpu": "2", "memory": "1Gi"}}}
    out = smp(node, {"status": {"capacity": {"cpu": "4", "pods": "110"}}}, core.Node)
    assert out["status"]["capacity"] == {"cpu": "4", "memory": "1Gi", "pods": "110"}


def test_a_different_json_type_replaces() -> None:
    out = smp({"spec": {"replicas": 2}}, {"spec": {"replicas": "three"}}, apps.Deployment)
    assert out["spec"]["replicas"] == "three"  # validation, not the patch, refuses it


# --- other kinds -----------------------------------------------------------------------------


def test_owner_references_merge_by_uid() -> None:
    obj = {"metadata": {"ownerReferences": [
        {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1"}]}}
    out = smp(obj, {"metadata": {"ownerReferences": [
        {"uid": "1", "controller": True},
        {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2"}]}}, core.ConfigMap)
    assert out["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": True},
        {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2"}]


def test_pod_status_conditions_merge_by_type() -> None:
    pod = {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}}
    out = smp(pod, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, core.Pod)
    assert out["status"]["conditions"] == [
        {"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]


def test_node_addresses_and_conditions_merge_by_type() -> None:
    node = {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}
    out = smp(node, {"status": {
        "addresses": [{"type": "Hostname", "address": "n1"}],
        "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletDown"}]}},
        core.Node)
    assert {a["type"] for a in out["status"]["addresses"]} == {"InternalIP", "Hostname"}
    assert out["status"]["conditions"] == [
        {"type": "Ready", "status": "False", "reason": "KubeletDown"}]


def test_service_ports_merge_by_port() -> None:
    svc = {"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080},
                              {"name": "https", "port": 443}]}}
    out = smp(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, core.Service)
    assert out["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 9090},
                                    {"name": "https", "port": 443}]


def test_merge_key_numbers_compare_as_json_numbers() -> None:
    ctr = {"name": "c", "ports": [{"containerPort": 80, "name": "a"}]}
    out = smp(ctr, {"ports": [{"containerPort": 80.0, "name": "b"}]}, core.Container)
    assert out["ports"] == [{"containerPort": 80, "name": "b"}]


def test_endpoint_subsets_are_atomic() -> None:
    ep = {"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}
    out = smp(ep, {"subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]}, core.Endpoints)
    assert out["subsets"] == [{"addresses": [{"ip": "10.0.0.2"}]}]


def test_scale_patch() -> None:
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"},
             "spec": {"replicas": 2}, "status": {"replicas": 2, "selector": "app=web"}}
    out = smp(scale, {"spec": {"replicas": 5}}, autoscaling.Scale)
    assert out["spec"] == {"replicas": 5} and out["status"] == scale["status"]


# --- upstream's vectors for merged lists of objects -----------------------------------------


@pytest.mark.parametrize(("orig", "patch", "want"), [
    # preserve the order from the patch in a merging list (1 and 2)
    ([{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}],
     [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}, {"name": "2", "other": "x"}],
     [{"name": "3", "value": "c"}, {"name": "1", "value": "a"},
      {"name": "2", "value": "b", "other": "x"}]),
    ([{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}],
     [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}],
     [{"name": "2", "value": "b"}, {"name": "3", "value": "c"}, {"name": "1", "value": "a"}]),
    # delete all duplicate entries in a merging list
    ([{"name": "1"}, {"name": "1"}, {"name": "2", "value": "a"}, {"name": "3"}, {"name": "3"}],
     [{"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}],
     [{"name": "2", "value": "a"}]),
    # merge empty merging lists; an empty patch list changes nothing
    ([], [], []),
    ([{"name": "1"}], [], [{"name": "1"}]),
])
def test_merging_list_vectors(orig: list[Any], patch: list[Any], want: list[Any]) -> None:
    assert smp({"containers": orig}, {"containers": patch}, core.PodSpec)["containers"] == want


@pytest.mark.parametrize(("current", "order", "want"), [
    (["1", "3", "4", "2", "9"], ["4", "2", "3", "1"], ["4", "2", "3", "1", "9"]),
    (["1", "2", "9", "3", "4"], ["2", "1", "4", "3"], ["2", "1", "9", "4", "3"]),
    (["1", "2", "7", "9", "8", "3", "4"], ["2", "1", "4", "3"],
     ["2", "1", "7", "9", "8", "4", "3"]),
])
def test_set_element_order_with_server_only_items(current: list[str], order: list[str],
                                                  want: list[str]) -> None:
    out = smp({"containers": names(*current)},
              {"$setElementOrder/containers": names(*order)}, core.PodSpec)
    assert [c["name"] for c in out["containers"]] == want


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("patch", "error", "message"), [
    (template({"containers": [{"image": "x"}]}), errors.BadRequest,
     r"spec\.template\.spec\.containers\[0\]: does not contain the merge key 'name'"),
    (template({"containers": [{"$patch": "delete"}]}), errors.BadRequest,
     r"containers\[0\]: .*merge key 'name'"),
    (template({"containers": [{"$patch": "remove", "name": "web"}]}), errors.BadRequest,
     r"unknown \$patch directive 'remove'"),
    ({"metadata": {"$patch": "bogus"}}, errors.BadRequest, r"^invalid strategic merge patch: "
     r"metadata: unknown \$patch directive 'bogus'"),
    (template({"$setElementOrder/containers": "web"}), errors.BadRequest,
     r"spec\.template\.spec\.\$setElementOrder/containers: must be a list"),
    (template({"$setElementOrder/containers": names("sidecar"),
               "containers": [{"name": "web", "image": "y"}]}), errors.BadRequest,
     r"\$setElementOrder/containers: the items of containers in the patch must all appear"),
    (template({"$setElementOrder/containers": ["web"]}), errors.BadRequest,
     r"\$setElementOrder/containers\[0\]: must be an object naming the merge key 'name'"),
    (template({"$setElementOrder": []}), errors.BadRequest,
     r'is written "\$setElementOrder/<field>"'),
    ({"spec": {"strategy": {"$retainKeys": "type"}}}, errors.BadRequest,
     r"spec\.strategy\.\$retainKeys: must be a list of field names"),
    ({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}, errors.BadRequest,
     r"must be a list of the values to remove"),
    (template({"$deleteFromPrimitiveList/containers": ["web"]}), errors.BadRequest,
     r"all have one type"),
    ({"metadata": {"finalizers": [["a"]]}}, errors.Invalid, r"lists of lists"),
    ({"metadata": {"finalizers": [1, "a"]}}, errors.BadRequest,
     r"metadata\.finalizers: the items of a merged list must all have one type"),
    (template({"containers": ["web"]}), errors.BadRequest, r"must all have one type"),
])
def test_user_errors_name_the_field(patch: dict[str, Any], error: type[errors.ApiError],
                                    message: str) -> None:
    with pytest.raises(error, match=message) as e:
        smp(deployment(), patch, apps.Deployment)
    assert e.value.causes and e.value.causes[0].field


def test_a_patch_must_be_an_object() -> None:
    with pytest.raises(errors.BadRequest, match="must be a JSON object"):
        smp(deployment(), [], apps.Deployment)  # type: ignore[arg-type]


def test_deeply_nested_patch_is_a_bad_request() -> None:
    deep: dict[str, Any] = {}
    for _ in range(5000):
        deep = {"x": deep}
    with pytest.raises(errors.BadRequest, match="nested too deeply"):
        smp({}, deep, apps.Deployment)


def test_inputs_are_not_mutated() -> None:
    d, p = deployment(), template({
        "$setElementOrder/containers": names("sidecar", "web"),
        "containers": [{"name": "sidecar", "$setElementOrder/env": names("X"),
                        "env": [{"name": "X", "value": "1"}]},
                       {"name": "web", "env": [{"$patch": "delete", "name": "A"}]}],
        "volumes": [{"$retainKeys": ["name", "hostPath"], "name": "data",
                     "hostPath": {"path": "/d"}}],
        "tolerations": [{"key": "t"}]})
    d0, p0 = copy.deepcopy(d), copy.deepcopy(p)
    out = smp(d, p, apps.Deployment)
    assert d == d0 and p == p0
    # Nor is the result sharing containers with the inputs.
    pod_spec(out)["tolerations"][0]["key"] = "changed"
    pod_spec(out)["containers"][0]["env"].append({"name": "Z"})
    assert d == d0 and p == p0


# --- properties ---------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
PLAIN_KEYS = st.text(alphabet="abcxyz", min_size=1, max_size=3)  # no `$`: no directives
PLAIN_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(PLAIN_KEYS, children, max_size=4),
    max_leaves=20,
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Loose(BaseModel):
    """A model that knows no field: every field merges as JSON merge patch."""


@SETTINGS
@given(st.dictionaries(st.sampled_from(["metadata", "spec", "status", "x"]), JSON, max_size=4),
       st.sampled_from([core.Pod, apps.Deployment, core.Node, core.Service, Loose]))
def test_empty_patch_is_identity(original: dict[str, Any], model: type[BaseModel]) -> None:
    assert smp(original, {}, model) == original


@SETTINGS
@given(st.dictionaries(PLAIN_KEYS, PLAIN_JSON, max_size=5),
       st.dictionaries(PLAIN_KEYS, PLAIN_JSON, max_size=5))
def test_without_merge_keys_it_is_json_merge_patch(original: dict[str, Any],
                                                   patch: dict[str, Any]) -> None:
    assert smp(original, patch, Loose) == merge_patch(original, patch)


TOLERATION = st.fixed_dictionaries({"key": st.text(max_size=3)}, optional={
    "operator": st.sampled_from(["Exists", "Equal"]), "value": st.text(max_size=3),
    "effect": st.sampled_from(["NoSchedule", "NoExecute"])})


@SETTINGS
@given(st.lists(TOLERATION, max_size=4), st.lists(TOLERATION, max_size=4),
       st.lists(st.text(max_size=3), max_size=4))
def test_full_replacement_of_fields_without_merge_keys(old: list[Any], new: list[Any],
                                                       args: list[str]) -> None:
    original = {"spec": {"tolerations": old,
                         "containers": [{"name": "c", "args": ["old"], "image": "i"}]}}
    patch = {"spec": {"tolerations": new, "containers": [{"name": "c", "args": args}]}}
    out = smp(original, patch, core.Pod)
    assert out["spec"]["tolerations"] == new
    assert out["spec"]["containers"] == [{"name": "c", "args": args, "image": "i"}]


# Patches made of real field names and every directive, well- or ill-formed.
REAL_KEYS = st.sampled_from([
    "spec", "template", "containers", "name", "env", "value", "ports", "containerPort",
    "metadata", "finalizers", "labels", "strategy", "type", "rollingUpdate", "volumes",
    "tolerations", "$patch", "$retainKeys", "$setElementOrder/containers",
    "$setElementOrder/finalizers", "$deleteFromPrimitiveList/finalizers", "$setElementOrder",
])
DIRECTIVE_VALUES = st.sampled_from(["replace", "delete", "merge", "other"])
FUZZ = st.recursive(
    st.none() | st.integers(0, 3) | st.sampled_from(["web", "a", "b"]) | DIRECTIVE_VALUES,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(REAL_KEYS, children, max_size=4),
    max_leaves=25,
)


@SETTINGS
@given(st.dictionaries(REAL_KEYS, FUZZ, max_size=4))
def test_any_patch_gives_a_result_or_an_api_error(patch: dict[str, Any]) -> None:
    original, before = deployment(), copy.deepcopy(patch)
    try:
        out = smp(original, patch, apps.Deployment)
    except errors.ApiError as e:
        assert str(e).startswith(("invalid strategic merge patch", "a strategic merge patch"))
    else:
        assert isinstance(out, dict)
        assert smp(original, {}, apps.Deployment) == deployment()
    assert original == deployment() and patch == before


@SETTINGS
@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=4, unique=True),
       st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=4, unique=True))
def test_merged_list_is_the_union_and_patching_twice_changes_nothing(
        old: list[str], new: list[str]) -> None:
    once = smp({"finalizers": old}, {"finalizers": new}, meta.ObjectMeta)
    assert sorted(once["finalizers"]) == sorted(set(old) | set(new))
    assert smp(once, {"finalizers": new}, meta.ObjectMeta) == once
    ordered = smp({"containers": names(*old)}, {"$setElementOrder/containers": names(*new),
                                               "containers": names(*new)}, core.PodSpec)
    got = [c["name"] for c in ordered["containers"]]
    assert sorted(got) == sorted(set(old) | set(new))
    assert [n for n in got if n in new] == new


# --- patchmeta --------------------------------------------------------------------------------


def test_field_meta_of_upstream_tags() -> None:
    assert field_meta(core.PodSpec, "containers") == FieldMeta("merge", "name", "map", ("name",))
    assert field_meta(core.Container, "ports") == FieldMeta(
        "merge", "containerPort", "map", ("containerPort", "protocol"))
    assert field_meta(core.Container, "volumeMounts").merge_key == "mountPath"  # type: ignore[union-attr]
    assert field_meta(meta.ObjectMeta, "finalizers") == FieldMeta("merge", "", "set")
    assert field_meta(apps.DeploymentSpec, "strategy") == FieldMeta("retainKeys")
    volumes = field_meta(core.PodSpec, "volumes")
    assert volumes is not None and volumes.merges and volumes.retains_keys
    assert volumes.strategies == ("merge", "retainKeys")
    atomic: list[tuple[type[BaseModel], str]] = [
        (core.PodSpec, "tolerations"), (core.NodeSpec, "taints"), (core.Container, "envFrom"),
        (core.Endpoints, "subsets"), (core.ServiceAccount, "imagePullSecrets"),
        (core.PodSpec, "nodeSelector"), (core.PodSpec, "nope")]
    for model, name in atomic:
        assert field_meta(model, name) is None, (model, name)


def test_field_meta_is_inherited() -> None:
    class MyPodSpec(core.PodSpec):
        pass

    assert field_meta(MyPodSpec, "containers") == field_meta(core.PodSpec, "containers")


def test_field_model_unwraps_optional_lists_and_maps() -> None:
    assert field_model(core.PodSpec, "containers") is core.Container
    assert field_model(core.Pod, "metadata") is meta.ObjectMeta
    assert field_model(core.Pod, "spec") is core.PodSpec
    assert field_model(core.NodeStatus, "capacity") is None
    assert field_model(core.PodSpec, "securityContext") is None
    assert field_model(core.PodSpec, "nope") is None
    assert unwrap_model(dict[str, list[core.EnvVar]] | None) is core.EnvVar
    assert unwrap_model(int | str) is None


def test_patched_fields_lists_a_models_rows_in_field_order() -> None:
    assert list(patched_fields(core.PodSpec)) == [
        "volumes", "initContainers", "containers", "imagePullSecrets", "hostAliases",
        "topologySpreadConstraints"]
    assert patched_fields(core.Taint) == {}


def test_every_merge_key_is_a_field_of_the_item_model() -> None:
    for (model, name), fm in patchmeta.PATCH_META.items():
        assert fm.strategies and set(fm.strategies) <= {"merge", "retainKeys", "replace"}
        assert not fm.merge_key or fm.merges, (model, name)
        item = field_model(model, name)
        if item is None or not fm.merge_key:
            continue
        assert patchmeta.model_field(item, fm.merge_key) is not None, (model, name)
        for key in fm.list_map_keys:
            assert patchmeta.model_field(item, key) is not None, (model, name, key)
