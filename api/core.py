"""core/v1 kinds: Namespace, Node, Pod, Service, Endpoints, ReplicationController, ServiceAccount,
Event, ConfigMap, Secret, Binding, and the shared pieces (PodTemplateSpec, ObjectReference, ...).

The field names and shapes follow upstream's core/v1 types field for field (a documented subset of
the rarely used ones), so that upstream manifests apply unchanged and `to_dict()` gives back what
the user sent. Every optional field defaults to None and is left out on the wire (`omitempty`);
defaulting (api.defaults) and validation (api.validation) are separate, as in Kubernetes.
Loosely typed `dict[str, Any]` fields (pod affinity, security contexts) are kept verbatim so that
manifests that use them survive a round trip even though tinykube does not act on them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from api.meta import Int32, Int64, IntOrString, K8sModel, ObjectMeta, TypedObject
from api.quantity import Quantity

# --------------------------------------------------------------------------------------------
# Shared references
# --------------------------------------------------------------------------------------------


class ObjectReference(K8sModel):
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    api_version: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


class LocalObjectReference(K8sModel):
    name: str | None = None


# --------------------------------------------------------------------------------------------
# Namespace
# --------------------------------------------------------------------------------------------


class NamespaceSpec(K8sModel):
    finalizers: list[str] | None = None


class NamespaceCondition(K8sModel):
    type: str
    status: str
    last_transition_time: str | None = None
    reason: str | None = None
    message: str | None = None


class NamespaceStatus(K8sModel):
    phase: str | None = None
    conditions: list[NamespaceCondition] | None = None


class Namespace(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Namespace"

    spec: NamespaceSpec | None = None
    status: NamespaceStatus | None = None


# --------------------------------------------------------------------------------------------
# Node
# --------------------------------------------------------------------------------------------


class Taint(K8sModel):
    key: str
    value: str | None = None
    effect: str
    time_added: str | None = None


class NodeSpec(K8sModel):
    pod_cidr: str | None = Field(default=None, alias="podCIDR")
    pod_cidrs: list[str] | None = Field(default=None, alias="podCIDRs")
    taints: list[Taint] | None = None
    unschedulable: bool | None = None
    provider_id: str | None = Field(default=None, alias="providerID")


class NodeCondition(K8sModel):
    type: str
    status: str
    last_heartbeat_time: str | None = None
    last_transition_time: str | None = None
    reason: str | None = None
    message: str | None = None


class NodeAddress(K8sModel):
    type: str
    address: str


class NodeSystemInfo(K8sModel):
    machine_id: str | None = Field(default=None, alias="machineID")
    system_uuid: str | None = Field(default=None, alias="systemUUID")
    boot_id: str | None = Field(default=None, alias="bootID")
    kernel_version: str | None = None
    os_image: str | None = None
    container_runtime_version: str | None = None
    kubelet_version: str | None = None
    kube_proxy_version: str | None = None
    operating_system: str | None = None
    architecture: str | None = None


class DaemonEndpoint(K8sModel):
    # Upstream's JSON name really is capitalised: `json:"Port"`.
    port: Int32 = Field(alias="Port")


class NodeDaemonEndpoints(K8sModel):
    kubelet_endpoint: DaemonEndpoint | None = None


class ContainerImage(K8sModel):
    names: list[str] | None = None
    size_bytes: Int64 | None = None


class NodeStatus(K8sModel):
    capacity: dict[str, Quantity] | None = None
    allocatable: dict[str, Quantity] | None = None
    phase: str | None = None
    conditions: list[NodeCondition] | None = None
    addresses: list[NodeAddress] | None = None
    node_info: NodeSystemInfo | None = None
    daemon_endpoints: NodeDaemonEndpoints | None = None
    images: list[ContainerImage] | None = None


class Node(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Node"

    spec: NodeSpec | None = None
    status: NodeStatus | None = None


# --------------------------------------------------------------------------------------------
# Pod: containers
# --------------------------------------------------------------------------------------------


class ContainerPort(K8sModel):
    name: str | None = None
    container_port: Int32
    host_port: Int32 | None = None
    host_ip: str | None = Field(default=None, alias="hostIP")
    protocol: str | None = None


class ObjectFieldSelector(K8sModel):
    api_version: str | None = None
    field_path: str


class ResourceFieldSelector(K8sModel):
    container_name: str | None = None
    resource: str
    divisor: Quantity | None = None


class ConfigMapKeySelector(K8sModel):
    name: str | None = None
    key: str
    optional: bool | None = None


class SecretKeySelector(K8sModel):
    name: str | None = None
    key: str
    optional: bool | None = None


class EnvVarSource(K8sModel):
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    config_map_key_ref: ConfigMapKeySelector | None = None
    secret_key_ref: SecretKeySelector | None = None


class EnvVar(K8sModel):
    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None


class ConfigMapEnvSource(K8sModel):
    name: str | None = None
    optional: bool | None = None


class SecretEnvSource(K8sModel):
    name: str | None = None
    optional: bool | None = None


class EnvFromSource(K8sModel):
    prefix: str | None = None
    config_map_ref: ConfigMapEnvSource | None = None
    secret_ref: SecretEnvSource | None = None


class ResourceRequirements(K8sModel):
    limits: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None


class VolumeMount(K8sModel):
    name: str
    mount_path: str
    read_only: bool | None = None
    sub_path: str | None = None
    mount_propagation: str | None = None


class ExecAction(K8sModel):
    command: list[str] | None = None


class HTTPHeader(K8sModel):
    name: str
    value: str


class HTTPGetAction(K8sModel):
    path: str | None = None
    port: IntOrString
    host: str | None = None
    scheme: str | None = None
    http_headers: list[HTTPHeader] | None = None


class TCPSocketAction(K8sModel):
    port: IntOrString
    host: str | None = None


class Probe(K8sModel):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    # gRPC probes are accepted and kept, not run by tinykube's kubelet.
    grpc: dict[str, Any] | None = None
    initial_delay_seconds: Int32 | None = None
    timeout_seconds: Int32 | None = None
    period_seconds: Int32 | None = None
    success_threshold: Int32 | None = None
    failure_threshold: Int32 | None = None
    termination_grace_period_seconds: Int64 | None = None


class LifecycleHandler(K8sModel):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None


class Lifecycle(K8sModel):
    post_start: LifecycleHandler | None = None
    pre_stop: LifecycleHandler | None = None


class Capabilities(K8sModel):
    add: list[str] | None = None
    drop: list[str] | None = None


class SecurityContext(K8sModel):
    """The container securityContext fields tinykube's kubelet maps onto Docker."""

    privileged: bool | None = None
    run_as_user: Int64 | None = None
    run_as_group: Int64 | None = None
    run_as_non_root: bool | None = None
    capabilities: Capabilities | None = None
    read_only_root_filesystem: bool | None = None
    allow_privilege_escalation: bool | None = None


class Container(K8sModel):
    name: str
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    ports: list[ContainerPort] | None = None
    env_from: list[EnvFromSource] | None = None
    env: list[EnvVar] | None = None
    resources: ResourceRequirements | None = None
    volume_mounts: list[VolumeMount] | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    lifecycle: Lifecycle | None = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None
    image_pull_policy: str | None = None
    security_context: SecurityContext | None = None
    stdin: bool | None = None
    stdin_once: bool | None = None
    tty: bool | None = None


# --------------------------------------------------------------------------------------------
# Pod: volumes
# --------------------------------------------------------------------------------------------


class EmptyDirVolumeSource(K8sModel):
    medium: str | None = None
    size_limit: Quantity | None = None


class HostPathVolumeSource(K8sModel):
    path: str
    type: str | None = None


class KeyToPath(K8sModel):
    key: str
    path: str
    mode: Int32 | None = None


class ConfigMapVolumeSource(K8sModel):
    name: str | None = None
    items: list[KeyToPath] | None = None
    default_mode: Int32 | None = None
    optional: bool | None = None


class SecretVolumeSource(K8sModel):
    secret_name: str | None = None
    items: list[KeyToPath] | None = None
    default_mode: Int32 | None = None
    optional: bool | None = None


class Volume(K8sModel):
    name: str
    empty_dir: EmptyDirVolumeSource | None = None
    host_path: HostPathVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    # Kept so that manifests using them parse; tinykube's kubelet does not mount these.
    persistent_volume_claim: dict[str, Any] | None = None
    projected: dict[str, Any] | None = None
    downward_api: dict[str, Any] | None = Field(default=None, alias="downwardAPI")
    nfs: dict[str, Any] | None = None

    SOURCES: ClassVar[tuple[str, ...]] = (
        "empty_dir", "host_path", "config_map", "secret", "persistent_volume_claim",
        "projected", "downward_api", "nfs",
    )


# --------------------------------------------------------------------------------------------
# Pod: scheduling
# --------------------------------------------------------------------------------------------


class NodeSelectorRequirement(K8sModel):
    key: str
    operator: str
    values: list[str] | None = None


class NodeSelectorTerm(K8sModel):
    match_expressions: list[NodeSelectorRequirement] | None = None
    match_fields: list[NodeSelectorRequirement] | None = None


class NodeSelector(K8sModel):
    node_selector_terms: list[NodeSelectorTerm]


class PreferredSchedulingTerm(K8sModel):
    weight: Int32
    preference: NodeSelectorTerm


class NodeAffinity(K8sModel):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = (
        None
    )


class Affinity(K8sModel):
    node_affinity: NodeAffinity | None = None
    # Inter-pod (anti-)affinity is kept verbatim so manifests round-trip; not scheduled on.
    pod_affinity: dict[str, Any] | None = None
    pod_anti_affinity: dict[str, Any] | None = None


class Toleration(K8sModel):
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: Int64 | None = None


class HostAlias(K8sModel):
    ip: str | None = None
    hostnames: list[str] | None = None


class PodSpec(K8sModel):
    volumes: list[Volume] | None = None
    init_containers: list[Container] | None = None
    containers: list[Container]
    restart_policy: str | None = None
    termination_grace_period_seconds: Int64 | None = None
    active_deadline_seconds: Int64 | None = None
    dns_policy: str | None = None
    node_selector: dict[str, str] | None = None
    service_account_name: str | None = None
    # Deprecated alias of serviceAccountName, still accepted by Kubernetes.
    service_account: str | None = None
    automount_service_account_token: bool | None = None
    node_name: str | None = None
    host_network: bool | None = None
    host_pid: bool | None = Field(default=None, alias="hostPID")
    host_ipc: bool | None = Field(default=None, alias="hostIPC")
    share_process_namespace: bool | None = None
    # Pod securityContext: kept verbatim (runAsUser, fsGroup, ...), not enforced.
    security_context: dict[str, Any] | None = None
    image_pull_secrets: list[LocalObjectReference] | None = None
    hostname: str | None = None
    subdomain: str | None = None
    affinity: Affinity | None = None
    scheduler_name: str | None = None
    tolerations: list[Toleration] | None = None
    host_aliases: list[HostAlias] | None = None
    priority_class_name: str | None = None
    priority: Int32 | None = None
    dns_config: dict[str, Any] | None = None
    enable_service_links: bool | None = None
    preemption_policy: str | None = None
    topology_spread_constraints: list[dict[str, Any]] | None = None


class PodCondition(K8sModel):
    type: str
    status: str
    last_probe_time: str | None = None
    last_transition_time: str | None = None
    reason: str | None = None
    message: str | None = None


class PodIP(K8sModel):
    ip: str | None = None


class ContainerStateWaiting(K8sModel):
    reason: str | None = None
    message: str | None = None


class ContainerStateRunning(K8sModel):
    started_at: str | None = None


class ContainerStateTerminated(K8sModel):
    exit_code: Int32
    signal: Int32 | None = None
    reason: str | None = None
    message: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    container_id: str | None = Field(default=None, alias="containerID")


class ContainerState(K8sModel):
    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None


class ContainerStatus(K8sModel):
    name: str
    state: ContainerState | None = None
    last_state: ContainerState | None = None
    ready: bool = False
    restart_count: Int32 = 0
    image: str | None = None
    image_id: str | None = Field(default=None, alias="imageID")
    container_id: str | None = Field(default=None, alias="containerID")
    started: bool | None = None


class PodStatus(K8sModel):
    phase: str | None = None
    conditions: list[PodCondition] | None = None
    message: str | None = None
    reason: str | None = None
    nominated_node_name: str | None = None
    host_ip: str | None = Field(default=None, alias="hostIP")
    pod_ip: str | None = Field(default=None, alias="podIP")
    pod_ips: list[PodIP] | None = Field(default=None, alias="podIPs")
    start_time: str | None = None
    init_container_statuses: list[ContainerStatus] | None = None
    container_statuses: list[ContainerStatus] | None = None
    qos_class: str | None = None


class Pod(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Pod"

    spec: PodSpec | None = None
    status: PodStatus | None = None


class PodTemplateSpec(K8sModel):
    metadata: ObjectMeta | None = None
    spec: PodSpec | None = None


class Binding(TypedObject):
    """pods/binding: the scheduler's decision, `target` names the node."""

    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Binding"

    target: ObjectReference


# --------------------------------------------------------------------------------------------
# Service, Endpoints
# --------------------------------------------------------------------------------------------


class ServicePort(K8sModel):
    name: str | None = None
    protocol: str | None = None
    app_protocol: str | None = None
    port: Int32
    target_port: IntOrString | None = None
    node_port: Int32 | None = None


class ClientIPConfig(K8sModel):
    timeout_seconds: Int32 | None = None


class SessionAffinityConfig(K8sModel):
    client_ip: ClientIPConfig | None = Field(default=None, alias="clientIP")


class ServiceSpec(K8sModel):
    ports: list[ServicePort] | None = None
    selector: dict[str, str] | None = None
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    cluster_ips: list[str] | None = Field(default=None, alias="clusterIPs")
    type: str | None = None
    external_ips: list[str] | None = Field(default=None, alias="externalIPs")
    session_affinity: str | None = None
    load_balancer_ip: str | None = Field(default=None, alias="loadBalancerIP")
    load_balancer_source_ranges: list[str] | None = None
    external_name: str | None = None
    external_traffic_policy: str | None = None
    health_check_node_port: Int32 | None = None
    publish_not_ready_addresses: bool | None = None
    session_affinity_config: SessionAffinityConfig | None = None
    ip_families: list[str] | None = None
    ip_family_policy: str | None = None
    allocate_load_balancer_node_ports: bool | None = None
    load_balancer_class: str | None = None
    internal_traffic_policy: str | None = None


class ServiceStatus(K8sModel):
    load_balancer: dict[str, Any] | None = None
    conditions: list[dict[str, Any]] | None = None


class Service(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Service"

    spec: ServiceSpec | None = None
    status: ServiceStatus | None = None


class EndpointAddress(K8sModel):
    ip: str
    hostname: str | None = None
    node_name: str | None = None
    target_ref: ObjectReference | None = None


class EndpointPort(K8sModel):
    name: str | None = None
    port: Int32
    protocol: str | None = None
    app_protocol: str | None = None


class EndpointSubset(K8sModel):
    addresses: list[EndpointAddress] | None = None
    not_ready_addresses: list[EndpointAddress] | None = None
    ports: list[EndpointPort] | None = None


class Endpoints(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Endpoints"

    subsets: list[EndpointSubset] | None = None


# --------------------------------------------------------------------------------------------
# ReplicationController
# --------------------------------------------------------------------------------------------


class ReplicationControllerSpec(K8sModel):
    replicas: Int32 | None = None
    min_ready_seconds: Int32 | None = None
    # RCs use a plain equality map, unlike apps/v1's structured LabelSelector.
    selector: dict[str, str] | None = None
    template: PodTemplateSpec | None = None


class ReplicationControllerCondition(K8sModel):
    type: str
    status: str
    last_transition_time: str | None = None
    reason: str | None = None
    message: str | None = None


class ReplicationControllerStatus(K8sModel):
    replicas: Int32 | None = None
    fully_labeled_replicas: Int32 | None = None
    ready_replicas: Int32 | None = None
    available_replicas: Int32 | None = None
    observed_generation: Int64 | None = None
    conditions: list[ReplicationControllerCondition] | None = None


class ReplicationController(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "ReplicationController"

    spec: ReplicationControllerSpec | None = None
    status: ReplicationControllerStatus | None = None


# --------------------------------------------------------------------------------------------
# ServiceAccount, Event, ConfigMap, Secret
# --------------------------------------------------------------------------------------------


class ServiceAccount(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "ServiceAccount"

    secrets: list[ObjectReference] | None = None
    image_pull_secrets: list[LocalObjectReference] | None = None
    automount_service_account_token: bool | None = None


class EventSource(K8sModel):
    component: str | None = None
    host: str | None = None


class EventSeries(K8sModel):
    count: Int32 | None = None
    last_observed_time: str | None = None


class Event(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Event"

    involved_object: ObjectReference = Field(default_factory=ObjectReference)
    reason: str | None = None
    message: str | None = None
    source: EventSource | None = None
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    count: Int32 | None = None
    type: str | None = None
    event_time: str | None = None  # MicroTime
    series: EventSeries | None = None
    action: str | None = None
    related: ObjectReference | None = None
    reporting_component: str | None = None
    reporting_instance: str | None = None


class ConfigMap(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "ConfigMap"

    data: dict[str, str] | None = None
    binary_data: dict[str, str] | None = None  # base64 on the wire
    immutable: bool | None = None


class Secret(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Secret"

    data: dict[str, str] | None = None  # base64 on the wire
    # Write-only convenience: merged into `data` by api.defaults and never stored.
    string_data: dict[str, str] | None = None
    type: str | None = None
    immutable: bool | None = None
