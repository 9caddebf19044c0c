"""Kubernetes' defaulting: the values the apiserver fills in before validating and storing.

Upstream every field's default lives in a generated `SetDefaults_X`; here it is one function per
kind. Defaulting is what lets a manifest say only `image: nginx` and still get a pod with a restart
policy, a pull policy and probe timings, and what makes `get -o yaml` show those values, so the
values match upstream's exactly. Admission-time defaults that need cluster state (default service
account, ClusterIP allocation, default tolerations) are the apiserver's, not here.

`apply_defaults` mutates the object in place and is idempotent.
"""

from __future__ import annotations

import base64

from api import apps, authentication, core, rbac
from api.meta import ObjectMeta, TypedObject

DEFAULT_TERMINATION_GRACE_PERIOD = 30
DEFAULT_SCHEDULER = "default-scheduler"
DEFAULT_CLIENT_IP_TIMEOUT = 10800  # 3 hours, upstream's DefaultClientIPServiceAffinitySeconds
DEFAULT_VOLUME_MODE = 0o644  # 420


def _image_pull_policy(image: str | None) -> str:
    """Always for `:latest` or untagged images (they move), IfNotPresent for pinned ones."""
    if not image:
        return "IfNotPresent"
    if "@" in image:  # pinned by digest
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "Always"
    return "Always" if last.rsplit(":", 1)[1] == "latest" else "IfNotPresent"


def _default_handler(h: core.Probe | core.LifecycleHandler | None) -> None:
    if h is None:
        return
    if h.http_get is not None:
        if h.http_get.path is None:
            h.http_get.path = "/"
        if h.http_get.scheme is None:
            h.http_get.scheme = "HTTP"


def _default_probe(p: core.Probe | None) -> None:
    if p is None:
        return
    _default_handler(p)
    if p.timeout_seconds is None:
        p.timeout_seconds = 1
    if p.period_seconds is None:
        p.period_seconds = 10
    if p.success_threshold is None:
        p.success_threshold = 1
    if p.failure_threshold is None:
        p.failure_threshold = 3


def _default_container(c: core.Container) -> None:
    if c.image_pull_policy is None:
        c.image_pull_policy = _image_pull_policy(c.image)
    if c.termination_message_path is None:
        c.termination_message_path = "/dev/termination-log"
    if c.termination_message_policy is None:
        c.termination_message_policy = "File"
    for port in c.ports or []:
        if port.protocol is None:
            port.protocol = "TCP"
    for probe in (c.liveness_probe, c.readiness_probe, c.startup_probe):
        _default_probe(probe)
    if c.lifecycle is not None:
        _default_handler(c.lifecycle.post_start)
        _default_handler(c.lifecycle.pre_stop)
    for var in c.env or []:
        fr = var.value_from.field_ref if var.value_from else None
        if fr is not None and fr.api_version is None:
            fr.api_version = "v1"


def default_pod_spec(spec: core.PodSpec) -> None:
    """Pod-level and container defaults; used for pods and for controllers' pod templates."""
    if spec.restart_policy is None:
        spec.restart_policy = "Always"
    if spec.dns_policy is None:
        spec.dns_policy = "ClusterFirst"
    if spec.termination_grace_period_seconds is None:
        spec.termination_grace_period_seconds = DEFAULT_TERMINATION_GRACE_PERIOD
    if spec.scheduler_name is None:
        spec.scheduler_name = DEFAULT_SCHEDULER
    # serviceAccount is the deprecated spelling; upstream keeps the two in step.
    if spec.service_account_name is None and spec.service_account:
        spec.service_account_name = spec.service_account
    if spec.security_context is None:
        spec.security_context = {}
    for c in [*(spec.init_containers or []), *(spec.containers or [])]:
        _default_container(c)
    for v in spec.volumes or []:
        if v.config_map is not None and v.config_map.default_mode is None:
            v.config_map.default_mode = DEFAULT_VOLUME_MODE
        if v.secret is not None and v.secret.default_mode is None:
            v.secret.default_mode = DEFAULT_VOLUME_MODE
        if v.host_path is not None and v.host_path.type is None:
            v.host_path.type = ""


def _default_template(template: core.PodTemplateSpec | None) -> None:
    if template is not None and template.spec is not None:
        default_pod_spec(template.spec)


def _template_labels(template: core.PodTemplateSpec | None) -> dict[str, str]:
    if template is None or template.metadata is None:
        return {}
    return dict(template.metadata.labels or {})


def _default_pod(pod: core.Pod) -> None:
    if pod.spec is None:
        return
    default_pod_spec(pod.spec)
    # Pods only, as upstream SetDefaults_Pod (a template keeps it unset): the kubelet gives
    # the pod the environment variables of its namespace's Services unless this is false.
    if pod.spec.enable_service_links is None:
        pod.spec.enable_service_links = True
    # Pods only (not templates), as upstream SetDefaults_Pod: a resource with only a limit
    # requests that limit, so the scheduler reserves what the container may use.
    for c in [*(pod.spec.init_containers or []), *(pod.spec.containers or [])]:
        if c.resources is not None and c.resources.limits:
            requests = dict(c.resources.requests or {})
            for name, q in c.resources.limits.items():
                requests.setdefault(name, q)
            c.resources.requests = requests


def _default_service(svc: core.Service) -> None:
    spec = svc.spec
    if spec is None:
        spec = svc.spec = core.ServiceSpec()
    if spec.type is None:
        spec.type = "ClusterIP"
    if spec.session_affinity is None:
        spec.session_affinity = "None"
    if spec.session_affinity == "ClientIP":
        if spec.session_affinity_config is None:
            spec.session_affinity_config = core.SessionAffinityConfig()
        cfg = spec.session_affinity_config
        if cfg.client_ip is None:
            cfg.client_ip = core.ClientIPConfig()
        if cfg.client_ip.timeout_seconds is None:
            cfg.client_ip.timeout_seconds = DEFAULT_CLIENT_IP_TIMEOUT
    for port in spec.ports or []:
        if port.protocol is None:
            port.protocol = "TCP"
        if port.target_port is None or port.target_port in (0, ""):
            port.target_port = port.port
    if spec.type in ("NodePort", "LoadBalancer") and spec.external_traffic_policy is None:
        spec.external_traffic_policy = "Cluster"
    if spec.type != "ExternalName" and spec.internal_traffic_policy is None:
        spec.internal_traffic_policy = "Cluster"
    if spec.cluster_ip and not spec.cluster_ips:
        spec.cluster_ips = [spec.cluster_ip]


def _default_rc(rc: core.ReplicationController) -> None:
    spec = rc.spec
    if spec is None:
        return
    labels = _template_labels(spec.template)
    # An RC without a selector selects its own template's labels, and one without labels of
    # its own carries them too (upstream SetDefaults_ReplicationController).
    if labels:
        if not spec.selector:
            spec.selector = dict(labels)
        if not rc.metadata.labels:
            rc.metadata.labels = dict(labels)
    if spec.replicas is None:
        spec.replicas = 1
    if spec.min_ready_seconds is None:
        spec.min_ready_seconds = 0
    _default_template(spec.template)


def _default_replicaset(rs: apps.ReplicaSet) -> None:
    spec = rs.spec
    if spec is None:
        return
    if spec.replicas is None:
        spec.replicas = 1
    if spec.min_ready_seconds is None:
        spec.min_ready_seconds = 0
    _default_template(spec.template)


def _default_deployment(d: apps.Deployment) -> None:
    spec = d.spec
    if spec is None:
        return
    if spec.replicas is None:
        spec.replicas = 1
    if spec.strategy is None:
        spec.strategy = apps.DeploymentStrategy()
    if spec.strategy.type is None:
        spec.strategy.type = "RollingUpdate"
    if spec.strategy.type == "RollingUpdate":
        if spec.strategy.rolling_update is None:
            spec.strategy.rolling_update = apps.RollingUpdateDeployment()
        ru = spec.strategy.rolling_update
        if ru.max_unavailable is None:
            ru.max_unavailable = "25%"
        if ru.max_surge is None:
            ru.max_surge = "25%"
    if spec.revision_history_limit is None:
        spec.revision_history_limit = 10
    if spec.progress_deadline_seconds is None:
        spec.progress_deadline_seconds = 600
    if spec.min_ready_seconds is None:
        spec.min_ready_seconds = 0
    _default_template(spec.template)


def _default_secret(s: core.Secret) -> None:
    if s.type is None:
        s.type = "Opaque"
    # stringData is write-only: merged into data (overriding it) and never stored, as upstream.
    if s.string_data:
        data = dict(s.data or {})
        for k, v in s.string_data.items():
            data[k] = base64.b64encode(v.encode()).decode()
        s.data = data
    s.string_data = None


def _default_namespace(ns: core.Namespace) -> None:
    if ns.status is None:
        ns.status = core.NamespaceStatus()
    if ns.status.phase is None:
        ns.status.phase = "Active"
    # The "kubernetes" finalizer is the namespace registry's PrepareForCreate, not a default.


def _default_binding(b: rbac.RoleBinding | rbac.ClusterRoleBinding) -> None:
    # SetDefaults_RoleBinding / _Subject: the RBAC group is implied for roles, users and groups.
    if not b.role_ref.api_group:
        b.role_ref.api_group = rbac.GROUP
    for s in b.subjects or []:
        if not s.api_group and s.kind in (rbac.USER_KIND, rbac.GROUP_KIND):
            s.api_group = rbac.GROUP


def _default_token_request(tr: authentication.TokenRequest) -> None:
    if tr.spec.expiration_seconds is None:
        tr.spec.expiration_seconds = authentication.DEFAULT_EXPIRATION_SECONDS


def apply_defaults(obj: TypedObject) -> None:
    """Fill in Kubernetes' defaults for `obj`, in place. Safe to call more than once."""
    if obj.metadata is None:
        obj.metadata = ObjectMeta()
    if obj.api_version is None:
        obj.api_version = obj.API_VERSION
    if obj.kind is None:
        obj.kind = obj.KIND
    if isinstance(obj, core.Pod):
        _default_pod(obj)
    elif isinstance(obj, core.Service):
        _default_service(obj)
    elif isinstance(obj, core.ReplicationController):
        _default_rc(obj)
    elif isinstance(obj, apps.Deployment):
        _default_deployment(obj)
    elif isinstance(obj, apps.ReplicaSet):
        _default_replicaset(obj)
    elif isinstance(obj, core.Secret):
        _default_secret(obj)
    elif isinstance(obj, core.Namespace):
        _default_namespace(obj)
    elif isinstance(obj, rbac.RoleBinding | rbac.ClusterRoleBinding):
        _default_binding(obj)
    elif isinstance(obj, authentication.TokenRequest):
        _default_token_request(obj)
