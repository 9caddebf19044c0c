"""The apiserver's checks before it proxies pods/log and pods/exec to a kubelet (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest

from api import errors
from apiserver.kubeletproxy import kubelet_address, validate_container


def pod(*names: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"metadata": {"name": "web"},
            "spec": {"containers": [{"name": n} for n in names],
                     "initContainers": [{"name": n} for n in init]}}


def test_the_only_container_is_the_default() -> None:
    assert validate_container(pod("app"), "") == "app"
    assert validate_container(pod("app", init=("setup",)), "") == "app"


def test_several_containers_need_a_name_upstream_wording() -> None:
    with pytest.raises(errors.BadRequest) as e:
        validate_container(pod("a", "b", init=("i",)), "")
    assert e.value.message == ("a container name must be specified for pod web, choose one of: "
                               "[i a b]")
    assert validate_container(pod("a", "b", init=("i",)), "i") == "i"


def test_unknown_container() -> None:
    with pytest.raises(errors.BadRequest) as e:
        validate_container(pod("a", "b"), "x")
    assert e.value.message == "container x is not valid for pod web"


def node(addresses: list[tuple[str, str]], port: int | None = 10250) -> dict[str, Any]:
    status: dict[str, Any] = {"addresses": [{"type": t, "address": a} for t, a in addresses]}
    if port is not None:
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": port}}
    return {"metadata": {"name": "n1"}, "status": status}


def test_kubelet_address_prefers_internal_ip() -> None:
    assert kubelet_address(node([("Hostname", "n1"), ("InternalIP", "10.0.0.5")], 1234)) == \
        "10.0.0.5:1234"
    assert kubelet_address(node([("Hostname", "n1")], None)) == "n1:10250"
    assert kubelet_address(node([("InternalIP", "fd00::5")], 10250)) == "[fd00::5]:10250"


def test_a_node_without_address_cannot_be_reached() -> None:
    with pytest.raises(errors.BadRequest, match='node "n1" has no address'):
        kubelet_address(node([]))
