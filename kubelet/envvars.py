"""A container's environment, resolved as the kubelet does before it creates the container.

Upstream's `makeEnvironmentVariables` (pkg/kubelet/kubelet_pods.go): first `envFrom` (every key
of a ConfigMap or Secret, with an optional prefix; keys that are not valid variable names are
skipped and reported), then `env` in order, where a literal `value` may refer to variables
defined before it as `$(VAR)` and `valueFrom` reads the pod's own fields (the downward API),
its container's resources, or one key of a ConfigMap or Secret. A reference that cannot be
resolved and is not `optional` fails the container with upstream's message, which the kubelet
reports as `CreateContainerConfigError`.

The kubelet reads ConfigMaps and Secrets with its node identity: the Node authorizer lets it
read only those that pods bound to it reference, which is exactly what this module asks for.
Within one call each object is fetched once, as upstream caches them per pod sync.

After them come the Service links (upstream's `getServiceEnvVarMap` and pkg/kubelet/envvars),
which `$(VAR)` references may use too: for every Service with a cluster IP in the pod's
namespace (unless the pod sets `enableServiceLinks: false`), and always for `default/kubernetes`,
the variables a Docker link would set (`HOSTNAMES_PORT_80_TCP_ADDR`, ...) and Kubernetes' own
(`HOSTNAMES_SERVICE_HOST`, `HOSTNAMES_SERVICE_PORT`). They are read when the container is
created: a Service made later shows up only in a container started after it. A variable the pod
defines itself wins over a link of the same name.

`expand` is upstream's `third_party/forked/golang/expansion`: `$(VAR)` becomes VAR's value when
VAR is defined, `$$` is an escaped `$` (so `$$(VAR)` yields the literal `$(VAR)`), and anything
else (an undefined name, an unclosed `$(`) stays as written. The kubelet uses it for command and
args as well.
"""

from __future__ import annotations

import base64
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from api import errors
from api.quantity import QuantityError, parse_quantity
from api.validation import go_quote
from client.apiclient import ApiClient

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# validation.IsEnvVarName: what envFrom keys must look like (upstream's strict rule; newer
# releases relax it behind RelaxedEnvironmentVariableValidation).
_ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# metadata.labels['key'] / metadata.annotations['key'] (fieldpath.SplitMaybeSubscriptedPath).
_SUBSCRIPT = re.compile(r"^(metadata\.(?:labels|annotations))\['(.*)'\]$")


class EnvError(Exception):
    """A reference that cannot be resolved: the kubelet reports CreateContainerConfigError with
    this message."""


class FieldPathError(ValueError):
    """A fieldRef this kubelet cannot answer (upstream `unsupported fieldPath: ...`)."""


# --- $(VAR) expansion ------------------------------------------------------------------------


def _syntax_wrap(name: str) -> str:
    return f"$({name})"


def mapping_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    """upstream expansion.MappingFuncFor: the first context that defines the name wins; an
    undefined name expands to itself, `$(NAME)`."""
    def mapping(name: str) -> str:
        for ctx in contexts:
            if name in ctx:
                return ctx[name]
        return _syntax_wrap(name)
    return mapping


def _read_variable_name(text: str) -> tuple[str, bool, int]:
    """(what to write or the name, whether it is a name, characters consumed after `$`)."""
    first = text[0]
    if first == "$":
        return "$", False, 1  # escaped operator
    if first == "(":
        close = text.find(")", 1)
        if close != -1:
            return text[1:close], True, close + 1
        return "$(", False, 1  # incomplete reference: written as is
    return "$" + first, False, 1


def expand_with(text: str, mapping: Callable[[str], str]) -> str:
    """upstream expansion.Expand, character for character."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_variable_name(text[cursor + 1:])
            out.append(mapping(read) if is_var else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand `$(VAR)` references in `text` against `env` (command, args, env values)."""
    return expand_with(text, mapping_for(env))


# --- the downward API -------------------------------------------------------------------------


def format_map(m: Mapping[str, str]) -> str:
    """upstream fieldpath.FormatMap: `key="value"` lines sorted by key, no trailing newline."""
    return "\n".join(f"{k}={go_quote(m[k])}" for k in sorted(m))


def extract_field_path(pod: Obj, field_path: str) -> str:
    """upstream fieldpath.ExtractFieldPathAsString: the metadata fields a pod can read about
    itself (env fieldRef and downwardAPI volume files)."""
    md = pod.get("metadata") or {}
    sub = _SUBSCRIPT.match(field_path)
    if sub:
        which = "labels" if sub.group(1).endswith("labels") else "annotations"
        return str((md.get(which) or {}).get(sub.group(2), ""))
    if field_path == "metadata.annotations":
        return format_map(md.get("annotations") or {})
    if field_path == "metadata.labels":
        return format_map(md.get("labels") or {})
    if field_path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(md.get(field_path.split(".", 1)[1]) or "")
    raise FieldPathError(f"unsupported fieldPath: {field_path}")


def pod_field_value(pod: Obj, field_path: str, *, pod_ip: str, host_ip: str,
                    pod_ips: list[str] | None = None, host_ips: list[str] | None = None) -> str:
    """upstream podFieldSelectorRuntimeValue: fields only the kubelet knows (IPs), then the
    pod's own fields."""
    spec = pod.get("spec") or {}
    if field_path == "spec.nodeName":
        return str(spec.get("nodeName") or "")
    if field_path == "spec.serviceAccountName":
        return str(spec.get("serviceAccountName") or "")
    if field_path == "status.hostIP":
        return host_ip
    if field_path == "status.hostIPs":
        return ",".join(host_ips if host_ips is not None else [ip for ip in [host_ip] if ip])
    if field_path == "status.podIP":
        return pod_ip
    if field_path == "status.podIPs":
        return ",".join(pod_ips if pod_ips is not None else [ip for ip in [pod_ip] if ip])
    return extract_field_path(pod, field_path)


def resource_field_value(pod: Obj, container: Obj, ref: Obj,
                         allocatable: Mapping[str, str] | None = None) -> str:
    """upstream resource.ExtractContainerResourceValue: a limit or request, divided by the
    divisor and rounded up (cpu in cores by default, memory in bytes).

    A limit the container does not set is the node's allocatable upstream; tinykube uses
    `allocatable` when the caller passes it and "0" otherwise (a request left unset is "0" in
    both)."""
    name = ref.get("containerName") or container.get("name")
    target = next((c for c in (pod.get("spec") or {}).get("containers") or []
                   if c.get("name") == name), container)
    resource = str(ref.get("resource") or "")
    kind, _, what = resource.partition(".")
    res = target.get("resources") or {}
    values = res.get(kind) or {} if kind in ("limits", "requests") else {}
    if what not in ("cpu", "memory", "ephemeral-storage") or kind not in ("limits", "requests"):
        raise EnvError(f"unsupported container resource : {resource}")
    raw = values.get(what)
    if raw is None and kind == "limits" and allocatable:
        raw = allocatable.get(what)
    try:
        amount = parse_quantity(raw if raw is not None else 0)
        divisor = parse_quantity(ref.get("divisor") or 1)
    except QuantityError as e:
        raise EnvError(str(e)) from None
    if divisor == 0:
        divisor = Decimal(1)
    if what == "cpu":
        # convertResourceCPUToString: in millicores, then ceil(cpu / divisor).
        millis, div_millis = math.ceil(amount * 1000), math.ceil(divisor * 1000)
        return str(math.ceil(Decimal(millis) / Decimal(div_millis or 1)))
    return str(math.ceil(math.ceil(amount) / Decimal(math.ceil(divisor) or 1)))


# --- ConfigMaps and Secrets ------------------------------------------------------------------


class _Objects:
    """The ConfigMaps and Secrets one resolution reads, each fetched once."""

    def __init__(self, client: ApiClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.cache: dict[tuple[str, str], Obj | None] = {}

    async def get(self, resource: str, name: str) -> Obj | None:
        """The object, or None if it does not exist; other API errors become EnvError."""
        key = (resource, name)
        if key not in self.cache:
            try:
                self.cache[key] = await self.client.get(resource, name, self.namespace)
            except errors.NotFound:
                self.cache[key] = None
            except errors.ApiError as e:
                raise EnvError(str(e)) from None
        return self.cache[key]


def not_found_message(resource: str, name: str) -> str:
    """The kubelet's object managers say `configmap "x" not found` / `secret "x" not found`
    (singular, unlike the apiserver's `configmaps "x" not found`)."""
    return f'{"configmap" if resource == "configmaps" else "secret"} "{name}" not found'


def secret_data(secret: Obj) -> dict[str, str]:
    """A Secret's data decoded (base64 on the wire) as text, as a container sees it."""
    out: dict[str, str] = {}
    for k, v in (secret.get("data") or {}).items():
        out[k] = base64.b64decode(v or "").decode("utf-8", errors="replace")
    return out


def is_env_var_name(name: str) -> bool:
    return bool(_ENV_VAR_NAME.match(name))


# --- Service links -----------------------------------------------------------------------------

# The Services whose variables every pod gets, whatever its namespace and enableServiceLinks
# (upstream's "master services").
MASTER_SERVICES = frozenset({"kubernetes"})


def _env_name(name: str) -> str:
    """upstream makeEnvVariableName: `my-svc` → `MY_SVC`."""
    return name.replace("-", "_").upper()


def _has_cluster_ip(service: Obj) -> bool:
    ip = (service.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def services_for_pod(services: Iterable[Obj], namespace: str,
                     enable_service_links: bool) -> list[Obj]:
    """The Services whose variables a pod in `namespace` gets: `default/kubernetes` always
    (unless its own namespace has a Service of that name and links are on), the others of its
    namespace when `enable_service_links`; headless ones never."""
    chosen: dict[str, Obj] = {}
    for svc in services:
        if not _has_cluster_ip(svc):
            continue
        md = svc.get("metadata") or {}
        name, ns = str(md.get("name") or ""), md.get("namespace") or "default"
        if ns == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif ns == namespace and enable_service_links:
            chosen[name] = svc
    return [chosen[name] for name in sorted(chosen)]


def _host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def service_env(services: Iterable[Obj]) -> dict[str, str]:
    """upstream envvars.FromServices: per Service `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT`
    (the first port), `<NAME>_SERVICE_PORT_<PORT NAME>` per named port, and the Docker-link
    variables `<NAME>_PORT` (the first port) and `<NAME>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]`
    per port."""
    env: dict[str, str] = {}
    for svc in services:
        if not _has_cluster_ip(svc):
            continue
        spec = svc.get("spec") or {}
        ip, ports = str(spec["clusterIP"]), list(spec.get("ports") or [])
        prefix = _env_name(str((svc.get("metadata") or {}).get("name") or ""))
        env[f"{prefix}_SERVICE_HOST"] = ip
        if not ports:
            continue
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
        for sp in ports:
            if sp.get("name"):
                env[f"{prefix}_SERVICE_PORT_{_env_name(str(sp['name']))}"] = str(sp.get("port"))
        for i, sp in enumerate(ports):
            proto = str(sp.get("protocol") or "TCP")
            port = int(sp.get("port") or 0)
            url = f"{proto.lower()}://{_host_port(ip, port)}"
            if i == 0:
                env[f"{prefix}_PORT"] = url  # Docker special-cases the first port
            base = f"{prefix}_PORT_{port}_{proto.upper()}"
            env[base] = url
            env[f"{base}_PROTO"] = proto.lower()
            env[f"{base}_PORT"] = str(port)
            env[f"{base}_ADDR"] = ip
    return env


# --- makeEnvironmentVariables -----------------------------------------------------------------


async def container_env(client: ApiClient, pod: Obj, container: Obj, *, pod_ip: str,
                        host_ip: str, node_name: str, pod_ips: list[str] | None = None,
                        host_ips: list[str] | None = None,
                        allocatable: Mapping[str, str] | None = None,
                        warnings: list[str] | None = None,
                        services: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """The container's environment as (name, value) pairs, in definition order (a later
    definition of a name replaces the earlier value in its first position), then the Service
    variables `services` (from `service_env`) the pod does not define itself.

    `warnings` (optional) collects the messages upstream records as
    `InvalidEnvironmentVariableNames` Warning events (envFrom keys that were skipped).
    Raises EnvError with upstream's message for an unresolvable, non-optional reference.
    `node_name` is the kubelet's own: spec.nodeName is normally the same.
    """
    md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    namespace = str(md.get("namespace") or "default")
    if not spec.get("nodeName"):
        pod = {**pod, "spec": {**spec, "nodeName": node_name}}
    objects = _Objects(client, namespace)
    env: dict[str, str] = {}

    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for field, resource, kind_word in (("configMapRef", "configmaps", "configMap"),
                                           ("secretRef", "secrets", "secret")):
            ref = source.get(field)
            if ref is None:
                continue
            name = str(ref.get("name") or "")
            obj = await objects.get(resource, name)
            if obj is None:
                if ref.get("optional"):
                    continue
                raise EnvError(not_found_message(resource, name))
            data = (obj.get("data") or {}) if resource == "configmaps" else secret_data(obj)
            invalid: list[str] = []
            for key, value in data.items():
                full = prefix + key
                if not is_env_var_name(full):
                    invalid.append(full)
                    continue
                env[full] = str(value)
            if invalid:
                msg = (f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {kind_word} "
                       f"{namespace}/{name} were skipped since they are considered invalid "
                       "environment variable names.")
                log.warning("pod %s/%s: %s", namespace, md.get("name"), msg)
                if warnings is not None:
                    warnings.append(msg)

    links = services or {}
    mapping = mapping_for(env, links)
    for var in container.get("env") or []:
        name = str(var.get("name") or "")
        value = var.get("value") or ""
        source = var.get("valueFrom")
        if value:
            value = expand_with(str(value), mapping)
        elif source:
            resolved = await _value_from(objects, pod, container, source, namespace,
                                         pod_ip=pod_ip, host_ip=host_ip, pod_ips=pod_ips,
                                         host_ips=host_ips, allocatable=allocatable)
            if resolved is None:
                continue  # optional and missing: the variable is not set at all
            value = resolved
        env[name] = value
    return [*env.items(), *((k, v) for k, v in links.items() if k not in env)]


async def _value_from(objects: _Objects, pod: Obj, container: Obj, source: Obj, namespace: str,
                      *, pod_ip: str, host_ip: str, pod_ips: list[str] | None,
                      host_ips: list[str] | None,
                      allocatable: Mapping[str, str] | None) -> str | None:
    if source.get("fieldRef"):
        try:
            return pod_field_value(pod, str(source["fieldRef"].get("fieldPath") or ""),
                                   pod_ip=pod_ip, host_ip=host_ip, pod_ips=pod_ips,
                                   host_ips=host_ips)
        except FieldPathError as e:
            raise EnvError(str(e)) from None
    if source.get("resourceFieldRef"):
        return resource_field_value(pod, container, source["resourceFieldRef"], allocatable)
    for field, resource, kind in (("configMapKeyRef", "configmaps", "ConfigMap"),
                                  ("secretKeyRef", "secrets", "Secret")):
        ref = source.get(field)
        if not ref:
            continue
        name, key = str(ref.get("name") or ""), str(ref.get("key") or "")
        optional = bool(ref.get("optional"))
        obj = await objects.get(resource, name)
        if obj is None:
            if optional:
                return None
            raise EnvError(not_found_message(resource, name))
        data = (obj.get("data") or {}) if resource == "configmaps" else secret_data(obj)
        if key not in data:
            if optional:
                return None
            raise EnvError(f"couldn't find key {key} in {kind} {namespace}/{name}")
        return str(data[key])
    return ""
