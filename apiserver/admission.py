"""Admission: what the apiserver adds to or checks on an object beyond its schema.

Kubernetes' built-in admission plugins that a cluster cannot work without, in the order they run:
- NamespaceLifecycle: no new objects in a namespace that does not exist or is terminating;
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

What is not admission but each kind's own rules (status reset on create, pods' Pending phase
and QoS class, namespaces' finalizer, Service allocations kept across updates) lives in the
kinds' strategies (apiserver/strategies.py). Admission asks no resource's name either: a
strategy names the mutating plugins that apply to its kind (`admission_plugins`) and says
whether its writes allocate (`allocates`); the plugins here hold what they need from the
server's configuration (the toleration seconds, the allocators, the watch cache).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any

from api import errors
from api.resources import ResourceInfo
from apiserver.allocator import Allocator
from apiserver.auth import AdmissionPlugin, AdmissionRequest, current_user
from apiserver.noderestriction import MIRROR_POD_ANNOTATION
from apiserver.storage import SideEffects, Storage
from apiserver.strategies import (
    NODE_PORT_TYPES,
    PLUGIN_DEFAULT_TOLERATION_SECONDS,
    PLUGIN_SERVICE_ACCOUNT,
    Strategy,
    namespace_strategy,
)
from apiserver.watchcache import WatchCache

Obj = dict[str, Any]
DEFAULT_TOLERATION_SECONDS = 300
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
        # The mutating plugins, by the names strategies ask for them (`admission_plugins`).
        self._mutators: dict[str, Callable[[Obj], None]] = {
            PLUGIN_SERVICE_ACCOUNT: self._service_account,
            PLUGIN_DEFAULT_TOLERATION_SECONDS: self._default_tolerations,
        }

    async def validate(self, operation: str, info: ResourceInfo, subresource: str, ns: str,
                       name: str, obj: Obj | None, old: Obj | None) -> None:
        """Run the validating plugins for one write by the current request's user."""
        if not self.plugins:
            return
        req = AdmissionRequest(operation, info, subresource, ns, name, obj, old, current_user())
        for plugin in self.plugins:
            await plugin.admit(req)

    async def check_namespace(self, ns: str) -> None:
        """NamespaceLifecycle: refuse content for a namespace that is missing or terminating."""
        # The cache answers almost always; a namespace created a moment ago may not be in it
        # yet, so a miss falls back to a consistent read, as upstream's lifecycle plugin does.
        namespaces = namespace_strategy()
        obj = await self.cache.lookup(namespaces.info.name, "", ns)
        if obj is None:
            raise errors.NotFound(message=f'{namespaces.info.qualified_name} "{ns}" not found',
                                  kind=namespaces.info.name, name=ns)
        if namespaces.terminating(obj):
            raise errors.Forbidden(
                message=f"unable to create new content in namespace {ns} because it is being "
                "terminated", kind=namespaces.info.name, name=ns)

    def mutate(self, strategy: Strategy, obj: Obj) -> None:
        """Run the mutating plugins the kind's strategy names on a create's object."""
        for plugin in strategy.admission_plugins:
            self._mutators[plugin](obj)

    def _service_account(self, pod: Obj) -> None:
        """ServiceAccount: the pod's account (default `default`) and its token volume."""
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

    def _default_tolerations(self, pod: Obj) -> None:
        """DefaultTolerationSeconds: tolerate not-ready/unreachable NoExecute for a while."""
        spec = pod.setdefault("spec", {})
        tolerations = spec.get("tolerations") or []
        for key, seconds in self.toleration_seconds.items():
            if not any(t.get("key") == key and t.get("effect") in ("NoExecute", None, "")
                       for t in tolerations) and not any(
                    t.get("operator") == "Exists" and not t.get("key") for t in tolerations):
                tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                    "tolerationSeconds": seconds})
        spec["tolerations"] = tolerations

    # --- Service allocations --------------------------------------------------------------

    async def allocate(self, strategy: Strategy, obj: Obj, old: Obj | None) -> SideEffects:
        """Fill in and claim the Service's ClusterIP and NodePorts; release what it dropped.
        Nothing for a kind whose strategy does not allocate."""
        if not strategy.allocates:
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
        if spec.get("type") not in NODE_PORT_TYPES:
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

    def release(self, strategy: Strategy, obj: Obj) -> SideEffects:
        """The claim keys to delete with the object."""
        if not strategy.allocates:
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
