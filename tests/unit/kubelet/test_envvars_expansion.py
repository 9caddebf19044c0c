"""$(VAR) expansion and the downward API's pure parts, checked against upstream's own cases
(third_party/forked/golang/expansion/expand_test.go, fieldpath_test.go)."""

from __future__ import annotations

from typing import Any

import pytest

from kubelet.envvars import (
    EnvError,
    FieldPathError,
    expand,
    expand_with,
    extract_field_path,
    format_map,
    is_env_var_name,
    mapping_for,
    pod_field_value,
    resource_field_value,
)

ENV = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}
SERVICES = {"SVC_HOST": "10.0.0.1", "VAR_A": "service-a"}


@pytest.mark.parametrize(("text", "want"), [
    ("$(VAR_A)", "A"),
    ("___$(VAR_B)___", "___B___"),
    ("$(VAR_A)-1", "A-1"),
    ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
    ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
    ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
    ("f000-$$VAR_A", "f000-$VAR_A"),
    ("foo\\$(VAR_C)bar", "foo\\Cbar"),
    ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
    ("$(VAR_A)$(VAR_A)$(VAR_A)", "AAA"),
    ("$(VAR_EMPTY)", ""),
    ("$(VAR_DNE)", "$(VAR_DNE)"),          # undefined: left as written
    ("$(VAR_REF)", "$(VAR_A)"),            # no recursive expansion
    ("$(VAR_A", "$(VAR_A"),                # unclosed
    ("$(VAR_A)$(", "A$("),
    ("$VAR_A", "$VAR_A"),                  # not a reference
    ("$", "$"),
    ("$$", "$"),
    ("$$$", "$$"),
    ("$$$$", "$$"),
    ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
    ("$$$$$$$(VAR_A)", "$$$A"),
    ("$()", "$()"),
    ("$(VAR_A)))", "A))"),
    ("x$yz", "x$yz"),
    ("héllo $(VAR_B) wörld", "héllo B wörld"),
    ("", ""),
])
def test_expand_as_upstream(text: str, want: str) -> None:
    assert expand(text, ENV) == want


def test_first_context_wins_then_the_next() -> None:
    mapping = mapping_for(ENV, SERVICES)
    assert expand_with("$(VAR_A) $(SVC_HOST) $(NOPE)", mapping) == "A 10.0.0.1 $(NOPE)"


POD = {
    "metadata": {"name": "web-0", "namespace": "shop", "uid": "u-1",
                 "labels": {"app": "web", "tier": "front"},
                 "annotations": {"note": 'say "hi"\n'}},
    "spec": {"nodeName": "n1", "serviceAccountName": "runner",
             "containers": [{"name": "c", "resources": {
                 "limits": {"cpu": "500m", "memory": "128Mi"},
                 "requests": {"cpu": "250m", "memory": "64Mi"}}}]},
}


def test_field_paths() -> None:
    assert extract_field_path(POD, "metadata.name") == "web-0"
    assert extract_field_path(POD, "metadata.namespace") == "shop"
    assert extract_field_path(POD, "metadata.uid") == "u-1"
    assert extract_field_path(POD, "metadata.labels['tier']") == "front"
    assert extract_field_path(POD, "metadata.labels['missing']") == ""
    assert extract_field_path(POD, "metadata.labels") == 'app="web"\ntier="front"'
    assert extract_field_path(POD, "metadata.annotations") == 'note="say \\"hi\\"\\n"'
    with pytest.raises(FieldPathError, match="unsupported fieldPath: spec.nodeName"):
        extract_field_path(POD, "spec.nodeName")  # a downwardAPI volume cannot read it


def test_kubelet_only_fields() -> None:
    kw: dict[str, Any] = {"pod_ip": "10.1.0.5", "host_ip": "192.168.1.2"}
    assert pod_field_value(POD, "spec.nodeName", **kw) == "n1"
    assert pod_field_value(POD, "spec.serviceAccountName", **kw) == "runner"
    assert pod_field_value(POD, "status.podIP", **kw) == "10.1.0.5"
    assert pod_field_value(POD, "status.podIPs", **kw, pod_ips=["10.1.0.5", "fd00::5"]) == (
        "10.1.0.5,fd00::5")
    assert pod_field_value(POD, "status.hostIP", **kw) == "192.168.1.2"
    assert pod_field_value(POD, "status.hostIPs", **kw) == "192.168.1.2"
    assert pod_field_value(POD, "metadata.name", **kw) == "web-0"


def test_format_map_sorted() -> None:
    assert format_map({"b": "2", "a": "1"}) == 'a="1"\nb="2"'
    assert format_map({}) == ""


@pytest.mark.parametrize(("resource", "divisor", "want"), [
    ("limits.cpu", None, "1"),          # 500m rounded up to whole cores
    ("limits.cpu", "1m", "500"),
    ("requests.cpu", "1m", "250"),
    ("limits.memory", None, str(128 * 1024 * 1024)),
    ("limits.memory", "1Mi", "128"),
    ("requests.memory", "1Mi", "64"),
    ("requests.memory", "1Gi", "1"),    # rounded up
])
def test_resource_field_ref(resource: str, divisor: str | None, want: str) -> None:
    container = POD["spec"]["containers"][0]  # type: ignore[index]
    ref = {"resource": resource, **({"divisor": divisor} if divisor else {})}
    assert resource_field_value(POD, container, ref) == want


def test_resource_field_ref_unset_limit_uses_allocatable() -> None:
    container = {"name": "bare"}
    assert resource_field_value(POD, container, {"resource": "limits.memory"}) == "0"
    assert resource_field_value(POD, container, {"resource": "limits.cpu"},
                                {"cpu": "4"}) == "4"
    with pytest.raises(EnvError, match="unsupported container resource"):
        resource_field_value(POD, container, {"resource": "limits.gpu"})


@pytest.mark.parametrize(("name", "ok"), [
    ("PATH", True), ("my.var", True), ("-x", True), ("_a1", True),
    ("1ABC", False), ("a b", False), ("a=b", False), ("", False),
])
def test_env_var_names(name: str, ok: bool) -> None:
    assert is_env_var_name(name) is ok
