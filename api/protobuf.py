"""Kubernetes protobuf request bodies, decoded into the JSON our models and the registry take.

kubectl's typed clientset (`kubectl create configmap|secret|deployment|namespace|token ...`,
`kubectl auth can-i|whoami`, `kubectl drain`) sends bodies as `application/vnd.kubernetes.protobuf`
and nothing else. The apiserver's registry speaks JSON, so the HTTP front turns such a body into
the JSON object a client would have sent for the same request, and everything downstream
(defaulting, validation, admission, storage) is unchanged. Answers stay JSON: kubectl accepts both
and decodes by the response's Content-Type.

A protobuf message carries field *numbers*, not names, so decoding needs a table of upstream's
numbers (the `protobuf:"bytes,1,opt,name=metadata"` tags of k8s.io/api's Go structs) for every
field of our models. That table is below, one entry per field in a Go-like notation so it can be
read side by side with upstream's types.go:

    1: "metadata ObjectMeta"          JSON name, then the Go type that fixes the wire encoding
    4: "replicas *int32"              `*` = a Go pointer: written only when set, so 0 is kept
    3: "command []string"             repeated (packed or not, for numbers)
    2: "labels map[string]string"     map: repeated entry messages {key = 1, value = 2}
    1: "(inline) LocalObjectReference" an embedded struct: a nested message on the wire whose
                                       fields are flattened into the parent in JSON

Go's generated marshallers write every non-pointer field, zero or not, and Go's JSON then drops
the zero ones (`omitempty`). So a zero non-pointer scalar is left out here too, unless our model
requires the field (Go writes required fields' zeros to JSON as well, and our validation then
words the error). The few upstream types that our models keep verbatim as `dict[str, Any]` (pod
securityContext, pod affinity, projected volumes, ...) have tables of their own so that they
survive protobuf as they survive JSON.

Pure: no I/O. Errors a client can cause are BadRequest (malformed bytes, unknown kinds) or
UnsupportedMediaType (an envelope we cannot read); unknown field numbers are skipped, as every
protobuf decoder does.
"""

from __future__ import annotations

import base64
import datetime as _dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from api import (
    apps,
    authentication,
    authorization,
    autoscaling,
    coordination,
    core,
    decoding,
    meta,
    policy,
    rbac,
    resources,
)
from api.errors import BadRequest, NotFound, UnsupportedMediaType
from api.meta import K8sModel

MEDIA_TYPE: Final = "application/vnd.kubernetes.protobuf"
# Every Kubernetes protobuf body starts with these four bytes, then a runtime.Unknown message.
MAGIC: Final = b"k8s\x00"

# --------------------------------------------------------------------------------------------
# The field tables: upstream's protobuf field numbers for each of our models' JSON fields
# --------------------------------------------------------------------------------------------

FIELDS: dict[type[K8sModel], dict[int, str]] = {
    # ---- meta.k8s.io/v1 (k8s.io/apimachinery/pkg/apis/meta/v1) ----
    meta.ObjectMeta: {
        1: "name string",
        2: "generateName string",
        3: "namespace string",
        5: "uid string",
        6: "resourceVersion string",
        7: "generation int64",
        8: "creationTimestamp Time",
        9: "deletionTimestamp *Time",
        10: "deletionGracePeriodSeconds *int64",
        11: "labels map[string]string",
        12: "annotations map[string]string",
        13: "ownerReferences []OwnerReference",
        14: "finalizers []string",
        17: "managedFields []ManagedFieldsEntry",
    },
    meta.ManagedFieldsEntry: {
        1: "manager string",
        2: "operation string",
        3: "apiVersion string",
        4: "time *Time",
        6: "fieldsType string",
        7: "fieldsV1 *FieldsV1",
        8: "subresource string",
    },
    meta.OwnerReference: {
        5: "apiVersion string",
        1: "kind string",
        3: "name string",
        4: "uid string",
        6: "controller *bool",
        7: "blockOwnerDeletion *bool",
    },
    meta.ListMeta: {
        2: "resourceVersion string",
        3: "continue string",
        4: "remainingItemCount *int64",
    },
    meta.LabelSelector: {
        1: "matchLabels map[string]string",
        2: "matchExpressions []LabelSelectorRequirement",
    },
    meta.LabelSelectorRequirement: {
        1: "key string",
        2: "operator string",
        3: "values []string",
    },
    # ---- core/v1: shared references ----
    core.ObjectReference: {
        1: "kind string",
        2: "namespace string",
        3: "name string",
        4: "uid string",
        5: "apiVersion string",
        6: "resourceVersion string",
        7: "fieldPath string",
    },
    core.LocalObjectReference: {
        1: "name string",
    },
    # ---- core/v1 Namespace ----
    core.Namespace: {
        1: "metadata ObjectMeta",
        2: "spec NamespaceSpec",
        3: "status NamespaceStatus",
    },
    core.NamespaceSpec: {
        1: "finalizers []string",
    },
    core.NamespaceStatus: {
        1: "phase string",
        2: "conditions []NamespaceCondition",
    },
    core.NamespaceCondition: {
        1: "type string",
        2: "status string",
        4: "lastTransitionTime Time",
        5: "reason string",
        6: "message string",
    },
    # ---- core/v1 Node ----
    core.Node: {
        1: "metadata ObjectMeta",
        2: "spec NodeSpec",
        3: "status NodeStatus",
    },
    core.NodeSpec: {
        1: "podCIDR string",
        7: "podCIDRs []string",
        3: "providerID string",
        4: "unschedulable bool",
        5: "taints []Taint",
    },
    core.Taint: {
        1: "key string",
        2: "value string",
        3: "effect string",
        4: "timeAdded *Time",
    },
    core.NodeStatus: {
        1: "capacity map[string]Quantity",
        2: "allocatable map[string]Quantity",
        3: "phase string",
        4: "conditions []NodeCondition",
        5: "addresses []NodeAddress",
        6: "daemonEndpoints NodeDaemonEndpoints",
        7: "nodeInfo NodeSystemInfo",
        8: "images []ContainerImage",
    },
    core.NodeCondition: {
        1: "type string",
        2: "status string",
        3: "lastHeartbeatTime Time",
        4: "lastTransitionTime Time",
        5: "reason string",
        6: "message string",
    },
    core.NodeAddress: {
        1: "type string",
        2: "address string",
    },
    core.NodeSystemInfo: {
        1: "machineID string",
        2: "systemUUID string",
        3: "bootID string",
        4: "kernelVersion string",
        5: "osImage string",
        6: "containerRuntimeVersion string",
        7: "kubeletVersion string",
        8: "kubeProxyVersion string",
        9: "operatingSystem string",
        10: "architecture string",
    },
    core.NodeDaemonEndpoints: {
        1: "kubeletEndpoint DaemonEndpoint",
    },
    core.DaemonEndpoint: {
        1: "Port int32",
    },
    core.ContainerImage: {
        1: "names []string",
        2: "sizeBytes int64",
    },
    # ---- core/v1 Pod: containers ----
    core.Container: {
        1: "name string",
        2: "image string",
        3: "command []string",
        4: "args []string",
        5: "workingDir string",
        6: "ports []ContainerPort",
        19: "envFrom []EnvFromSource",
        7: "env []EnvVar",
        8: "resources ResourceRequirements",
        9: "volumeMounts []VolumeMount",
        10: "livenessProbe *Probe",
        11: "readinessProbe *Probe",
        22: "startupProbe *Probe",
        12: "lifecycle *Lifecycle",
        13: "terminationMessagePath string",
        20: "terminationMessagePolicy string",
        14: "imagePullPolicy string",
        15: "securityContext *SecurityContext",
        16: "stdin bool",
        17: "stdinOnce bool",
        18: "tty bool",
    },
    core.ContainerPort: {
        1: "name string",
        2: "hostPort int32",
        3: "containerPort int32",
        4: "protocol string",
        5: "hostIP string",
    },
    core.EnvVar: {
        1: "name string",
        2: "value string",
        3: "valueFrom *EnvVarSource",
    },
    core.EnvVarSource: {
        1: "fieldRef *ObjectFieldSelector",
        2: "resourceFieldRef *ResourceFieldSelector",
        3: "configMapKeyRef *ConfigMapKeySelector",
        4: "secretKeyRef *SecretKeySelector",
    },
    core.ObjectFieldSelector: {
        1: "apiVersion string",
        2: "fieldPath string",
    },
    core.ResourceFieldSelector: {
        1: "containerName string",
        2: "resource string",
        3: "divisor Quantity",
    },
    core.ConfigMapKeySelector: {
        1: "(inline) LocalObjectReference",
        2: "key string",
        3: "optional *bool",
    },
    core.SecretKeySelector: {
        1: "(inline) LocalObjectReference",
        2: "key string",
        3: "optional *bool",
    },
    core.EnvFromSource: {
        1: "prefix string",
        2: "configMapRef *ConfigMapEnvSource",
        3: "secretRef *SecretEnvSource",
    },
    core.ConfigMapEnvSource: {
        1: "(inline) LocalObjectReference",
        2: "optional *bool",
    },
    core.SecretEnvSource: {
        1: "(inline) LocalObjectReference",
        2: "optional *bool",
    },
    core.ResourceRequirements: {
        1: "limits map[string]Quantity",
        2: "requests map[string]Quantity",
    },
    core.VolumeMount: {
        1: "name string",
        2: "readOnly bool",
        3: "mountPath string",
        4: "subPath string",
        5: "mountPropagation *string",
    },
    core.Probe: {
        1: "(inline) ProbeHandler",
        2: "initialDelaySeconds int32",
        3: "timeoutSeconds int32",
        4: "periodSeconds int32",
        5: "successThreshold int32",
        6: "failureThreshold int32",
        7: "terminationGracePeriodSeconds *int64",
    },
    core.ExecAction: {
        1: "command []string",
    },
    core.HTTPGetAction: {
        1: "path string",
        2: "port IntOrString",
        3: "host string",
        4: "scheme string",
        5: "httpHeaders []HTTPHeader",
    },
    core.HTTPHeader: {
        1: "name string",
        2: "value string",
    },
    core.TCPSocketAction: {
        1: "port IntOrString",
        2: "host string",
    },
    core.Lifecycle: {
        1: "postStart *LifecycleHandler",
        2: "preStop *LifecycleHandler",
    },
    core.LifecycleHandler: {
        1: "exec *ExecAction",
        2: "httpGet *HTTPGetAction",
        3: "tcpSocket *TCPSocketAction",
    },
    core.SecurityContext: {
        1: "capabilities *Capabilities",
        2: "privileged *bool",
        4: "runAsUser *int64",
        8: "runAsGroup *int64",
        5: "runAsNonRoot *bool",
        6: "readOnlyRootFilesystem *bool",
        7: "allowPrivilegeEscalation *bool",
    },
    core.Capabilities: {
        1: "add []string",
        2: "drop []string",
    },
    # ---- core/v1 Pod: volumes ----
    core.Volume: {
        1: "name string",
        2: "(inline) VolumeSource",
    },
    core.EmptyDirVolumeSource: {
        1: "medium string",
        2: "sizeLimit *Quantity",
    },
    core.HostPathVolumeSource: {
        1: "path string",
        2: "type *string",
    },
    core.ConfigMapVolumeSource: {
        1: "(inline) LocalObjectReference",
        2: "items []KeyToPath",
        3: "defaultMode *int32",
        4: "optional *bool",
    },
    core.SecretVolumeSource: {
        1: "secretName string",
        2: "items []KeyToPath",
        3: "defaultMode *int32",
        4: "optional *bool",
    },
    core.KeyToPath: {
        1: "key string",
        2: "path string",
        3: "mode *int32",
    },
    # ---- core/v1 Pod: scheduling ----
    core.Affinity: {
        1: "nodeAffinity *NodeAffinity",
        2: "podAffinity *PodAffinity",
        3: "podAntiAffinity *PodAntiAffinity",
    },
    core.NodeAffinity: {
        1: "requiredDuringSchedulingIgnoredDuringExecution *NodeSelector",
        2: "preferredDuringSchedulingIgnoredDuringExecution []PreferredSchedulingTerm",
    },
    core.NodeSelector: {
        1: "nodeSelectorTerms []NodeSelectorTerm",
    },
    core.NodeSelectorTerm: {
        1: "matchExpressions []NodeSelectorRequirement",
        2: "matchFields []NodeSelectorRequirement",
    },
    core.NodeSelectorRequirement: {
        1: "key string",
        2: "operator string",
        3: "values []string",
    },
    core.PreferredSchedulingTerm: {
        1: "weight int32",
        2: "preference NodeSelectorTerm",
    },
    core.Toleration: {
        1: "key string",
        2: "operator string",
        3: "value string",
        4: "effect string",
        5: "tolerationSeconds *int64",
    },
    core.HostAlias: {
        1: "ip string",
        2: "hostnames []string",
    },
    # ---- core/v1 Pod ----
    core.Pod: {
        1: "metadata ObjectMeta",
        2: "spec PodSpec",
        3: "status PodStatus",
    },
    core.PodTemplateSpec: {
        1: "metadata ObjectMeta",
        2: "spec PodSpec",
    },
    core.PodSpec: {
        1: "volumes []Volume",
        20: "initContainers []Container",
        2: "containers []Container",
        3: "restartPolicy string",
        4: "terminationGracePeriodSeconds *int64",
        5: "activeDeadlineSeconds *int64",
        6: "dnsPolicy string",
        7: "nodeSelector map[string]string",
        8: "serviceAccountName string",
        9: "serviceAccount string",
        21: "automountServiceAccountToken *bool",
        10: "nodeName string",
        11: "hostNetwork bool",
        12: "hostPID bool",
        13: "hostIPC bool",
        27: "shareProcessNamespace *bool",
        14: "securityContext *PodSecurityContext",
        15: "imagePullSecrets []LocalObjectReference",
        16: "hostname string",
        17: "subdomain string",
        18: "affinity *Affinity",
        19: "schedulerName string",
        22: "tolerations []Toleration",
        23: "hostAliases []HostAlias",
        24: "priorityClassName string",
        25: "priority *int32",
        26: "dnsConfig *PodDNSConfig",
        30: "enableServiceLinks *bool",
        31: "preemptionPolicy *string",
        33: "topologySpreadConstraints []TopologySpreadConstraint",
    },
    core.PodStatus: {
        1: "phase string",
        2: "conditions []PodCondition",
        3: "message string",
        4: "reason string",
        11: "nominatedNodeName string",
        5: "hostIP string",
        6: "podIP string",
        12: "podIPs []PodIP",
        7: "startTime *Time",
        10: "initContainerStatuses []ContainerStatus",
        8: "containerStatuses []ContainerStatus",
        9: "qosClass string",
    },
    core.PodCondition: {
        1: "type string",
        2: "status string",
        3: "lastProbeTime Time",
        4: "lastTransitionTime Time",
        5: "reason string",
        6: "message string",
    },
    core.PodIP: {
        1: "ip string",
    },
    core.ContainerStatus: {
        1: "name string",
        2: "state ContainerState",
        3: "lastState ContainerState",
        4: "ready bool",
        5: "restartCount int32",
        6: "image string",
        7: "imageID string",
        8: "containerID string",
        9: "started *bool",
    },
    core.ContainerState: {
        1: "waiting *ContainerStateWaiting",
        2: "running *ContainerStateRunning",
        3: "terminated *ContainerStateTerminated",
    },
    core.ContainerStateWaiting: {
        1: "reason string",
        2: "message string",
    },
    core.ContainerStateRunning: {
        1: "startedAt Time",
    },
    core.ContainerStateTerminated: {
        1: "exitCode int32",
        2: "signal int32",
        3: "reason string",
        4: "message string",
        5: "startedAt Time",
        6: "finishedAt Time",
        7: "containerID string",
    },
    core.Binding: {
        1: "metadata ObjectMeta",
        2: "target ObjectReference",
    },
    # ---- core/v1 Service, Endpoints ----
    core.Service: {
        1: "metadata ObjectMeta",
        2: "spec ServiceSpec",
        3: "status ServiceStatus",
    },
    core.ServiceSpec: {
        1: "ports []ServicePort",
        2: "selector map[string]string",
        3: "clusterIP string",
        18: "clusterIPs []string",
        4: "type string",
        5: "externalIPs []string",
        7: "sessionAffinity string",
        8: "loadBalancerIP string",
        9: "loadBalancerSourceRanges []string",
        10: "externalName string",
        11: "externalTrafficPolicy string",
        12: "healthCheckNodePort int32",
        13: "publishNotReadyAddresses bool",
        14: "sessionAffinityConfig *SessionAffinityConfig",
        19: "ipFamilies []string",
        17: "ipFamilyPolicy *string",
        20: "allocateLoadBalancerNodePorts *bool",
        21: "loadBalancerClass *string",
        22: "internalTrafficPolicy *string",
    },
    core.ServicePort: {
        1: "name string",
        2: "protocol string",
        6: "appProtocol *string",
        3: "port int32",
        4: "targetPort IntOrString",
        5: "nodePort int32",
    },
    core.SessionAffinityConfig: {
        1: "clientIP *ClientIPConfig",
    },
    core.ClientIPConfig: {
        1: "timeoutSeconds *int32",
    },
    core.ServiceStatus: {
        1: "loadBalancer LoadBalancerStatus",
        2: "conditions []Condition",
    },
    core.Endpoints: {
        1: "metadata ObjectMeta",
        2: "subsets []EndpointSubset",
    },
    core.EndpointSubset: {
        1: "addresses []EndpointAddress",
        2: "notReadyAddresses []EndpointAddress",
        3: "ports []EndpointPort",
    },
    core.EndpointAddress: {
        1: "ip string",
        3: "hostname string",
        4: "nodeName *string",
        2: "targetRef *ObjectReference",
    },
    core.EndpointPort: {
        1: "name string",
        2: "port int32",
        3: "protocol string",
        4: "appProtocol *string",
    },
    # ---- core/v1 ReplicationController ----
    core.ReplicationController: {
        1: "metadata ObjectMeta",
        2: "spec ReplicationControllerSpec",
        3: "status ReplicationControllerStatus",
    },
    core.ReplicationControllerSpec: {
        1: "replicas *int32",
        4: "minReadySeconds int32",
        2: "selector map[string]string",
        3: "template *PodTemplateSpec",
    },
    core.ReplicationControllerStatus: {
        1: "replicas int32",
        2: "fullyLabeledReplicas int32",
        4: "readyReplicas int32",
        5: "availableReplicas int32",
        3: "observedGeneration int64",
        6: "conditions []ReplicationControllerCondition",
    },
    core.ReplicationControllerCondition: {
        1: "type string",
        2: "status string",
        3: "lastTransitionTime Time",
        4: "reason string",
        5: "message string",
    },
    # ---- core/v1 ServiceAccount, Event, ConfigMap, Secret ----
    core.ServiceAccount: {
        1: "metadata ObjectMeta",
        2: "secrets []ObjectReference",
        3: "imagePullSecrets []LocalObjectReference",
        4: "automountServiceAccountToken *bool",
    },
    core.Event: {
        1: "metadata ObjectMeta",
        2: "involvedObject ObjectReference",
        3: "reason string",
        4: "message string",
        5: "source EventSource",
        6: "firstTimestamp Time",
        7: "lastTimestamp Time",
        8: "count int32",
        9: "type string",
        10: "eventTime MicroTime",
        11: "series *EventSeries",
        12: "action string",
        13: "related *ObjectReference",
        14: "reportingComponent string",
        15: "reportingInstance string",
    },
    core.EventSource: {
        1: "component string",
        2: "host string",
    },
    core.EventSeries: {
        1: "count int32",
        2: "lastObservedTime MicroTime",
    },
    core.ConfigMap: {
        1: "metadata ObjectMeta",
        4: "immutable *bool",
        2: "data map[string]string",
        3: "binaryData map[string][]byte",
    },
    core.Secret: {
        1: "metadata ObjectMeta",
        5: "immutable *bool",
        2: "data map[string][]byte",
        4: "stringData map[string]string",
        3: "type string",
    },
    # ---- apps/v1 ----
    apps.ReplicaSet: {
        1: "metadata ObjectMeta",
        2: "spec ReplicaSetSpec",
        3: "status ReplicaSetStatus",
    },
    apps.ReplicaSetSpec: {
        1: "replicas *int32",
        4: "minReadySeconds int32",
        2: "selector *LabelSelector",
        3: "template PodTemplateSpec",
    },
    apps.ReplicaSetStatus: {
        1: "replicas int32",
        2: "fullyLabeledReplicas int32",
        4: "readyReplicas int32",
        5: "availableReplicas int32",
        3: "observedGeneration int64",
        6: "conditions []ReplicaSetCondition",
    },
    apps.ReplicaSetCondition: {
        1: "type string",
        2: "status string",
        3: "lastTransitionTime Time",
        4: "reason string",
        5: "message string",
    },
    apps.Deployment: {
        1: "metadata ObjectMeta",
        2: "spec DeploymentSpec",
        3: "status DeploymentStatus",
    },
    apps.DeploymentSpec: {
        1: "replicas *int32",
        2: "selector *LabelSelector",
        3: "template PodTemplateSpec",
        4: "strategy DeploymentStrategy",
        5: "minReadySeconds int32",
        6: "revisionHistoryLimit *int32",
        7: "paused bool",
        9: "progressDeadlineSeconds *int32",
    },
    apps.DeploymentStrategy: {
        1: "type string",
        2: "rollingUpdate *RollingUpdateDeployment",
    },
    apps.RollingUpdateDeployment: {
        1: "maxUnavailable *IntOrString",
        2: "maxSurge *IntOrString",
    },
    apps.DeploymentStatus: {
        1: "observedGeneration int64",
        2: "replicas int32",
        3: "updatedReplicas int32",
        7: "readyReplicas int32",
        4: "availableReplicas int32",
        5: "unavailableReplicas int32",
        6: "conditions []DeploymentCondition",
        8: "collisionCount *int32",
    },
    apps.DeploymentCondition: {
        1: "type string",
        2: "status string",
        6: "lastUpdateTime Time",
        7: "lastTransitionTime Time",
        4: "reason string",
        5: "message string",
    },
    # ---- rbac.authorization.k8s.io/v1 ----
    rbac.Role: {
        1: "metadata ObjectMeta",
        2: "rules []PolicyRule",
    },
    rbac.ClusterRole: {
        1: "metadata ObjectMeta",
        2: "rules []PolicyRule",
        3: "aggregationRule *AggregationRule",
    },
    rbac.RoleBinding: {
        1: "metadata ObjectMeta",
        2: "subjects []Subject",
        3: "roleRef RoleRef",
    },
    rbac.ClusterRoleBinding: {
        1: "metadata ObjectMeta",
        2: "subjects []Subject",
        3: "roleRef RoleRef",
    },
    rbac.PolicyRule: {
        1: "verbs []string",
        2: "apiGroups []string",
        3: "resources []string",
        4: "resourceNames []string",
        5: "nonResourceURLs []string",
    },
    rbac.Subject: {
        1: "kind string",
        2: "apiGroup string",
        3: "name string",
        4: "namespace string",
    },
    rbac.RoleRef: {
        1: "apiGroup string",
        2: "kind string",
        3: "name string",
    },
    rbac.AggregationRule: {
        1: "clusterRoleSelectors []LabelSelector",
    },
    # ---- coordination.k8s.io/v1 ----
    coordination.Lease: {
        1: "metadata ObjectMeta",
        2: "spec LeaseSpec",
    },
    coordination.LeaseSpec: {
        1: "holderIdentity *string",
        2: "leaseDurationSeconds *int32",
        3: "acquireTime *MicroTime",
        4: "renewTime *MicroTime",
        5: "leaseTransitions *int32",
    },
    # ---- authentication.k8s.io/v1 ----
    authentication.TokenRequest: {
        1: "metadata ObjectMeta",
        2: "spec TokenRequestSpec",
        3: "status TokenRequestStatus",
    },
    authentication.TokenRequestSpec: {
        1: "audiences []string",
        4: "expirationSeconds *int64",
        3: "boundObjectRef *BoundObjectReference",
    },
    authentication.BoundObjectReference: {
        1: "kind string",
        2: "apiVersion string",
        3: "name string",
        4: "uid string",
    },
    authentication.TokenRequestStatus: {
        1: "token string",
        2: "expirationTimestamp Time",
    },
    authentication.TokenReview: {
        1: "metadata ObjectMeta",
        2: "spec TokenReviewSpec",
        3: "status TokenReviewStatus",
    },
    authentication.TokenReviewSpec: {
        1: "token string",
        2: "audiences []string",
    },
    authentication.TokenReviewStatus: {
        1: "authenticated bool",
        2: "user UserInfo",
        4: "audiences []string",
        3: "error string",
    },
    authentication.UserInfo: {
        1: "username string",
        2: "uid string",
        3: "groups []string",
        4: "extra map[string]ExtraValue",
    },
    authentication.SelfSubjectReview: {
        1: "metadata ObjectMeta",
        2: "status SelfSubjectReviewStatus",
    },
    authentication.SelfSubjectReviewStatus: {
        1: "userInfo UserInfo",
    },
    # ---- authorization.k8s.io/v1 ----
    authorization.SubjectAccessReview: {
        1: "metadata ObjectMeta",
        2: "spec SubjectAccessReviewSpec",
        3: "status SubjectAccessReviewStatus",
    },
    authorization.SelfSubjectAccessReview: {
        1: "metadata ObjectMeta",
        2: "spec SelfSubjectAccessReviewSpec",
        3: "status SubjectAccessReviewStatus",
    },
    authorization.SubjectAccessReviewSpec: {
        1: "resourceAttributes *ResourceAttributes",
        2: "nonResourceAttributes *NonResourceAttributes",
        3: "user string",
        4: "groups []string",
        5: "extra map[string]ExtraValue",
        6: "uid string",
    },
    authorization.SelfSubjectAccessReviewSpec: {
        1: "resourceAttributes *ResourceAttributes",
        2: "nonResourceAttributes *NonResourceAttributes",
    },
    authorization.ResourceAttributes: {
        1: "namespace string",
        2: "verb string",
        3: "group string",
        4: "version string",
        5: "resource string",
        6: "subresource string",
        7: "name string",
    },
    authorization.NonResourceAttributes: {
        1: "path string",
        2: "verb string",
    },
    authorization.SubjectAccessReviewStatus: {
        1: "allowed bool",
        4: "denied bool",
        2: "reason string",
        3: "evaluationError string",
    },
    # ---- autoscaling/v1 ----
    autoscaling.Scale: {
        1: "metadata ObjectMeta",
        2: "spec ScaleSpec",
        3: "status ScaleStatus",
    },
    autoscaling.ScaleSpec: {
        1: "replicas int32",
    },
    autoscaling.ScaleStatus: {
        1: "replicas int32",
        2: "selector string",
    },
    # ---- policy/v1, and meta/v1 DeleteOptions ----
    policy.Eviction: {
        1: "metadata ObjectMeta",
        2: "deleteOptions *DeleteOptions",
    },
    policy.DeleteOptions: {
        1: "gracePeriodSeconds *int64",
        2: "preconditions *Preconditions",
        # Not a field of our model, but the REST front's DELETE honours it (as upstream's
        # deprecated spelling of propagationPolicy=Orphan), so it is decoded too.
        3: "orphanDependents *bool",
        4: "propagationPolicy *string",
        5: "dryRun []string",
    },
    policy.Preconditions: {
        1: "uid *string",
        2: "resourceVersion *string",
    },
}

# Upstream types with no model of ours: the embedded structs flattened into a model (ProbeHandler,
# VolumeSource), and the types our models keep verbatim as `dict[str, Any]`, complete so that
# they round-trip. Models (KeyToPath, LabelSelector, ...) are referenced by name as above.
UPSTREAM_ONLY: dict[str, dict[int, str]] = {
    "ProbeHandler": {
        1: "exec *ExecAction",
        2: "httpGet *HTTPGetAction",
        3: "tcpSocket *TCPSocketAction",
        4: "grpc *GRPCAction",
    },
    "GRPCAction": {
        1: "port int32",
        2: "service *string",
    },
    # Only the sources our Volume model has; the others are skipped like unknown fields.
    "VolumeSource": {
        1: "hostPath *HostPathVolumeSource",
        2: "emptyDir *EmptyDirVolumeSource",
        6: "secret *SecretVolumeSource",
        7: "nfs *NFSVolumeSource",
        10: "persistentVolumeClaim *PersistentVolumeClaimVolumeSource",
        16: "downwardAPI *DownwardAPIVolumeSource",
        19: "configMap *ConfigMapVolumeSource",
        26: "projected *ProjectedVolumeSource",
    },
    "NFSVolumeSource": {
        1: "server string",
        2: "path string",
        3: "readOnly bool",
    },
    "PersistentVolumeClaimVolumeSource": {
        1: "claimName string",
        2: "readOnly bool",
    },
    "DownwardAPIVolumeSource": {
        1: "items []DownwardAPIVolumeFile",
        2: "defaultMode *int32",
    },
    "DownwardAPIVolumeFile": {
        1: "path string",
        2: "fieldRef *ObjectFieldSelector",
        3: "resourceFieldRef *ResourceFieldSelector",
        4: "mode *int32",
    },
    "ProjectedVolumeSource": {
        1: "sources []VolumeProjection",
        2: "defaultMode *int32",
    },
    "VolumeProjection": {
        1: "secret *SecretProjection",
        2: "downwardAPI *DownwardAPIProjection",
        3: "configMap *ConfigMapProjection",
        4: "serviceAccountToken *ServiceAccountTokenProjection",
        5: "clusterTrustBundle *ClusterTrustBundleProjection",
    },
    "SecretProjection": {
        1: "(inline) LocalObjectReference",
        2: "items []KeyToPath",
        4: "optional *bool",
    },
    "ConfigMapProjection": {
        1: "(inline) LocalObjectReference",
        2: "items []KeyToPath",
        4: "optional *bool",
    },
    "DownwardAPIProjection": {
        1: "items []DownwardAPIVolumeFile",
    },
    "ServiceAccountTokenProjection": {
        1: "audience string",
        2: "expirationSeconds *int64",
        3: "path string",
    },
    "ClusterTrustBundleProjection": {
        1: "name *string",
        2: "signerName *string",
        3: "labelSelector *LabelSelector",
        5: "optional *bool",
        4: "path string",
    },
    "PodSecurityContext": {
        1: "seLinuxOptions *SELinuxOptions",
        8: "windowsOptions *WindowsSecurityContextOptions",
        2: "runAsUser *int64",
        6: "runAsGroup *int64",
        3: "runAsNonRoot *bool",
        4: "supplementalGroups []int64",
        12: "supplementalGroupsPolicy *string",
        5: "fsGroup *int64",
        7: "sysctls []Sysctl",
        9: "fsGroupChangePolicy *string",
        10: "seccompProfile *SeccompProfile",
        11: "appArmorProfile *AppArmorProfile",
        13: "seLinuxChangePolicy *string",
    },
    "SELinuxOptions": {
        1: "user string",
        2: "role string",
        3: "type string",
        4: "level string",
    },
    "WindowsSecurityContextOptions": {
        1: "gmsaCredentialSpecName *string",
        2: "gmsaCredentialSpec *string",
        3: "runAsUserName *string",
        4: "hostProcess *bool",
    },
    "Sysctl": {
        1: "name string",
        2: "value string",
    },
    "SeccompProfile": {
        1: "type string",
        2: "localhostProfile *string",
    },
    "AppArmorProfile": {
        1: "type string",
        2: "localhostProfile *string",
    },
    "PodAffinity": {
        1: "requiredDuringSchedulingIgnoredDuringExecution []PodAffinityTerm",
        2: "preferredDuringSchedulingIgnoredDuringExecution []WeightedPodAffinityTerm",
    },
    "PodAntiAffinity": {
        1: "requiredDuringSchedulingIgnoredDuringExecution []PodAffinityTerm",
        2: "preferredDuringSchedulingIgnoredDuringExecution []WeightedPodAffinityTerm",
    },
    "PodAffinityTerm": {
        1: "labelSelector *LabelSelector",
        2: "namespaces []string",
        3: "topologyKey string",
        4: "namespaceSelector *LabelSelector",
        5: "matchLabelKeys []string",
        6: "mismatchLabelKeys []string",
    },
    "WeightedPodAffinityTerm": {
        1: "weight int32",
        2: "podAffinityTerm PodAffinityTerm",
    },
    "PodDNSConfig": {
        1: "nameservers []string",
        2: "searches []string",
        3: "options []PodDNSConfigOption",
    },
    "PodDNSConfigOption": {
        1: "name string",
        2: "value *string",
    },
    "TopologySpreadConstraint": {
        1: "maxSkew int32",
        2: "topologyKey string",
        3: "whenUnsatisfiable string",
        4: "labelSelector *LabelSelector",
        5: "minDomains *int32",
        6: "nodeAffinityPolicy *string",
        7: "nodeTaintsPolicy *string",
        8: "matchLabelKeys []string",
    },
    "LoadBalancerStatus": {
        1: "ingress []LoadBalancerIngress",
    },
    "LoadBalancerIngress": {
        1: "ip string",
        2: "hostname string",
        3: "ipMode *string",
        4: "ports []PortStatus",
    },
    "PortStatus": {
        1: "port int32",
        2: "protocol string",
        3: "error *string",
    },
    # metav1.Condition (Service status conditions).
    "Condition": {
        1: "type string",
        2: "status string",
        3: "observedGeneration int64",
        4: "lastTransitionTime Time",
        5: "reason string",
        6: "message string",
    },
}

# Kinds that are no stored resource but are the bodies of subresources.
_SUBRESOURCE_KINDS: dict[tuple[str, str], type[K8sModel]] = {
    ("policy/v1", "Eviction"): policy.Eviction,
    (resources.TOKEN_REQUEST_MODEL.API_VERSION, "TokenRequest"): resources.TOKEN_REQUEST_MODEL,
    (resources.SCALE_MODEL.API_VERSION, "Scale"): resources.SCALE_MODEL,
    (resources.BINDING_MODEL.API_VERSION, "Binding"): resources.BINDING_MODEL,
}

# --------------------------------------------------------------------------------------------
# The schema: the tables above, parsed once and checked at import
# --------------------------------------------------------------------------------------------

_VARINT_SCALARS: Final = frozenset({"int32", "int64", "bool"})
_BYTES_SCALARS: Final = frozenset({"string", "[]byte"})
# Upstream types with their own JSON form; each is a small message on the wire (see _SPECIAL).
_SPECIAL_NAMES: Final = frozenset({
    "Time", "MicroTime", "Duration", "Quantity", "IntOrString", "RawExtension", "FieldsV1",
    "ExtraValue",
})


@dataclass(frozen=True)
class _Field:
    """One parsed table entry."""

    json: str  # "" for an inline (embedded) struct
    type: str  # a scalar, a special name, or a message name
    pointer: bool = False
    repeated: bool = False
    map: bool = False  # map[string]<type>
    keep_zero: bool = False  # written to JSON even when zero (pointer, or required by our model)

    @property
    def inline(self) -> bool:
        return not self.json


@dataclass(frozen=True)
class _Message:
    name: str
    fields: dict[int, _Field]


def _parse_field(spec: str, model: type[K8sModel] | None, where: str) -> _Field:
    name, sep, gotype = spec.partition(" ")
    if not sep or not gotype:
        raise ValueError(f"{where}: want 'jsonName GoType', got {spec!r}")
    if name == "(inline)":
        return _Field("", gotype)
    pointer = repeated = is_map = False
    if gotype.startswith("*"):
        pointer, gotype = True, gotype[1:]
    elif gotype.startswith("map[string]"):
        is_map, gotype = True, gotype.removeprefix("map[string]")
    elif gotype.startswith("[]") and gotype != "[]byte":
        repeated, gotype = True, gotype[2:]
    required = False
    if model is not None:
        required = any((f.alias or n) == name and f.is_required()
                       for n, f in model.model_fields.items())
    return _Field(name, gotype, pointer, repeated, is_map, keep_zero=pointer or required)


def _build() -> dict[str, _Message]:
    messages: dict[str, _Message] = {}
    tables: list[tuple[str, type[K8sModel] | None, dict[int, str]]] = [
        (model.__name__, model, table) for model, table in FIELDS.items()]
    tables += [(name, None, table) for name, table in UPSTREAM_ONLY.items()]
    for name, model, table in tables:
        if name in messages or name in _SPECIAL_NAMES:
            raise ValueError(f"protobuf table: {name} is defined twice")
        messages[name] = _Message(name, {
            num: _parse_field(spec, model, f"{name}[{num}]") for num, spec in table.items()})
    known = _VARINT_SCALARS | _BYTES_SCALARS | _SPECIAL_NAMES | messages.keys()
    for msg in messages.values():
        for num, f in msg.fields.items():
            if f.type not in known:
                raise ValueError(f"protobuf table: {msg.name}[{num}] has unknown type {f.type}")
            if f.inline and f.type not in messages:
                raise ValueError(f"protobuf table: {msg.name}[{num}] inlines a non-message")
    return messages


_MESSAGES: Final = _build()


def table_fields(model: type[K8sModel]) -> dict[str, str]:
    """JSON field → the type name the table gives it ("string", "Time", "Container", ...) for
    `model`, inline structs' fields flattened in; tests hold this against the models."""

    def walk(msg: _Message) -> dict[str, str]:
        out: dict[str, str] = {}
        for f in msg.fields.values():
            out |= walk(_MESSAGES[f.type]) if f.inline else {f.json: f.type}
        return out

    return walk(_MESSAGES[model.__name__])


# --------------------------------------------------------------------------------------------
# The wire format
# --------------------------------------------------------------------------------------------

VARINT, FIXED64, LEN, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5
_WIRE_NAMES: Final = {VARINT: "varint", FIXED64: "fixed64", LEN: "length-delimited",
                      START_GROUP: "group", FIXED32: "fixed32"}
# Groups are a proto2 relic that Kubernetes never uses; they are only skipped, to a bounded depth.
_MAX_GROUP_DEPTH: Final = 32


def _bad(where: str, problem: str) -> BadRequest:
    at = f" at {where}" if where else ""
    return BadRequest(message=f"the protobuf body is malformed{at}: {problem}")


def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise _bad(where, "truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            # Bits past the 64th are dropped, as in every protobuf implementation.
            return result & 0xFFFF_FFFF_FFFF_FFFF, pos
        shift += 7
        if shift >= 70:
            raise _bad(where, "varint longer than 10 bytes")


def _fields(buf: bytes, where: str) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of one message: an int for varints and
    fixed-width fields, the bytes for length-delimited ones. Groups are skipped."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos, where)
        num, wire = key >> 3, key & 7
        if num == 0:
            raise _bad(where, "field number 0")
        value: int | bytes
        if wire == VARINT:
            value, pos = _varint(buf, pos, where)
        elif wire == LEN:
            size, pos = _varint(buf, pos, where)
            if size > end - pos:
                raise _bad(where, f"field {num} claims {size} bytes, {end - pos} remain")
            value, pos = buf[pos:pos + size], pos + size
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if size > end - pos:
                raise _bad(where, f"truncated fixed-width field {num}")
            value, pos = int.from_bytes(buf[pos:pos + size], "little"), pos + size
        elif wire == START_GROUP:
            pos = _skip_group(buf, pos, num, where, 1)
            continue
        else:
            raise _bad(where, f"field {num} has invalid wire type {wire}")
        yield num, wire, value


def _skip_group(buf: bytes, pos: int, number: int, where: str, depth: int) -> int:
    if depth > _MAX_GROUP_DEPTH:
        raise _bad(where, "groups nested too deeply")
    end = len(buf)
    while pos < end:
        key, pos = _varint(buf, pos, where)
        num, wire = key >> 3, key & 7
        if wire == END_GROUP:
            if num != number:
                raise _bad(where, f"group {number} ended by group {num}")
            return pos
        if wire == VARINT:
            _, pos = _varint(buf, pos, where)
        elif wire == LEN:
            size, pos = _varint(buf, pos, where)
            pos += size
        elif wire in (FIXED64, FIXED32):
            pos += 8 if wire == FIXED64 else 4
        elif wire == START_GROUP:
            pos = _skip_group(buf, pos, num, where, depth + 1)
        else:
            raise _bad(where, f"field {num} has invalid wire type {wire}")
        if pos > end:
            break
    raise _bad(where, f"truncated group {number}")


def _signed(value: int, bits: int) -> int:
    """A varint as Go's intN: negative numbers are sign-extended 10-byte varints."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _text(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(where, "string is not valid UTF-8") from None


# --------------------------------------------------------------------------------------------
# Upstream types with their own JSON form
# --------------------------------------------------------------------------------------------


def _timestamp(raw: bytes, where: str) -> tuple[int, int] | None:
    """metav1.Time / MicroTime on the wire: {seconds = 1, nanos = 2}; empty = the zero time."""
    if not raw:
        return None
    seconds = nanos = 0
    for num, wire, value in _fields(raw, where):
        if wire != VARINT or not isinstance(value, int):
            continue
        if num == 1:
            seconds = _signed(value, 64)
        elif num == 2:
            nanos = _signed(value, 32)
    return seconds, nanos


def _datetime(seconds: int, micros: int, where: str) -> _dt.datetime:
    try:
        return (_dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
                + _dt.timedelta(seconds=seconds, microseconds=micros))
    except OverflowError:
        raise _bad(where, f"time {seconds}s is out of range") from None


def _rfc3339(when: _dt.datetime, fraction: bool) -> str:
    # By hand rather than strftime, whose %Y does not zero-pad years before 1000 everywhere.
    text = (f"{when.year:04d}-{when.month:02d}-{when.day:02d}"
            f"T{when.hour:02d}:{when.minute:02d}:{when.second:02d}")
    return f"{text}.{when.microsecond:06d}Z" if fraction else f"{text}Z"


def _time(raw: bytes, where: str) -> str | None:
    """metav1.Time: RFC 3339 with second precision, as upstream writes it to JSON."""
    ts = _timestamp(raw, where)
    if ts is None:
        return None
    return _rfc3339(_datetime(ts[0], 0, where), fraction=False)


def _micro_time(raw: bytes, where: str) -> str | None:
    """metav1.MicroTime: RFC 3339 with microseconds (nanoseconds truncated, as upstream)."""
    ts = _timestamp(raw, where)
    if ts is None:
        return None
    return _rfc3339(_datetime(ts[0], ts[1] // 1000, where), fraction=True)


def _duration(raw: bytes, where: str) -> str:
    """metav1.Duration {duration = 1, nanoseconds}: JSON is Go's time.Duration.String()."""
    nanos = 0
    for num, wire, value in _fields(raw, where):
        if num == 1 and wire == VARINT and isinstance(value, int):
            nanos = _signed(value, 64)
    return go_duration(nanos)


def go_duration(nanos: int) -> str:
    """Go's time.Duration.String(): `1h2m3.5s`, `1.5s`, `300ms`, `2µs`, `0s`."""
    if nanos == 0:
        return "0s"
    sign, u = ("-" if nanos < 0 else ""), abs(nanos)

    def frac(value: int, digits: int) -> str:
        whole, rest = divmod(value, 10**digits)
        decimals = f"{rest:0{digits}d}".rstrip("0")
        return f"{whole}.{decimals}" if decimals else str(whole)

    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            return f"{sign}{frac(u, 3)}µs"
        return f"{sign}{frac(u, 6)}ms"
    seconds, rest = divmod(u, 1_000_000_000)
    text = frac(seconds % 60 * 1_000_000_000 + rest, 9) + "s"
    minutes, hours = seconds // 60 % 60, seconds // 3600
    if seconds >= 60:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _quantity(raw: bytes, where: str) -> str:
    """resource.Quantity {string = 1}: the string as written. An empty message is Go's zero
    Quantity, "0". Our models validate the string (with a field path in the error)."""
    text = "0"
    for num, wire, value in _fields(raw, where):
        if num == 1 and wire == LEN and isinstance(value, bytes):
            text = _text(value, where)
    return text


def _int_or_string(raw: bytes, where: str) -> int | str:
    """intstr.IntOrString {type = 1 (0 int, 1 string), intVal = 2, strVal = 3}."""
    kind, number, text = 0, 0, ""
    for num, wire, value in _fields(raw, where):
        if wire == VARINT and isinstance(value, int):
            if num == 1:
                kind = _signed(value, 64)
            elif num == 2:
                number = _signed(value, 32)
        elif num == 3 and wire == LEN and isinstance(value, bytes):
            text = _text(value, where)
    if kind == 0:
        return number
    if kind == 1:
        return text
    raise _bad(where, f"IntOrString has unknown type {kind}")


def _raw_extension(raw: bytes, where: str) -> Any:
    """runtime.RawExtension and metav1.FieldsV1, both {raw = 1}: embedded JSON bytes, inline in
    the JSON form. Only JSON: an embedded protobuf object would let a body nest without bound."""
    data = b""
    for num, wire, value in _fields(raw, where):
        if num == 1 and wire == LEN and isinstance(value, bytes):
            data = value
    if not data:
        return None
    try:
        return decoding.loads_json(data)
    except decoding.DecodeError as e:
        raise _bad(where, f"embedded object is not JSON: {e}") from None


def _extra_value(raw: bytes, where: str) -> list[str]:
    """ExtraValue (UserInfo.extra's values): a message {repeated string items = 1}."""
    return [_text(v, where) for num, wire, v in _fields(raw, where)
            if num == 1 and wire == LEN and isinstance(v, bytes)]


_SPECIAL: Final[dict[str, Callable[[bytes, str], Any]]] = {
    "Time": _time,
    "MicroTime": _micro_time,
    "Duration": _duration,
    "Quantity": _quantity,
    "IntOrString": _int_or_string,
    "RawExtension": _raw_extension,
    "FieldsV1": _raw_extension,
    "ExtraValue": _extra_value,
}
# What a map entry with no value holds (Go's zero value of the type).
_ZERO: Final[dict[str, Any]] = {
    "string": "", "[]byte": "", "int32": 0, "int64": 0, "bool": False,
    "Quantity": "0", "IntOrString": 0, "ExtraValue": [],
}

# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


def _wrong_wire(where: str, f: _Field, wire: int) -> BadRequest:
    want = "varint" if f.type in _VARINT_SCALARS else "length-delimited"
    return _bad(where, f"{f.type} field sent as {_WIRE_NAMES.get(wire, wire)}, want {want}")


def _value(f: _Field, wire: int, value: int | bytes, where: str) -> Any:
    """One value of field `f` (an element, for repeated fields)."""
    if f.type in _VARINT_SCALARS:
        if wire != VARINT or not isinstance(value, int):
            raise _wrong_wire(where, f, wire)
        if f.type == "bool":
            return value != 0
        return _signed(value, 32 if f.type == "int32" else 64)
    if wire != LEN or not isinstance(value, bytes):
        raise _wrong_wire(where, f, wire)
    if f.type == "string":
        return _text(value, where)
    if f.type == "[]byte":
        # As Go's encoding/json writes []byte: standard base64 with padding.
        return base64.b64encode(value).decode("ascii")
    special = _SPECIAL.get(f.type)
    if special is not None:
        return special(value, where)
    out: dict[str, Any] = {}
    _decode_into(value, _MESSAGES[f.type], out, where)
    return out


def _map_entry(f: _Field, raw: bytes, where: str) -> tuple[str, Any]:
    key, val, seen = "", None, False
    value_field = _Field("", f.type)
    for num, wire, value in _fields(raw, where):
        if num == 1:
            if wire != LEN or not isinstance(value, bytes):
                raise _bad(where, "map key is not a string")
            key = _text(value, where)
        elif num == 2:
            val, seen = _value(value_field, wire, value, f"{where}[{key}]"), True
    if not seen:
        val = {} if f.type in _MESSAGES else _ZERO.get(f.type)
    return key, val


def _is_zero(value: Any) -> bool:
    return value is None or (not isinstance(value, dict | list) and not value)


def _decode_into(buf: bytes, msg: _Message, out: dict[str, Any], where: str) -> None:
    """Decode one message's fields into `out` (the JSON object, or its parent's for an inline
    struct). A field that repeats follows protobuf: scalars last-wins, messages merge."""
    for num, wire, value in _fields(buf, where):
        f = msg.fields.get(num)
        if f is None:
            continue  # a field upstream has and our models do not: skipped, like JSON's
        if f.inline:
            if wire != LEN or not isinstance(value, bytes):
                raise _wrong_wire(where, f, wire)
            _decode_into(value, _MESSAGES[f.type], out, where)
            continue
        at = f"{where}.{f.json}" if where else f.json
        if f.map:
            if wire != LEN or not isinstance(value, bytes):
                raise _wrong_wire(at, f, wire)
            key, val = _map_entry(f, value, at)
            out.setdefault(f.json, {})[key] = val
        elif f.repeated:
            items = out.setdefault(f.json, [])
            if f.type in _VARINT_SCALARS and wire == LEN and isinstance(value, bytes):
                # Packed: the numbers back to back in one length-delimited field.
                pos = 0
                while pos < len(value):
                    n, pos = _varint(value, pos, at)
                    items.append(_value(f, VARINT, n, at))
            else:
                items.append(_value(f, wire, value, f"{at}[{len(items)}]"))
        elif f.type in _MESSAGES:
            if wire != LEN or not isinstance(value, bytes):
                raise _wrong_wire(at, f, wire)
            sub = out.get(f.json)
            if not isinstance(sub, dict):
                sub = out[f.json] = {}
            _decode_into(value, _MESSAGES[f.type], sub, at)
        else:
            val = _value(f, wire, value, at)
            if val is None or (_is_zero(val) and not f.keep_zero):
                out.pop(f.json, None)
            else:
                out[f.json] = val


# --------------------------------------------------------------------------------------------
# The envelope
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unknown:
    """runtime.Unknown: typeMeta {apiVersion = 1, kind = 2} = 1, raw = 2, contentEncoding = 3,
    contentType = 4."""

    api_version: str
    kind: str
    raw: bytes
    content_encoding: str
    content_type: str


def _envelope(body: bytes) -> _Unknown:
    if not body.startswith(MAGIC):
        raise BadRequest(message="the body is not a Kubernetes protobuf message: it must start "
                         "with the 4 bytes 'k8s\\x00'")
    api_version = kind = encoding = content_type = ""
    raw = b""
    for num, wire, value in _fields(body[len(MAGIC):], "envelope"):
        if wire != LEN or not isinstance(value, bytes):
            continue
        if num == 1:
            for n, w, v in _fields(value, "envelope.typeMeta"):
                if w == LEN and isinstance(v, bytes) and n in (1, 2):
                    text = _text(v, "envelope.typeMeta")
                    api_version, kind = (text, kind) if n == 1 else (api_version, text)
        elif num == 2:
            raw = value
        elif num == 3:
            encoding = _text(value, "envelope.contentEncoding")
        elif num == 4:
            content_type = _text(value, "envelope.contentType")
    return _Unknown(api_version, kind, raw, encoding, content_type)


def _message_for(api_version: str, kind: str) -> _Message:
    if not kind or not api_version:
        raise BadRequest(message="the protobuf body names no apiVersion and kind")
    model: type[K8sModel] | None = _SUBRESOURCE_KINDS.get((api_version, kind))
    if kind == "DeleteOptions":
        # client-go registers DeleteOptions in every group version (and meta.k8s.io/v1), and
        # names the version of the resource it deletes: "v1", "apps/v1", ...
        model = policy.DeleteOptions
    if model is None:
        try:
            model = resources.for_kind(api_version, kind).model
        except NotFound as e:
            raise BadRequest(message=f"protobuf body: {e.message}") from None
    msg = _MESSAGES.get(model.__name__)
    if msg is None:
        raise UnsupportedMediaType(
            message=f"{kind} ({api_version}) cannot be sent as {MEDIA_TYPE}; "
            f"send it as application/json")
    return msg


def decode(body: bytes) -> dict[str, Any]:
    """A Kubernetes protobuf body (`k8s\\x00` + runtime.Unknown) as the JSON object a client
    would have sent: apiVersion and kind from the envelope, then the object's fields."""
    envelope = _envelope(body)
    if envelope.content_encoding:
        raise UnsupportedMediaType(
            message=f"protobuf body: content encoding {envelope.content_encoding!r} is not "
            f"supported")
    if envelope.content_type not in ("", MEDIA_TYPE):
        raise UnsupportedMediaType(
            message=f"protobuf body: embedded content type {envelope.content_type!r} is not "
            f"supported; send {MEDIA_TYPE} or application/json")
    msg = _message_for(envelope.api_version, envelope.kind)
    out: dict[str, Any] = {"apiVersion": envelope.api_version, "kind": envelope.kind}
    _decode_into(envelope.raw, msg, out, "")
    return out
