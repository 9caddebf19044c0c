"""The OpenAPI documents: what kubectl reads from them, checked against the resource table.

kubectl finds a kind's schema by `x-kubernetes-group-version-kind`, follows `$ref`s, takes patch
strategies from `x-kubernetes-patch-*`, and (1.27+) skips client-side validation when the kind's
PATCH operations take `fieldValidation`; each of those is a test here. That real kubectl 1.29+
reads the v3 documents (explain, create, apply's strategic merge patch) was checked by hand
against a stub server; the end-to-end test belongs with the HTTP front (apiserver/rest/).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from api import apps, core, meta
from api.resources import RESOURCES, ResourceInfo
from apiserver import openapi, openapi_pb
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


# --- /openapi/v2 as gnostic's protobuf (kubectl < 1.29 reads only that) ------------------------
# Field numbers from gnostic's openapiv2/OpenAPIv2.proto, written out again here so that a wrong
# number in apiserver/openapi_pb.py shows up as a difference, not as an agreement with itself.


def pb(data: bytes) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for field, value in openapi_pb.iter_fields(data):
        out.setdefault(field, []).append(value)
    return out


def named(data: bytes, field: int) -> dict[str, bytes]:
    """A repeated Named* field (name = 1, value = 2) as a dict, in order."""
    out: dict[str, bytes] = {}
    for entry in pb(data).get(field, []):
        f = pb(entry)
        out[f[1][0].decode()] = f[2][0] if 2 in f else b""
    return out


def extensions(data: bytes, field: int) -> dict[str, Any]:
    """Vendor extensions (NamedAny → Any.yaml = 2) as kubectl reads them: YAML-decoded."""
    return {name: yaml.safe_load(pb(value)[2][0].decode())
            for name, value in named(data, field).items()}


def one_of(data: bytes) -> tuple[int, bytes]:
    ((field, (value,)),) = pb(data).items()
    return field, value


def schema_json(data: bytes) -> dict[str, Any]:
    """Schema: _ref 1, format 2, description 4, required 19, additional_properties 21, type 22,
    items 23, properties 25, vendor_extension 31 (the fields our documents use)."""
    out: dict[str, Any] = {}
    for f, v in openapi_pb.iter_fields(data):
        if f in (1, 2, 4):
            out[{1: "$ref", 2: "format", 4: "description"}[f]] = v.decode()
        elif f == 19:
            out.setdefault("required", []).append(v.decode())
        elif f == 21:
            which, inner = one_of(v)
            out["additionalProperties"] = schema_json(inner) if which == 1 else bool(inner)
        elif f == 22:
            (typ,) = pb(v)[1]  # TypeItem.value
            out["type"] = typ.decode()
        elif f == 23:
            (item,) = pb(v)[1]  # ItemsItem.schema: kubectl wants exactly one
            out["items"] = schema_json(item)
        elif f == 25:
            out["properties"] = {n: schema_json(s) for n, s in named(v, 1).items()}
        elif f != 31:
            raise AssertionError(f"unexpected Schema field {f}")
    return {**out, **extensions(data, 31)}


def parameter_json(data: bytes) -> dict[str, Any]:
    """ParametersItem.parameter 1 → Parameter{body_parameter 1 | non_body_parameter 2}."""
    which, param = one_of(data)
    assert which == 1
    which, param = one_of(param)
    if which == 1:  # BodyParameter: name 2, in 3, required 4, schema 5
        f = pb(param)
        return {"name": f[2][0].decode(), "in": f[3][0].decode(), "required": f[4] == [1],
                "schema": schema_json(f[5][0])}
    where, sub = one_of(param)  # NonBodyParameter: query 3, path 4
    f = pb(sub)
    typ, unique = {3: (6, 20), 4: (5, 19)}[where]
    out = {"in": f[2][0].decode(), "description": f[3][0].decode(), "name": f[4][0].decode(),
           "type": f[typ][0].decode(), "uniqueItems": f[unique] == [1]}
    assert out["in"] == {3: "query", 4: "path"}[where]
    return {**out, "required": True} if f.get(1) == [1] else out


def operation_json(data: bytes) -> dict[str, Any]:
    """Operation: tags 1, description 3, operation_id 5, produces 6, consumes 7,
    parameters 8, responses 9, schemes 10, vendor_extension 13."""
    f = pb(data)
    strings = {k: [s.decode() for s in f.get(n, [])]
               for k, n in (("tags", 1), ("produces", 6), ("consumes", 7), ("schemes", 10))}
    out: dict[str, Any] = {**strings, "description": f[3][0].decode(),
                           "operationId": f[5][0].decode(), "responses": {}}
    if 8 in f:
        out["parameters"] = [parameter_json(p) for p in f[8]]
    for code, value in named(f[9][0], 1).items():  # Responses.response_code
        which, response = one_of(value)  # ResponseValue.response 1
        assert which == 1
        r = pb(response)  # Response: description 1, schema 2 (SchemaItem.schema 1)
        out["responses"][code] = {"description": r[1][0].decode()}
        if 2 in r:
            which, schema = one_of(r[2][0])
            assert which == 1
            out["responses"][code]["schema"] = schema_json(schema)
    return {**out, **extensions(data, 13)}


PATH_ITEM_METHODS = {2: "get", 3: "put", 4: "post", 5: "delete", 8: "patch"}


def path_item_json(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f, v in openapi_pb.iter_fields(data):
        if f in PATH_ITEM_METHODS:
            out[PATH_ITEM_METHODS[f]] = operation_json(v)
        elif f == 9:
            out.setdefault("parameters", []).append(parameter_json(v))
        else:
            raise AssertionError(f"unexpected PathItem field {f}")
    return out


V2_PB = document_bytes("v2-protobuf")
assert V2_PB is not None
DOC = pb(V2_PB[0])  # Document: swagger 1, info 2, paths 8, definitions 9, security 12, ... 13


def test_v2_protobuf_pod_definition_and_its_group_version_kind() -> None:
    definitions = named(DOC[9][0], 1)
    pod = definitions["io.k8s.api.core.v1.Pod"]
    assert extensions(pod, 31)["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "Pod", "version": "v1"}]
    assert pb(pb(pod)[22][0])[1] == [b"object"]  # type: TypeItem{value: ["object"]}
    spec = named(pb(pod)[25][0], 1)["spec"]  # properties
    assert pb(spec)[1] == [b"#/definitions/io.k8s.api.core.v1.PodSpec"]
    containers = named(pb(definitions["io.k8s.api.core.v1.PodSpec"])[25][0], 1)["containers"]
    assert extensions(containers, 31)["x-kubernetes-patch-strategy"] == "merge"
    assert extensions(containers, 31)["x-kubernetes-patch-merge-key"] == "name"
    # The YAML text itself, as gnostic writes it (kubectl YAML-decodes it).
    any_ = named(pod, 31)["x-kubernetes-group-version-kind"]
    assert pb(any_)[2] == [b"- group: ''\n  kind: Pod\n  version: v1\n"]


def test_v2_protobuf_says_what_the_json_says() -> None:
    assert DOC[1] == [b"2.0"]
    assert pb(DOC[2][0]) == {1: [b"Kubernetes"], 2: [b"unversioned"]}  # Info: title, version
    definitions = named(DOC[9][0], 1)
    assert list(definitions) == sorted(DEFS)
    for name, data in definitions.items():
        assert schema_json(data) == DEFS[name], name
    paths = named(DOC[8][0], 2)  # Paths.path
    assert list(paths) == sorted(V2["paths"])
    for path, data in paths.items():
        assert path_item_json(data) == V2["paths"][path], path
    # security: SecurityRequirement{NamedStringArray "BearerToken" → StringArray{}}
    assert named(DOC[12][0], 1) == {"BearerToken": b""}
    # securityDefinitions: NamedSecurityDefinitionsItem → api_key_security 2
    which, api_key = one_of(named(DOC[13][0], 1)["BearerToken"])
    assert which == 2 and pb(api_key) == {1: [b"apiKey"], 2: [b"authorization"], 3: [b"header"],
                                          4: [b"Bearer Token authentication"]}


def test_v2_protobuf_patch_operations_take_field_validation() -> None:
    """kubectl 1.27/1.28 look for the kind's PATCH operation (by its GVK extension) and its
    query parameter fieldValidation to skip client-side validation."""
    item = named(DOC[8][0], 2)["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    patch = operation_json(pb(item)[8][0])
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps", "kind": "Deployment", "version": "v1"}
    assert any(p["name"] == "fieldValidation" and p["in"] == "query"
               for p in patch["parameters"])


def test_v2_protobuf_bytes_are_cached_with_their_own_etag() -> None:
    assert document_bytes("v2-protobuf") is V2_PB
    assert openapi_pb.encode_document(openapi_v2()) == V2_PB[0]  # deterministic
    json_etag = document_bytes("v2")[1]  # type: ignore[index]
    assert len(V2_PB[1]) == 128 and V2_PB[1] != json_etag


def test_v2_protobuf_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(ValueError, match="nullable"):
        openapi_pb.encode_document({"swagger": "2.0", "definitions": {
            "x": {"type": "string", "nullable": True}}})
    with pytest.raises(ValueError, match="in"):
        openapi_pb.encode_document({"paths": {"/a": {"get": {"parameters": [
            {"in": "cookie", "name": "c"}]}}}})
    assert openapi_pb.yaml_text("merge") == "merge\n"
    assert openapi_pb.yaml_text("true") == "'true'\n"
    # A oneof boolean is written even when false; a plain false scalar is left out.
    ap = openapi_pb.encode_document({"definitions": {"m": {"additionalProperties": False,
                                                           "uniqueItems": False}}})
    schema = named(pb(ap)[9][0], 1)["m"]
    assert pb(schema) == {21: [b"\x10\x00"]}


# Answered as kube-openapi does, with the `.v1.0` spelling: client-go's REST client parses the
# Content-Type with Go's mime.ParseMediaType, which refuses the `@` of the other.
PB_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


@pytest.mark.parametrize(("accept", "content_type"), [
    (openapi.V2_PROTOBUF, PB_TYPE),
    (PB_TYPE, PB_TYPE),
    (f"{openapi.V2_PROTOBUF}, application/json", PB_TYPE),
    ("application/json", "application/json"),
    (f"application/json, {openapi.V2_PROTOBUF}", "application/json"),
    ("", "application/json"),
    ("*/*", "application/json"),
])
def test_the_http_front_serves_v2_protobuf_to_who_asks(accept: str, content_type: str) -> None:
    from aiohttp.test_utils import make_mocked_request

    from apiserver.rest.app import RestFront
    front = RestFront(typing.cast(Any, None))
    headers = {"Accept": accept} if accept else {}
    resp = front._openapi(make_mocked_request("GET", "/openapi/v2", headers=headers),
                          "/openapi/v2")
    assert resp.headers["Content-Type"] == content_type
    want = document_bytes("v2-protobuf" if "protobuf" in content_type else "v2")
    assert want is not None and resp.body == want[0]
    assert resp.headers["ETag"] == want[1] and resp.headers["Vary"] == "Accept"
