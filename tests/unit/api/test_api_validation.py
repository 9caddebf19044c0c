"""Validation rules: each one, with its Kubernetes field path and message."""

import copy
from collections.abc import Callable
from typing import Any

import pytest

from api.codec import decode
from api.defaults import apply_defaults
from api.errors import invalid
from api.resources import RESOURCES
from api.validation import fmt_value, validate

KIND_RESOURCE = {info.kind: info for info in RESOURCES.values()}


def pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "containers": [{
                "name": "web", "image": "nginx:1.25",
                "ports": [{"name": "http", "containerPort": 80}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }


def deployment() -> dict[str, Any]:
    tmpl = pod()
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": tmpl["spec"]},
        },
    }


def replicaset() -> dict[str, Any]:
    d = deployment()
    return {**d, "kind": "ReplicaSet"}


def rc() -> dict[str, Any]:
    d = deployment()
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": d["metadata"],
            "spec": {"replicas": 1, "selector": {"app": "web"}, "template": d["spec"]["template"]}}


def service() -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]},
    }


def service_with_ip() -> dict[str, Any]:
    s = service()
    s["spec"]["clusterIP"] = "10.96.0.1"
    return s


def node() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.244.1.0/24", "taints": [{"key": "a", "effect": "NoSchedule"}]}}


def lease() -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "n1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}}


def configmap() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"},
            "data": {"a.conf": "x"}}


def secret() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"},
            "data": {"k": "dmFsdWU="}}


def endpoints() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "d"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}}


def _obj(data: dict[str, Any]):
    obj, _ = decode(KIND_RESOURCE[data["kind"]], data)
    apply_defaults(obj)
    return obj


def _causes(data: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    obj = _obj(data)
    return [str(c) for c in validate(data["kind"], obj, _obj(old) if old else None)]


@pytest.mark.parametrize(
    "factory", [pod, deployment, replicaset, rc, service, node, lease, configmap, secret,
                endpoints, namespace],
)
def test_valid_objects(factory) -> None:
    assert _causes(factory()) == []


Mut = Callable[[dict[str, Any]], Any]


def C(d: dict[str, Any]) -> dict[str, Any]:
    """The first container of a pod dict."""
    return d["spec"]["containers"][0]


def T(d: dict[str, Any]) -> dict[str, Any]:
    """The pod spec inside a controller's template."""
    return d["spec"]["template"]["spec"]


CASES: list[tuple[str, Callable[[], dict[str, Any]], Mut, str]] = [
    # --- metadata
    ("name-syntax", pod, lambda d: d["metadata"].update(name="Foo_bar"),
     'metadata.name: Invalid value: "Foo_bar": a lowercase RFC 1123 subdomain must consist of '
     "lower case alphanumeric characters, '-' or '.', and must start and end with an "
     "alphanumeric character (e.g. 'example.com', regex used for validation is "
     r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
    ("name-too-long", pod, lambda d: d["metadata"].update(name="a" * 254),
     "metadata.name: Invalid value: \"" + "a" * 254 + "\": must be no more than 253 characters"),
    ("name-required", pod, lambda d: d["metadata"].pop("name"),
     "metadata.name: Required value: name or generateName is required"),
    ("generate-name-ok", pod, lambda d: (d["metadata"].pop("name"),
                                         d["metadata"].update(generateName="web-")), None),
    ("generate-name-bad", pod, lambda d: (d["metadata"].pop("name"),
                                          d["metadata"].update(generateName="Web-")),
     'metadata.generateName: Invalid value: "Web-": a lowercase RFC 1123 subdomain'),
    ("namespace-name-label", namespace, lambda d: d["metadata"].update(name="a.b"),
     'metadata.name: Invalid value: "a.b": a lowercase RFC 1123 label must consist of'),
    ("service-name-dns1035", service, lambda d: d["metadata"].update(name="1web"),
     'metadata.name: Invalid value: "1web": a DNS-1035 label must consist of'),
    ("namespace-syntax", pod, lambda d: d["metadata"].update(namespace="Default"),
     'metadata.namespace: Invalid value: "Default": a lowercase RFC 1123 label'),
    ("cluster-scoped-namespace", node, lambda d: d["metadata"].update(namespace="default"),
     "metadata.namespace: Forbidden: not allowed on this type"),
    ("label-key", pod, lambda d: d["metadata"]["labels"].update({"a b": "x"}),
     'metadata.labels: Invalid value: "a b": name part must consist of alphanumeric'),
    ("label-key-long", pod, lambda d: d["metadata"]["labels"].update({"k" * 64: "x"}),
     "name part must be no more than 63 characters"),
    ("label-prefix", pod, lambda d: d["metadata"]["labels"].update({"Ex.com/a": "x"}),
     "prefix part a lowercase RFC 1123 subdomain"),
    ("label-value", pod, lambda d: d["metadata"]["labels"].update(app="-x"),
     'metadata.labels: Invalid value: "-x": a valid label must be an empty string or consist'),
    ("label-value-long", pod, lambda d: d["metadata"]["labels"].update(app="v" * 64),
     "must be no more than 63 characters"),
    ("annotation-key", pod, lambda d: d["metadata"].update(annotations={"a/b/c": "x"}),
     'metadata.annotations: Invalid value: "a/b/c": a qualified name must consist of'),
    ("annotation-size", pod, lambda d: d["metadata"].update(annotations={"a": "x" * 262144}),
     "metadata.annotations: Too long: must have at most 262144 bytes"),
    ("owner-ref", pod, lambda d: d["metadata"].update(
        ownerReferences=[{"apiVersion": "v1", "kind": "RC", "name": "x", "uid": ""}]),
     "metadata.ownerReferences[0].uid: Required value"),
    # --- pod spec
    ("no-containers", pod, lambda d: d["spec"].update(containers=[]),
     "spec.containers: Required value"),
    ("container-name", pod, lambda d: C(d).update(name="Web"),
     'spec.containers[0].name: Invalid value: "Web": a lowercase RFC 1123 label'),
    ("container-dup", pod, lambda d: d["spec"]["containers"].append(
        {"name": "web", "image": "x"}), 'spec.containers[1].name: Duplicate value: "web"'),
    ("init-container-dup", pod, lambda d: d["spec"].update(
        initContainers=[{"name": "web", "image": "x"}]),
     'spec.containers[0].name: Duplicate value: "web"'),
    ("image-required", pod, lambda d: C(d).pop("image"),
     "spec.containers[0].image: Required value"),
    ("container-port-range", pod, lambda d: C(d)["ports"][0].update(containerPort=70000),
     "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and "
     "65535, inclusive"),
    ("container-port-zero", pod, lambda d: C(d)["ports"][0].update(containerPort=0),
     "spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535"),
    ("host-port", pod, lambda d: C(d)["ports"][0].update(hostPort=65536),
     "spec.containers[0].ports[0].hostPort: Invalid value: 65536: must be between 1 and 65535"),
    ("port-protocol", pod, lambda d: C(d)["ports"][0].update(protocol="tcp"),
     'spec.containers[0].ports[0].protocol: Unsupported value: "tcp": supported values: '
     '"SCTP", "TCP", "UDP"'),
    ("port-name", pod, lambda d: C(d)["ports"][0].update(name="HTTP"),
     'spec.containers[0].ports[0].name: Invalid value: "HTTP": must contain only alpha-numeric'),
    ("port-name-dup", pod, lambda d: C(d)["ports"].append({"name": "http", "containerPort": 81}),
     'spec.containers[0].ports[1].name: Duplicate value: "http"'),
    ("volume-dup", pod, lambda d: d["spec"]["volumes"].append({"name": "data", "emptyDir": {}}),
     'spec.volumes[1].name: Duplicate value: "data"'),
    ("volume-no-source", pod, lambda d: d["spec"]["volumes"].append({"name": "x"}),
     "spec.volumes[1]: Required value: must specify a volume type"),
    ("volume-two-sources", pod, lambda d: d["spec"]["volumes"][0].update(
        hostPath={"path": "/tmp"}),
     "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type"),
    ("volume-name", pod, lambda d: d["spec"]["volumes"].append({"name": "A", "emptyDir": {}}),
     'spec.volumes[1].name: Invalid value: "A": a lowercase RFC 1123 label'),
    ("hostpath-type", pod, lambda d: d["spec"]["volumes"].append(
        {"name": "h", "hostPath": {"path": "/x", "type": "Dir"}}),
     'spec.volumes[1].hostPath.type: Unsupported value: "Dir"'),
    ("configmap-mode", pod, lambda d: d["spec"]["volumes"].append(
        {"name": "c", "configMap": {"name": "c", "defaultMode": 512}}),
     "spec.volumes[1].configMap.defaultMode: Invalid value: 512: must be a number between 0 "
     "and 0777 (octal), both inclusive"),
    ("secret-name", pod, lambda d: d["spec"]["volumes"].append({"name": "s", "secret": {}}),
     "spec.volumes[1].secret.secretName: Required value"),
    ("mount-not-found", pod, lambda d: C(d)["volumeMounts"].append(
        {"name": "x", "mountPath": "/x"}),
     'spec.containers[0].volumeMounts[1].name: Not found: "x"'),
    ("mount-path-unique", pod, lambda d: C(d)["volumeMounts"].append(
        {"name": "data", "mountPath": "/data"}),
     'spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/data": must be unique'),
    ("restart-policy", pod, lambda d: d["spec"].update(restartPolicy="Sometimes"),
     'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", '
     '"OnFailure"'),
    ("pull-policy", pod, lambda d: C(d).update(imagePullPolicy="Sometimes"),
     'spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: '
     '"Always", "IfNotPresent", "Never"'),
    ("dns-policy", pod, lambda d: d["spec"].update(dnsPolicy="Foo"),
     'spec.dnsPolicy: Unsupported value: "Foo"'),
    ("grace-negative", pod, lambda d: d["spec"].update(terminationGracePeriodSeconds=-1),
     "spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0"),
    ("active-deadline", pod, lambda d: d["spec"].update(activeDeadlineSeconds=0),
     "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"),
    ("probe-no-handler", pod, lambda d: C(d).update(livenessProbe={"periodSeconds": 3}),
     "spec.containers[0].livenessProbe: Required value: must specify a handler type"),
    ("probe-two-handlers", pod, lambda d: C(d).update(
        readinessProbe={"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}),
     "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 "
     "handler type"),
    ("probe-negative", pod, lambda d: C(d).update(
        livenessProbe={"tcpSocket": {"port": 80}, "initialDelaySeconds": -1}),
     "spec.containers[0].livenessProbe.initialDelaySeconds: Invalid value: -1: must be greater "
     "than or equal to 0"),
    ("probe-threshold", pod, lambda d: C(d).update(
        readinessProbe={"tcpSocket": {"port": 80}, "failureThreshold": 0}),
     "spec.containers[0].readinessProbe.failureThreshold: Invalid value: 0: must be greater than "
     "or equal to 1"),
    ("liveness-success", pod, lambda d: C(d).update(
        livenessProbe={"tcpSocket": {"port": 80}, "successThreshold": 2}),
     "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"),
    ("probe-port", pod, lambda d: C(d).update(livenessProbe={"httpGet": {"port": 0}}),
     "spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and "
     "65535"),
    ("probe-port-name", pod, lambda d: C(d).update(livenessProbe={"httpGet": {"port": "Bad_"}}),
     'spec.containers[0].livenessProbe.httpGet.port: Invalid value: "Bad_": must contain only'),
    ("probe-scheme", pod, lambda d: C(d).update(
        livenessProbe={"httpGet": {"port": 80, "scheme": "FTP"}}),
     'spec.containers[0].livenessProbe.httpGet.scheme: Unsupported value: "FTP"'),
    ("lifecycle", pod, lambda d: C(d).update(lifecycle={"preStop": {}}),
     "spec.containers[0].lifecycle.preStop: Required value: must specify a handler type"),
    ("env-name", pod, lambda d: C(d).update(env=[{"name": "1A", "value": "x"}]),
     'spec.containers[0].env[0].name: Invalid value: "1A": a valid environment variable name'),
    ("env-value-and-from", pod, lambda d: C(d).update(env=[{"name": "A", "value": "x",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
     'spec.containers[0].env[0].valueFrom: Invalid value: "": may not be specified when `value` '
     "is not empty"),
    ("requests-gt-limits", pod, lambda d: C(d).update(
        resources={"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}),
     'spec.containers[0].resources.requests[cpu]: Invalid value: "2": must be less than or '
     "equal to cpu limit of 1"),
    ("negative-quantity", pod, lambda d: C(d).update(resources={"limits": {"memory": "-1Mi"}}),
     'spec.containers[0].resources.limits[memory]: Invalid value: "-1Mi": must be greater than '
     "or equal to 0"),
    ("toleration-operator", pod, lambda d: d["spec"].update(
        tolerations=[{"key": "a", "operator": "In"}]),
     'spec.tolerations[0].operator: Unsupported value: "In": supported values: "Equal", '
     '"Exists"'),
    ("toleration-exists-value", pod, lambda d: d["spec"].update(
        tolerations=[{"key": "a", "operator": "Exists", "value": "v"}]),
     "spec.tolerations[0].operator: Invalid value: \"v\": value must be empty when `operator` "
     "is 'Exists'"),
    ("toleration-empty-key", pod, lambda d: d["spec"].update(tolerations=[{"value": "v"}]),
     'spec.tolerations[0].operator: Invalid value: "": operator must be Exists when `key` is '
     "empty"),
    ("toleration-effect", pod, lambda d: d["spec"].update(
        tolerations=[{"key": "a", "effect": "Never"}]),
     'spec.tolerations[0].effect: Unsupported value: "Never": supported values: "NoExecute", '
     '"NoSchedule", "PreferNoSchedule"'),
    ("toleration-seconds", pod, lambda d: d["spec"].update(
        tolerations=[{"key": "a", "effect": "NoSchedule", "tolerationSeconds": 5}]),
     "spec.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' "
     "when `tolerationSeconds` is set"),
    ("node-affinity-op", pod, lambda d: d["spec"].update(affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "a", "operator": "Is"}]}]}}}),
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution."
     'nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: "Is"'),
    ("node-affinity-weight", pod, lambda d: d["spec"].update(affinity={"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 0, "preference": {}}]}}),
     "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: "
     "Invalid value: 0: must be in the range 1-100"),
    ("node-selector", pod, lambda d: d["spec"].update(nodeSelector={"a": "b c"}),
     'spec.nodeSelector: Invalid value: "b c": a valid label must be'),
    # --- controllers
    ("replicas", deployment, lambda d: d["spec"].update(replicas=-1),
     "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
    ("selector-required", deployment, lambda d: d["spec"].pop("selector"),
     "spec.selector: Required value"),
    ("selector-empty", deployment, lambda d: d["spec"].update(selector={}),
     "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
     "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for "
     "deployment"),
    ("selector-mismatch", deployment, lambda d: d["spec"]["template"]["metadata"].update(
        labels={"app": "other"}),
     'spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: '
     "`selector` does not match template `labels`"),
    ("selector-operator", deployment, lambda d: d["spec"]["selector"].update(
        matchExpressions=[{"key": "app", "operator": "Equals", "values": ["x"]}]),
     'spec.selector.matchExpressions[0].operator: Invalid value: "Equals": not a valid '
     "selector operator"),
    ("template-required", deployment, lambda d: d["spec"].pop("template"),
     "spec.template: Required value"),
    ("template-restart", deployment, lambda d: T(d).update(restartPolicy="Never"),
     'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"'),
    ("template-container-name", deployment, lambda d: T(d)["containers"][0].update(name="A"),
     'spec.template.spec.containers[0].name: Invalid value: "A"'),
    ("rs-replicas", replicaset, lambda d: d["spec"].update(replicas=-2),
     "spec.replicas: Invalid value: -2: must be greater than or equal to 0"),
    ("rs-selector-mismatch", replicaset, lambda d: d["spec"]["selector"].update(
        matchLabels={"app": "x"}), "`selector` does not match template `labels`"),
    ("strategy-type", deployment, lambda d: d["spec"].update(strategy={"type": "BlueGreen"}),
     'spec.strategy.type: Unsupported value: "BlueGreen": supported values: "Recreate", '
     '"RollingUpdate"'),
    ("recreate-with-rolling", deployment, lambda d: d["spec"].update(
        strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}),
     "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is "
     "'Recreate'"),
    ("both-zero", deployment, lambda d: d["spec"].update(
        strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}),
     'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "0%": may not be 0 when '
     "`maxSurge` is 0"),
    ("bad-percent", deployment, lambda d: d["spec"].update(
        strategy={"rollingUpdate": {"maxSurge": "abc"}}),
     'spec.strategy.rollingUpdate.maxSurge: Invalid value: "abc": a valid percent string must '
     "be a numeric string followed by an ending '%'"),
    ("unavailable-over-100", deployment, lambda d: d["spec"].update(
        strategy={"rollingUpdate": {"maxUnavailable": "150%"}}),
     'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "150%": must not be greater '
     "than 100%"),
    ("negative-surge", deployment, lambda d: d["spec"].update(
        strategy={"rollingUpdate": {"maxSurge": -1}}),
     "spec.strategy.rollingUpdate.maxSurge: Invalid value: -1: must be greater than or equal "
     "to 0"),
    ("history-limit", deployment, lambda d: d["spec"].update(revisionHistoryLimit=-1),
     "spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0"),
    ("progress-deadline", deployment, lambda d: d["spec"].update(
        minReadySeconds=700, progressDeadlineSeconds=600),
     "spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"),
    ("rc-selector-required", rc, lambda d: (d["spec"].pop("selector"),
                                            d["spec"]["template"]["metadata"].pop("labels")),
     "spec.selector: Required value"),
    ("rc-mismatch", rc, lambda d: d["spec"].update(selector={"app": "x"}),
     'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
     "`selector` does not match template `labels`"),
    ("rc-replicas", rc, lambda d: d["spec"].update(replicas=-1),
     "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
    # --- service
    ("svc-type", service, lambda d: d["spec"].update(type="Internal"),
     'spec.type: Unsupported value: "Internal": supported values: "ClusterIP", "ExternalName", '
     '"LoadBalancer", "NodePort"'),
    ("svc-ports-required", service, lambda d: d["spec"].pop("ports"),
     "spec.ports: Required value"),
    ("svc-port-range", service, lambda d: d["spec"]["ports"][0].update(port=0),
     "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
    ("svc-port-name-required", service, lambda d: d["spec"]["ports"].append({"port": 81}),
     "spec.ports[1].name: Required value"),
    ("svc-port-name-dup", service, lambda d: d["spec"]["ports"].append(
        {"name": "http", "port": 81}), 'spec.ports[1].name: Duplicate value: "http"'),
    ("svc-target-port", service, lambda d: d["spec"]["ports"][0].update(targetPort=70000),
     "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535"),
    ("svc-node-port-range", service, lambda d: (d["spec"].update(type="NodePort"),
                                                d["spec"]["ports"][0].update(nodePort=70000)),
     "spec.ports[0].nodePort: Invalid value: 70000: must be between 0 and 65535, inclusive"),
    ("svc-node-port-clusterip", service, lambda d: d["spec"]["ports"][0].update(nodePort=30000),
     "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
    ("svc-affinity", service, lambda d: d["spec"].update(sessionAffinity="Sticky"),
     'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"'),
    ("svc-affinity-timeout", service, lambda d: d["spec"].update(
        sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}}),
     "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater "
     "than 0 and less than 86400"),
    ("svc-cluster-ip", service, lambda d: d["spec"].update(clusterIP="10.0.0.300"),
     'spec.clusterIP: Invalid value: "10.0.0.300": must be a valid IP address'),
    ("svc-external-name", service, lambda d: d["spec"].update(type="ExternalName"),
     "spec.externalName: Required value"),
    ("svc-protocol", service, lambda d: d["spec"]["ports"][0].update(protocol="HTTP"),
     'spec.ports[0].protocol: Unsupported value: "HTTP"'),
    # --- others
    ("taint-effect", node, lambda d: d["spec"]["taints"][0].update(effect="Sometimes"),
     'spec.taints[0].effect: Unsupported value: "Sometimes": supported values: "NoExecute", '
     '"NoSchedule", "PreferNoSchedule"'),
    ("taint-dup", node, lambda d: d["spec"]["taints"].append({"key": "a", "effect": "NoSchedule"}),
     'spec.taints[1]: Duplicate value: "a:NoSchedule"'),
    ("pod-cidr", node, lambda d: d["spec"].update(podCIDR="10.0.0.0/99"),
     'spec.podCIDR: Invalid value: "10.0.0.0/99": must be a valid CIDR'),
    ("lease-duration", lease, lambda d: d["spec"].update(leaseDurationSeconds=0),
     "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
    ("cm-key", configmap, lambda d: d["data"].update({"a b": "x"}),
     'data[a b]: Invalid value: "a b": a valid config key must consist of alphanumeric'),
    ("cm-binary", configmap, lambda d: d.update(binaryData={"b": "!!"}),
     'binaryData[b]: Invalid value: !!: illegal base64 data'),
    ("secret-base64", secret, lambda d: d["data"].update(k="not base64!"),
     "data[k]: Invalid value: <value omitted>: illegal base64 data"),
    ("secret-tls", secret, lambda d: d.update(type="kubernetes.io/tls"),
     "data[tls.crt]: Required value"),
    ("endpoints-ip", endpoints, lambda d: d["subsets"][0]["addresses"][0].update(ip="x"),
     'subsets[0].addresses[0].ip: Invalid value: "x": must be a valid IP address'),
    ("endpoints-port", endpoints, lambda d: d["subsets"][0]["ports"][0].update(port=0),
     "subsets[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
]


@pytest.mark.parametrize(("mutate", "factory", "expected"),
                         [(m, f, e) for _, f, m, e in CASES], ids=[c[0] for c in CASES])
def test_rule(factory, mutate: Mut, expected: str | None) -> None:
    data = factory()
    mutate(data)
    causes = _causes(data)
    if expected is None:
        assert causes == []
    else:
        assert any(expected in c for c in causes), causes


# --- updates ----------------------------------------------------------------------------------


def _update(factory, mutate: Mut) -> list[str]:
    old = factory()
    old["metadata"]["uid"] = "u1"
    new = copy.deepcopy(old)
    mutate(new)
    return _causes(new, old)


UPDATE_CASES: list[tuple[str, Callable[[], dict[str, Any]], Mut, str | None]] = [
    ("name", pod, lambda d: d["metadata"].update(name="other"),
     'metadata.name: Invalid value: "other": field is immutable'),
    ("namespace", pod, lambda d: d["metadata"].update(namespace="other"),
     'metadata.namespace: Invalid value: "other": field is immutable'),
    ("uid", pod, lambda d: d["metadata"].update(uid="u2"),
     'metadata.uid: Invalid value: "u2": field is immutable'),
    ("labels-ok", pod, lambda d: d["metadata"]["labels"].update(x="y"), None),
    ("pod-image-ok", pod, lambda d: C(d).update(image="nginx:1.26"), None),
    ("pod-deadline-set-ok", pod, lambda d: d["spec"].update(activeDeadlineSeconds=30), None),
    ("pod-toleration-add-ok", pod, lambda d: d["spec"].update(
        tolerations=[{"key": "a", "operator": "Exists"}]), None),
    ("pod-other-field", pod, lambda d: C(d).update(command=["sh"]),
     "spec: Forbidden: pod updates may not change fields other than "
     "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
     "`spec.tolerations` (only additions to existing tolerations)"),
    ("pod-restart-policy", pod, lambda d: d["spec"].update(restartPolicy="Never"),
     "spec: Forbidden: pod updates may not change fields other than"),
    ("deploy-selector", deployment, lambda d: (
        d["spec"]["selector"]["matchLabels"].update(tier="x"),
        d["spec"]["template"]["metadata"]["labels"].update(tier="x")),
     'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", '
     '"tier":"x"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable'),
    ("deploy-replicas-ok", deployment, lambda d: d["spec"].update(replicas=5), None),
    ("rs-selector", replicaset, lambda d: d["spec"]["selector"].update(
        matchExpressions=[{"key": "app", "operator": "Exists"}]), "field is immutable"),
    ("svc-cluster-ip", service_with_ip, lambda d: d["spec"].update(clusterIP="10.96.0.2"),
     'spec.clusterIP: Invalid value: "10.96.0.2": field is immutable'),
    ("cm-immutable-ok", configmap, lambda d: d["data"].update(b="y"), None),
]


@pytest.mark.parametrize(("factory", "mutate", "expected"),
                         [(f, m, e) for _, f, m, e in UPDATE_CASES],
                         ids=[c[0] for c in UPDATE_CASES])
def test_update_rule(factory, mutate, expected) -> None:
    causes = _update(factory, mutate)
    if expected is None:
        assert causes == []
    else:
        assert any(expected in c for c in causes), causes


def test_pod_update_deadline_rules() -> None:
    old = pod()
    old["spec"]["activeDeadlineSeconds"] = 30
    raised = copy.deepcopy(old)
    raised["spec"]["activeDeadlineSeconds"] = 60
    assert ("spec.activeDeadlineSeconds: Invalid value: 60: must be less than or equal to "
            "previous value") in _causes(raised, old)
    lowered = copy.deepcopy(old)
    lowered["spec"]["activeDeadlineSeconds"] = 10
    assert _causes(lowered, old) == []


def test_pod_update_toleration_removal_forbidden() -> None:
    old = pod()
    old["spec"]["tolerations"] = [{"key": "a", "operator": "Exists"}]
    new = copy.deepcopy(old)
    new["spec"]["tolerations"] = []
    assert any(c.startswith("spec.tolerations: Forbidden") for c in _causes(new, old))


def test_service_cluster_ip_may_be_set_once() -> None:
    old = service()
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = "10.96.0.5"
    assert _causes(new, old) == []


@pytest.mark.parametrize("factory", [configmap, secret])
def test_immutable_data(factory) -> None:
    old = factory()
    old["immutable"] = True
    new = copy.deepcopy(old)
    new["data"]["k2"] = "eA=="
    assert "data: Forbidden: field is immutable when `immutable` is set" in _causes(new, old)
    unset = copy.deepcopy(old)
    unset["immutable"] = False
    assert "immutable: Forbidden: field is immutable when `immutable` is set" in _causes(
        unset, old)
    same = copy.deepcopy(old)
    same["metadata"]["labels"] = {"a": "b"}
    assert _causes(same, old) == []


def test_secret_type_immutable() -> None:
    old = secret()
    new = copy.deepcopy(old)
    new["type"] = "kubernetes.io/basic-auth"
    new["data"]["username"] = "dXNlcg=="
    assert 'type: Invalid value: "kubernetes.io/basic-auth": field is immutable' in _causes(
        new, old)


def test_invalid_error_message() -> None:
    d = deployment()
    d["spec"]["replicas"] = -1
    obj = _obj(d)
    err = invalid("Deployment", obj.name, validate("Deployment", obj))
    assert err.message == ('Deployment "web" is invalid: spec.replicas: Invalid value: -1: '
                           "must be greater than or equal to 0")
    assert err.causes[0].field == "spec.replicas"


@pytest.mark.parametrize(
    ("value", "text"),
    [("a", '"a"'), (1, "1"), (True, "true"), (None, "null"), ({"b": "2", "a": "1"},
     'map[string]string{"a":"1", "b":"2"}'), (["x", "y"], '[]string{"x", "y"}'),
     ('q"\n', '"q\\"\\n"')],
)
def test_fmt_value(value, text) -> None:
    assert fmt_value(value) == text


def test_binding_and_scale() -> None:
    from api.autoscaling import Scale
    from api.core import Binding

    b = Binding.model_validate({"metadata": {"name": "p"}, "target": {"kind": "Node"}})
    assert [str(c) for c in validate("Binding", b)] == ["target.name: Required value"]
    s = Scale.model_validate({"metadata": {"name": "web"}, "spec": {"replicas": -1}})
    assert [str(c) for c in validate("Scale", s)] == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
