"""The relist's cheap view of a container (`docker ps` only, no inspect): enough to tell which
pod it belongs to and whether its state changed."""

from __future__ import annotations

import pytest

from kubelet import labels as L
from kubelet.runtime import info_from_summary


def summary(state: str) -> dict[str, object]:
    return {"Id": "abc", "Names": ["/k8s_c_p_ns_u_0"], "Image": "img:1", "ImageID": "sha256:ff",
            "Created": 1714557600, "State": state,
            "Labels": {L.POD_UID: "u", L.CONTAINER_NAME: "c", L.RESTART_COUNT: "1"}}


@pytest.mark.parametrize(("docker_state", "state"), [
    ("running", "running"), ("paused", "running"), ("restarting", "running"),
    ("created", "created"), ("exited", "exited"), ("dead", "exited"), ("removing", "unknown"),
])
def test_summary_states(docker_state: str, state: str) -> None:
    info = info_from_summary(summary(docker_state))
    assert info.state == state
    assert info.exit_code is None and info.pid == 0  # not in the list: unknown, not invented


def test_summary_identity() -> None:
    info = info_from_summary(summary("running"))
    assert (info.id, info.name, info.image, info.image_id) == \
        ("abc", "k8s_c_p_ns_u_0", "img:1", "docker://sha256:ff")
    assert (info.pod_uid, info.container_name, info.restart_count) == ("u", "c", 1)
    assert info.created == 1714557600.0
