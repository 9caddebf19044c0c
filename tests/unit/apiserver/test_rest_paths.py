"""The HTTP front's pure parts: REST paths → request info, content negotiation, discovery."""

from __future__ import annotations

import json

import pytest

from api import errors
from api.resources import RESOURCES
from apiserver.rest import discovery, negotiate, paths


@pytest.mark.parametrize(("method", "path", "watch", "want"), [
    ("GET", "/api/v1/pods", "", ("list", "pods", "", "", "")),
    ("GET", "/api/v1/namespaces/ns1/pods", "", ("list", "pods", "ns1", "", "")),
    ("GET", "/api/v1/namespaces/ns1/pods", "true", ("watch", "pods", "ns1", "", "")),
    ("GET", "/api/v1/watch/namespaces/ns1/pods", "", ("watch", "pods", "ns1", "", "")),
    ("GET", "/api/v1/namespaces/ns1/pods/p", "", ("get", "pods", "ns1", "p", "")),
    ("PUT", "/api/v1/namespaces/ns1/pods/p/status", "", ("update", "pods", "ns1", "p",
                                                          "status")),
    ("GET", "/api/v1/namespaces/ns1/pods/p/log", "", ("get", "pods", "ns1", "p", "log")),
    ("POST", "/api/v1/namespaces/ns1/pods/p/exec", "", ("create", "pods", "ns1", "p", "exec")),
    ("GET", "/api/v1/namespaces/ns1/pods/p/exec", "", ("create", "pods", "ns1", "p", "exec")),
    ("POST", "/api/v1/namespaces/ns1/pods/p/binding", "", ("create", "pods", "ns1", "p",
                                                            "binding")),
    ("POST", "/api/v1/namespaces/ns1/pods", "", ("create", "pods", "ns1", "", "")),
    ("DELETE", "/api/v1/namespaces/ns1/pods", "", ("deletecollection", "pods", "ns1", "", "")),
    ("PATCH", "/apis/apps/v1/namespaces/d/deployments/web/scale", "",
     ("patch", "deployments", "d", "web", "scale")),
    ("GET", "/api/v1/namespaces", "", ("list", "namespaces", "", "", "")),
    ("GET", "/api/v1/namespaces/kube-system", "", ("get", "namespaces", "", "kube-system", "")),
    ("PUT", "/api/v1/namespaces/x/finalize", "", ("update", "namespaces", "", "x", "finalize")),
    ("PUT", "/api/v1/namespaces/x/status", "", ("update", "namespaces", "", "x", "status")),
    ("GET", "/api/v1/nodes/n1", "", ("get", "nodes", "", "n1", "")),
    ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", "",
     ("list", "clusterroles", "", "", "")),
])
def test_parse(method: str, path: str, watch: str, want: tuple[str, ...]) -> None:
    r = paths.parse(method, path, watch)
    assert (r.verb, r.info.name, r.namespace, r.name, r.subresource) == want


@pytest.mark.parametrize("path", [
    "/", "/api", "/api/v2/pods", "/api/v1/deployments", "/apis/apps/v1/pods",
    "/apis/apps/v2/deployments", "/api/v1/nodes/n/log", "/api/v1/namespaces/a/nodes",
    "/api/v1/namespaces/a/pods/p/status/extra", "/api/v1/widgets", "/healthz",
])
def test_parse_unknown_paths_are_not_found(path: str) -> None:
    with pytest.raises(errors.NotFound):
        paths.parse("GET", path)


@pytest.mark.parametrize(("method", "path"), [
    ("PUT", "/api/v1/namespaces/a/pods"), ("PATCH", "/api/v1/pods"),
    ("POST", "/api/v1/namespaces/a/pods/p"), ("TRACE", "/api/v1/pods"),
])
def test_parse_wrong_method(method: str, path: str) -> None:
    with pytest.raises(errors.MethodNotAllowed):
        paths.parse(method, path)


def test_choose_table_kubectl_accept() -> None:
    kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;" \
              "v=v1beta1;g=meta.k8s.io,application/json"
    assert negotiate.choose(kubectl, ("Table",)) == "Table"
    assert negotiate.choose(kubectl) == ""  # an endpoint without tables: plain JSON
    assert negotiate.choose("", ("Table",)) == ""
    assert negotiate.choose("*/*") == ""
    with pytest.raises(errors.NotAcceptable):
        negotiate.choose("application/vnd.kubernetes.protobuf")


def test_decode_body() -> None:
    assert json.loads(negotiate.decode_body(b"a: 1\n", "application/yaml")) == {"a": 1}
    assert negotiate.decode_body(b'{"a":1}', "application/json; charset=utf-8") == b'{"a":1}'
    with pytest.raises(errors.BadRequest, match="YAML"):
        negotiate.decode_body(b"a: [1\n", "application/yaml")
    with pytest.raises(errors.UnsupportedMediaType, match="text/html"):
        negotiate.decode_body(b"<html>", "text/html")


def test_patch_types() -> None:
    assert negotiate.patch_type("application/merge-patch+json") == "merge"
    assert negotiate.patch_type("application/json-patch+json") == "json"
    assert negotiate.patch_type("application/strategic-merge-patch+json") == "strategic"
    with pytest.raises(errors.UnsupportedMediaType):
        negotiate.patch_type("application/json")


def test_discovery_covers_every_resource() -> None:
    listed = set()
    for group, versions in discovery.group_versions().items():
        for v in versions:
            doc = discovery.api_resource_list(group, v)
            assert doc is not None
            listed |= {(group, r["name"]) for r in doc["resources"] if "/" not in r["name"]}
    assert listed == {(r.group, r.name) for r in RESOURCES.values()}
    core = discovery.api_resource_list("", "v1")
    assert core is not None
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert pods["shortNames"] == ["po"] and pods["categories"] == ["all"]
    subs = {r["name"] for r in core["resources"] if r["name"].startswith("pods/")}
    assert {"pods/log", "pods/exec", "pods/status", "pods/binding", "pods/eviction"} <= subs
    agg = discovery.aggregated(core=False)
    assert agg["apiVersion"] == "apidiscovery.k8s.io/v2"
    assert {i["metadata"]["name"] for i in agg["items"]} == {
        g for g in discovery.group_versions() if g}
    assert discovery.api_group("nope") is None and discovery.api_group("apps") is not None
