"""The OpenAPI documents: what kubectl reads from them, checked against the resource table.

kubectl finds a kind's schema by `x-kubernetes-group-version-kind`, follows `$ref`s, takes patch
strategies from `x-kubernetes-patch-*`, and (1.27+) skips client-side validation when the kind's
PATCH operations take `fieldValidation`; each of those is a test here. That real kubectl 1.29+
reads the v3 documents (explain, create, apply's strategic merge patch) was checked by hand
against a stub server; the end-to-end test belongs with the HTTP front (apiserver/rest/).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from api import apps, core, meta
from api.resources import RESOURCES, ResourceInfo
from apiserver import openapi
from apiserver.openapi import (
    INT_OR_STRING,
    MICRO_TIME,
    PATCH_TYPES,
    QUANTITY,
    TIME,
    definition_name,
    document_bytes,
    openapi_v2,
    openapi_v3,
    openapi_v3_index,
)

V2 = openapi_v2()
DEFS: dict[str, Any] = V2["definitions"]
INDEX = openapi_v3_index()["paths"]
METHODS = ("get", "put", "post", "patch", "delete")


def gvk(info: ResourceInfo, kind: str | None = None) -> dict[str, str]:
    return {"group": info.group, "version": info.version, "kind": kind or info.kind}


def doc_path(info: ResourceInfo) -> str:
    return f"apis/{info.group}/{info.version}" if info.group else f"api/{info.version}"


def collection(info: ResourceInfo) -> str:
    base = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    return f"{base}/namespaces/{{namespace}}/{info.name}" if info.namespaced \
        else f"{base}/{info.name}"


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def operations(paths: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in paths.items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def v3_docs() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in INDEX:
        doc = openapi_v3(path)
        assert doc is not None, path
        yield path, doc


def resolve(schema: dict[str, Any], schemas: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Follow a property to its definition through a `$ref` or a one-element allOf."""
    if "allOf" in schema:
        schema = schema["allOf"][0]
    if "$ref" in schema:
        return dict(schemas[schema["$ref"].removeprefix(prefix)])
    return schema


# --- definitions --------------------------------------------------------------------------------


@pytest.mark.parametrize("info", RESOURCES.values(), ids=lambda r: r.qualified_name)
def test_every_kind_has_a_definition_with_its_group_version_kind(info: ResourceInfo) -> None:
    name = definition_name(info.model)
    assert DEFS[name]["x-kubernetes-group-version-kind"] == [gvk(info)]
    assert DEFS[name]["properties"]["metadata"]["$ref"].endswith(".meta.v1.ObjectMeta")
    if info.virtual:
        assert f"{name}List" not in DEFS  # create-only reviews have no list
        return
    listed = DEFS[f"{name}List"]
    assert listed["x-kubernetes-group-version-kind"] == [gvk(info, info.list_kind)]
    assert listed["properties"]["items"]["items"] == {"$ref": f"#/definitions/{name}"}
    assert listed["required"] == ["items"]


def test_definitions_are_named_as_upstream() -> None:
    for name in ("io.k8s.api.core.v1.Pod", "io.k8s.api.core.v1.PodSpec",
                 "io.k8s.api.apps.v1.Deployment", "io.k8s.api.rbac.v1.ClusterRole",
                 "io.k8s.api.coordination.v1.Lease", "io.k8s.api.autoscaling.v1.Scale",
                 "io.k8s.api.policy.v1.Eviction",
                 "io.k8s.api.authentication.v1.TokenRequest",
                 "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                 "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
                 "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
                 "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
                 "io.k8s.apimachinery.pkg.version.Info"):
        assert name in DEFS, name
    assert DEFS[QUANTITY]["type"] == "string"
    for name, typ, fmt in ((INT_OR_STRING, "string", "int-or-string"),
                           (TIME, "string", "date-time"), (MICRO_TIME, "string", "date-time")):
        assert (DEFS[name]["type"], DEFS[name]["format"]) == (typ, fmt)
    gvks = {(g["group"], g["version"], g["kind"])
            for d in DEFS.values() for g in d.get("x-kubernetes-group-version-kind", [])}
    assert ("autoscaling", "v1", "Scale") in gvks and ("", "v1", "Binding") in gvks


def test_every_ref_resolves_in_v2() -> None:
    dangling = {r for r in refs(V2) if r.removeprefix("#/definitions/") not in DEFS}
    assert not dangling


def test_object_meta_fields_and_types() -> None:
    props = DEFS["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert set(props) >= {"name", "generateName", "namespace", "uid", "resourceVersion",
                          "generation", "creationTimestamp", "deletionTimestamp", "labels",
                          "annotations", "ownerReferences", "finalizers"}
    assert props["name"]["type"] == "string"
    assert props["generation"] == {"type": "integer", "format": "int64"}
    assert props["creationTimestamp"]["$ref"] == f"#/definitions/{TIME}"
    assert props["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    owners = props["ownerReferences"]
    assert owners["items"]["$ref"].endswith("meta.v1.OwnerReference")
    assert owners["x-kubernetes-patch-merge-key"] == "uid"
    assert props["finalizers"]["x-kubernetes-patch-strategy"] == "merge"
    owner = DEFS["io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference"]
    assert owner["required"] == ["apiVersion", "kind", "name", "uid"]
    assert DEFS["io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"]["properties"]["continue"]


def test_pod_spec_fields_types_and_patch_keys() -> None:
    spec = DEFS["io.k8s.api.core.v1.PodSpec"]
    props = spec["properties"]
    assert spec["required"] == ["containers"]
    containers = props["containers"]
    assert containers["type"] == "array"
    assert containers["items"] == {"$ref": "#/definitions/io.k8s.api.core.v1.Container"}
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-list-type"] == "map"
    assert containers["x-kubernetes-list-map-keys"] == ["name"]
    assert props["initContainers"]["x-kubernetes-patch-merge-key"] == "name"
    assert props["nodeSelector"]["additionalProperties"] == {"type": "string"}
    assert props["terminationGracePeriodSeconds"]["format"] == "int64"
    assert props["hostPID"]["type"] == "boolean"  # an explicit alias, not hostPid
    assert props["restartPolicy"]["type"] == "string"
    container = DEFS["io.k8s.api.core.v1.Container"]
    assert "name" in container["required"]
    assert container["properties"]["env"]["x-kubernetes-patch-merge-key"] == "name"
    assert container["properties"]["ports"]["x-kubernetes-list-map-keys"] == \
        ["containerPort", "protocol"]
    limits = DEFS["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]
    assert limits["additionalProperties"] == {"$ref": f"#/definitions/{QUANTITY}"}
    port = DEFS["io.k8s.api.core.v1.ServicePort"]["properties"]["targetPort"]
    assert port == {"$ref": f"#/definitions/{INT_OR_STRING}"}
    lease = DEFS["io.k8s.api.coordination.v1.LeaseSpec"]["properties"]
    assert lease["renewTime"] == {"$ref": f"#/definitions/{MICRO_TIME}"}
    strategy = DEFS["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
    assert strategy["x-kubernetes-patch-strategy"] == "retainKeys"


def test_interim_patch_table_agrees_with_api_patchmeta(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Until `_patch_meta` calls api.patchmeta, its interim rows must say what that module says:
    the documents come out byte-identical with either source."""
    patchmeta = pytest.importorskip("api.patchmeta")
    ours = openapi._encode(openapi._build_v2())
    monkeypatch.setattr(openapi, "_patch_meta", patchmeta.field_meta)
    openapi._model.cache_clear()
    try:
        assert openapi._encode(openapi._build_v2()) == ours
    finally:
        monkeypatch.undo()
        openapi._model.cache_clear()


def test_descriptions_come_from_docstrings_and_fields() -> None:
    assert DEFS["io.k8s.api.core.v1.Binding"]["description"].startswith("pods/binding")
    assert DEFS["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"]["description"]
    assert DEFS["io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent"]["properties"]["object"][
        "description"].startswith("Object is")
    # A model without a docstring has no description (not K8sModel's, which it inherits).
    assert "description" not in DEFS["io.k8s.api.core.v1.PodSpec"]


def test_every_model_field_is_published() -> None:
    for model in (core.PodSpec, core.Container, apps.DeploymentSpec, meta.ObjectMeta):
        published = set(DEFS[definition_name(model)]["properties"])
        wanted = {f.serialization_alias or f.alias or n for n, f in model.model_fields.items()}
        assert published == wanted, model.__name__


def test_an_unmappable_type_is_an_error_not_a_guess() -> None:
    with pytest.raises(TypeError):
        openapi._Definitions()._type(int | float)
    with pytest.raises(ValueError):
        definition_name(type("Stray", (meta.K8sModel,), {"__module__": "elsewhere"}))


# --- paths --------------------------------------------------------------------------------------


@pytest.mark.parametrize("info", RESOURCES.values(), ids=lambda r: r.qualified_name)
def test_every_resource_and_verb_has_its_operation(info: ResourceInfo) -> None:
    paths = V2["paths"]
    ops = {(path, method): op for path, method, op in operations(paths)}
    want = {("post", collection(info), "post")}
    if not info.virtual:
        item = f"{collection(info)}/{{name}}"
        want |= {("get", collection(info), "list"), ("delete", collection(info),
                                                       "deletecollection"),
                 ("get", item, "get"), ("put", item, "put"), ("patch", item, "patch"),
                 ("delete", item, "delete")}
    for method, path, action in want:
        op = ops[(path, method)]
        assert op["x-kubernetes-action"] == action, (path, method)
        assert op["x-kubernetes-group-version-kind"] == gvk(info)
        assert op["operationId"]
    if not info.virtual:
        patch = ops[(f"{collection(info)}/{{name}}", "patch")]
        assert patch["consumes"] == list(PATCH_TYPES)
        assert patch["parameters"][0]["schema"]["$ref"].endswith("meta.v1.Patch")
        watch = [op for (p, _), op in ops.items() if "/watch/" in p and
                 op["x-kubernetes-group-version-kind"] == gvk(info)]
        assert {op["x-kubernetes-action"] for op in watch} == {"watch", "watchlist"}


def test_subresources() -> None:
    paths = V2["paths"]
    pod = "/api/v1/namespaces/{namespace}/pods/{name}"
    assert paths[f"{pod}/status"]["patch"]["x-kubernetes-group-version-kind"]["kind"] == "Pod"
    assert set(paths[f"{pod}/status"]) >= {"get", "put", "patch"}
    assert paths[f"{pod}/binding"]["post"]["x-kubernetes-group-version-kind"]["kind"] == \
        "Binding"
    assert paths[f"{pod}/eviction"]["post"]["x-kubernetes-group-version-kind"] == \
        {"group": "policy", "version": "v1", "kind": "Eviction"}
    log = paths[f"{pod}/log"]["get"]
    assert log["x-kubernetes-action"] == "get" and "text/plain" in log["produces"]
    assert log["responses"]["200"]["schema"] == {"type": "string"}
    for stream, kind in (("exec", "PodExecOptions"), ("attach", "PodAttachOptions"),
                         ("portforward", "PodPortForwardOptions")):
        for method in ("get", "post"):
            op = paths[f"{pod}/{stream}"][method]
            assert op["x-kubernetes-action"] == "connect"
            assert op["x-kubernetes-group-version-kind"]["kind"] == kind
    exec_params = {p["name"] for p in paths[f"{pod}/exec"]["get"]["parameters"]}
    assert exec_params >= {"command", "container", "stdin", "stdout", "stderr", "tty"}
    scale = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["put"]["x-kubernetes-group-version-kind"] == \
        {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert scale["get"]["responses"]["200"]["schema"]["$ref"].endswith("autoscaling.v1.Scale")
    token = paths["/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"]["post"]
    assert token["x-kubernetes-group-version-kind"]["kind"] == "TokenRequest"
    assert paths["/api/v1/namespaces/{name}/finalize"]["put"]["x-kubernetes-action"] == "put"
    # Every subresource the table declares has its path.
    for info in RESOURCES.values():
        for sub in info.subresources:
            assert f"{collection(info)}/{{name}}/{sub}" in paths, (info.name, sub)


def test_operation_ids_are_unique() -> None:
    ids = [op["operationId"] for _, _, op in operations(V2["paths"])]
    assert len(ids) == len(set(ids))
    assert "listCoreV1NamespacedPod" in ids and "patchAppsV1NamespacedDeployment" in ids
    assert "deleteRbacAuthorizationV1CollectionClusterRole" in ids


def test_every_patch_operation_takes_field_validation() -> None:
    """kubectl 1.27+ looks at the PATCH operations of a kind (status and scale too, in no
    particular order) for `fieldValidation`: when the first it finds has it, kubectl leaves
    validation to the server; else it falls back to client-side validation, which needs the
    protobuf v2 document this server does not serve."""
    for _, doc in [("v2", V2), *v3_docs()]:
        for path, method, op in operations(doc["paths"]):
            if method == "patch" and "x-kubernetes-group-version-kind" in op:
                names = {p.get("name") for p in op["parameters"] if p.get("in") == "query"}
                assert {"fieldValidation", "dryRun", "fieldManager"} <= names, path


# --- v3 -----------------------------------------------------------------------------------------


def test_v3_index_lists_every_group_version_with_its_hash() -> None:
    want = {"api", "apis", "version"} | {doc_path(r) for r in RESOURCES.values()} | \
        {f"apis/{r.group}" for r in RESOURCES.values() if r.group}
    assert set(INDEX) == want
    for path, entry in INDEX.items():
        data = document_bytes("v3", path)
        assert data is not None
        assert entry["serverRelativeURL"] == f"/openapi/v3/{path}?hash={data[1]}"
        assert re.fullmatch(r"[0-9A-F]{128}", data[1])  # kube-openapi's: hex SHA-512


@pytest.mark.parametrize("path", sorted(INDEX))
def test_each_v3_document_is_structurally_valid(path: str) -> None:
    doc = openapi_v3(path)
    assert doc is not None
    assert re.fullmatch(r"3\.0\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    schemas = doc["components"]["schemas"]
    assert doc["paths"]
    prefix = "#/components/schemas/"
    assert all(r.startswith(prefix) and r.removeprefix(prefix) in schemas for r in refs(doc))
    ids = set()
    for p, _method, op in operations(doc["paths"]):
        assert p.startswith("/")
        declared = {x["name"] for x in doc["paths"][p].get("parameters", []) +
                    op.get("parameters", []) if x["in"] == "path" and x["required"]}
        assert declared == set(re.findall(r"{(\w+)}", p)), p
        for param in op.get("parameters", []) + doc["paths"][p].get("parameters", []):
            assert param["in"] in ("query", "path") and param["schema"]["type"]
        assert op["responses"] and all(r["description"] for r in op["responses"].values())
        assert op["operationId"] not in ids
        ids.add(op["operationId"])
        if "requestBody" in op:
            assert op["requestBody"]["content"]
        # kubectl reads one GVK object on an operation, a list of them on a schema.
        assert isinstance(op.get("x-kubernetes-group-version-kind", {}), dict)
    for name, schema in schemas.items():
        assert isinstance(schema.get("x-kubernetes-group-version-kind", []), list), name
        for prop in schema.get("properties", {}).values():
            # OpenAPI 3.0 ignores a $ref's siblings: a described ref must be wrapped.
            assert "$ref" not in prop or len(prop) == 1


@pytest.mark.parametrize("info", RESOURCES.values(), ids=lambda r: r.qualified_name)
def test_v3_document_of_each_kind_serves_explain_and_apply(info: ResourceInfo) -> None:
    """What kubectl explain (GVK on the collection's operations, then the schema with that GVK)
    and apply (a PATCH that takes strategic merge patch) look for."""
    doc = openapi_v3(doc_path(info))
    assert doc is not None
    schemas = doc["components"]["schemas"]
    ops = doc["paths"][collection(info)]
    assert any(op.get("x-kubernetes-group-version-kind") == gvk(info)
               for m, op in ops.items() if m in METHODS)
    found = [n for n, s in schemas.items() if gvk(info) in s.get("x-kubernetes-group-version-kind",
                                                                   [])]
    assert found == [definition_name(info.model)]
    if not info.virtual:
        patch = doc["paths"][f"{collection(info)}/{{name}}"]["patch"]
        assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]


def test_v3_patch_metadata_as_kubectl_reads_it() -> None:
    """strategicpatch.PatchMetaFromOpenAPIV3: extensions on the property, then allOf/$ref."""
    doc = openapi_v3("api/v1")
    assert doc is not None
    schemas = doc["components"]["schemas"]
    prefix = "#/components/schemas/"
    pod = schemas["io.k8s.api.core.v1.Pod"]
    spec = resolve(pod["properties"]["spec"], schemas, prefix)
    containers = spec["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    container = resolve(containers["items"], schemas, prefix)
    assert container["properties"]["ports"]["x-kubernetes-patch-merge-key"] == "containerPort"
    # Quantity and IntOrString are oneOf in v3 (upstream's), so kubectl names them.
    assert schemas[QUANTITY]["oneOf"] == [{"type": "string"}, {"type": "number"}]
    assert schemas[INT_OR_STRING]["format"] == "int-or-string"


def test_v3_documents_carry_only_what_they_reach() -> None:
    apps_v1 = openapi_v3("/apis/apps/v1/")  # slashes tolerated
    assert apps_v1 is not None
    schemas = apps_v1["components"]["schemas"]
    assert "io.k8s.api.autoscaling.v1.Scale" in schemas  # deployments/scale returns it
    assert "io.k8s.api.core.v1.PodSpec" in schemas  # through the pod template
    assert "io.k8s.api.core.v1.Node" not in schemas
    assert all(p.startswith("/apis/apps/v1/") for p in apps_v1["paths"])
    version = openapi_v3("version")
    assert version is not None
    assert "io.k8s.apimachinery.pkg.version.Info" in version["components"]["schemas"]


def test_unknown_documents() -> None:
    assert openapi_v3("apis/batch/v1") is None
    assert openapi_v3("") is None
    assert document_bytes("v4") is None
    assert document_bytes("v3", "apis/nope") is None


# --- bytes, caching ------------------------------------------------------------------------------


def test_bytes_are_cached_stable_and_what_the_dicts_say() -> None:
    v2 = document_bytes("v2")
    assert v2 is not None
    assert document_bytes("v2") is v2  # generated once per process
    data, etag = v2
    # Regenerating gives the same bytes: a stable hash across restarts keeps kubectl's cache.
    assert openapi._encode(openapi._build_v2()) == v2
    assert openapi_v2() == V2 and openapi_v2() is not V2  # callers get their own copy
    assert data.startswith(b"{") and len(etag) == 128


def test_v2_header() -> None:
    assert V2["swagger"] == "2.0"
    assert V2["info"]["title"] == "Kubernetes"
    assert V2["securityDefinitions"]["BearerToken"]["in"] == "header"


def test_with_openapi_spec_validator_when_installed() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(V2)
    for _, doc in v3_docs():
        validator.validate(doc)
