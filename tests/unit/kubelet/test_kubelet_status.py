"""generateAPIPodStatus / getPhase: the pod status the kubelet reports."""

from __future__ import annotations

from typing import Any

from kubelet_fakes import ctr, pod, sandbox

from kubelet.status import Reason, StatusManager, generate_pod_status, get_phase, same_status

NOW = "2024-01-01T00:01:00Z"


def gen(p: dict[str, Any], cs: list[Any], **kw: Any) -> dict[str, Any]:
    kw.setdefault("pod_ip", "10.1.0.5")
    return generate_pod_status(p, cs, host_ip="192.0.2.1", now=NOW, sandbox_ready=True, **kw)


def cond(st: dict[str, Any], t: str) -> dict[str, Any]:
    return next(c for c in st["conditions"] if c["type"] == t)


def test_running_ready_pod() -> None:
    c = ctr("a")
    st = gen(pod("a"), [sandbox(), c])
    assert st["phase"] == "Running" and st["podIP"] == "10.1.0.5"
    assert st["hostIPs"] == [{"ip": "192.0.2.1"}] and st["startTime"] == NOW
    assert cond(st, "Ready")["status"] == "True" and cond(st, "Initialized")["status"] == "True"
    assert cond(st, "PodScheduled")["lastTransitionTime"] == "T0"
    assert st["qosClass"] == "BestEffort"
    cs = st["containerStatuses"][0]
    assert cs["state"]["running"]["startedAt"] == "2024-01-01T00:00:01Z"
    assert cs["ready"] and cs["started"] and cs["containerID"] == f"docker://{c.id}"
    assert cs["image"] == "img-a" and cs["imageID"] == "docker://sha256:abc"


def test_not_ready_from_prober() -> None:
    st = gen(pod("a", "b"), [sandbox(), ctr("a"), ctr("b")],
             ready=lambda n, cid: n == "a")
    r = cond(st, "Ready")
    assert r["status"] == "False" and r["reason"] == "ContainersNotReady"
    assert r["message"] == "containers with unready status: [b]"


def test_pending_container_creating() -> None:
    st = gen(pod("a"), [], pod_ip=None)
    assert st["phase"] == "Pending" and "podIP" not in st
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    st = gen(pod("a", inits=("i",)), [])
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert cond(st, "Initialized")["message"] == "containers with incomplete status: [i]"


def test_never_exit_3_failed() -> None:
    st = gen(pod("a", policy="Never"), [sandbox(), ctr("a", "exited", 3)])
    assert st["phase"] == "Failed"
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert cond(st, "Ready")["reason"] == "PodFailed"


def test_onfailure_exit_0_succeeded() -> None:
    st = gen(pod("a", policy="OnFailure"), [sandbox(), ctr("a", "exited", 0)])
    assert st["phase"] == "Succeeded"
    assert cond(st, "Ready")["reason"] == "PodCompleted"


def test_crash_loop_status() -> None:
    cs = [sandbox(), ctr("a", "exited", 1, restarts=0), ctr("a", "exited", 1, restarts=1)]
    msg = "back-off 10s restarting failed container=a pod=p_ns(u1)"
    st = gen(pod("a"), cs, reasons={"a": Reason("CrashLoopBackOff", msg)})
    assert st["phase"] == "Running"
    s = st["containerStatuses"][0]
    assert s["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
    assert s["lastState"]["terminated"]["exitCode"] == 1
    assert s["restartCount"] == 1 and not s["ready"]


def test_last_state_is_previous_container() -> None:
    old = ctr("a", "exited", 2, restarts=0)
    st = gen(pod("a"), [sandbox(), old, ctr("a", "running", restarts=1)])
    s = st["containerStatuses"][0]
    assert "running" in s["state"] and s["restartCount"] == 1
    assert s["lastState"]["terminated"]["containerID"] == f"docker://{old.id}"


def test_image_errors_are_waiting() -> None:
    st = gen(pod("a"), [sandbox()], reasons={"a": Reason("ErrImageNeverPull", "no")})
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    assert st["phase"] == "Pending"


def test_transition_times_kept_and_foreign_conditions_kept() -> None:
    p = pod("a")
    st1 = gen(p, [sandbox(), ctr("a")])
    p["status"] = {**st1, "conditions": [*st1["conditions"],
                                         {"type": "DisruptionTarget", "status": "True"}]}
    st2 = generate_pod_status(p, [sandbox(), ctr("a")], pod_ip="10.1.0.5",
                              host_ip="192.0.2.1", now="LATER", sandbox_ready=True)
    assert cond(st2, "Ready")["lastTransitionTime"] == NOW
    assert cond(st2, "DisruptionTarget")["status"] == "True"
    assert st2["startTime"] == NOW
    st3 = generate_pod_status(p, [sandbox(), ctr("a")], pod_ip="10.1.0.5", host_ip="192.0.2.1",
                              now="LATER", sandbox_ready=True, ready=lambda n, c: False)
    assert cond(st3, "Ready")["lastTransitionTime"] == "LATER"


def test_terminal_phase_sticks() -> None:
    p = pod("a", policy="Never")
    p["status"]["phase"] = "Failed"
    assert gen(p, [])["phase"] == "Failed"


def test_readiness_gates() -> None:
    p = pod("a", readinessGates=[{"conditionType": "x/y"}])
    r = cond(gen(p, [sandbox(), ctr("a")]), "Ready")
    assert r["reason"] == "ReadinessGatesNotReady"
    assert cond(gen(p, [sandbox(), ctr("a")]), "ContainersReady")["status"] == "True"


def test_get_phase_init_failure_never() -> None:
    p = pod("a", inits=("i",), policy="Never")
    init = [{"name": "i", "state": {"terminated": {"exitCode": 1}}}]
    app = [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]
    assert get_phase(p, init, app) == "Failed"
    assert get_phase(pod("a", inits=("i",)), init, app) == "Pending"


def test_get_phase_terminal_override() -> None:
    app = [{"name": "a", "state": {"terminated": {"exitCode": 137}}}]
    assert get_phase(pod("a"), [], app) == "Running"
    assert get_phase(pod("a"), [], app, terminal=True) == "Failed"


def test_same_status_ignores_empties() -> None:
    assert same_status({"a": 1, "b": None, "c": []}, {"a": 1})


class _Client:
    def __init__(self) -> None:
        self.writes: list[dict[str, Any]] = []
        self.rv = 10

    async def update_status(self, resource: str, body: dict[str, Any], ns: str) -> dict:
        self.writes.append(body)
        self.rv += 1
        return {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.rv)}}


async def test_status_manager_writes_only_changes() -> None:
    client = _Client()
    sm = StatusManager(client)
    p = pod("a")
    st = gen(p, [sandbox(), ctr("a")])
    assert await sm.write(p, st) is not None
    # The informer has not caught up yet: the same status is not written again.
    assert await sm.write(p, st) is None
    # The informer caught up: nothing differs.
    assert await sm.write({**p, "status": st}, st) is None
    # Someone else changed the status after our write: we write ours back.
    p2 = {**p, "metadata": {**p["metadata"], "resourceVersion": "99"}, "status": {}}
    assert await sm.write(p2, st) is not None
    assert len(client.writes) == 2
