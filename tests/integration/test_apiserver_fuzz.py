"""Property tests: random and malformed requests against the real server never crash it.

Raw gRPC (not our client), so the envelopes can carry anything: unknown resources, bad names,
non-JSON bodies, JSON of the wrong shape, random patches and selectors. Every answer must be
either success or a clean Kubernetes error: a non-INTERNAL status code with a `Status` object in
the trailing metadata. After the run, the server still answers.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.errors import STATUS_METADATA_KEY
from api.proto import tinykube_pb2 as pb
from api.proto import tinykube_pb2_grpc as pb_grpc
from harness.cluster import Cluster

RESOURCES = ["pods", "deployments", "services", "configmaps", "nodes", "namespaces",
             "replicasets", "leases", "events", "secrets", "bogus", ""]
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)

VALID_POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fuzz"},
    "spec": {"containers": [{"name": "c", "image": "busybox:1",
                             "ports": [{"containerPort": 80}],
                             "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}}]},
}
PATHS = [("metadata", "name"), ("metadata", "labels"), ("spec", "containers"),
         ("spec", "restartPolicy"), ("spec", "nodeName"), ("spec", "tolerations"),
         ("spec", "containers", 0, "ports"), ("spec", "containers", 0, "resources", "limits"),
         ("spec", "containers", 0, "name"), ("apiVersion",), ("kind",), ("spec",)]


def mutate(obj: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(obj))
    cur: Any = out
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return out


@pytest.fixture(scope="module")
def stub(cluster: Cluster) -> pb_grpc.ApiStub:
    return pb_grpc.ApiStub(cluster.channel(sync=True))


def call(fn: Any, req: Any) -> None:
    """Call; success is fine, an error must be clean and carry a Status."""
    try:
        fn(req, timeout=10)
    except grpc.RpcError as e:
        code = e.code()
        assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
            f"{code}: {e.details()}")
        md = dict(e.trailing_metadata() or ())
        status = json.loads(md[STATUS_METADATA_KEY])
        assert status["kind"] == "Status" and status["status"] == "Failure"
        assert status["message"]


@SETTINGS
@given(resource=st.sampled_from(RESOURCES), body=st.binary(max_size=64) | json_values.map(
    lambda v: json.dumps(v).encode()), ns=st.sampled_from(["default", "", "nope", "BAD NS"]))
def test_random_bodies_get_clean_errors(stub: pb_grpc.ApiStub, resource: str, body: bytes,
                                        ns: str) -> None:
    call(stub.Create, pb.CreateRequest(resource=resource, namespace=ns, object=body))
    call(stub.Update, pb.UpdateRequest(resource=resource, namespace=ns, name="x", object=body))


@SETTINGS
@given(path=st.sampled_from(PATHS), value=json_values)
def test_mutated_pods_get_clean_errors(stub: pb_grpc.ApiStub, path: tuple[Any, ...],
                                       value: Any) -> None:
    body = mutate(VALID_POD, path, value)
    call(stub.Create, pb.CreateRequest(resource="pods", namespace="default",
                                       object=json.dumps(body).encode(), dry_run=True))


@SETTINGS
@given(label=st.text(max_size=30), field=st.text(max_size=30), limit=st.integers(-5, 5),
       token=st.text(max_size=20), rv=st.text(max_size=8))
def test_random_list_options_get_clean_errors(stub: pb_grpc.ApiStub, label: str, field: str,
                                              limit: int, token: str, rv: str) -> None:
    opts = pb.ListOptions(label_selector=label, field_selector=field, limit=limit,
                          continue_token=token, resource_version=rv)
    call(stub.List, pb.ListRequest(resource="pods", namespace="default", options=opts))


@SETTINGS
@given(patch_type=st.sampled_from(["merge", "json", "strategic", ""]),
       patch=json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=32),
       sub=st.sampled_from(["", "status", "scale", "bogus"]))
def test_random_patches_get_clean_errors(stub: pb_grpc.ApiStub, cluster: Cluster,
                                         patch_type: str, patch: bytes, sub: str) -> None:
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "fz"},
              "spec": {"selector": {"matchLabels": {"a": "b"}},
                       "template": {"metadata": {"labels": {"a": "b"}},
                                    "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    call(stub.Create, pb.CreateRequest(resource="deployments", namespace="default",
                                       object=json.dumps(deploy).encode()))
    call(stub.Patch, pb.PatchRequest(resource="deployments", namespace="default", name="fz",
                                     subresource=sub, patch_type=patch_type, patch=patch))


@SETTINGS
@given(policy=st.text(max_size=12), grace=st.integers(-3, 100), uid=st.text(max_size=8),
       name=st.text(max_size=12))
def test_random_deletes_get_clean_errors(stub: pb_grpc.ApiStub, policy: str, grace: int,
                                         uid: str, name: str) -> None:
    opts = pb.DeleteOptions(propagation_policy=policy, grace_period_seconds=grace,
                            precondition_uid=uid, dry_run=True)
    call(stub.Delete, pb.DeleteRequest(resource="configmaps", namespace="default", name=name,
                                       options=opts))


def test_server_still_serves_after_fuzzing(stub: pb_grpc.ApiStub) -> None:
    resp = stub.Get(pb.GetRequest(resource="namespaces", name="default"), timeout=10)
    assert json.loads(resp.object)["metadata"]["name"] == "default"
