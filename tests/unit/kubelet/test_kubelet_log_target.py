"""Which container `logs` reads, as upstream's kubelet (validateContainerLogStatus) picks it
from the status: in CrashLoopBackOff the newest, exited instance is both the current log and
`--previous` (it is the status' lastState); a container that never started says why."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from api import errors
from kubelet import labels as L
from kubelet.kubelet import Kubelet, PodState
from kubelet.runtime import ContainerInfo
from kubelet.status import Reason

POD = {"metadata": {"namespace": "ns", "name": "web", "uid": "u1"},
       "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def instance(cid: str, restarts: int, state: str) -> ContainerInfo:
    return ContainerInfo(
        id=cid, name=f"k8s_c_{restarts}", state=state, exit_code=1 if state == "exited" else None,
        labels={L.POD_UID: "u1", L.CONTAINER_NAME: "c", L.CONTAINER_TYPE: L.TYPE_CONTAINER,
                L.RESTART_COUNT: str(restarts)},
        reason="Error" if state == "exited" else "", message="", created_at="", started_at="",
        finished_at="", image="busybox", image_id="", pid=0, created=float(restarts))


def resolve(st: PodState, previous: bool) -> str:
    kubelet = SimpleNamespace(states={"u1": st})
    return Kubelet.resolve(kubelet, "ns", "web", None, previous)  # type: ignore[arg-type]


def test_crash_loop_back_off_previous_is_the_last_terminated_instance() -> None:
    st = PodState("u1", pod=POD, infos=[instance("old", 0, "exited"),
                                        instance("new", 1, "exited")],
                  reasons={"c": Reason("CrashLoopBackOff", "back-off 10s")})
    assert resolve(st, previous=False) == "new"
    assert resolve(st, previous=True) == "new"


def test_running_previous_is_the_instance_before() -> None:
    st = PodState("u1", pod=POD, infos=[instance("old", 0, "exited"),
                                        instance("new", 1, "running")])
    assert resolve(st, previous=False) == "new"
    assert resolve(st, previous=True) == "old"


def test_waiting_to_start_says_why() -> None:
    st = PodState("u1", pod=POD, reasons={"c": Reason("ImagePullBackOff", "Back-off")})
    with pytest.raises(errors.BadRequest) as e:
        resolve(st, previous=False)
    assert e.value.message == ('container "c" in pod "web" is waiting to start: trying and '
                               "failing to pull image")
    with pytest.raises(errors.BadRequest, match="waiting to start: ContainerCreating"):
        resolve(PodState("u1", pod=POD), previous=False)
    with pytest.raises(errors.BadRequest, match='previous terminated container "c"'):
        resolve(PodState("u1", pod=POD), previous=True)
