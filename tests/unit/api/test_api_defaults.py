"""Defaulting: upstream's values, applied to pods and to controllers' pod templates."""

import base64

import pytest

from api import apps, core
from api.codec import decode
from api.defaults import apply_defaults
from api.resources import RESOURCES


def _decoded(resource: str, data: dict):
    obj, _ = decode(RESOURCES[resource], data)
    apply_defaults(obj)
    return obj


POD_SPEC = {
    "containers": [{
        "name": "web", "image": "nginx",
        "ports": [{"containerPort": 80}],
        "livenessProbe": {"httpGet": {"port": 80}},
        "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 3},
        "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "resources": {"limits": {"cpu": "1"}},
    }],
    "volumes": [
        {"name": "c", "configMap": {"name": "c"}},
        {"name": "s", "secret": {"secretName": "s"}},
        {"name": "h", "hostPath": {"path": "/x"}},
    ],
}


def test_pod_defaults() -> None:
    pod = _decoded("pods", {"metadata": {"name": "p"}, "spec": POD_SPEC})
    assert isinstance(pod, core.Pod) and pod.spec is not None
    s = pod.spec
    assert (s.restart_policy, s.dns_policy, s.termination_grace_period_seconds,
            s.scheduler_name) == ("Always", "ClusterFirst", 30, "default-scheduler")
    assert s.service_account_name is None  # that is admission's job
    c = s.containers[0]
    assert c.image_pull_policy == "Always"
    assert c.termination_message_path == "/dev/termination-log"
    assert c.termination_message_policy == "File"
    assert c.ports and c.ports[0].protocol == "TCP"
    lp = c.liveness_probe
    assert lp and lp.http_get
    assert (lp.http_get.path, lp.http_get.scheme) == ("/", "HTTP")
    assert (lp.timeout_seconds, lp.period_seconds, lp.success_threshold,
            lp.failure_threshold) == (1, 10, 1, 3)
    assert c.readiness_probe and c.readiness_probe.period_seconds == 3
    assert c.env and c.env[0].value_from and c.env[0].value_from.field_ref
    assert c.env[0].value_from.field_ref.api_version == "v1"
    assert c.resources and c.resources.requests == {"cpu": "1"}
    vols = {v.name: v for v in s.volumes or []}
    assert vols["c"].config_map and vols["c"].config_map.default_mode == 420
    assert vols["s"].secret and vols["s"].secret.default_mode == 420
    assert vols["h"].host_path and vols["h"].host_path.type == ""


@pytest.mark.parametrize(
    ("image", "policy"),
    [("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.25", "IfNotPresent"),
     ("localhost:5000/nginx", "Always"), ("localhost:5000/nginx:1", "IfNotPresent"),
     ("nginx@sha256:abc", "IfNotPresent")],
)
def test_image_pull_policy(image, policy) -> None:
    pod = _decoded("pods", {"metadata": {"name": "p"},
                            "spec": {"containers": [{"name": "a", "image": image}]}})
    assert pod.spec.containers[0].image_pull_policy == policy


def test_explicit_values_kept_and_idempotent() -> None:
    data = {"metadata": {"name": "p"}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "a", "image": "x", "imagePullPolicy": "Never"}]}}
    pod = _decoded("pods", data)
    assert pod.spec.restart_policy == "Never"
    assert pod.spec.containers[0].image_pull_policy == "Never"
    before = pod.to_dict()
    apply_defaults(pod)
    assert pod.to_dict() == before


def test_service_defaults() -> None:
    svc = _decoded("services", {"metadata": {"name": "s"}, "spec": {
        "sessionAffinity": "ClientIP", "ports": [{"port": 80}, {"port": 53, "targetPort": "dns",
                                                               "protocol": "UDP"}]}})
    s = svc.spec
    assert s.type == "ClusterIP"
    assert s.session_affinity_config.client_ip.timeout_seconds == 10800
    assert [(p.protocol, p.target_port) for p in s.ports] == [("TCP", 80), ("UDP", "dns")]
    plain = _decoded("services", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 1}]}})
    assert plain.spec.session_affinity == "None"
    assert plain.spec.session_affinity_config is None


def test_rc_defaults() -> None:
    rc = _decoded("replicationcontrollers", {"metadata": {"name": "r"}, "spec": {
        "template": {"metadata": {"labels": {"app": "x"}}, "spec": POD_SPEC}}})
    assert rc.spec.replicas == 1
    assert rc.spec.selector == {"app": "x"}
    assert rc.metadata.labels == {"app": "x"}
    assert rc.spec.template.spec.restart_policy == "Always"
    assert rc.spec.template.spec.containers[0].image_pull_policy == "Always"
    # Templates do not get the pod-only requests-from-limits default.
    assert rc.spec.template.spec.containers[0].resources.requests is None


def test_deployment_and_replicaset_defaults() -> None:
    tmpl = {"metadata": {"labels": {"app": "x"}}, "spec": POD_SPEC}
    d = _decoded("deployments", {"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "x"}}, "template": tmpl}})
    assert isinstance(d, apps.Deployment)
    assert d.spec.replicas == 1
    assert d.spec.strategy.type == "RollingUpdate"
    ru = d.spec.strategy.rolling_update
    assert (ru.max_surge, ru.max_unavailable) == ("25%", "25%")
    assert d.spec.revision_history_limit == 10
    assert d.spec.progress_deadline_seconds == 600
    assert d.spec.template.spec.dns_policy == "ClusterFirst"
    recreate = _decoded("deployments", {"metadata": {"name": "d"}, "spec": {
        "strategy": {"type": "Recreate"}, "selector": {"matchLabels": {"app": "x"}},
        "template": tmpl}})
    assert recreate.spec.strategy.rolling_update is None
    rs = _decoded("replicasets", {"metadata": {"name": "r"}, "spec": {
        "selector": {"matchLabels": {"app": "x"}}, "template": tmpl}})
    assert rs.spec.replicas == 1
    assert rs.spec.template.spec.termination_grace_period_seconds == 30


def test_secret_and_namespace_defaults() -> None:
    s = _decoded("secrets", {"metadata": {"name": "s"}, "stringData": {"k": "value"},
                             "data": {"k": "b2xk", "o": "eA=="}})
    assert s.type == "Opaque"
    assert s.string_data is None
    assert s.data == {"k": base64.b64encode(b"value").decode(), "o": "eA=="}
    ns = _decoded("namespaces", {"metadata": {"name": "dev"}})
    assert ns.status.phase == "Active"
