"""api.protobuf: Kubernetes protobuf request bodies decoded into the JSON our models take.

Two kinds of input: bodies that real kubectl (1.32) sent to a recording server
(fixtures/protobuf/*.pb), checked against kubectl's own JSON of the same object
(`--dry-run=client -o json`, fixtures/protobuf/*.json); and wire bytes built here by hand, for
the encodings kubectl's create commands do not reach (IntOrString, Quantity, MicroTime, packed
numbers, negative varints, inline structs) and for malformed input.
"""

from __future__ import annotations

import base64
import json
import random
import typing
from pathlib import Path
from typing import Any

import pytest

from api import apps, authentication, authorization, coordination, core, policy, protobuf
from api.errors import ApiError, BadRequest, UnsupportedMediaType
from api.meta import K8sModel, TypedObject
from api.resources import BINDING_MODEL, RESOURCES, SCALE_MODEL, TOKEN_REQUEST_MODEL

FIXTURES = Path(__file__).parent / "fixtures" / "protobuf"

# --------------------------------------------------------------------------------------------
# A tiny encoder, to build wire bytes by hand
# --------------------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative numbers: 10-byte two's complement, as Go writes int32/int64
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def vi(num: int, n: int) -> bytes:
    """A varint field."""
    return varint(num << 3) + varint(n)


def ld(num: int, data: bytes | str) -> bytes:
    """A length-delimited field (string, bytes, or an embedded message)."""
    raw = data.encode() if isinstance(data, str) else data
    return varint(num << 3 | 2) + varint(len(raw)) + raw


def entry(num: int, key: str, value: bytes | str) -> bytes:
    """One map entry."""
    return ld(num, ld(1, key) + ld(2, value))


def body(api_version: str, kind: str, raw: bytes, **extra: str) -> bytes:
    """`k8s\\x00` + runtime.Unknown{typeMeta, raw, contentEncoding, contentType}."""
    envelope = ld(1, ld(1, api_version) + ld(2, kind)) + ld(2, raw)
    envelope += ld(3, extra.get("encoding", "")) + ld(4, extra.get("content_type", ""))
    return protobuf.MAGIC + envelope


def time(num: int, seconds: int, nanos: int = 0) -> bytes:
    return ld(num, vi(1, seconds) + (vi(2, nanos) if nanos else b""))


def quantity(text: str) -> bytes:
    return ld(1, text)


def int_or_string(value: int | str) -> bytes:
    if isinstance(value, int):
        return vi(1, 0) + vi(2, value) + ld(3, "")
    return vi(1, 1) + vi(2, 0) + ld(3, value)


def metadata(name: str = "", namespace: str = "", **more: bytes) -> bytes:
    """ObjectMeta as Go writes it: every non-pointer string, zero or not."""
    out = ld(1, name) + ld(2, "") + ld(3, namespace) + ld(5, "") + ld(6, "") + vi(7, 0)
    out += ld(8, b"")  # creationTimestamp: the zero Time is an empty message
    return out + b"".join(more.values())


# --------------------------------------------------------------------------------------------
# Real kubectl bodies
# --------------------------------------------------------------------------------------------


def _without_nulls(value: Any) -> Any:
    # kubectl's JSON writes the zero metav1.Time as `creationTimestamp: null`; we omit it.
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _model(obj: dict[str, Any]) -> type[TypedObject]:
    return next(r.model for r in RESOURCES.values()
                if r.kind == obj["kind"] and r.api_version == obj["apiVersion"])


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_kubectl_create_bodies_decode_to_kubectls_own_json(name: str) -> None:
    # `kubectl create <kind> ... --dry-run=client -o json` prints the very object that
    # `kubectl create <kind> ...` sends as protobuf: the two must agree field for field.
    got = protobuf.decode((FIXTURES / f"{name}.pb").read_bytes())
    want = _without_nulls(json.loads((FIXTURES / f"{name}.json").read_text()))
    assert got == want
    _model(got).model_validate(got)


def test_kubectl_configmap_and_secret_bytes_are_base64() -> None:
    cm = protobuf.decode((FIXTURES / "configmap.pb").read_bytes())
    assert base64.b64decode(cm["binaryData"]["logo.bin"]) == b"\x00\x01\x02\xfe\xffPNG\r\n"
    assert cm["data"] == {"mode": "prod", "empty": ""}  # map values keep their empty strings
    secret = protobuf.decode((FIXTURES / "secret.pb").read_bytes())
    assert base64.b64decode(secret["data"]["password"]) == b"p@ss w0rd"


def test_kubectl_create_token() -> None:
    got = protobuf.decode((FIXTURES / "tokenrequest.pb").read_bytes())
    assert got == {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {},
        "spec": {
            "audiences": ["api", "vault"],
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p1",
                               "uid": "0b9d2a6e-1111-4c1e-9c3a-5f1f5d7c0e11"},
            "expirationSeconds": 1800,
        },
        "status": {},
    }
    authentication.TokenRequest.model_validate(got)


def test_kubectl_auth_can_i_and_whoami() -> None:
    resource = protobuf.decode((FIXTURES / "selfsubjectaccessreview-resource.pb").read_bytes())
    assert resource["spec"] == {
        "resourceAttributes": {"namespace": "kube-system", "verb": "create", "resource": "pods"}}
    nonresource = protobuf.decode(
        (FIXTURES / "selfsubjectaccessreview-nonresource.pb").read_bytes())
    assert nonresource["spec"] == {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}
    for review in (resource, nonresource):
        assert review["kind"] == "SelfSubjectAccessReview"
        authorization.SelfSubjectAccessReview.model_validate(review)
    whoami = protobuf.decode((FIXTURES / "selfsubjectreview.pb").read_bytes())
    assert whoami == {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                      "metadata": {}, "status": {"userInfo": {}}}


def test_kubectl_delete_options() -> None:
    # `kubectl drain --disable-eviction --grace-period=0`: a DELETE whose body is DeleteOptions
    # in the version of the pod ("v1"); gracePeriodSeconds is a pointer, so its 0 is kept.
    got = protobuf.decode((FIXTURES / "deleteoptions.pb").read_bytes())
    assert got == {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}


def test_kubectl_kind_we_do_not_have_is_bad_request() -> None:
    with pytest.raises(BadRequest, match="ResourceQuota"):
        protobuf.decode((FIXTURES / "resourcequota.pb").read_bytes())


# --------------------------------------------------------------------------------------------
# Hand-built bodies
# --------------------------------------------------------------------------------------------


def test_configmap() -> None:
    raw = (ld(1, metadata("cfg", "prod", labels=entry(11, "app", "web")))
           + vi(4, 0)  # immutable *bool = false: a pointer, so false is kept
           + entry(2, "k", "v") + entry(2, "empty", "")
           + entry(3, "blob", b"\xff\x00"))
    got = protobuf.decode(body("v1", "ConfigMap", raw))
    assert got == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "prod", "labels": {"app": "web"}},
        "immutable": False, "data": {"k": "v", "empty": ""}, "binaryData": {"blob": "/wA="},
    }
    core.ConfigMap.model_validate(got)


def test_secret() -> None:
    raw = ld(1, metadata("s")) + entry(2, "tls.key", b"\x00secret\xff") + ld(3, "Opaque")
    got = protobuf.decode(body("v1", "Secret", raw))
    assert got["data"] == {"tls.key": base64.b64encode(b"\x00secret\xff").decode()}
    assert got["type"] == "Opaque"
    core.Secret.model_validate(got)


def _container() -> bytes:
    env_from_secret = ld(3, ld(4, ld(1, ld(1, "db")) + ld(2, "password") + vi(3, 1)))
    return (ld(1, "web") + ld(2, "nginx:1.27")
            + ld(3, "nginx") + ld(3, "-g")  # command: unpacked repeated strings
            + ld(6, ld(1, "http") + vi(2, 0) + vi(3, 8080) + ld(4, "TCP") + ld(5, ""))
            + ld(7, ld(1, "MODE") + ld(2, "prod"))
            + ld(7, ld(1, "PASSWORD") + ld(2, "") + env_from_secret)
            + ld(8, entry(2, "cpu", quantity("250m")) + entry(2, "memory", quantity("64Mi"))
                 + entry(1, "memory", quantity("128Mi")))
            + ld(11, ld(1, ld(2, ld(1, "/healthz") + ld(2, int_or_string("http"))))
                 + vi(3, 5) + vi(4, 0))
            + vi(16, 0) + vi(17, 0) + vi(18, 0)
            + vi(99, 7) + ld(98, b"\x01\x02"))  # fields from a newer Kubernetes: skipped


def test_deployment() -> None:
    pod_spec = (ld(2, _container()) + ld(3, "Always") + vi(4, 30) + ld(6, "ClusterFirst")
                + vi(11, 0)
                # securityContext.supplementalGroups: packed, then one more unpacked
                + ld(14, ld(4, varint(1000) + varint(2000)) + vi(4, 3000) + vi(5, 2000)))
    template = ld(1, metadata(labels=entry(11, "app", "web"))) + ld(2, pod_spec)
    strategy = ld(1, "RollingUpdate") + ld(2, ld(1, int_or_string(0)) + ld(2, int_or_string("25%")))
    spec = (vi(1, 3) + ld(2, entry(1, "app", "web")) + ld(3, template) + ld(4, strategy)
            + vi(5, 0) + vi(6, 0) + vi(7, 0) + vi(9, 600))
    raw = ld(1, metadata("web", "default", created=time(8, 1704164645))) + ld(2, spec) + ld(3, b"")
    got = protobuf.decode(body("apps/v1", "Deployment", raw))
    assert got["metadata"] == {"name": "web", "namespace": "default",
                               "creationTimestamp": "2024-01-02T03:04:05Z"}
    assert got["spec"]["replicas"] == 3
    # revisionHistoryLimit is a pointer (0 kept); minReadySeconds and paused are not (dropped).
    assert got["spec"]["revisionHistoryLimit"] == 0
    assert "minReadySeconds" not in got["spec"] and "paused" not in got["spec"]
    assert got["spec"]["progressDeadlineSeconds"] == 600
    assert got["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}
    pod = got["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"supplementalGroups": [1000, 2000, 3000], "fsGroup": 2000}
    assert "hostNetwork" not in pod
    container = pod["containers"][0]
    assert container == {
        "name": "web", "image": "nginx:1.27", "command": ["nginx", "-g"],
        # containerPort is required by our model; hostPort 0 is Go's omitempty zero.
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": [
            {"name": "MODE", "value": "prod"},
            {"name": "PASSWORD",
             "valueFrom": {"secretKeyRef": {"name": "db", "key": "password", "optional": True}}},
        ],
        "resources": {"requests": {"cpu": "250m", "memory": "64Mi"},
                      "limits": {"memory": "128Mi"}},
        # ProbeHandler is an embedded struct: its httpGet sits beside periodSeconds in JSON.
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "timeoutSeconds": 5},
    }
    assert got["status"] == {}
    apps.Deployment.model_validate(got)


def test_pod_volumes_status_and_negative_numbers() -> None:
    volumes = (ld(1, ld(1, "cfg") + ld(2, ld(19, ld(1, ld(1, "app-config")) + vi(3, 0o644))))
               + ld(1, ld(1, "token") + ld(2, ld(26, ld(1, ld(4, ld(1, "vault")
                                                            + vi(2, 3600) + ld(3, "token")))))))
    spec = volumes + ld(2, ld(1, "c") + ld(2, "busybox"))
    terminated = vi(1, -1) + vi(2, 0) + ld(3, "Error") + time(5, 0) + time(6, 1)
    status = (ld(1, "Failed") + ld(6, "10.0.0.7") + ld(12, ld(1, "10.0.0.7"))
              + ld(8, ld(1, "c") + ld(2, ld(3, terminated)) + ld(3, b"") + vi(4, 0) + vi(5, 2)))
    raw = ld(1, metadata("p", "default", grace=vi(10, -5))) + ld(2, spec) + ld(3, status)
    got = protobuf.decode(body("v1", "Pod", raw))
    assert got["metadata"]["deletionGracePeriodSeconds"] == -5  # a 10-byte int64 varint
    assert got["spec"]["volumes"] == [
        {"name": "cfg", "configMap": {"name": "app-config", "defaultMode": 0o644}},
        {"name": "token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": "vault", "expirationSeconds": 3600, "path": "token"}}]}},
    ]
    cs = got["status"]["containerStatuses"][0]
    assert cs["state"]["terminated"] == {
        "exitCode": -1,  # a 10-byte varint read as int32; required, so kept even when 0
        "reason": "Error",
        "startedAt": "1970-01-01T00:00:00Z", "finishedAt": "1970-01-01T00:00:01Z"}
    assert cs["lastState"] == {} and cs["restartCount"] == 2 and "ready" not in cs
    assert got["status"]["podIPs"] == [{"ip": "10.0.0.7"}]
    core.Pod.model_validate(got)


def test_managed_fields() -> None:
    entry_ = (ld(1, "kubectl") + ld(2, "Apply") + ld(3, "v1") + time(4, 1704164645)
              + ld(6, "FieldsV1") + ld(7, ld(1, '{"f:data":{"f:a":{}}}')) + ld(8, ""))
    got = protobuf.decode(body("v1", "ConfigMap", ld(1, metadata("c", more=ld(17, entry_)))))
    assert got["metadata"]["managedFields"] == [{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
        "time": "2024-01-02T03:04:05Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {"f:a": {}}}}]
    core.ConfigMap.model_validate(got)


def test_required_zero_values_are_kept() -> None:
    # Go writes `containerPort: 0` to JSON (no omitempty); our model requires the field, so
    # validation, not decoding, is what reports it.
    raw = ld(1, metadata("p")) + ld(2, ld(2, ld(1, "c") + ld(6, vi(3, 0))))
    got = protobuf.decode(body("v1", "Pod", raw))
    assert got["spec"]["containers"][0]["ports"] == [{"containerPort": 0}]


def test_self_subject_access_review() -> None:
    attrs = (ld(1, "team-a") + ld(2, "update") + ld(3, "apps") + ld(4, "v1")
             + ld(5, "deployments") + ld(6, "scale") + ld(7, "web"))
    status = vi(1, 0) + vi(4, 0) + ld(2, "") + ld(3, "")  # allowed, denied: false
    raw = ld(1, metadata()) + ld(2, ld(1, attrs)) + ld(3, status)
    got = protobuf.decode(body("authorization.k8s.io/v1", "SelfSubjectAccessReview", raw))
    assert got == {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "metadata": {},
        "spec": {"resourceAttributes": {
            "namespace": "team-a", "verb": "update", "group": "apps", "version": "v1",
            "resource": "deployments", "subresource": "scale", "name": "web"}},
        "status": {},
    }
    authorization.SelfSubjectAccessReview.model_validate(got)


def test_subject_access_review_extra() -> None:
    spec = (ld(2, ld(1, "/metrics") + ld(2, "get")) + ld(3, "alice") + ld(4, "devs")
            + entry(5, "scopes", ld(1, "a") + ld(1, "b")) + entry(5, "none", b""))
    got = protobuf.decode(body("authorization.k8s.io/v1", "SubjectAccessReview",
                               ld(1, metadata()) + ld(2, spec)))
    assert got["spec"] == {"nonResourceAttributes": {"path": "/metrics", "verb": "get"},
                           "user": "alice", "groups": ["devs"],
                           "extra": {"scopes": ["a", "b"], "none": []}}
    authorization.SubjectAccessReview.model_validate(got)


def test_eviction() -> None:
    options = (vi(1, 0) + ld(2, ld(1, "0b9d2a6e") + ld(2, "42")) + ld(4, "Foreground")
               + ld(5, "All"))
    raw = ld(1, metadata("web-1", "default")) + ld(2, options)
    got = protobuf.decode(body("policy/v1", "Eviction", raw))
    assert got == {
        "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": "web-1", "namespace": "default"},
        "deleteOptions": {"gracePeriodSeconds": 0,
                          "preconditions": {"uid": "0b9d2a6e", "resourceVersion": "42"},
                          "propagationPolicy": "Foreground", "dryRun": ["All"]},
    }
    policy.Eviction.model_validate(got)


def test_token_request() -> None:
    spec = ld(1, "https://kubernetes.default.svc") + vi(4, 600) + ld(3, ld(1, "Pod") + ld(3, "p"))
    got = protobuf.decode(body("authentication.k8s.io/v1", "TokenRequest",
                               ld(1, metadata()) + ld(2, spec)))
    assert got["spec"] == {"audiences": ["https://kubernetes.default.svc"],
                           "expirationSeconds": 600,
                           "boundObjectRef": {"kind": "Pod", "name": "p"}}
    authentication.TokenRequest.model_validate(got)


def test_delete_options_in_any_version() -> None:
    raw = vi(1, 30) + vi(3, 1) + ld(5, "All")
    for api_version in ("meta.k8s.io/v1", "v1", "apps/v1"):
        got = protobuf.decode(body(api_version, "DeleteOptions", raw))
        assert got == {"apiVersion": api_version, "kind": "DeleteOptions",
                       "gracePeriodSeconds": 30, "orphanDependents": True, "dryRun": ["All"]}


def test_scale_and_binding() -> None:
    scale = protobuf.decode(body("autoscaling/v1", "Scale",
                                 ld(1, metadata("web")) + ld(2, vi(1, 0)) + ld(3, vi(1, 2))))
    # Scale.spec.replicas is not a pointer upstream: 0 is Go's zero, and omitted as in JSON.
    assert scale["spec"] == {} and scale["status"] == {"replicas": 2}
    binding = protobuf.decode(body("v1", "Binding", ld(1, metadata("p", "default"))
                                   + ld(2, ld(1, "Node") + ld(3, "node-1"))))
    assert binding["target"] == {"kind": "Node", "name": "node-1"}
    core.Binding.model_validate(binding)


def test_lease_micro_time() -> None:
    spec = (ld(1, "kube-controller-manager") + vi(2, 15)
            + time(3, 1704164645, 123456789) + time(4, 1704164645) + vi(5, 0))
    got = protobuf.decode(body("coordination.k8s.io/v1", "Lease",
                               ld(1, metadata("l", "kube-system")) + ld(2, spec)))
    assert got["spec"] == {
        "holderIdentity": "kube-controller-manager", "leaseDurationSeconds": 15,
        "acquireTime": "2024-01-02T03:04:05.123456Z",  # nanoseconds truncated to micro
        "renewTime": "2024-01-02T03:04:05.000000Z",
        "leaseTransitions": 0,  # a pointer: 0 kept
    }
    coordination.Lease.model_validate(got)


def test_repeated_message_fields_merge_and_scalars_last_wins() -> None:
    raw = (ld(1, ld(1, "first") + entry(11, "a", "1")) + ld(1, ld(1, "second")
                                                             + entry(11, "b", "2"))
           + ld(3, "Opaque") + ld(3, ""))
    got = protobuf.decode(body("v1", "Secret", raw))
    assert got["metadata"] == {"name": "second", "labels": {"a": "1", "b": "2"}}
    assert "type" not in got  # the later zero value wins, and is omitted


def test_unknown_fields_and_groups_are_skipped() -> None:
    group = varint(20 << 3 | 3) + vi(1, 5) + varint(21 << 3 | 3) + varint(21 << 3 | 4) \
        + varint(20 << 3 | 4)
    fixed = varint(30 << 3 | 1) + b"\x00" * 8 + varint(31 << 3 | 5) + b"\x00" * 4
    got = protobuf.decode(body("v1", "Namespace", ld(1, metadata("ns") + group + fixed)))
    assert got["metadata"] == {"name": "ns"}


def test_special_encodings() -> None:
    assert protobuf._raw_extension(ld(1, '{"a": [1]}'), "x") == {"a": [1]}
    assert protobuf._raw_extension(b"", "x") is None
    with pytest.raises(BadRequest, match="not JSON"):
        protobuf._raw_extension(ld(1, body("v1", "Namespace", b"")), "x")
    assert protobuf._duration(vi(1, 90 * 10**9), "x") == "1m30s"
    assert protobuf._quantity(b"", "x") == "0"


@pytest.mark.parametrize(("nanos", "text"), [
    (0, "0s"), (1, "1ns"), (1_500, "1.5µs"), (1_000_000, "1ms"), (2_500_000, "2.5ms"),
    (1_500_000_000, "1.5s"), (60 * 10**9, "1m0s"), (90 * 10**9, "1m30s"),
    (3600 * 10**9, "1h0m0s"), (3723 * 10**9 + 5 * 10**8, "1h2m3.5s"), (-5 * 10**9, "-5s"),
])
def test_go_duration(nanos: int, text: str) -> None:
    assert protobuf.go_duration(nanos) == text


# --------------------------------------------------------------------------------------------
# Errors a client can cause
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "error", "match"), [
    (b"", BadRequest, "k8s"),
    (b'{"kind": "ConfigMap"}', BadRequest, "k8s"),
    (protobuf.MAGIC, BadRequest, "no apiVersion and kind"),
    (body("v1", "Frobnicator", b""), BadRequest, "Frobnicator"),
    (body("v1", "ConfigMap", b"", encoding="gzip"), UnsupportedMediaType, "gzip"),
    (body("v1", "ConfigMap", b"", content_type="application/json"), UnsupportedMediaType,
     "application/json"),
    (body("v1", "ConfigMap", ld(1, vi(1, 5))), BadRequest, "metadata.name.*varint"),
    (body("v1", "ConfigMap", ld(1, ld(1, b"\xff\xfe"))), BadRequest, "UTF-8"),
    (body("v1", "ConfigMap", varint(1 << 3 | 2) + varint(50) + b"short"), BadRequest,
     "claims 50 bytes"),
    (body("v1", "ConfigMap", b"\x08" + b"\xff" * 11), BadRequest, "longer than 10"),
    (body("v1", "ConfigMap", b"\x08"), BadRequest, "truncated varint"),
    (body("v1", "ConfigMap", b"\x00\x00"), BadRequest, "field number 0"),
    (body("v1", "ConfigMap", b"\x0f"), BadRequest, "invalid wire type"),
    (body("v1", "ConfigMap", varint(20 << 3 | 3) + vi(1, 1)), BadRequest, "truncated group"),
    (body("v1", "Service", ld(2, ld(1, ld(4, vi(1, 2))))), BadRequest, "IntOrString"),
    (body("v1", "Pod", ld(1, time(8, 10**12))), BadRequest, "out of range"),
])
def test_malformed(data: bytes, error: type[ApiError], match: str) -> None:
    with pytest.raises(error, match=match):
        protobuf.decode(data)


@pytest.mark.parametrize("name", ["deployment", "service", "clusterrolebinding"])
def test_truncated_and_corrupted_bodies_are_client_errors(name: str) -> None:
    # Every prefix and a few thousand random corruptions of a real body: a clean 4xx or a
    # decoded object, never another exception.
    data = (FIXTURES / f"{name}.pb").read_bytes()
    rng = random.Random(name)
    samples = [data[:n] for n in range(len(data))]
    for _ in range(2000):
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        samples.append(bytes(b))
    for sample in samples:
        try:
            assert isinstance(protobuf.decode(sample), dict)
        except (BadRequest, UnsupportedMediaType):
            pass
    with pytest.raises(BadRequest):
        protobuf.decode(data[:-3])


# --------------------------------------------------------------------------------------------
# The table against the models
# --------------------------------------------------------------------------------------------


def _models_in(annotation: Any) -> set[type[K8sModel]]:
    found: set[type[K8sModel]] = set()
    if isinstance(annotation, type) and issubclass(annotation, K8sModel):
        found.add(annotation)
    for arg in typing.get_args(annotation):
        found |= _models_in(arg)
    return found


def _has_dict(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict or any(
        _has_dict(a) for a in typing.get_args(annotation))


def _reachable() -> set[type[K8sModel]]:
    todo: list[type[K8sModel]] = [r.model for r in RESOURCES.values()]
    todo += [SCALE_MODEL, BINDING_MODEL, TOKEN_REQUEST_MODEL, policy.Eviction,
             policy.DeleteOptions]
    seen: set[type[K8sModel]] = set()
    while todo:
        model = todo.pop()
        if model not in seen:
            seen.add(model)
            for f in model.model_fields.values():
                todo += _models_in(f.annotation)
    return seen


# Decoded though our model lacks it: the REST front's DELETE reads it.
_EXTRA = {(policy.DeleteOptions, "orphanDependents")}


def _model_id(model: type[K8sModel]) -> str:
    return f"{model.__module__}.{model.__name__}"


_MODELS: list[type[K8sModel]] = sorted(_reachable(), key=_model_id)


@pytest.mark.parametrize("model", _MODELS, ids=_model_id)
def test_every_model_field_has_a_protobuf_number(model: type[K8sModel]) -> None:
    assert model in protobuf.FIELDS, f"{model.__name__} has no protobuf table in api/protobuf.py"
    table = protobuf.table_fields(model)
    fields = {(f.alias or n): f for n, f in model.model_fields.items()}
    if issubclass(model, TypedObject):
        fields.pop("apiVersion"), fields.pop("kind")  # in the envelope, not the message
    missing = fields.keys() - table.keys()
    assert not missing, f"{model.__name__}: no protobuf number for {sorted(missing)}"
    extra = {name for name in table.keys() - fields.keys() if (model, name) not in _EXTRA}
    assert not extra, f"{model.__name__}: table has fields the model lacks: {sorted(extra)}"
    for name, f in fields.items():
        nested = {m.__name__ for m in _models_in(f.annotation)}
        if nested:
            assert nested == {table[name]}, f"{model.__name__}.{name}: {nested} vs {table[name]}"
        elif table[name] in protobuf.UPSTREAM_ONLY:
            # A verbatim dict[str, Any] of ours, decoded by an upstream-only table.
            assert _has_dict(f.annotation), f"{model.__name__}.{name}"


def test_table_has_no_cycles() -> None:
    # Nesting is then bounded by the schema, whatever a body claims.
    graph = {m.__name__: t for m, t in protobuf.FIELDS.items()} | protobuf.UPSTREAM_ONLY

    def walk(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        for spec in graph[name].values():
            inner = spec.split(" ", 1)[1].lstrip("*").removeprefix("[]").removeprefix(
                "map[string]")
            if inner in graph:
                walk(inner, (*path, name))

    for name in graph:
        walk(name, ())


# --------------------------------------------------------------------------------------------
# The HTTP front's use of it
# --------------------------------------------------------------------------------------------


def test_rest_front_bodies() -> None:
    from multidict import MultiDict

    from apiserver.rest import app, negotiate

    query: MultiDict[str] = MultiDict()
    data = (FIXTURES / "configmap.pb").read_bytes()
    decoded = json.loads(negotiate.decode_body(data, "application/vnd.kubernetes.protobuf"))
    assert decoded["metadata"] == {"name": "app-config"}
    options = app.delete_options(query, (FIXTURES / "deleteoptions.pb").read_bytes(),
                                 "application/vnd.kubernetes.protobuf")
    assert options.grace_period_seconds == 0
    orphan = body("v1", "DeleteOptions", vi(3, 1))
    assert app.delete_options(query, orphan, protobuf.MEDIA_TYPE).propagation_policy == "Orphan"
    assert app.delete_options(query, b'{"gracePeriodSeconds": 5}', "application/json") \
        .grace_period_seconds == 5
