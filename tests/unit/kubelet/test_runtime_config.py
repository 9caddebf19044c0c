"""kubelet/runtime.py's pure parts: pod spec -> Docker config, docker inspect -> ContainerInfo."""

from __future__ import annotations

from typing import Any

import pytest

from kubelet import labels as L
from kubelet.runtime import Mount, container_config, info_from_inspect, pod_hostname

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {}}


def config(container: dict[str, Any], pod: dict[str, Any] | None = None,
           env: list[tuple[str, str]] | None = None) -> Any:
    return container_config(pod or POD, {"name": "c", "image": "img:1", **container},
                            sandbox_id="sb", restart_count=2, env=env or [], mounts=[],
                            node_name="n1")


@pytest.mark.parametrize(("resources", "expected"), [
    ({}, (None, None, 2)),
    ({"limits": {"cpu": "500m"}}, (50000, 100000, 512)),  # request defaults to the limit
    ({"limits": {"cpu": "2"}, "requests": {"cpu": "250m"}}, (200000, 100000, 256)),
    ({"limits": {"cpu": "1m"}, "requests": {"cpu": "1m"}}, (1000, 100000, 2)),  # minimums
    ({"requests": {"cpu": "0.1"}}, (None, None, 102)),
])
def test_cpu(resources: dict[str, Any], expected: tuple[Any, ...]) -> None:
    cfg = config({"resources": resources})
    assert (cfg.cpu_quota, cfg.cpu_period, cfg.cpu_shares) == expected


def test_memory_user_security_and_labels() -> None:
    pod = {**POD, "spec": {"securityContext": {"runAsUser": 5, "runAsGroup": 6},
                           "shareProcessNamespace": True}}
    cfg = config({"resources": {"limits": {"memory": "64Mi"}},
                  "securityContext": {"runAsUser": 7, "privileged": True,
                                      "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                                      "readOnlyRootFilesystem": True},
                  "workingDir": "/w", "tty": True, "stdin": True, "stdinOnce": True}, pod)
    assert cfg.memory_limit == 64 * 1024 * 1024
    assert cfg.user == "7:6" and cfg.privileged and cfg.read_only_rootfs and cfg.share_pid
    assert (cfg.cap_add, cfg.cap_drop) == (["NET_ADMIN"], ["ALL"])
    assert (cfg.working_dir, cfg.tty, cfg.stdin, cfg.stdin_once) == ("/w", True, True, True)
    assert cfg.name == "k8s_c_p_ns_u_2" and cfg.sandbox_id == "sb"
    assert cfg.labels[L.RESTART_COUNT] == "2" and cfg.labels[L.SANDBOX_ID] == "sb"
    assert cfg.labels[L.NODE_NAME] == "n1"
    assert config({}).user is None
    with pytest.raises(ValueError, match="quantities must match"):
        config({"resources": {"limits": {"memory": "lots"}}})


def test_command_args_and_expansion() -> None:
    env = [("A", "x"), ("B", "y")]
    cfg = config({"command": ["sh", "-c", "$(A)"], "args": ["$(B)", "$$(B)", "$(C)"]}, env=env)
    assert cfg.entrypoint == ["sh", "-c", "x"] and cfg.cmd == ["y", "$(B)", "$(C)"]
    assert cfg.env == env
    cfg = config({"args": ["a"]})
    assert cfg.entrypoint is None and cfg.cmd == ["a"]  # the image's ENTRYPOINT stays
    cfg = config({"command": [], "args": []})
    assert cfg.entrypoint is None and cfg.cmd is None
    m = Mount("/h", "/c", True)
    cfg = container_config(POD, {"name": "c", "image": "i"}, sandbox_id="s", restart_count=0,
                           env=[], mounts=[m], node_name="n")
    assert cfg.mounts == [m]


def test_hostname() -> None:
    assert pod_hostname(POD) == "p"
    assert pod_hostname({"metadata": {"name": "p"}, "spec": {"hostname": "h"}}) == "h"
    assert pod_hostname({"metadata": {"name": "a" * 62 + "-b"}}) == "a" * 62


def inspect(state: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"Id": "abc", "Name": "/k8s_c", "Created": "2024-05-01T10:00:00.123456789Z",
            "Image": "sha256:ff", "Config": {"Image": "img:1", "Labels": {L.POD_UID: "u"}},
            "State": {"StartedAt": "0001-01-01T00:00:00Z",
                      "FinishedAt": "0001-01-01T00:00:00Z", **state}, **extra}


def test_info_states() -> None:
    running = info_from_inspect(inspect({"Status": "running", "Running": True, "Pid": 42,
                                         "StartedAt": "2024-05-01T10:00:01.5Z"}))
    assert (running.state, running.pid, running.started_at, running.finished_at) == \
        ("running", 42, "2024-05-01T10:00:01Z", "")
    assert running.created_at == "2024-05-01T10:00:00Z"
    assert running.created == pytest.approx(1714557600.123456789)
    assert running.image_id == "docker://sha256:ff" and running.name == "k8s_c"
    assert running.pod_uid == "u" and running.restart_count == 0

    created = info_from_inspect(inspect({"Status": "created"}))
    assert (created.state, created.exit_code, created.reason) == ("created", None, "")

    done = {"Status": "exited", "StartedAt": "2024-05-01T10:00:01Z",
            "FinishedAt": "2024-05-01T10:00:02Z"}
    assert info_from_inspect(inspect({**done, "ExitCode": 0})).reason == "Completed"
    err = info_from_inspect(inspect({**done, "ExitCode": 2}))
    assert (err.state, err.exit_code, err.reason) == ("exited", 2, "Error")
    oom = info_from_inspect(inspect({**done, "ExitCode": 137, "OOMKilled": True}))
    assert oom.reason == "OOMKilled"

    # Docker could not start it: an exit code and an error, never started
    cannot = info_from_inspect(inspect({"Status": "created", "ExitCode": 127,
                                        "Error": "exec: no such file"}))
    assert (cannot.state, cannot.reason, cannot.message) == \
        ("exited", "ContainerCannotRun", "exec: no such file")
    assert cannot.finished_at == cannot.created_at
