"""Kubernetes' HTTP API, driven by the official `kubernetes` Python client against a real
apiserver over a real etcd: what a tester's own code does with tinykube.

The client is synchronous; the apiserver is another process, so calling it from these async
tests only blocks the test's own loop.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from harness.cluster import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[client.ApiClient]:
    cfg = client.Configuration()
    config.load_kube_config(cluster.kubeconfig, client_configuration=cfg)
    with client.ApiClient(cfg) as c:
        yield c


def _cm(name: str, data: dict[str, str] | None = None,
        labels: dict[str, str] | None = None) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels),
                              data=data or {"k": "v"})


def _deployment(name: str, replicas: int = 2) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [
                                      {"name": "web", "image": "tinykube/busybox:1",
                                       "env": [{"name": "A", "value": "1"}]}]}}}}


async def test_crud_and_stale_replace(api: client.ApiClient, namespace: str) -> None:
    v1 = client.CoreV1Api(api)
    created = v1.create_namespaced_config_map(namespace, _cm("one", {"a": "1"}))
    assert created.metadata.uid and created.metadata.resource_version
    got = v1.read_namespaced_config_map("one", namespace)
    assert got.data == {"a": "1"}
    got.data = {"a": "2"}
    replaced = v1.replace_namespaced_config_map("one", namespace, got)
    assert replaced.data == {"a": "2"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    # The first read's resourceVersion is stale now: 409, as upstream.
    created.data = {"a": "3"}
    with pytest.raises(ApiException) as e:
        v1.replace_namespaced_config_map("one", namespace, created)
    assert e.value.status == 409
    body = json.loads(e.value.body)
    assert body["kind"] == "Status" and body["reason"] == "Conflict"
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_config_map(namespace, _cm("one"))
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "AlreadyExists"
    v1.delete_namespaced_config_map("one", namespace)
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_config_map("one", namespace)
    assert e.value.status == 404 and json.loads(e.value.body)["details"]["name"] == "one"


async def test_list_paging_and_selectors(api: client.ApiClient, namespace: str) -> None:
    v1 = client.CoreV1Api(api)
    for i in range(5):
        v1.create_namespaced_config_map(namespace, _cm(f"p{i}", labels={
            "tier": "a" if i % 2 else "b"}))
    names, token = [], None
    while True:
        page = v1.list_namespaced_config_map(namespace, limit=2, _continue=token)
        assert len(page.items) <= 2
        names += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"p{i}" for i in range(5)]
    odd = v1.list_namespaced_config_map(namespace, label_selector="tier=a")
    assert [c.metadata.name for c in odd.items] == ["p1", "p3"]
    one = v1.list_namespaced_config_map(namespace, field_selector="metadata.name=p4")
    assert [c.metadata.name for c in one.items] == ["p4"]
    with pytest.raises(ApiException) as e:
        v1.list_namespaced_config_map(namespace, label_selector="tier in (")
    assert e.value.status == 400


async def test_watch_from_resource_version_and_gone(api: client.ApiClient,
                                                    namespace: str) -> None:
    v1 = client.CoreV1Api(api)
    start = v1.list_namespaced_config_map(namespace).metadata.resource_version
    v1.create_namespaced_config_map(namespace, _cm("w1"))
    v1.patch_namespaced_config_map("w1", namespace, {"data": {"k": "v2"}})
    v1.delete_namespaced_config_map("w1", namespace)
    seen = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, namespace, resource_version=start,
                       timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


async def test_watch_too_old_is_gone() -> None:
    """A resourceVersion older than the watch cache holds: 410 Gone as an ERROR event, which
    the client raises (its callers then relist). A small cache makes it old quickly."""
    async with Cluster("--watch-cache-size", "3") as c:
        cfg = client.Configuration()
        config.load_kube_config(c.kubeconfig, client_configuration=cfg)
        with client.ApiClient(cfg) as api:
            v1 = client.CoreV1Api(api)
            first = v1.create_namespaced_config_map("default", _cm("g0"))
            for i in range(1, 6):
                v1.create_namespaced_config_map("default", _cm(f"g{i}"))
            with pytest.raises(ApiException) as e:
                for _ in watch.Watch().stream(
                        v1.list_namespaced_config_map, "default",
                        resource_version=first.metadata.resource_version, timeout_seconds=5):
                    pass
            assert e.value.status == 410


async def test_patch_types(api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment("pt"))
    # Strategic merge (the client's default for dicts): the container list merges by name.
    d = apps.patch_namespaced_deployment("pt", namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": "web", "env": [{"name": "B", "value": "2"}]}]}}}})
    c = d.spec.template.spec.containers[0]
    assert c.image == "tinykube/busybox:1"
    # Upstream's order without $setElementOrder: the patch's items first.
    assert [(e.name, e.value) for e in c.env] == [("B", "2"), ("A", "1")]
    # JSON merge patch replaces lists wholesale.
    d = apps.patch_namespaced_deployment(
        "pt", namespace, {"metadata": {"labels": {"m": "1"}}},
        _content_type="application/merge-patch+json")
    assert d.metadata.labels == {"m": "1"}
    # JSON patch.
    d = apps.patch_namespaced_deployment(
        "pt", namespace, [{"op": "replace", "path": "/spec/replicas", "value": 4}],
        _content_type="application/json-patch+json")
    assert d.spec.replicas == 4
    scale = apps.read_namespaced_deployment_scale("pt", namespace)
    assert scale.spec.replicas == 4
    scale = apps.patch_namespaced_deployment_scale("pt", namespace, {"spec": {"replicas": 1}})
    assert scale.spec.replicas == 1
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_deployment("pt", namespace, {"spec": {"replicas": -1}})
    assert e.value.status == 422
    body = json.loads(e.value.body)
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "spec.replicas"


async def test_delete_options_and_dry_run(api: client.ApiClient, namespace: str) -> None:
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_config_map(namespace, _cm("dr"), dry_run="All")
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_config_map("dr", namespace)
    assert e.value.status == 404
    cm = v1.create_namespaced_config_map(namespace, _cm("pre"))
    with pytest.raises(ApiException) as e:
        v1.delete_namespaced_config_map("pre", namespace, body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid="not-its-uid")))
    assert e.value.status == 409
    v1.delete_namespaced_config_map("pre", namespace, body=client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid=cm.metadata.uid)))
    for i in range(3):
        v1.create_namespaced_config_map(namespace, _cm(f"dc{i}", labels={"dc": "y"}))
    v1.delete_collection_namespaced_config_map(namespace, label_selector="dc=y")
    assert v1.list_namespaced_config_map(namespace, label_selector="dc=y").items == []


async def test_unknown_fields_follow_field_validation(cluster: Cluster, namespace: str) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "fv"}, "dataa": {"k": "v"}}).encode()
    url = f"{cluster.https_url}/api/v1/namespaces/{namespace}/configmaps"
    code, _, headers = _request(cluster, "POST", url + "?fieldValidation=Strict", body)
    assert code == 400
    code, _, headers = _request(cluster, "POST", url + "?fieldValidation=Warn", body)
    assert code == 201
    assert 'unknown field \\"dataa\\"' in headers.get("Warning", "")


async def test_tables_and_metadata(cluster: Cluster, namespace: str,
                                   api: client.ApiClient) -> None:
    client.CoreV1Api(api).create_namespaced_config_map(namespace, _cm("tb", {"a": "1", "b": "2"}))
    url = f"{cluster.https_url}/api/v1/namespaces/{namespace}/configmaps"
    code, body, _ = _request(cluster, "GET", url, accept=(
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"))
    assert code == 200
    table = json.loads(body)
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:2] == ["Name", "Data"]
    assert table["rows"][0]["cells"][:2] == ["tb", 2]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    code, body, _ = _request(cluster, "GET", url, accept=(
        "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"))
    assert code == 200 and json.loads(body)["kind"] == "PartialObjectMetadataList"


@pytest.mark.parametrize(("method", "path", "body", "ctype", "want"), [
    ("POST", "/api/v1/namespaces/NS/configmaps", b"{not json", "application/json", 400),
    ("POST", "/api/v1/namespaces/NS/configmaps", b"[1, 2]", "application/json", 400),
    ("POST", "/api/v1/namespaces/NS/configmaps", b"a: [", "application/yaml", 400),
    ("POST", "/api/v1/namespaces/NS/configmaps", b"{}", "text/plain", 415),
    ("PATCH", "/api/v1/namespaces/NS/configmaps/x", b"{}", "application/json", 415),
    ("GET", "/api/v1/namespaces/NS/widgets", b"", "", 404),
    ("GET", "/apis/nope/v1/things", b"", "", 404),
    ("PUT", "/api/v1/namespaces/NS/configmaps", b"{}", "application/json", 405),
    ("POST", "/api/v1/namespaces/NS/configmaps", b"x" * (4 * 1024 * 1024), "application/json",
     413),
    ("GET", "/api/v1/namespaces/NS/configmaps?limit=abc", b"", "", 400),
    ("GET", "/api/v1/namespaces/NS/configmaps?watch=1&resourceVersion=x", b"", "", 400),
])
async def test_bad_requests_are_clean_4xx(cluster: Cluster, namespace: str, method: str,
                                          path: str, body: bytes, ctype: str,
                                          want: int) -> None:
    url = cluster.https_url + path.replace("NS", namespace)
    code, raw, _ = _request(cluster, method, url, body or None, ctype=ctype)
    assert code == want, raw[:300]
    status = json.loads(raw)
    assert status["kind"] == "Status" and status["code"] == want and status["message"]
    assert "Traceback" not in status["message"]


async def test_discovery_version_and_health(cluster: Cluster) -> None:
    code, body, _ = _request(cluster, "GET", cluster.https_url + "/version")
    assert code == 200 and json.loads(body)["major"] == "1"
    code, body, _ = _request(cluster, "GET", cluster.https_url + "/apis", accept=(
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
        "application/json"))
    assert code == 200 and json.loads(body)["kind"] == "APIGroupDiscoveryList"
    code, body, _ = _request(cluster, "GET", cluster.https_url + "/api/v1")
    assert any(r["name"] == "pods/log" for r in json.loads(body)["resources"])
    # Health answers without credentials (load balancers' checks carry none); the API not.
    ctx = ssl.create_default_context(cadata=cluster.ca_pem.decode())
    for path in ("/healthz", "/livez", "/readyz"):
        with urllib.request.urlopen(cluster.https_url + path, context=ctx) as r:
            assert r.status == 200 and r.read() == b"ok"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(cluster.https_url + "/api/v1/namespaces", context=ctx)
    assert e.value.code == 401


async def test_bearer_token_and_rbac(cluster: Cluster, api: client.ApiClient,
                                     namespace: str) -> None:
    """A ServiceAccount token on the same HTTPS port as certificates: authenticated as the
    ServiceAccount, refused by RBAC with upstream's words."""
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_service_account(namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="bot")))
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))
    tr = v1.create_namespaced_service_account_token("bot", namespace, request)
    cfg = client.Configuration(host=cluster.https_url)
    cfg.ssl_ca_cert = str(cluster.pki / "ca.crt") if cluster.pki else None
    cfg.api_key = {"authorization": "Bearer " + tr.status.token}
    with client.ApiClient(cfg) as bot:
        review = client.AuthenticationV1Api(bot).create_self_subject_review(
            client.V1SelfSubjectReview())
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:bot"
        with pytest.raises(ApiException) as e:
            client.CoreV1Api(bot).list_namespaced_secret(namespace)
        assert e.value.status == 403
        assert "cannot list resource \"secrets\"" in json.loads(e.value.body)["message"]


def test_watch_ends_at_timeout_and_streams_as_written(cluster: Cluster) -> None:
    url = cluster.https_url + "/api/v1/namespaces?watch=1&timeoutSeconds=2"
    t0 = time.monotonic()
    code, body, headers = _request(cluster, "GET", url)
    assert code == 200 and headers.get("Transfer-Encoding") == "chunked"
    events = [json.loads(line) for line in body.splitlines()]
    assert {e["type"] for e in events} == {"ADDED"}
    assert {"default", "kube-system"} <= {e["object"]["metadata"]["name"] for e in events}
    assert 1.5 < time.monotonic() - t0 < 10


# --- helpers --------------------------------------------------------------------------------


def _ssl_context(cluster: Cluster) -> ssl.SSLContext:
    """TLS as the admin: the client certificate and key out of the admin kubeconfig."""
    with _lock:
        pair = _pairs.get(cluster.kubeconfig)
        if pair is None:
            user = yaml.safe_load(Path(cluster.kubeconfig).read_text())["users"][0]["user"]
            d = Path(tempfile.mkdtemp(prefix="tk-rest-"))
            pair = (d / "admin.crt", d / "admin.key")
            pair[0].write_bytes(base64.b64decode(user["client-certificate-data"]))
            pair[1].write_bytes(base64.b64decode(user["client-key-data"]))
            _pairs[cluster.kubeconfig] = pair
    ctx = ssl.create_default_context(cadata=cluster.ca_pem.decode())
    ctx.load_cert_chain(*pair)
    return ctx


_lock = threading.Lock()
_pairs: dict[str, tuple[Path, Path]] = {}


def _request(cluster: Cluster, method: str, url: str, body: bytes | None = None, *,
             ctype: str = "application/json", accept: str = "application/json"
             ) -> tuple[int, bytes, dict[str, str]]:
    """One request as the admin (client certificate), without the client library's help."""
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Accept": accept} | ({"Content-Type": ctype}
                                                               if ctype else {}))
    try:
        with urllib.request.urlopen(req, context=_ssl_context(cluster), timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)
