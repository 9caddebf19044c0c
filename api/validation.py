"""Semantic validation of objects, with Kubernetes' rules, field paths and messages.

The codec only checks shapes and types; whether a name is a valid DNS label, whether a
Deployment's selector matches its template, or whether a pod update touched an immutable field is
decided here. Messages follow upstream's `field.Error` wording (`Invalid value`, `Required value`,
`Duplicate value`, `Not found`, `Unsupported value`, `Forbidden`, `Too long`) so that a person who
knows Kubernetes' errors can read ours, and tests written against a real cluster's messages hold.

Validation runs after defaulting (as in the apiserver); unset optional fields are not errors here.
The object's namespace is filled from the request by the apiserver, so a namespaced object without
one is not reported.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from api import apps, authentication, authorization, coordination, core, rbac
from api.autoscaling import Scale
from api.errors import BadRequest, Cause
from api.meta import LabelSelector, ObjectMeta, TypedObject
from api.quantity import QuantityError, parse_quantity
from api.selectors import (
    DNS1123_SUBDOMAIN_FMT,
    DNS1123_SUBDOMAIN_MAX,
    from_label_selector,
    from_map,
    label_value_errors,
    qualified_name_errors,
)

# --------------------------------------------------------------------------------------------
# Value formatting and the error list
# --------------------------------------------------------------------------------------------


def go_quote(s: str) -> str:
    """Go's %q for the common cases (quotes, backslashes, control characters): how upstream
    quotes values in its messages."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def fmt_value(value: object) -> str:
    """A value as upstream's field errors print it (Go's %q / %#v): `"abc"`, `-1`, `true`,
    `map[string]string{"app":"nginx"}`, `[]string{"a", "b"}`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            inner = ", ".join(f"{go_quote(k)}:{go_quote(v)}" for k, v in sorted(value.items()))
            return "map[string]string{" + inner + "}"
        return "map[string]interface {}{...}"
    if isinstance(value, list | tuple):
        if all(isinstance(v, str) for v in value):
            return "[]string{" + ", ".join(go_quote(v) for v in value) + "}"
        return "[]interface {}{...}"
    return go_quote(str(value))


def _fmt_label_selector(sel: LabelSelector) -> str:
    ml = fmt_value(sel.match_labels) if sel.match_labels else "map[string]string(nil)"
    if sel.match_expressions:
        exprs = ", ".join(
            f"v1.LabelSelectorRequirement{{Key:{go_quote(e.key)}, "
            f"Operator:{go_quote(e.operator)}, Values:{fmt_value(e.values or [])}}}"
            for e in sel.match_expressions
        )
        me = f"[]v1.LabelSelectorRequirement{{{exprs}}}"
    else:
        me = "[]v1.LabelSelectorRequirement(nil)"
    return f"v1.LabelSelector{{MatchLabels:{ml}, MatchExpressions:{me}}}"


class _Errs:
    """Collects causes with upstream's field.Error message shapes."""

    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def invalid(self, path: str, value: object, detail: str, *, raw: bool = False) -> None:
        shown = value if raw and isinstance(value, str) else fmt_value(value)
        self.causes.append(Cause(path, f"Invalid value: {shown}: {detail}", "FieldValueInvalid"))

    def required(self, path: str, detail: str = "") -> None:
        msg = "Required value" + (f": {detail}" if detail else "")
        self.causes.append(Cause(path, msg, "FieldValueRequired"))

    def duplicate(self, path: str, value: object) -> None:
        self.causes.append(
            Cause(path, f"Duplicate value: {fmt_value(value)}", "FieldValueDuplicate")
        )

    def not_found(self, path: str, value: object) -> None:
        self.causes.append(Cause(path, f"Not found: {fmt_value(value)}", "FieldValueNotFound"))

    def not_supported(self, path: str, value: object, valid: Iterable[str]) -> None:
        opts = ", ".join(go_quote(v) for v in sorted(valid))
        self.causes.append(
            Cause(path, f"Unsupported value: {fmt_value(value)}: supported values: {opts}",
                  "FieldValueNotSupported")
        )

    def forbidden(self, path: str, detail: str) -> None:
        self.causes.append(Cause(path, f"Forbidden: {detail}", "FieldValueForbidden"))

    def too_long(self, path: str, limit: int) -> None:
        self.causes.append(
            Cause(path, f"Too long: must have at most {limit} bytes", "FieldValueTooLong")
        )

    def enum(self, path: str, value: str | None, valid: Iterable[str]) -> None:
        vals = set(valid)
        if value is not None and value not in vals:
            self.not_supported(path, value, vals)

    def non_negative(self, path: str, value: int | None) -> None:
        if value is not None and value < 0:
            self.invalid(path, value, "must be greater than or equal to 0")

    def at_least_one(self, path: str, value: int | None) -> None:
        if value is not None and value < 1:
            self.invalid(path, value, "must be greater than or equal to 1")


# --------------------------------------------------------------------------------------------
# Name syntax (k8s.io/apimachinery/pkg/util/validation)
# --------------------------------------------------------------------------------------------

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE = re.compile(f"^{DNS1123_LABEL_FMT}$")
_DNS1035_LABEL_RE = re.compile(f"^{DNS1035_LABEL_FMT}$")
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}$")
_CONFIG_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_PERCENT_RE = re.compile(r"^[0-9]+%$")
_IANA_RE = re.compile(r"^[-a-z0-9]+$")


def dns1123_subdomain_errors(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character (e.g. "
            f"'example.com', regex used for validation is '{DNS1123_SUBDOMAIN_FMT}')"
        )
    return errs


def dns1123_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1123_LABEL_RE.match(value):
        errs.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
            f"'123-abc', regex used for validation is '{DNS1123_LABEL_FMT}')"
        )
    return errs


def dns1035_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1035_LABEL_RE.match(value):
        errs.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character (e.g. "
            f"'my-name',  or 'abc-123', regex used for validation is '{DNS1035_LABEL_FMT}')"
        )
    return errs


def iana_svc_name_errors(value: str) -> list[str]:
    """IsValidPortName: the IANA service-name syntax used for container and probe port names."""
    errs = []
    if len(value) > 15:
        errs.append("must be no more than 15 characters")
    if not _IANA_RE.match(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if not re.search("[a-z]", value):
        errs.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def config_key_errors(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _CONFIG_KEY_RE.match(value):
        errs.append(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
            "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
            "'[-._a-zA-Z0-9]+')"
        )
    if value in (".", ".."):
        errs.append(f"must not be '{value}'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def path_segment_name_errors(value: str) -> list[str]:
    """IsValidPathSegmentName: RBAC names only need to fit in a URL path segment, which is why
    `system:kube-scheduler` is a valid ClusterRole name."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


NameCheck = Callable[[str], list[str]]

# Which name syntax each kind uses (upstream's ValidateXName functions).
_NAME_CHECKS: dict[str, NameCheck] = {
    "Namespace": dns1123_label_errors,
    "Service": dns1035_label_errors,
    "Role": path_segment_name_errors,
    "ClusterRole": path_segment_name_errors,
    "RoleBinding": path_segment_name_errors,
    "ClusterRoleBinding": path_segment_name_errors,
}
_CLUSTER_SCOPED = frozenset({"Namespace", "Node", "ClusterRole", "ClusterRoleBinding"})
# Kinds whose metadata is not an object's (subresource bodies, create-only reviews).
_NO_META_CHECK = frozenset({"Binding", "Scale", "TokenRequest", "TokenReview",
                            "SelfSubjectReview", "SubjectAccessReview",
                            "SelfSubjectAccessReview"})

MAX_ANNOTATIONS_BYTES = 256 * 1024
MAX_DATA_BYTES = 1024 * 1024
_MAX_INT32 = 2147483647


def _validate_port_number(e: _Errs, path: str, port: int) -> None:
    if not 1 <= port <= 65535:
        e.invalid(path, port, "must be between 1 and 65535, inclusive")


def _validate_int_or_name_port(e: _Errs, path: str, port: int | str) -> None:
    if isinstance(port, int):
        _validate_port_number(e, path, port)
    else:
        for msg in iana_svc_name_errors(port):
            e.invalid(path, port, msg)


def _validate_ip(e: _Errs, path: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        e.invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------


def _validate_labels(e: _Errs, path: str, labels: Mapping[str, str] | None) -> None:
    for k, v in (labels or {}).items():
        for msg in qualified_name_errors(k):
            e.invalid(path, k, msg)
        for msg in label_value_errors(v):
            e.invalid(path, v, msg)


def _validate_annotations(e: _Errs, path: str, annotations: Mapping[str, str] | None) -> None:
    total = 0
    for k, v in (annotations or {}).items():
        for msg in qualified_name_errors(k.lower()):
            e.invalid(path, k, msg)
        total += len(k.encode()) + len(v.encode())
    if total > MAX_ANNOTATIONS_BYTES:
        e.too_long(path, MAX_ANNOTATIONS_BYTES)


def _validate_meta(e: _Errs, kind: str, md: ObjectMeta, name_check: NameCheck | None) -> None:
    check = name_check or _NAME_CHECKS.get(kind, dns1123_subdomain_errors)
    if md.name:
        for msg in check(md.name):
            e.invalid("metadata.name", md.name, msg)
    elif md.generate_name:
        # generateName is a prefix: only its syntax without the trailing dash is checked.
        prefix = md.generate_name.rstrip("-") or "a"
        for msg in check(prefix):
            e.invalid("metadata.generateName", md.generate_name, msg)
    else:
        e.required("metadata.name", "name or generateName is required")
    if md.namespace:
        if kind in _CLUSTER_SCOPED:
            e.forbidden("metadata.namespace", "not allowed on this type")
        else:
            for msg in dns1123_label_errors(md.namespace):
                e.invalid("metadata.namespace", md.namespace, msg)
    e.non_negative("metadata.generation", md.generation)
    e.non_negative("metadata.deletionGracePeriodSeconds", md.deletion_grace_period_seconds)
    _validate_labels(e, "metadata.labels", md.labels)
    _validate_annotations(e, "metadata.annotations", md.annotations)
    controllers = 0
    for i, ref in enumerate(md.owner_references or []):
        p = f"metadata.ownerReferences[{i}]"
        for field, val in (("apiVersion", ref.api_version), ("kind", ref.kind),
                           ("name", ref.name), ("uid", ref.uid)):
            if not val:
                e.required(f"{p}.{field}", f"{field} must not be empty")
        if ref.controller:
            controllers += 1
    if controllers > 1:
        e.invalid("metadata.ownerReferences", f"{controllers} controllers",
                  "Only one reference can have Controller set to true")
    for i, fin in enumerate(md.finalizers or []):
        for msg in qualified_name_errors(fin):
            e.invalid(f"metadata.finalizers[{i}]", fin, msg)


def _validate_meta_update(e: _Errs, new: ObjectMeta, old: ObjectMeta) -> None:
    for field, n, o in (("name", new.name, old.name), ("namespace", new.namespace, old.namespace),
                        ("uid", new.uid, old.uid),
                        ("creationTimestamp", new.creation_timestamp, old.creation_timestamp)):
        # An unset value in the update means "keep"; the apiserver copies it from old.
        if o and n and n != o:
            e.invalid(f"metadata.{field}", n, "field is immutable")


# --------------------------------------------------------------------------------------------
# Pods
# --------------------------------------------------------------------------------------------

RESTART_POLICIES = ("Always", "OnFailure", "Never")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PROTOCOLS = ("TCP", "UDP", "SCTP")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                   "CharDevice", "BlockDevice")
NODE_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")


def _validate_volumes(e: _Errs, path: str, volumes: Sequence[core.Volume]) -> set[str]:
    names: set[str] = set()
    for i, v in enumerate(volumes):
        p = f"{path}[{i}]"
        if not v.name:
            e.required(f"{p}.name")
        else:
            for msg in dns1123_label_errors(v.name):
                e.invalid(f"{p}.name", v.name, msg)
            if v.name in names:
                e.duplicate(f"{p}.name", v.name)
            names.add(v.name)
        set_sources = [s for s in core.Volume.SOURCES if getattr(v, s) is not None]
        if not set_sources:
            e.required(p, "must specify a volume type")
        elif len(set_sources) > 1:
            alias = core.Volume.model_fields[set_sources[1]].alias or set_sources[1]
            e.forbidden(f"{p}.{alias}", "may not specify more than 1 volume type")
        if v.host_path is not None:
            if not v.host_path.path:
                e.required(f"{p}.hostPath.path")
            e.enum(f"{p}.hostPath.type", v.host_path.type, HOST_PATH_TYPES)
        if v.empty_dir is not None:
            e.enum(f"{p}.emptyDir.medium", v.empty_dir.medium, ("", "Memory", "HugePages"))
        for src_name, src in (("configMap", v.config_map), ("secret", v.secret)):
            if src is None:
                continue
            sp = f"{p}.{src_name}"
            ref = src.name if isinstance(src, core.ConfigMapVolumeSource) else src.secret_name
            if not ref:
                e.required(f"{sp}.{'name' if src_name == 'configMap' else 'secretName'}")
            _validate_mode(e, f"{sp}.defaultMode", src.default_mode)
            for j, item in enumerate(src.items or []):
                ip = f"{sp}.items[{j}]"
                if not item.key:
                    e.required(f"{ip}.key")
                if not item.path:
                    e.required(f"{ip}.path")
                elif item.path.startswith("/"):
                    e.invalid(f"{ip}.path", item.path, "must be a relative path")
                elif ".." in item.path.split("/"):
                    e.invalid(f"{ip}.path", item.path, "must not contain '..'")
                _validate_mode(e, f"{ip}.mode", item.mode)
    return names


def _validate_mode(e: _Errs, path: str, mode: int | None) -> None:
    if mode is not None and not 0 <= mode <= 0o777:
        e.invalid(path, mode, "must be a number between 0 and 0777 (octal), both inclusive")


def _validate_handler(e: _Errs, path: str, h: core.Probe | core.LifecycleHandler) -> None:
    candidates: list[tuple[str, object]] = [
        ("exec", h.exec), ("httpGet", h.http_get), ("tcpSocket", h.tcp_socket)]
    handlers = [(n, v) for n, v in candidates if v is not None]
    if isinstance(h, core.Probe) and h.grpc is not None:
        handlers.append(("grpc", h.grpc))
    if not handlers:
        e.required(path, "must specify a handler type")
    elif len(handlers) > 1:
        e.forbidden(f"{path}.{handlers[1][0]}", "may not specify more than 1 handler type")
    if h.exec is not None and not h.exec.command:
        e.required(f"{path}.exec.command")
    if h.http_get is not None:
        _validate_int_or_name_port(e, f"{path}.httpGet.port", h.http_get.port)
        e.enum(f"{path}.httpGet.scheme", h.http_get.scheme, ("HTTP", "HTTPS"))
        for j, hdr in enumerate(h.http_get.http_headers or []):
            if not re.fullmatch(r"[-A-Za-z0-9]+", hdr.name or ""):
                e.invalid(f"{path}.httpGet.httpHeaders[{j}].name", hdr.name,
                          "a valid HTTP header must consist of alphanumeric characters or '-' "
                          "(e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')")
    if h.tcp_socket is not None:
        _validate_int_or_name_port(e, f"{path}.tcpSocket.port", h.tcp_socket.port)


def _validate_probe(e: _Errs, path: str, probe: core.Probe | None, kind: str) -> None:
    if probe is None:
        return
    _validate_handler(e, path, probe)
    e.non_negative(f"{path}.initialDelaySeconds", probe.initial_delay_seconds)
    e.non_negative(f"{path}.timeoutSeconds", probe.timeout_seconds)
    e.non_negative(f"{path}.periodSeconds", probe.period_seconds)
    e.non_negative(f"{path}.successThreshold", probe.success_threshold)
    e.non_negative(f"{path}.failureThreshold", probe.failure_threshold)
    # After defaulting these are >= 1; a literal 0 from the user is rejected like upstream.
    e.at_least_one(f"{path}.timeoutSeconds", probe.timeout_seconds)
    e.at_least_one(f"{path}.periodSeconds", probe.period_seconds)
    e.at_least_one(f"{path}.successThreshold", probe.success_threshold)
    e.at_least_one(f"{path}.failureThreshold", probe.failure_threshold)
    if probe.termination_grace_period_seconds is not None:
        if kind == "readinessProbe":
            e.invalid(f"{path}.terminationGracePeriodSeconds",
                      probe.termination_grace_period_seconds,
                      "must not be set for readinessProbes")
        elif probe.termination_grace_period_seconds < 1:
            e.invalid(f"{path}.terminationGracePeriodSeconds",
                      probe.termination_grace_period_seconds, "must be greater than 0")
    if kind in ("livenessProbe", "startupProbe") and probe.success_threshold not in (None, 1):
        e.invalid(f"{path}.successThreshold", probe.success_threshold, "must be 1")


def _validate_resources(e: _Errs, path: str, res: core.ResourceRequirements | None) -> None:
    if res is None:
        return
    limits: dict[str, Any] = {}
    for field, values in (("limits", res.limits), ("requests", res.requests)):
        for name, q in (values or {}).items():
            p = f"{path}.{field}[{name}]"
            for msg in qualified_name_errors(name):
                e.invalid(p, name, msg)
            try:
                v = parse_quantity(q)
            except QuantityError as err:
                e.invalid(p, q, str(err))
                continue
            if v < 0:
                e.invalid(p, q, "must be greater than or equal to 0")
            if field == "limits":
                limits[name] = v
            elif name in limits and v > limits[name]:
                e.invalid(p, q, f"must be less than or equal to {name} limit of "
                          f"{res.limits[name] if res.limits else ''}")


def _validate_env(e: _Errs, path: str, env: Sequence[core.EnvVar]) -> None:
    for i, var in enumerate(env):
        p = f"{path}[{i}]"
        if not var.name:
            e.required(f"{p}.name")
        elif not _ENV_NAME_RE.match(var.name):
            e.invalid(f"{p}.name", var.name,
                      "a valid environment variable name must consist of alphabetic characters, "
                      "digits, '_', '-', or '.', and must not start with a digit (e.g. "
                      "'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for "
                      "validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')")
        vf = var.value_from
        if vf is None:
            continue
        if var.value:
            e.invalid(f"{p}.valueFrom", "", "may not be specified when `value` is not empty")
        sources = [s for s in (vf.field_ref, vf.resource_field_ref, vf.config_map_key_ref,
                               vf.secret_key_ref) if s is not None]
        if not sources:
            e.invalid(f"{p}.valueFrom", "",
                      "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` "
                      "or `secretKeyRef`")
        elif len(sources) > 1:
            e.invalid(f"{p}.valueFrom", "", "may not have more than one field specified at a time")
        if vf.field_ref is not None and not vf.field_ref.field_path:
            e.required(f"{p}.valueFrom.fieldRef.fieldPath")
        for ref_name, ref in (("configMapKeyRef", vf.config_map_key_ref),
                              ("secretKeyRef", vf.secret_key_ref)):
            if ref is None:
                continue
            if not ref.name:
                e.required(f"{p}.valueFrom.{ref_name}.name")
            if not ref.key:
                e.required(f"{p}.valueFrom.{ref_name}.key")
            else:
                for msg in config_key_errors(ref.key):
                    e.invalid(f"{p}.valueFrom.{ref_name}.key", ref.key, msg)


def _validate_container(e: _Errs, p: str, c: core.Container, volumes: set[str],
                        init: bool) -> None:
    if not c.image:
        e.required(f"{p}.image")
    e.enum(f"{p}.imagePullPolicy", c.image_pull_policy, PULL_POLICIES)
    e.enum(f"{p}.terminationMessagePolicy", c.termination_message_policy,
           ("File", "FallbackToLogsOnError"))
    port_names: set[str] = set()
    for j, port in enumerate(c.ports or []):
        pp = f"{p}.ports[{j}]"
        if port.name:
            for msg in iana_svc_name_errors(port.name):
                e.invalid(f"{pp}.name", port.name, msg)
            if port.name in port_names:
                e.duplicate(f"{pp}.name", port.name)
            port_names.add(port.name)
        _validate_port_number(e, f"{pp}.containerPort", port.container_port)
        if port.host_port:
            _validate_port_number(e, f"{pp}.hostPort", port.host_port)
        elif port.host_port is not None and port.host_port < 0:
            _validate_port_number(e, f"{pp}.hostPort", port.host_port)
        if port.host_ip:
            _validate_ip(e, f"{pp}.hostIP", port.host_ip)
        e.enum(f"{pp}.protocol", port.protocol, PROTOCOLS)
    _validate_env(e, f"{p}.env", c.env or [])
    for j, ef in enumerate(c.env_from or []):
        srcs = [s for s in (ef.config_map_ref, ef.secret_ref) if s is not None]
        if len(srcs) != 1:
            e.invalid(f"{p}.envFrom[{j}]", "", "must specify one of: `configMapRef` or "
                      "`secretRef`" if not srcs else
                      "may not have more than one field specified at a time")
    _validate_resources(e, f"{p}.resources", c.resources)
    mount_paths: set[str] = set()
    for j, vm in enumerate(c.volume_mounts or []):
        mp = f"{p}.volumeMounts[{j}]"
        if not vm.name:
            e.required(f"{mp}.name")
        elif vm.name not in volumes:
            e.not_found(f"{mp}.name", vm.name)
        if not vm.mount_path:
            e.required(f"{mp}.mountPath")
        elif vm.mount_path in mount_paths:
            e.invalid(f"{mp}.mountPath", vm.mount_path, "must be unique")
        else:
            mount_paths.add(vm.mount_path)
        if vm.sub_path and (vm.sub_path.startswith("/") or ".." in vm.sub_path.split("/")):
            e.invalid(f"{mp}.subPath", vm.sub_path, "must be a relative path without '..'")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        attr = {"livenessProbe": c.liveness_probe, "readinessProbe": c.readiness_probe,
                "startupProbe": c.startup_probe}[probe_name]
        if init and attr is not None:
            e.forbidden(f"{p}.{probe_name}", "may not be set for init containers")
            continue
        _validate_probe(e, f"{p}.{probe_name}", attr, probe_name)
    if c.lifecycle is not None:
        if init:
            e.forbidden(f"{p}.lifecycle", "may not be set for init containers")
        for hname, h in (("postStart", c.lifecycle.post_start), ("preStop", c.lifecycle.pre_stop)):
            if h is not None:
                _validate_handler(e, f"{p}.lifecycle.{hname}", h)
    sc = c.security_context
    if sc is not None:
        e.non_negative(f"{p}.securityContext.runAsUser", sc.run_as_user)
        e.non_negative(f"{p}.securityContext.runAsGroup", sc.run_as_group)
        if sc.privileged and sc.allow_privilege_escalation is False:
            e.invalid(f"{p}.securityContext", "",
                      "cannot set `allowPrivilegeEscalation` to false and `privileged` to true")


def _validate_node_selector_term(e: _Errs, p: str, term: core.NodeSelectorTerm) -> None:
    for field, reqs in (("matchExpressions", term.match_expressions),
                        ("matchFields", term.match_fields)):
        for k, r in enumerate(reqs or []):
            rp = f"{p}.{field}[{k}]"
            if field == "matchExpressions":
                for msg in qualified_name_errors(r.key):
                    e.invalid(f"{rp}.key", r.key, msg)
            elif r.key != "metadata.name":
                e.not_supported(f"{rp}.key", r.key, ("metadata.name",))
            if r.operator not in NODE_SELECTOR_OPS:
                e.not_supported(f"{rp}.operator", r.operator, NODE_SELECTOR_OPS)
                continue
            vals = r.values or []
            if r.operator in ("In", "NotIn") and not vals:
                e.required(f"{rp}.values",
                           "must be specified when `operator` is 'In' or 'NotIn'")
            elif r.operator in ("Exists", "DoesNotExist") and vals:
                e.forbidden(f"{rp}.values",
                            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
            elif r.operator in ("Gt", "Lt"):
                if len(vals) != 1:
                    e.required(f"{rp}.values",
                               "must be specified single value when `operator` is 'Lt' or 'Gt'")
                elif not re.fullmatch(r"[+-]?[0-9]+", vals[0]):
                    e.invalid(f"{rp}.values[0]", vals[0], "must be an integer")


def _validate_tolerations(e: _Errs, path: str, tolerations: Sequence[core.Toleration]) -> None:
    for i, t in enumerate(tolerations):
        p = f"{path}[{i}]"
        if t.key:
            for msg in qualified_name_errors(t.key):
                e.invalid(f"{p}.key", t.key, msg)
        op = t.operator
        if not t.key and op != "Exists":
            e.invalid(f"{p}.operator", op or "",
                      "operator must be Exists when `key` is empty, which means \"match all "
                      "values and all keys\"")
        if op in (None, "", "Equal"):
            if t.value:
                for msg in label_value_errors(t.value):
                    e.invalid(f"{p}.value", t.value, msg)
        elif op == "Exists":
            if t.value:
                e.invalid(f"{p}.operator", t.value,
                          "value must be empty when `operator` is 'Exists'")
        else:
            e.not_supported(f"{p}.operator", op, ("Equal", "Exists"))
        if t.effect:
            e.enum(f"{p}.effect", t.effect, TAINT_EFFECTS)
        if t.toleration_seconds is not None and t.effect != "NoExecute":
            e.invalid(f"{p}.effect", t.effect or "",
                      "effect must be 'NoExecute' when `tolerationSeconds` is set")


def validate_pod_spec(e: _Errs, path: str, spec: core.PodSpec, *, template: bool) -> None:
    volumes = _validate_volumes(e, f"{path}.volumes", spec.volumes or [])
    if not spec.containers:
        e.required(f"{path}.containers")
    names: set[str] = set()
    for field, containers, init in (("initContainers", spec.init_containers or [], True),
                                    ("containers", spec.containers or [], False)):
        for i, c in enumerate(containers):
            p = f"{path}.{field}[{i}]"
            if not c.name:
                e.required(f"{p}.name")
            else:
                for msg in dns1123_label_errors(c.name):
                    e.invalid(f"{p}.name", c.name, msg)
                if c.name in names:
                    e.duplicate(f"{p}.name", c.name)
                names.add(c.name)
            _validate_container(e, p, c, volumes, init)
    if template:
        # Controllers recreate pods forever; a template that lets them finish makes no sense.
        e.enum(f"{path}.restartPolicy", spec.restart_policy, ("Always",))
    else:
        e.enum(f"{path}.restartPolicy", spec.restart_policy, RESTART_POLICIES)
    e.enum(f"{path}.dnsPolicy", spec.dns_policy, DNS_POLICIES)
    e.non_negative(f"{path}.terminationGracePeriodSeconds", spec.termination_grace_period_seconds)
    ads = spec.active_deadline_seconds
    if ads is not None and not 1 <= ads <= _MAX_INT32:
        e.invalid(f"{path}.activeDeadlineSeconds", ads,
                  f"must be between 1 and {_MAX_INT32}, inclusive")
    _validate_labels(e, f"{path}.nodeSelector", spec.node_selector)
    for field, name in (("serviceAccountName", spec.service_account_name),
                        ("nodeName", spec.node_name)):
        if name:
            for msg in dns1123_subdomain_errors(name):
                e.invalid(f"{path}.{field}", name, msg)
    for field, name in (("hostname", spec.hostname), ("subdomain", spec.subdomain)):
        if name:
            for msg in dns1123_label_errors(name):
                e.invalid(f"{path}.{field}", name, msg)
    if spec.scheduler_name is not None and spec.scheduler_name:
        for msg in dns1123_subdomain_errors(spec.scheduler_name):
            e.invalid(f"{path}.schedulerName", spec.scheduler_name, msg)
    _validate_tolerations(e, f"{path}.tolerations", spec.tolerations or [])
    na = spec.affinity.node_affinity if spec.affinity else None
    if na is not None:
        ap = f"{path}.affinity.nodeAffinity"
        req = na.required_during_scheduling_ignored_during_execution
        if req is not None:
            rp = f"{ap}.requiredDuringSchedulingIgnoredDuringExecution"
            if not req.node_selector_terms:
                e.required(f"{rp}.nodeSelectorTerms", "must have at least one node selector term")
            for j, term in enumerate(req.node_selector_terms):
                _validate_node_selector_term(e, f"{rp}.nodeSelectorTerms[{j}]", term)
        for j, pref in enumerate(na.preferred_during_scheduling_ignored_during_execution or []):
            pp = f"{ap}.preferredDuringSchedulingIgnoredDuringExecution[{j}]"
            if not 1 <= pref.weight <= 100:
                e.invalid(f"{pp}.weight", pref.weight, "must be in the range 1-100")
            _validate_node_selector_term(e, f"{pp}.preference", pref.preference)
    for i, ips in enumerate(spec.image_pull_secrets or []):
        if not ips.name:
            e.required(f"{path}.imagePullSecrets[{i}].name")
    for i, ha in enumerate(spec.host_aliases or []):
        if ha.ip:
            _validate_ip(e, f"{path}.hostAliases[{i}].ip", ha.ip)


_POD_UPDATE_MSG = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def _validate_pod_update(e: _Errs, new: core.Pod, old: core.Pod) -> None:
    if new.spec is None or old.spec is None:
        return
    ns, os_ = new.spec, old.spec
    nads, oads = ns.active_deadline_seconds, os_.active_deadline_seconds
    if oads is not None:
        if nads is None:
            e.invalid("spec.activeDeadlineSeconds", None,
                      "must not update from a positive integer to nil value")
        elif nads > oads:
            e.invalid("spec.activeDeadlineSeconds", nads,
                      "must be less than or equal to previous value")
    old_tols = [t.to_dict() for t in os_.tolerations or []]
    new_tols = [t.to_dict() for t in ns.tolerations or []]
    tolerations_ok = all(t in new_tols for t in old_tols)
    if not tolerations_ok:
        e.forbidden("spec.tolerations", "existing toleration can not be modified except its "
                    "tolerationSeconds")
    # Compare the rest with the mutable fields masked out.
    mutable = ns.model_copy(deep=True)
    mutable.active_deadline_seconds = os_.active_deadline_seconds
    mutable.tolerations = os_.tolerations
    new_tgp, old_tgp = ns.termination_grace_period_seconds, os_.termination_grace_period_seconds
    if old_tgp is not None and old_tgp < 0 and new_tgp == 1:
        mutable.termination_grace_period_seconds = old_tgp
    for new_list, old_list in ((mutable.containers, os_.containers),
                               (mutable.init_containers or [], os_.init_containers or [])):
        if len(new_list) == len(old_list):
            for nc, oc in zip(new_list, old_list, strict=True):
                nc.image = oc.image
    if mutable.to_dict() != os_.to_dict():
        e.forbidden("spec", _POD_UPDATE_MSG)


# --------------------------------------------------------------------------------------------
# Kinds
# --------------------------------------------------------------------------------------------


def _validate_pod(e: _Errs, pod: core.Pod) -> None:
    if pod.spec is None:
        e.required("spec")
        return
    validate_pod_spec(e, "spec", pod.spec, template=False)


def _validate_template(e: _Errs, path: str, template: core.PodTemplateSpec | None,
                       selector: Any) -> None:
    """A controller's pod template: present, valid, and labelled so its selector matches."""
    if template is None:
        e.required(path)
        return
    labels = (template.metadata.labels if template.metadata else None) or {}
    _validate_labels(e, f"{path}.metadata.labels", labels)
    if template.metadata is not None:
        _validate_annotations(e, f"{path}.metadata.annotations", template.metadata.annotations)
    if selector is not None and not selector.empty and not selector.matches(labels):
        e.invalid(f"{path}.metadata.labels", labels, "`selector` does not match template `labels`")
    if template.spec is None:
        e.required(f"{path}.spec")
    else:
        validate_pod_spec(e, f"{path}.spec", template.spec, template=True)


def _validate_label_selector(e: _Errs, path: str, sel: LabelSelector) -> bool:
    ok = True
    _validate_labels(e, f"{path}.matchLabels", sel.match_labels)
    for i, r in enumerate(sel.match_expressions or []):
        p = f"{path}.matchExpressions[{i}]"
        for msg in qualified_name_errors(r.key):
            e.invalid(f"{p}.key", r.key, msg)
            ok = False
        if r.operator in ("In", "NotIn"):
            if not r.values:
                e.required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'")
                ok = False
        elif r.operator in ("Exists", "DoesNotExist"):
            if r.values:
                e.forbidden(f"{p}.values",
                            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
                ok = False
        else:
            e.invalid(f"{p}.operator", r.operator, "not a valid selector operator")
            ok = False
        for j, v in enumerate(r.values or []):
            for msg in label_value_errors(v):
                e.invalid(f"{p}.values[{j}]", v, msg)
                ok = False
    return ok and not any(label_value_errors(v) or qualified_name_errors(k)
                          for k, v in (sel.match_labels or {}).items())


def _validate_apps_workload(e: _Errs, kind: str, obj: apps.ReplicaSet | apps.Deployment) -> None:
    spec = obj.spec
    if spec is None:
        e.required("spec")
        return
    e.non_negative("spec.replicas", spec.replicas)
    e.non_negative("spec.minReadySeconds", spec.min_ready_seconds)
    matcher = None
    if spec.selector is None:
        e.required("spec.selector")
    else:
        ok = _validate_label_selector(e, "spec.selector", spec.selector)
        if not spec.selector.match_labels and not spec.selector.match_expressions:
            e.invalid("spec.selector", _fmt_label_selector(spec.selector),
                      f"empty selector is invalid for {kind.lower()}", raw=True)
        elif ok:
            try:
                matcher = from_label_selector(spec.selector)
            except BadRequest:
                matcher = None
    _validate_template(e, "spec.template", spec.template, matcher)


def _validate_deployment(e: _Errs, d: apps.Deployment) -> None:
    _validate_apps_workload(e, "Deployment", d)
    spec = d.spec
    if spec is None:
        return
    e.non_negative("spec.revisionHistoryLimit", spec.revision_history_limit)
    if spec.progress_deadline_seconds is not None:
        e.non_negative("spec.progressDeadlineSeconds", spec.progress_deadline_seconds)
        if spec.progress_deadline_seconds <= (spec.min_ready_seconds or 0):
            e.invalid("spec.progressDeadlineSeconds", spec.progress_deadline_seconds,
                      "must be greater than minReadySeconds")
    st = spec.strategy
    if st is None:
        return
    e.enum("spec.strategy.type", st.type, ("Recreate", "RollingUpdate"))
    if st.type == "Recreate" and st.rolling_update is not None:
        e.forbidden("spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'")
    ru = st.rolling_update
    if ru is None:
        return
    surge = _validate_int_or_percent(e, "spec.strategy.rollingUpdate.maxSurge", ru.max_surge)
    unavail = _validate_int_or_percent(e, "spec.strategy.rollingUpdate.maxUnavailable",
                                       ru.max_unavailable)
    if unavail is not None and isinstance(ru.max_unavailable, str) and unavail > 100:
        e.invalid("spec.strategy.rollingUpdate.maxUnavailable", ru.max_unavailable,
                  "must not be greater than 100%")
    if surge == 0 and unavail == 0:
        e.invalid("spec.strategy.rollingUpdate.maxUnavailable", ru.max_unavailable,
                  "may not be 0 when `maxSurge` is 0")


def _validate_int_or_percent(e: _Errs, path: str, v: int | str | None) -> int | None:
    """Checks an IntOrString that may be a percentage; returns its number (None if unset/bad)."""
    if v is None:
        return None
    if isinstance(v, int):
        if v < 0:
            e.invalid(path, v, "must be greater than or equal to 0")
            return None
        return v
    if not _PERCENT_RE.match(v):
        e.invalid(path, v, "a valid percent string must be a numeric string followed by an "
                  "ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")
        return None
    return int(v[:-1])


def _validate_rc(e: _Errs, rc: core.ReplicationController) -> None:
    spec = rc.spec
    if spec is None:
        e.required("spec")
        return
    e.non_negative("spec.replicas", spec.replicas)
    e.non_negative("spec.minReadySeconds", spec.min_ready_seconds)
    matcher = None
    if not spec.selector:
        e.required("spec.selector")
    else:
        _validate_labels(e, "spec.selector", spec.selector)
        try:
            matcher = from_map(spec.selector)
        except BadRequest:
            matcher = None
    _validate_template(e, "spec.template", spec.template, matcher)


SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


def _validate_service(e: _Errs, svc: core.Service) -> None:
    spec = svc.spec
    if spec is None:
        e.required("spec")
        return
    stype = spec.type or "ClusterIP"
    e.enum("spec.type", spec.type, SERVICE_TYPES)
    headless = spec.cluster_ip == "None"
    ports = spec.ports or []
    if not ports and stype != "ExternalName" and not headless:
        e.required("spec.ports")
    names: set[str] = set()
    seen: set[tuple[int, str]] = set()
    for i, port in enumerate(ports):
        p = f"spec.ports[{i}]"
        if len(ports) > 1 and not port.name:
            e.required(f"{p}.name")
        if port.name:
            for msg in dns1123_label_errors(port.name):
                e.invalid(f"{p}.name", port.name, msg)
            if port.name in names:
                e.duplicate(f"{p}.name", port.name)
            names.add(port.name)
        _validate_port_number(e, f"{p}.port", port.port)
        e.enum(f"{p}.protocol", port.protocol, PROTOCOLS)
        if port.target_port is not None:
            if isinstance(port.target_port, int) or port.target_port:
                _validate_int_or_name_port(e, f"{p}.targetPort", port.target_port)
        if port.node_port:
            if not 0 <= port.node_port <= 65535:
                e.invalid(f"{p}.nodePort", port.node_port,
                          "must be between 0 and 65535, inclusive")
            elif stype not in ("NodePort", "LoadBalancer"):
                e.forbidden(f"{p}.nodePort", f"may not be used when `type` is '{stype}'")
        key = (port.port, port.protocol or "TCP")
        if key in seen:
            e.duplicate(p, f"{port.port}/{port.protocol or 'TCP'}")
        seen.add(key)
    _validate_labels(e, "spec.selector", spec.selector)
    e.enum("spec.sessionAffinity", spec.session_affinity, ("ClientIP", "None"))
    cfg = spec.session_affinity_config
    if spec.session_affinity == "ClientIP":
        t = cfg.client_ip.timeout_seconds if cfg and cfg.client_ip else None
        if t is not None and not 0 < t <= 86400:
            e.invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", t,
                      "must be greater than 0 and less than 86400")
    elif cfg is not None and cfg.client_ip is not None and spec.session_affinity is not None:
        e.invalid("spec.sessionAffinityConfig", cfg.to_dict(),
                  f"must not be set when session affinity is {spec.session_affinity}")
    if stype == "ExternalName":
        if not spec.external_name:
            e.required("spec.externalName")
        else:
            for msg in dns1123_subdomain_errors(spec.external_name.rstrip(".")):
                e.invalid("spec.externalName", spec.external_name, msg)
        if spec.cluster_ip and spec.cluster_ip != "":
            e.forbidden("spec.clusterIP", "may not be set for ExternalName services")
    elif spec.external_name:
        pass  # upstream ignores externalName on other types (it is cleared on type change)
    if spec.cluster_ip and not headless:
        _validate_ip(e, "spec.clusterIP", spec.cluster_ip)
    if spec.cluster_ips and spec.cluster_ip and spec.cluster_ips[0] != spec.cluster_ip:
        e.invalid("spec.clusterIPs", spec.cluster_ips,
                  "first value must match `clusterIP`")
    for i, ip in enumerate(spec.cluster_ips or []):
        if ip != "None":
            _validate_ip(e, f"spec.clusterIPs[{i}]", ip)
    for i, ip in enumerate(spec.external_ips or []):
        _validate_ip(e, f"spec.externalIPs[{i}]", ip)
    if spec.external_traffic_policy is not None:
        if stype not in ("NodePort", "LoadBalancer"):
            e.invalid("spec.externalTrafficPolicy", spec.external_traffic_policy,
                      "may only be set when `type` is 'NodePort' or 'LoadBalancer'")
        else:
            e.enum("spec.externalTrafficPolicy", spec.external_traffic_policy,
                   ("Cluster", "Local"))
    e.enum("spec.internalTrafficPolicy", spec.internal_traffic_policy, ("Cluster", "Local"))
    e.enum("spec.ipFamilyPolicy", spec.ip_family_policy,
           ("SingleStack", "PreferDualStack", "RequireDualStack"))
    for i, fam in enumerate(spec.ip_families or []):
        e.enum(f"spec.ipFamilies[{i}]", fam, ("IPv4", "IPv6"))


def _validate_service_update(e: _Errs, new: core.Service, old: core.Service) -> None:
    if new.spec is None or old.spec is None:
        return
    # Changing to/from ExternalName releases/allocates the cluster IP, as upstream allows.
    if "ExternalName" in (new.spec.type, old.spec.type):
        return
    if old.spec.cluster_ip and new.spec.cluster_ip != old.spec.cluster_ip:
        e.invalid("spec.clusterIP", new.spec.cluster_ip or "", "field is immutable")


def _validate_endpoints(e: _Errs, ep: core.Endpoints) -> None:
    for i, ss in enumerate(ep.subsets or []):
        p = f"subsets[{i}]"
        if not ss.addresses and not ss.not_ready_addresses:
            e.required(p, "must specify `addresses` or `notReadyAddresses`")
        for field, addrs in (("addresses", ss.addresses), ("notReadyAddresses",
                                                           ss.not_ready_addresses)):
            for j, a in enumerate(addrs or []):
                _validate_ip(e, f"{p}.{field}[{j}].ip", a.ip)
                if a.hostname:
                    for msg in dns1123_label_errors(a.hostname):
                        e.invalid(f"{p}.{field}[{j}].hostname", a.hostname, msg)
        ports = ss.ports or []
        names: set[str] = set()
        for j, port in enumerate(ports):
            pp = f"{p}.ports[{j}]"
            if len(ports) > 1 and not port.name:
                e.required(f"{pp}.name")
            if port.name:
                for msg in dns1123_label_errors(port.name):
                    e.invalid(f"{pp}.name", port.name, msg)
                if port.name in names:
                    e.duplicate(f"{pp}.name", port.name)
                names.add(port.name)
            _validate_port_number(e, f"{pp}.port", port.port)
            e.enum(f"{pp}.protocol", port.protocol, PROTOCOLS)


def _validate_node(e: _Errs, node: core.Node) -> None:
    spec = node.spec
    if spec is not None:
        seen: set[tuple[str, str]] = set()
        for i, t in enumerate(spec.taints or []):
            p = f"spec.taints[{i}]"
            if not t.key:
                e.required(f"{p}.key")
            else:
                for msg in qualified_name_errors(t.key):
                    e.invalid(f"{p}.key", t.key, msg)
            if t.value:
                for msg in label_value_errors(t.value):
                    e.invalid(f"{p}.value", t.value, msg)
            if not t.effect:
                e.required(f"{p}.effect")
            else:
                e.enum(f"{p}.effect", t.effect, TAINT_EFFECTS)
            if (t.key, t.effect) in seen:
                e.duplicate(p, f"{t.key}:{t.effect}")
            seen.add((t.key, t.effect))
        cidrs = ([spec.pod_cidr] if spec.pod_cidr else []) + list(spec.pod_cidrs or [])
        for i, cidr in enumerate(cidrs):
            path = "spec.podCIDR" if spec.pod_cidr and i == 0 else (
                f"spec.podCIDRs[{i - (1 if spec.pod_cidr else 0)}]")
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                e.invalid(path, cidr, "must be a valid CIDR")
    if node.status is not None:
        for field, values in (("capacity", node.status.capacity),
                              ("allocatable", node.status.allocatable)):
            for name, q in (values or {}).items():
                try:
                    if parse_quantity(q) < 0:
                        e.invalid(f"status.{field}[{name}]", q,
                                  "must be greater than or equal to 0")
                except QuantityError as err:
                    e.invalid(f"status.{field}[{name}]", q, str(err))


def _validate_namespace(e: _Errs, ns: core.Namespace) -> None:
    for i, fin in enumerate((ns.spec.finalizers if ns.spec else None) or []):
        for msg in qualified_name_errors(fin):
            e.invalid(f"spec.finalizers[{i}]", fin, msg)
    if ns.status is not None:
        e.enum("status.phase", ns.status.phase, ("Active", "Terminating"))


def _data_size(*maps: Mapping[str, str] | None) -> int:
    return sum(len(k) + len(v) for m in maps for k, v in (m or {}).items())


def _validate_keys(e: _Errs, field: str, keys: Iterable[str]) -> None:
    for k in keys:
        for msg in config_key_errors(k):
            e.invalid(f"{field}[{k}]", k, msg)


def _validate_base64(e: _Errs, field: str, data: Mapping[str, str] | None) -> None:
    for k, v in (data or {}).items():
        try:
            base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            e.invalid(f"{field}[{k}]", "<value omitted>" if field == "data" else v,
                      "illegal base64 data", raw=True)


def _validate_configmap(e: _Errs, cm: core.ConfigMap) -> None:
    _validate_keys(e, "data", (cm.data or {}).keys())
    _validate_keys(e, "binaryData", (cm.binary_data or {}).keys())
    for k in (cm.data or {}).keys() & (cm.binary_data or {}).keys():
        e.invalid(f"data[{k}]", k, "duplicate of key present in binaryData")
    _validate_base64(e, "binaryData", cm.binary_data)
    if _data_size(cm.data, cm.binary_data) > MAX_DATA_BYTES:
        e.too_long("", MAX_DATA_BYTES)


SECRET_TYPE_REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def _validate_secret(e: _Errs, s: core.Secret) -> None:
    data = dict(s.data or {})
    _validate_keys(e, "data", data.keys())
    _validate_keys(e, "stringData", (s.string_data or {}).keys())
    _validate_base64(e, "data", s.data)
    if _data_size(s.data, s.string_data) > MAX_DATA_BYTES:
        e.too_long("data", MAX_DATA_BYTES)
    stype = s.type or "Opaque"
    present = set(data) | set(s.string_data or {})
    for key in SECRET_TYPE_REQUIRED_KEYS.get(stype, ()):
        if key not in present:
            e.required(f"data[{key}]")
    if stype == "kubernetes.io/service-account-token":
        if not (s.metadata.annotations or {}).get("kubernetes.io/service-account.name"):
            e.required("metadata.annotations[kubernetes.io/service-account.name]")
    if stype == "kubernetes.io/basic-auth" and not present & {"username", "password"}:
        e.required("data[username]", "either username or password or both must be provided")


def _validate_immutable_data(e: _Errs, new: core.ConfigMap | core.Secret,
                             old: core.ConfigMap | core.Secret) -> None:
    if not old.immutable:
        return
    if not new.immutable:
        e.forbidden("immutable", "field is immutable when `immutable` is set")
    fields: list[tuple[str, Any, Any]] = [("data", new.data, old.data)]
    if isinstance(new, core.ConfigMap) and isinstance(old, core.ConfigMap):
        fields.append(("binaryData", new.binary_data, old.binary_data))
    if isinstance(new, core.Secret) and new.string_data:
        fields.append(("stringData", new.string_data, None))
    for field, n, o in fields:
        if (n or {}) != (o or {}):
            e.forbidden(field, "field is immutable when `immutable` is set")


def _validate_lease(e: _Errs, lease: coordination.Lease) -> None:
    spec = lease.spec
    if spec is None:
        return
    if spec.lease_duration_seconds is not None and spec.lease_duration_seconds <= 0:
        e.invalid("spec.leaseDurationSeconds", spec.lease_duration_seconds,
                  "must be greater than 0")
    e.non_negative("spec.leaseTransitions", spec.lease_transitions)


def _validate_event(e: _Errs, ev: core.Event) -> None:
    io = ev.involved_object
    if io.namespace and ev.metadata.namespace and io.namespace != ev.metadata.namespace:
        e.invalid("involvedObject.namespace", io.namespace, "does not match event.namespace")
    e.non_negative("count", ev.count)


def _validate_service_account(e: _Errs, sa: core.ServiceAccount) -> None:
    for i, ref in enumerate(sa.secrets or []):
        if ref.name:
            for msg in dns1123_subdomain_errors(ref.name):
                e.invalid(f"secrets[{i}].name", ref.name, msg)


def _validate_binding(e: _Errs, b: core.Binding) -> None:
    if not b.target.name:
        e.required("target.name")
    if b.target.kind and b.target.kind != "Node":
        e.not_supported("target.kind", b.target.kind, ("Node",))


def _validate_scale(e: _Errs, s: Scale) -> None:
    e.non_negative("spec.replicas", s.spec.replicas if s.spec else None)


# --------------------------------------------------------------------------------------------
# RBAC (pkg/apis/rbac/validation) and the review kinds
# --------------------------------------------------------------------------------------------

_ROLE_KINDS = ("Role", "ClusterRole")
_SUBJECT_KINDS = (rbac.SERVICE_ACCOUNT_KIND, rbac.USER_KIND, rbac.GROUP_KIND)


def _validate_policy_rule(e: _Errs, p: str, rule: rbac.PolicyRule, namespaced: bool) -> None:
    if not rule.verbs:
        e.required(f"{p}.verbs", "verbs must contain at least one value")
    if rule.non_resource_urls:
        if namespaced:
            e.invalid(f"{p}.nonResourceURLs", rule.non_resource_urls,
                      "namespaced rules cannot apply to non-resource URLs")
        if rule.api_groups or rule.resources or rule.resource_names:
            e.invalid(f"{p}.nonResourceURLs", rule.non_resource_urls,
                      "rules cannot apply to both regular resources and non-resource URLs")
        return
    if not rule.api_groups:
        e.required(f"{p}.apiGroups", "resource rules must supply at least one api group")
    if not rule.resources:
        e.required(f"{p}.resources", "resource rules must supply at least one resource")


def _validate_role(e: _Errs, role: rbac.Role | rbac.ClusterRole) -> None:
    namespaced = isinstance(role, rbac.Role)
    for i, rule in enumerate(role.rules or []):
        _validate_policy_rule(e, f"rules[{i}]", rule, namespaced)
    agg = role.aggregation_rule if isinstance(role, rbac.ClusterRole) else None
    if agg is not None:
        if not agg.cluster_role_selectors:
            e.required("aggregationRule.clusterRoleSelectors",
                       "at least one clusterRoleSelector required if aggregationRule is non-nil")
        for i, sel in enumerate(agg.cluster_role_selectors or []):
            _validate_label_selector(e, f"aggregationRule.clusterRoleSelectors[{i}]", sel)


def _validate_subject(e: _Errs, p: str, s: rbac.Subject, namespaced: bool) -> None:
    if not s.name:
        e.required(f"{p}.name")
    if s.kind == rbac.SERVICE_ACCOUNT_KIND:
        for msg in dns1123_subdomain_errors(s.name) if s.name else []:
            e.invalid(f"{p}.name", s.name, msg)
        if s.api_group:
            e.not_supported(f"{p}.apiGroup", s.api_group, ("",))
        # A RoleBinding's ServiceAccount subject without a namespace means the binding's own.
        if not namespaced and not s.namespace:
            e.required(f"{p}.namespace")
    elif s.kind in (rbac.USER_KIND, rbac.GROUP_KIND):
        if s.api_group != rbac.GROUP:
            e.not_supported(f"{p}.apiGroup", s.api_group or "", (rbac.GROUP,))
    else:
        e.not_supported(f"{p}.kind", s.kind, _SUBJECT_KINDS)


def _fmt_role_ref(ref: rbac.RoleRef) -> str:
    return (f"rbac.RoleRef{{APIGroup:{go_quote(ref.api_group)}, Kind:{go_quote(ref.kind)}, "
            f"Name:{go_quote(ref.name)}}}")


def _validate_role_binding(e: _Errs, b: rbac.RoleBinding | rbac.ClusterRoleBinding,
                           old: TypedObject | None) -> None:
    namespaced = isinstance(b, rbac.RoleBinding)
    ref = b.role_ref
    if ref.api_group != rbac.GROUP:
        e.not_supported("roleRef.apiGroup", ref.api_group, (rbac.GROUP,))
    kinds = _ROLE_KINDS if namespaced else ("ClusterRole",)
    if ref.kind not in kinds:
        e.not_supported("roleRef.kind", ref.kind, kinds)
    if not ref.name:
        e.required("roleRef.name")
    for msg in path_segment_name_errors(ref.name) if ref.name else []:
        e.invalid("roleRef.name", ref.name, msg)
    for i, s in enumerate(b.subjects or []):
        _validate_subject(e, f"subjects[{i}]", s, namespaced)
    if isinstance(old, rbac.RoleBinding | rbac.ClusterRoleBinding) and old.role_ref != ref:
        e.invalid("roleRef", _fmt_role_ref(ref), "cannot change roleRef", raw=True)


def _validate_review_meta(e: _Errs, obj: TypedObject) -> None:
    """Access reviews are questions, not objects: upstream refuses any metadata on them."""
    md = obj.metadata.to_dict()
    if md:
        e.invalid("metadata", md, "must be empty")


def _validate_access_review(
    e: _Errs, r: authorization.SubjectAccessReview | authorization.SelfSubjectAccessReview
) -> None:
    _validate_review_meta(e, r)
    spec = r.spec
    if spec.resource_attributes is not None and spec.non_resource_attributes is not None:
        e.invalid("spec.nonResourceAttributes", spec.non_resource_attributes.to_dict(),
                  "cannot be specified in combination with resourceAttributes")
    if spec.resource_attributes is None and spec.non_resource_attributes is None:
        e.invalid("spec.resourceAttributes", None,
                  "exactly one of nonResourceAttributes or resourceAttributes must be specified")
    if isinstance(spec, authorization.SubjectAccessReviewSpec) and not spec.user and not (
        spec.groups
    ):
        e.invalid("spec.user", spec.user or "", "at least one of user or group must be specified")


def _validate_token_request(e: _Errs, tr: authentication.TokenRequest) -> None:
    # The lower bound (upstream: 10 minutes) is the apiserver's
    # --service-account-min-token-expiration flag, so it is checked there, not here.
    seconds = tr.spec.expiration_seconds
    if seconds is not None and seconds <= 0:
        e.invalid("spec.expirationSeconds", seconds, "must be greater than 0")
    if seconds is not None and seconds > authentication.MAX_EXPIRATION_SECONDS:
        e.invalid("spec.expirationSeconds", seconds,
                  "may not specify a duration larger than 2^32 seconds")
    ref = tr.spec.bound_object_ref
    if ref is not None and not ref.name:
        e.required("spec.boundObjectRef.name")


def _validate_security(e: _Errs, obj: TypedObject, old: TypedObject | None) -> None:
    """The RBAC kinds and the authentication/authorization request kinds."""
    if isinstance(obj, rbac.Role | rbac.ClusterRole):
        _validate_role(e, obj)
    elif isinstance(obj, rbac.RoleBinding | rbac.ClusterRoleBinding):
        _validate_role_binding(e, obj, old)
    elif isinstance(obj, authorization.SubjectAccessReview
                    | authorization.SelfSubjectAccessReview):
        _validate_access_review(e, obj)
    elif isinstance(obj, authentication.TokenRequest):
        _validate_token_request(e, obj)


def validate(kind: str, obj: TypedObject, old: TypedObject | None = None) -> list[Cause]:
    """Every reason `obj` (a `kind`) is invalid; on update pass the stored `old` too.

    Returns an empty list for a valid object. Raise `api.errors.invalid(kind, name, causes)`
    with the result to answer the client.
    """
    e = _Errs()
    if kind not in _NO_META_CHECK:
        _validate_meta(e, kind, obj.metadata, None)
    elif kind in ("Binding", "Scale") and not obj.metadata.name:
        e.required("metadata.name")
    if old is not None:
        _validate_meta_update(e, obj.metadata, old.metadata)
    if isinstance(obj, core.Pod):
        _validate_pod(e, obj)
        if isinstance(old, core.Pod):
            _validate_pod_update(e, obj, old)
    elif isinstance(obj, apps.Deployment):
        _validate_deployment(e, obj)
    elif isinstance(obj, apps.ReplicaSet):
        _validate_apps_workload(e, "ReplicaSet", obj)
    elif isinstance(obj, core.ReplicationController):
        _validate_rc(e, obj)
    elif isinstance(obj, core.Service):
        _validate_service(e, obj)
        if isinstance(old, core.Service):
            _validate_service_update(e, obj, old)
    elif isinstance(obj, core.Endpoints):
        _validate_endpoints(e, obj)
    elif isinstance(obj, core.Node):
        _validate_node(e, obj)
    elif isinstance(obj, core.Namespace):
        _validate_namespace(e, obj)
    elif isinstance(obj, core.ConfigMap):
        _validate_configmap(e, obj)
        if isinstance(old, core.ConfigMap):
            _validate_immutable_data(e, obj, old)
    elif isinstance(obj, core.Secret):
        _validate_secret(e, obj)
        if isinstance(old, core.Secret):
            _validate_immutable_data(e, obj, old)
            if (old.type or "Opaque") != (obj.type or "Opaque"):
                e.invalid("type", obj.type or "", "field is immutable")
    elif isinstance(obj, coordination.Lease):
        _validate_lease(e, obj)
    elif isinstance(obj, core.Event):
        _validate_event(e, obj)
    elif isinstance(obj, core.ServiceAccount):
        _validate_service_account(e, obj)
    elif isinstance(obj, core.Binding):
        _validate_binding(e, obj)
    elif isinstance(obj, Scale):
        _validate_scale(e, obj)
    else:
        _validate_security(e, obj, old)
    if old is not None and isinstance(obj, apps.ReplicaSet | apps.Deployment) and isinstance(
        old, apps.ReplicaSet | apps.Deployment
    ):
        n_sel = obj.spec.selector if obj.spec else None
        o_sel = old.spec.selector if old.spec else None
        if o_sel is not None and n_sel is not None and n_sel.to_dict() != o_sel.to_dict():
            e.invalid("spec.selector", _fmt_label_selector(n_sel), "field is immutable", raw=True)
    return e.causes
