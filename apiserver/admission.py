"""Admission: what the apiserver adds to or checks on an object beyond its schema.

Kubernetes' built-in admission plugins that a cluster cannot work without, in the order they run:
- NamespaceLifecycle: no new objects in a namespace that does not exist or is terminating;
- per-kind create preparation (the registry strategies' PrepareForCreate): status a client may
  not set is reset, pods start Pending with their QoS class, namespaces get the `kubernetes`
  finalizer and phase Active;
- ServiceAccount: pods run as `default` unless they say otherwise, and get a projected
  `kube-api-access-<5>` volume (a bound token, the cluster CA from `kube-root-ca.crt`, their
  namespace) mounted at /var/run/secrets/kubernetes.io/serviceaccount in every container, unless
  the pod or its ServiceAccount sets automountServiceAccountToken false. Mirror pods are left
  alone. Deviation: upstream refuses a pod whose ServiceAccount does not exist (yet); tinykube
  admits it (the kubelet's token request then fails until the account exists), and reads the
  account from the watch cache only to honour its automountServiceAccountToken;
- DefaultTolerationSeconds: pods tolerate `not-ready` / `unreachable` NoExecute for 300s;
- Service IP and NodePort allocation (the service registry's allocators);
- validating plugins with a say over who may write what (NodeRestriction, RBAC's escalation
  check), run on every create, update and delete through `validate`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from api import errors
from api.quantity import parse_quantity
from api.resources import ResourceInfo
from apiserver.allocator import Allocator
from apiserver.auth import AdmissionPlugin, AdmissionRequest, current_user
from apiserver.noderestriction import MIRROR_POD_ANNOTATION
from apiserver.storage import SideEffects, Storage
from apiserver.watchcache import WatchCache

Obj = dict[str, Any]
DEFAULT_TOLERATION_SECONDS = 300
_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
# Kinds whose status a client's create may not set (the controllers own it).
_STATUS_RESET = {"services", "replicationcontrollers", "replicasets", "deployments"}
# ServiceAccount admission's token volume (upstream plugin/pkg/admission/serviceaccount).
SERVICE_ACCOUNT_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_VOLUME_PREFIX = "kube-api-access-"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
# serviceaccount.WarnOnlyBoundTokenExpirationSeconds: one hour plus 7 s, a value no client
# asks for, so the apiserver can tell these tokens apart.
TOKEN_EXPIRATION_SECONDS = 3607
# names.SimpleNameGenerator's alphabet (utilrand: no vowels, no confusable digits).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class Admission:
    def __init__(self, storage: Storage, cache: WatchCache, allocator: Allocator,
                 not_ready_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS,
                 unreachable_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS,
                 plugins: Sequence[AdmissionPlugin] = ()) -> None:
        self.storage = storage
        self.plugins = list(plugins)
        self.cache = cache
        self.allocator = allocator
        # --default-not-ready-toleration-seconds / --default-unreachable-toleration-seconds
        self.toleration_seconds = {"node.kubernetes.io/not-ready": not_ready_toleration_seconds,
                                   "node.kubernetes.io/unreachable":
                                       unreachable_toleration_seconds}

    async def validate(self, operation: str, info: ResourceInfo, subresource: str, ns: str,
                       name: str, obj: Obj | None, old: Obj | None) -> None:
        """Run the validating plugins for one write by the current request's user."""
        if not self.plugins:
            return
        req = AdmissionRequest(operation, info, subresource, ns, name, obj, old, current_user())
        for plugin in self.plugins:
            await plugin.admit(req)

    async def check_namespace(self, ns: str) -> None:
        # The cache answers almost always; a namespace created a moment ago may not be in it
        # yet, so a miss falls back to a consistent read, as upstream's lifecycle plugin does.
        obj = await self.cache.lookup("namespaces", "", ns)
        if obj is None:
            raise errors.NotFound(message=f'namespaces "{ns}" not found', kind="namespaces",
                                  name=ns)
        if (obj.get("metadata") or {}).get("deletionTimestamp") or (
                obj.get("status") or {}).get("phase") == "Terminating":
            raise errors.Forbidden(
                message=f"unable to create new content in namespace {ns} because it is being "
                "terminated", kind="namespaces", name=ns)

    def prepare_for_create(self, info: ResourceInfo, obj: Obj) -> None:
        if info.name in _STATUS_RESET:
            obj.pop("status", None)
        elif info.name == "pods":
            obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}
            self._pod_defaults(obj)
        elif info.name == "namespaces":
            spec = obj.setdefault("spec", {})
            spec["finalizers"] = spec.get("finalizers") or ["kubernetes"]
            obj["status"] = {"phase": "Active"}

    def _pod_defaults(self, pod: Obj) -> None:
        spec = pod.setdefault("spec", {})
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        # Mirror pods (a kubelet's static pods) run no ServiceAccount, as upstream's plugin
        # skips them: NodeRestriction refuses a mirror pod that names one.
        if MIRROR_POD_ANNOTATION not in annotations:
            sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
            spec["serviceAccountName"] = sa
            spec["serviceAccount"] = sa  # the deprecated mirror Kubernetes still fills
            ns = str((pod.get("metadata") or {}).get("namespace") or "")
            account = self.cache.get("serviceaccounts", f"{ns}/{sa}")
            if should_automount(spec, account):
                mount_service_account_token(spec)
        tolerations = spec.get("tolerations") or []
        for key, seconds in self.toleration_seconds.items():
            if not any(t.get("key") == key and t.get("effect") in ("NoExecute", None, "")
                       for t in tolerations) and not any(
                    t.get("operator") == "Exists" and not t.get("key") for t in tolerations):
                tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                    "tolerationSeconds": seconds})
        spec["tolerations"] = tolerations

    # --- Service allocations --------------------------------------------------------------

    def keep_allocations(self, info: ResourceInfo, new: Obj, old: Obj) -> None:
        """An update that leaves clusterIP/nodePort empty keeps the allocated values
        (upstream's patchAllocatedValues), so `replace -f manifest.yaml` just works."""
        if info.name != "services":
            return
        spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
        if spec.get("type") != "ExternalName" and not spec.get("clusterIP") and old_spec.get(
                "clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
            spec["clusterIPs"] = old_spec.get("clusterIPs") or [old_spec["clusterIP"]]
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                     for p in old_spec.get("ports") or []}
        if spec.get("type") in _NODE_PORT_TYPES:
            for p in spec.get("ports") or []:
                if not p.get("nodePort"):
                    np = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
                    if np:
                        p["nodePort"] = np
            return
        # Leaving NodePort/LoadBalancer: fields that only meant something for the old type go
        # with it, unless the user set them anew (upstream's dropTypeDependentFields).
        for p in spec.get("ports") or []:
            if p.get("nodePort") and p["nodePort"] == old_ports.get(
                    (p.get("port"), p.get("protocol", "TCP"))):
                p.pop("nodePort")
        if spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
            spec.pop("externalTrafficPolicy", None)

    async def allocate(self, info: ResourceInfo, obj: Obj, old: Obj | None) -> SideEffects:
        """Fill in and claim the Service's ClusterIP and NodePorts; release what it dropped."""
        if info.name != "services":
            return SideEffects()
        name = f'{obj["metadata"].get("namespace")}/{obj["metadata"]["name"]}'
        spec = obj.setdefault("spec", {})
        old_spec = (old or {}).get("spec") or {}
        fx = SideEffects()
        await self._allocate_ip(spec, old_spec, name, fx)
        await self._allocate_ports(spec, old_spec, name, fx)
        return fx

    async def _allocate_ip(self, spec: Obj, old_spec: Obj, owner: str, fx: SideEffects) -> None:
        old_ip = old_spec.get("clusterIP")
        ip = spec.get("clusterIP")
        if spec.get("type") == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            ip = None
        elif ip in (None, ""):
            ip = await self.allocator.pick_ip(set())
        elif ip != "None" and ip != old_ip:
            self.allocator.check_ip(ip, "spec.clusterIPs[0]")
            await self.allocator.ensure_free(self.allocator.ip_key(ip), "spec.clusterIPs[0]",
                                             f'"{ip}"')
        if ip and ip != "None" and ip != old_ip:
            fx.claims[self.allocator.ip_key(ip)] = owner
        if ip:
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]
        if old_ip and old_ip != "None" and old_ip != ip:
            fx.releases.append(self.allocator.ip_key(old_ip))

    async def _allocate_ports(self, spec: Obj, old_spec: Obj, owner: str,
                              fx: SideEffects) -> None:
        """NodePorts as upstream allocates them: one claim per port number, which ports of
        different protocols may share (DNS on 53/TCP and 53/UDP); ports the user asked for are
        reserved before any is picked, so a pick never takes one of them."""
        ports = spec.get("ports") or []
        old_ports = {p["nodePort"] for p in old_spec.get("ports") or [] if p.get("nodePort")}
        if spec.get("type") not in _NODE_PORT_TYPES:
            for i, p in enumerate(ports):
                if p.get("nodePort") and p["nodePort"] not in old_ports:
                    raise errors.invalid("Service", "", [errors.Cause(
                        f"spec.ports[{i}].nodePort", "Forbidden: may not be used when `type` is "
                        f"'{spec.get('type', 'ClusterIP')}'", "FieldValueForbidden")])
                p.pop("nodePort", None)
            fx.releases.extend(self.allocator.port_key(p) for p in old_ports)
            return
        seen: set[tuple[int, str]] = set()
        wanted: set[int] = set()
        for i, p in enumerate(ports):
            np = p.get("nodePort")
            if not np:
                continue
            field = f"spec.ports[{i}].nodePort"
            if (np, p.get("protocol", "TCP")) in seen:
                raise errors.invalid("Service", "", [errors.Cause(
                    field, f"Duplicate value: {np}", "FieldValueDuplicate")])
            seen.add((np, p.get("protocol", "TCP")))
            if np not in old_ports and np not in wanted:
                self.allocator.check_port(np, field)
                await self.allocator.ensure_free(self.allocator.port_key(np), field, np)
            wanted.add(np)
        for p in ports:
            if not p.get("nodePort"):
                p["nodePort"] = await self.allocator.pick_port(wanted | old_ports)
                wanted.add(p["nodePort"])
        for np in wanted - old_ports:
            fx.claims[self.allocator.port_key(np)] = owner
        fx.releases.extend(self.allocator.port_key(p) for p in old_ports - wanted)

    def release(self, info: ResourceInfo, obj: Obj) -> SideEffects:
        """The claim keys to delete with the object."""
        if info.name != "services":
            return SideEffects()
        spec = obj.get("spec") or {}
        keys = [self.allocator.port_key(p["nodePort"]) for p in spec.get("ports") or []
                if p.get("nodePort")]
        ip = spec.get("clusterIP")
        if ip and ip != "None":
            keys.append(self.allocator.ip_key(ip))
        return SideEffects(releases=keys)


def should_automount(spec: Obj, account: Obj | None) -> bool:
    """upstream shouldAutomountAPIToken: the pod's automountServiceAccountToken, else its
    ServiceAccount's, else true."""
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    if account is not None and account.get("automountServiceAccountToken") is not None:
        return bool(account["automountServiceAccountToken"])
    return True


def token_volume_source() -> Obj:
    """upstream TokenVolumeSource: a bound token, the cluster CA and the namespace."""
    return {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                                     "path": "token"}},
            {"configMap": {"name": ROOT_CA_CONFIGMAP,
                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    }


def mount_service_account_token(spec: Obj) -> None:
    """upstream mountServiceAccountToken: a `kube-api-access-<5>` projected volume (reused if
    the pod has one already), mounted read-only at the token path in every container and init
    container that mounts nothing there itself; the volume only if some container needs it."""
    volumes = spec.get("volumes") or []
    name = next((v.get("name") for v in volumes
                 if str(v.get("name") or "").startswith(TOKEN_VOLUME_PREFIX)), None)
    has_volume = name is not None
    if name is None:
        name = TOKEN_VOLUME_PREFIX + "".join(
            secrets.choice(_NAME_ALPHABET) for _ in range(5))
    needed = False
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            mounts = c.get("volumeMounts") or []
            if any(m.get("mountPath") == SERVICE_ACCOUNT_MOUNT_PATH for m in mounts):
                continue
            c["volumeMounts"] = [*mounts, {"name": name, "readOnly": True,
                                           "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}]
            needed = True
    if needed and not has_volume:
        spec["volumes"] = [*volumes, {"name": name, "projected": token_volume_source()}]


def qos_class(spec: Obj) -> str:
    """Kubernetes' QoS class: Guaranteed, Burstable or BestEffort, from requests and limits."""
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    any_set, guaranteed = False, True
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        if limits or requests:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in limits:
                guaranteed = False
            elif r in requests and parse_quantity(requests[r]) != parse_quantity(limits[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
