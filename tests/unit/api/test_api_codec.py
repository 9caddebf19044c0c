"""Decoding manifests into models: round trips, unknown-field warnings, Kubernetes-style errors."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from api import apps, core
from api.codec import decode, decode_model, encode, unknown_fields
from api.defaults import apply_defaults
from api.errors import BadRequest, Invalid
from api.resources import RESOURCES
from api.validation import validate

# https://kubernetes.io/docs/concepts/workloads/controllers/deployment/ (nginx-deployment.yaml)
NGINX_DEPLOYMENT = (Path(__file__).resolve().parents[3] / "docs" / "examples" /
                    "nginx-deployment.yaml").read_text()

# A pod exercising most of the modelled surface; every field here must round-trip unchanged.
FULL_POD = """
apiVersion: v1
kind: Pod
metadata:
  name: full
  namespace: default
  labels: {app: web}
  annotations: {example.com/note: hi}
spec:
  initContainers:
  - name: init
    image: busybox
    command: [sh, -c, "true"]
  containers:
  - name: web
    image: nginx:1.25
    args: ["-g", "daemon off;"]
    workingDir: /srv
    ports:
    - {name: http, containerPort: 80, hostPort: 8080, hostIP: 0.0.0.0, protocol: TCP}
    env:
    - {name: A, value: "1"}
    - name: NODE
      valueFrom: {fieldRef: {apiVersion: v1, fieldPath: spec.nodeName}}
    - name: CM
      valueFrom: {configMapKeyRef: {name: cfg, key: k, optional: true}}
    - name: SEC
      valueFrom: {secretKeyRef: {name: s, key: k}}
    - name: LIM
      valueFrom: {resourceFieldRef: {containerName: web, resource: limits.cpu, divisor: 1m}}
    envFrom:
    - configMapRef: {name: cfg}
      prefix: CFG_
    resources:
      limits: {cpu: 500m, memory: 128Mi}
      requests: {cpu: 250m, memory: 64Mi}
    volumeMounts:
    - {name: data, mountPath: /data, readOnly: true, subPath: sub}
    livenessProbe:
      httpGet:
        path: /healthz
        port: http
        scheme: HTTP
        httpHeaders: [{name: X-Probe, value: "1"}]
      initialDelaySeconds: 3
      periodSeconds: 5
      terminationGracePeriodSeconds: 10
    readinessProbe:
      tcpSocket: {port: 80}
    startupProbe:
      exec: {command: [cat, /tmp/ok]}
      failureThreshold: 30
    lifecycle:
      preStop: {exec: {command: [nginx, -s, quit]}}
      postStart: {httpGet: {port: 80, host: localhost}}
    imagePullPolicy: IfNotPresent
    securityContext:
      privileged: false
      runAsUser: 1000
      capabilities: {add: [NET_ADMIN], drop: [ALL]}
      readOnlyRootFilesystem: true
    stdin: true
    tty: true
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: FallbackToLogsOnError
  volumes:
  - {name: data, emptyDir: {medium: Memory, sizeLimit: 1Gi}}
  - {name: host, hostPath: {path: /var/log, type: Directory}}
  - name: cfg
    configMap: {name: cfg, items: [{key: k, path: p, mode: 256}], defaultMode: 420, optional: true}
  - name: sec
    secret: {secretName: s, defaultMode: 256}
  nodeSelector: {disktype: ssd}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{key: zone, operator: In, values: [a, b]}]
          matchFields: [{key: metadata.name, operator: In, values: [n1]}]
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 10
        preference: {matchExpressions: [{key: gpu, operator: Exists}]}
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - labelSelector: {matchLabels: {app: web}}
        topologyKey: kubernetes.io/hostname
  tolerations:
  - {key: k, operator: Equal, value: v, effect: NoExecute, tolerationSeconds: 60}
  - {operator: Exists}
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 5
  activeDeadlineSeconds: 100
  dnsPolicy: ClusterFirst
  serviceAccountName: default
  automountServiceAccountToken: false
  hostNetwork: false
  hostname: web
  subdomain: svc
  schedulerName: default-scheduler
  priority: 0
  priorityClassName: normal
  securityContext: {runAsUser: 1000, fsGroup: 2000}
  imagePullSecrets: [{name: regcred}]
status:
  phase: Running
  conditions:
  - {type: Ready, status: "True", lastProbeTime: null, lastTransitionTime: "2024-01-01T00:00:00Z"}
  hostIP: 10.0.0.1
  podIP: 10.244.1.2
  podIPs: [{ip: 10.244.1.2}]
  startTime: "2024-01-01T00:00:00Z"
  qosClass: Burstable
  containerStatuses:
  - name: web
    state: {running: {startedAt: "2024-01-01T00:00:01Z"}}
    lastState:
      terminated: {exitCode: 137, signal: 9, reason: OOMKilled, startedAt: "2024-01-01T00:00:00Z",
                   finishedAt: "2024-01-01T00:00:01Z", containerID: "docker://abc"}
    ready: true
    restartCount: 1
    image: nginx:1.25
    imageID: docker-pullable://nginx@sha256:1
    containerID: docker://def
    started: true
"""

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, protocol: TCP, port: 80, targetPort: http, nodePort: 30080, appProtocol: http}
  - {name: dns, protocol: UDP, port: 53, targetPort: 5353}
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  externalIPs: [1.2.3.4]
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  externalTrafficPolicy: Local
  internalTrafficPolicy: Cluster
  publishNotReadyAddresses: true
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
status:
  loadBalancer: {ingress: [{ip: 5.6.7.8}]}
"""

OTHERS = [
    ("namespaces", "apiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n"
     "spec: {finalizers: [kubernetes]}\nstatus: {phase: Active}\n"),
    ("nodes", """
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {kubernetes.io/hostname: n1}}
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs: [10.244.1.0/24]
  providerID: tinykube://n1
  unschedulable: true
  taints:
  - {key: node.kubernetes.io/not-ready, effect: NoSchedule, timeAdded: "2024-01-01T00:00:00Z"}
status:
  capacity: {cpu: "4", memory: 8Gi, pods: "110"}
  allocatable: {cpu: 3900m, memory: 7Gi, pods: "110"}
  conditions:
  - {type: Ready, status: "True", lastHeartbeatTime: "2024-01-01T00:00:00Z",
     lastTransitionTime: "2024-01-01T00:00:00Z", reason: KubeletReady, message: ok}
  addresses: [{type: InternalIP, address: 172.18.0.2}, {type: Hostname, address: n1}]
  daemonEndpoints: {kubeletEndpoint: {Port: 10250}}
  nodeInfo: {machineID: m, kernelVersion: "6.1", osImage: Debian, containerRuntimeVersion: docker://24,
             kubeletVersion: v1.30.0-tinykube, kubeProxyVersion: v1.30.0, operatingSystem: linux,
             architecture: amd64}
"""),
    ("endpoints", """
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: default}
subsets:
- addresses:
  - ip: 10.244.1.2
    hostname: web-0
    nodeName: n1
    targetRef: {kind: Pod, name: web-0, namespace: default, uid: u1}
  notReadyAddresses: [{ip: 10.244.1.3}]
  ports: [{name: http, port: 80, protocol: TCP, appProtocol: http}]
"""),
    ("replicationcontrollers", """
apiVersion: v1
kind: ReplicationController
metadata: {name: nginx}
spec:
  replicas: 3
  minReadySeconds: 1
  selector: {app: nginx}
  template:
    metadata: {name: nginx, labels: {app: nginx}}
    spec:
      containers: [{name: nginx, image: nginx, ports: [{containerPort: 80}]}]
status: {replicas: 3, fullyLabeledReplicas: 3, readyReplicas: 3, availableReplicas: 3,
         observedGeneration: 1}
"""),
    ("serviceaccounts", "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default}\n"
     "secrets: [{name: t}]\nimagePullSecrets: [{name: r}]\nautomountServiceAccountToken: false\n"),
    ("events", """
apiVersion: v1
kind: Event
metadata: {name: web.1, namespace: default}
involvedObject:
  kind: Pod
  namespace: default
  name: web
  uid: u
  apiVersion: v1
  resourceVersion: "5"
  fieldPath: "spec.containers{web}"
reason: Pulled
message: pulled
source: {component: kubelet, host: n1}
firstTimestamp: "2024-01-01T00:00:00Z"
lastTimestamp: "2024-01-01T00:00:00Z"
count: 2
type: Normal
eventTime: "2024-01-01T00:00:00.000000Z"
reportingComponent: kubelet
reportingInstance: n1
action: Pull
related: {kind: Node, name: n1}
series: {count: 2, lastObservedTime: "2024-01-01T00:00:00.000000Z"}
"""),
    ("configmaps", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n"
     "data: {a.conf: x}\nbinaryData: {b: AAE=}\nimmutable: true\n"),
    ("secrets", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: Opaque\n"
     "data: {k: dmFsdWU=}\nimmutable: false\n"),
    ("replicasets", """
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: fe}
spec:
  replicas: 3
  selector:
    matchLabels: {tier: frontend}
    matchExpressions: [{key: env, operator: In, values: [prod]}]
  template:
    metadata: {labels: {tier: frontend, env: prod}}
    spec: {containers: [{name: php, image: "gcr.io/google_samples/gb-frontend:v3"}]}
status: {replicas: 3, readyReplicas: 3, conditions: [{type: ReplicaFailure, status: "False"}]}
"""),
    ("leases", """
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: n1, namespace: kube-node-lease}
spec: {holderIdentity: n1, leaseDurationSeconds: 40, acquireTime: "2024-01-01T00:00:00.000000Z",
       renewTime: "2024-01-01T00:00:10.000000Z", leaseTransitions: 0}
"""),
]

DEPLOYMENT_WITH_STATUS = NGINX_DEPLOYMENT + """
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 25%}
  minReadySeconds: 0
  revisionHistoryLimit: 10
  paused: false
  progressDeadlineSeconds: 600
status:
  observedGeneration: 1
  replicas: 3
  updatedReplicas: 3
  readyReplicas: 3
  availableReplicas: 3
  unavailableReplicas: 0
  collisionCount: 0
  conditions:
  - {type: Available, status: "True", lastUpdateTime: "2024-01-01T00:00:00Z",
     lastTransitionTime: "2024-01-01T00:00:00Z", reason: MinimumReplicasAvailable, message: ok}
"""


def _strip_nulls(d):
    if isinstance(d, dict):
        return {k: _strip_nulls(v) for k, v in d.items() if v is not None}
    if isinstance(d, list):
        return [_strip_nulls(v) for v in d]
    return d


def test_nginx_deployment_decodes_round_trips_and_validates() -> None:
    data = yaml.safe_load(NGINX_DEPLOYMENT)
    obj, warnings = decode(RESOURCES["deployments"], copy.deepcopy(data))
    assert warnings == []
    assert isinstance(obj, apps.Deployment)
    assert obj.spec is not None and obj.spec.replicas == 3
    assert obj.to_dict() == data
    assert json.loads(encode(obj)) == data
    assert validate("Deployment", obj) == []
    apply_defaults(obj)
    assert validate("Deployment", obj) == []


@pytest.mark.parametrize(
    ("resource", "text"),
    [("pods", FULL_POD), ("services", SERVICE), ("deployments", DEPLOYMENT_WITH_STATUS),
     *OTHERS],
)
def test_round_trip(resource, text) -> None:
    data = yaml.safe_load(text)
    obj, warnings = decode(RESOURCES[resource], copy.deepcopy(data))
    assert warnings == []
    assert obj.to_dict() == _strip_nulls(data)
    assert decode(RESOURCES[resource], json.loads(encode(obj)))[0] == obj


def test_apiversion_kind_filled_when_absent() -> None:
    obj, _ = decode(RESOURCES["pods"], {"metadata": {"name": "p"}, "spec": {"containers": []}})
    assert obj.to_dict()["apiVersion"] == "v1" and obj.to_dict()["kind"] == "Pod"


def test_unknown_fields() -> None:
    data = yaml.safe_load(NGINX_DEPLOYMENT)
    data["spec"]["replcas"] = 3
    data["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    data["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerport"] = 1
    data["metadata"]["label"] = {}
    data["spec"]["template"]["spec"]["affinity"] = {"podAffinity": {"anything": {"goes": 1}}}
    data["status"] = {"conditions": [{"type": "A", "status": "True", "bogus": 1}]}
    obj, warnings = decode(RESOURCES["deployments"], data)
    assert sorted(warnings) == sorted([
        'unknown field "spec.replcas"',
        'unknown field "spec.template.spec.containers[0].imagee"',
        'unknown field "spec.template.spec.containers[0].ports[0].containerport"',
        'unknown field "metadata.label"',
        'unknown field "status.conditions[0].bogus"',
    ])
    assert "replcas" not in json.dumps(obj.to_dict())


def test_snake_case_keys_are_unknown_on_the_wire() -> None:
    _, warnings = decode(RESOURCES["services"], {"spec": {"cluster_ip": "1.2.3.4"}})
    assert warnings == ['unknown field "spec.cluster_ip"']


def test_unknown_fields_in_maps_of_models() -> None:
    assert unknown_fields(core.Pod, {"spec": {"containers": [{"name": "a", "x": 1}]}}) == [
        'unknown field "spec.containers[0].x"']


@pytest.mark.parametrize("body", [[], "x", 1, None, True])
def test_body_must_be_object(body) -> None:
    with pytest.raises(BadRequest, match="must be a JSON object"):
        decode(RESOURCES["pods"], body)


def test_api_version_and_kind_mismatch() -> None:
    with pytest.raises(BadRequest) as ei:
        decode(RESOURCES["deployments"], {"apiVersion": "apps/v2", "kind": "Deployment"})
    assert ei.value.message == ("the API version in the data (apps/v2) does not match the "
                                "expected API version (apps/v1)")
    with pytest.raises(BadRequest, match=r"the kind in the data \(Pod\) does not match"):
        decode(RESOURCES["deployments"], {"apiVersion": "apps/v1", "kind": "Pod"})


def test_type_errors_become_invalid_with_field_paths() -> None:
    data = yaml.safe_load(NGINX_DEPLOYMENT)
    containers = data["spec"]["template"]["spec"]["containers"]
    containers[0]["ports"][0]["containerPort"] = "abc"
    containers[0]["resources"] = {"limits": {"cpu": "lots"}}
    containers.append({"image": "x"})
    data["spec"]["paused"] = [1]
    with pytest.raises(Invalid) as ei:
        decode(RESOURCES["deployments"], data)
    err = ei.value
    assert err.name == "nginx-deployment" and err.kind == "Deployment"
    by_field = {c.field: c.message for c in err.causes}
    assert by_field["spec.template.spec.containers[0].ports[0].containerPort"] == (
        'Invalid value: "abc": must be of type integer')
    assert by_field["spec.template.spec.containers[1].name"] == "Required value"
    assert by_field["spec.paused"] == 'Invalid value: "array": must be of type boolean'
    assert "quantities must match the regular expression" in by_field[
        "spec.template.spec.containers[0].resources.limits[cpu]"]
    assert err.message.startswith('Deployment "nginx-deployment" is invalid: ')
    assert "pydantic" not in err.message


def test_int_or_string_errors_merge() -> None:
    with pytest.raises(Invalid) as ei:
        decode(RESOURCES["services"], {"spec": {"ports": [{"port": 80, "targetPort": [1]}]}})
    assert [str(c) for c in ei.value.causes] == [
        'spec.ports[0].targetPort: Invalid value: "array": must be of type integer or string']


def test_nulls_mean_unset() -> None:
    obj, _ = decode(RESOURCES["pods"], {"metadata": None, "spec": {"containers": [
        {"name": "a", "image": "x", "ports": None}]}})
    assert obj.spec is not None and obj.spec.containers[0].ports is None


def test_decode_model_for_subresources() -> None:
    from api.autoscaling import Scale
    scale, _ = decode_model(Scale, {"apiVersion": "autoscaling/v1", "kind": "Scale",
                                    "metadata": {"name": "web"}, "spec": {"replicas": 5}})
    assert scale.spec is not None and scale.spec.replicas == 5
    binding, _ = decode_model(core.Binding, {"metadata": {"name": "p"},
                                             "target": {"kind": "Node", "name": "n1"}})
    assert binding.target.name == "n1"
