"""The pod status the kubelet reports, and the status manager that writes it only when it changed.

`generate_pod_status` is upstream's `generateAPIPodStatus` + `convertToAPIContainerStatuses` +
`getPhase` + the condition generators of pkg/kubelet/status: from the pod, the containers Docker
has for it, what the prober says and why the last start failed (the "reason cache"), it computes
phase, conditions, IPs, start time and a status per container in spec order. It is pure, so unit
tests pin upstream's corner cases (a crash-looping container is Running with waiting
CrashLoopBackOff; OnFailure + exit 0 is Succeeded; an init container failing under Never fails
the pod).

`StatusManager` writes it: a per-pod cache of what was last written, so a sync that changes
nothing writes nothing; an update of pods/status with the resourceVersion the kubelet saw, and on
a conflict a fresh read and a retry (conditions the kubelet does not own, such as DisruptionTarget
written by the eviction API, are taken from the fresh copy and kept).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from api import errors
from kubelet.sync import (
    CREATED,
    EXITED,
    RUNNING,
    UNKNOWN,
    Container,
    containers_of,
    init_containers_of,
    latest_by_name,
    newest_first,
    parse_time,
    restart_policy,
    should_be_restarted,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                      "PodScheduled")


@dataclass(frozen=True)
class Reason:
    """Why a container could not be started in the last sync (upstream's reasonCache entry)."""

    reason: str   # CrashLoopBackOff, ErrImagePull, CreateContainerConfigError, ...
    message: str


def _go_list(names: list[str]) -> str:
    return "[" + " ".join(names) + "]"


def container_id(c: Container) -> str:
    return f"docker://{c.id}"


def _convert(c: Container, old: Obj | None, image: str) -> Obj:
    """convertContainerStatus: one Docker container as a v1 ContainerStatus."""
    out: Obj = {"name": c.container_name, "restartCount": c.restart_count, "image": image,
                "imageID": getattr(c, "image_id", "") or "", "containerID": container_id(c)}
    if c.state == RUNNING:
        out["state"] = {"running": {"startedAt": _rfc(getattr(c, "started_at", ""))}}
    elif c.state == EXITED:
        term: Obj = {"exitCode": c.exit_code if c.exit_code is not None else 0,
                     "reason": c.reason or ("Completed" if not c.exit_code else "Error"),
                     "startedAt": _rfc(getattr(c, "started_at", "")),
                     "finishedAt": _rfc(c.finished_at), "containerID": container_id(c)}
        message = getattr(c, "message", "")
        if message:
            term["message"] = message
        out["state"] = {"terminated": term}
    elif c.state == UNKNOWN and old is not None and (old.get("state") or {}).get("running"):
        out["state"] = {"terminated": {
            "exitCode": 137, "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated"}}
        out["restartCount"] = int(old.get("restartCount") or 0) + 1
    elif c.state == CREATED:
        out["state"] = {"waiting": {"reason": "ContainerCreating"}}
    else:
        out["state"] = {"waiting": {}}
    return out


def _rfc(text: str) -> str:
    """Docker's RFC 3339 with nanoseconds as Kubernetes writes it: second precision, UTC."""
    if not text or text.startswith("0001-"):
        return ""
    t = parse_time(text)
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def container_statuses(pod: Obj, containers: Sequence[Container], specs: list[Obj],
                       old_statuses: list[Obj], reasons: dict[str, Reason], *,
                       is_init: bool) -> list[Obj]:
    """convertToAPIContainerStatuses for app (`is_init=False`) or init containers."""
    has_init = bool(init_containers_of(pod))
    default_waiting = {"waiting": {"reason": "PodInitializing" if has_init
                                   else "ContainerCreating"}}
    old_by_name = {s.get("name"): s for s in old_statuses}
    statuses: dict[str, Obj] = {}
    for spec in specs:
        name = spec["name"]
        st: Obj = {"name": name, "image": spec.get("image") or "", "imageID": "",
                   "state": dict(default_waiting), "ready": False, "restartCount": 0}
        old = old_by_name.get(name)
        if old is not None:
            if (old.get("state") or {}).get("terminated"):
                st = {k: v for k, v in old.items()}
            else:
                st["restartCount"] = int(old.get("restartCount") or 0)
                if old.get("lastState"):
                    st["lastState"] = old["lastState"]
        statuses[name] = st
    seen: dict[str, int] = {}
    mine = [c for c in containers if not c.is_sandbox and c.container_name in statuses]
    for c in newest_first(mine):
        name = c.container_name
        if seen.get(name, 0) >= 2:
            continue
        spec_image = next((s.get("image") or "" for s in specs if s["name"] == name), "")
        conv = _convert(c, old_by_name.get(name), spec_image)
        if seen.get(name, 0) == 0:
            conv.pop("lastState", None)
            statuses[name] = conv
        else:
            statuses[name]["lastState"] = conv["state"]
        seen[name] = seen.get(name, 0) + 1
    latest = latest_by_name(containers)
    for spec in specs:
        name = spec["name"]
        if is_init:
            s = latest.get(name)
            if s is not None and s.state == EXITED and s.exit_code == 0:
                continue
        if not should_be_restarted(spec, pod, latest):
            continue
        reason = reasons.get(name)
        if reason is None:
            continue
        st = statuses[name]
        if (st.get("state") or {}).get("terminated"):
            st["lastState"] = st["state"]
        waiting: Obj = {"reason": reason.reason}
        if reason.message:
            waiting["message"] = reason.message
        st["state"] = {"waiting": waiting}
    for st in statuses.values():
        st.setdefault("lastState", {})
    return [statuses[s["name"]] for s in specs]


def get_phase(pod: Obj, init_statuses: list[Obj], statuses: list[Obj],
              terminal: bool = False) -> str:
    """Upstream's getPhase (pkg/kubelet/kubelet_pods.go)."""
    by_name = {s["name"]: s for s in init_statuses + statuses}
    pending_init = failed_init = 0
    for c in init_containers_of(pod):
        s = by_name.get(c["name"])
        state = (s or {}).get("state") or {}
        if s is None:
            pending_init += 1
        elif state.get("running"):
            pending_init += 1
        elif state.get("terminated"):
            if state["terminated"].get("exitCode", 0) != 0:
                failed_init += 1
        elif state.get("waiting"):
            last = (s.get("lastState") or {}).get("terminated")
            if last:
                if last.get("exitCode", 0) != 0:
                    failed_init += 1
            else:
                pending_init += 1
        else:
            pending_init += 1
    unknown = running = waiting = stopped = succeeded = 0
    any_started = False
    for c in containers_of(pod):
        s = by_name.get(c["name"])
        state = (s or {}).get("state") or {}
        if s is None:
            unknown += 1
            continue
        if state.get("running"):
            running += 1
            any_started = True
        elif state.get("terminated"):
            stopped += 1
            any_started = True
            if state["terminated"].get("exitCode", 0) == 0:
                succeeded += 1
        elif state.get("waiting"):
            if (s.get("lastState") or {}).get("terminated"):
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    policy = restart_policy(pod)
    if failed_init > 0 and policy == "Never":
        return "Failed"
    if (pending_init > 0 and not any_started) or waiting > 0:
        return "Pending"
    if running > 0 and unknown == 0:
        return "Running"
    if running == 0 and stopped > 0 and unknown == 0:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _cond(type_: str, status: str, reason: str = "", message: str = "") -> Obj:
    out: Obj = {"type": type_, "status": status}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def containers_ready_condition(pod: Obj, statuses: list[Obj], phase: str,
                               type_: str = "ContainersReady") -> Obj:
    by_name = {s["name"]: s for s in statuses}
    unknown = [c["name"] for c in containers_of(pod) if c["name"] not in by_name]
    unready = [c["name"] for c in containers_of(pod)
               if c["name"] in by_name and not by_name[c["name"]].get("ready")]
    if phase == "Succeeded" and not unknown:
        return _cond(type_, "False", "PodCompleted")
    if phase == "Failed":
        return _cond(type_, "False", "PodFailed")
    msgs = []
    if unknown:
        msgs.append(f"containers with unknown status: {_go_list(unknown)}")
    if unready:
        msgs.append(f"containers with unready status: {_go_list(unready)}")
    if msgs:
        return _cond(type_, "False", "ContainersNotReady", ", ".join(msgs))
    return _cond(type_, "True")


def ready_condition(pod: Obj, statuses: list[Obj], phase: str, conditions: list[Obj]) -> Obj:
    cr = containers_ready_condition(pod, statuses, phase, "Ready")
    if cr["status"] != "True":
        return cr
    by_type = {c.get("type"): c for c in conditions}
    msgs = []
    for gate in (pod.get("spec") or {}).get("readinessGates") or []:
        t = gate.get("conditionType", "")
        c = by_type.get(t)
        if c is None:
            msgs.append(f'corresponding condition of pod readiness gate "{t}" does not exist.')
        elif c.get("status") != "True":
            msgs.append(f'the status of pod readiness gate "{t}" is not "True", '
                        f'but {c.get("status")}')
    if msgs:
        return _cond("Ready", "False", "ReadinessGatesNotReady", ", ".join(msgs))
    return _cond("Ready", "True")


def initialized_condition(pod: Obj, init_statuses: list[Obj], statuses: list[Obj],
                          phase: str) -> Obj:
    by_name = {s["name"]: s for s in init_statuses}
    unknown, incomplete = [], []
    for c in init_containers_of(pod):
        s = by_name.get(c["name"])
        if s is None:
            unknown.append(c["name"])
            continue
        term = (s.get("state") or {}).get("terminated")
        if not term or term.get("exitCode", 0) != 0:
            incomplete.append(c["name"])
    if phase == "Succeeded" and not unknown:
        return _cond("Initialized", "True", "PodCompleted")
    if any((s.get("state") or {}).get("running") or (s.get("state") or {}).get("terminated")
           for s in statuses):
        return _cond("Initialized", "True")
    msgs = []
    if unknown:
        msgs.append(f"containers with unknown status: {_go_list(unknown)}")
    if incomplete:
        msgs.append(f"containers with incomplete status: {_go_list(incomplete)}")
    if msgs:
        return _cond("Initialized", "False", "ContainersNotInitialized", ", ".join(msgs))
    return _cond("Initialized", "True")


def generate_pod_status(
    pod: Obj, containers: Sequence[Container], *, pod_ip: str | None, host_ip: str, now: str,
    ready: Callable[[str, str], bool] | None = None,
    started: Callable[[str, str], bool] | None = None,
    reasons: dict[str, Reason] | None = None, sandbox_ready: bool = False,
    terminal: bool = False,
) -> Obj:
    """The pod's status now (see the module docstring). `ready(name, container_id)` and
    `started(name, container_id)` are the prober's verdicts for running containers."""
    reasons = reasons or {}
    old: Obj = pod.get("status") or {}
    init_specs, app_specs = init_containers_of(pod), containers_of(pod)
    app_st = container_statuses(pod, containers, app_specs, old.get("containerStatuses") or [],
                                reasons, is_init=False)
    init_st = container_statuses(pod, containers, init_specs,
                                 old.get("initContainerStatuses") or [], reasons, is_init=True)
    for st in app_st:
        state = st.get("state") or {}
        cid = str(st.get("containerID") or "").removeprefix("docker://")
        if state.get("running"):
            is_started = started(st["name"], cid) if started else True
            st["started"] = is_started
            st["ready"] = bool(is_started and (ready(st["name"], cid) if ready else True))
        else:
            st["started"] = False
            st["ready"] = False
    for st in init_st:
        term = (st.get("state") or {}).get("terminated")
        st["ready"] = bool(term and term.get("exitCode", 0) == 0)
        st["started"] = bool((st.get("state") or {}).get("running"))
    old_phase = old.get("phase")
    if old_phase in ("Succeeded", "Failed"):
        phase = old_phase  # a terminal phase never goes back
    else:
        phase = get_phase(pod, init_st, app_st, terminal)
    old_conds = [c for c in old.get("conditions") or [] if isinstance(c, dict)]
    old_by_type = {c.get("type"): c for c in old_conds}
    conds = [
        _cond("PodReadyToStartContainers", "True" if sandbox_ready else "False"),
        initialized_condition(pod, init_st, app_st, phase),
    ]
    conds.append(ready_condition(pod, app_st, phase, old_conds))
    conds.append(containers_ready_condition(pod, app_st, phase))
    scheduled = old_by_type.get("PodScheduled") or _cond("PodScheduled", "True")
    out_conds: list[Obj] = []
    for c in conds:
        prev = old_by_type.get(c["type"])
        since = prev.get("lastTransitionTime") if prev and prev.get("status") == c["status"] \
            else None
        c["lastTransitionTime"] = since or now
        out_conds.append(c)
    out_conds.append(scheduled)
    out_conds += [c for c in old_conds if c.get("type") not in KUBELET_CONDITIONS]

    status: Obj = {k: v for k, v in old.items()
                   if k in ("qosClass", "reason", "message", "nominatedNodeName",
                            "podIP", "podIPs")}
    status.update({"phase": phase, "conditions": out_conds, "hostIP": host_ip,
                   "hostIPs": [{"ip": host_ip}] if host_ip else [],
                   "startTime": old.get("startTime") or now,
                   "containerStatuses": app_st})
    if init_specs:
        status["initContainerStatuses"] = init_st
    if pod_ip:
        status["podIP"], status["podIPs"] = pod_ip, [{"ip": pod_ip}]
    return status


# --- writing --------------------------------------------------------------------------------

def normalize(v: Any) -> Any:
    """For comparisons: None and empty values dropped (the API drops them too)."""
    if isinstance(v, dict):
        out = {k: normalize(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x not in (None, {}, [], "")}
    if isinstance(v, list):
        return [normalize(x) for x in v]
    return v


def same_status(a: Obj, b: Obj) -> bool:
    return bool(normalize(a) == normalize(b))


class StatusManager:
    """Write pod statuses, each only when it differs from what the apiserver has.

    `last` remembers per pod uid what we wrote and the resourceVersion it got, so that while the
    informer's copy lags behind our own write we do not write the same status again.
    """

    def __init__(self, client: Any, attempts: int = 5) -> None:
        self.client = client
        self.attempts = attempts
        self._last: dict[str, tuple[Obj, int]] = {}

    def forget(self, uid: str) -> None:
        self._last.pop(uid, None)

    def needs_write(self, pod: Obj, status: Obj) -> bool:
        md = pod.get("metadata") or {}
        uid = md.get("uid", "")
        if same_status(pod.get("status") or {}, status):
            return False
        last = self._last.get(uid)
        if last is not None and same_status(last[0], status):
            # We wrote exactly this already; write again only if the apiserver's copy is newer
            # than our write (someone else changed it since).
            return _rv(md) > last[1]
        return True

    async def write(self, pod: Obj, status: Obj) -> Obj | None:
        """Write `status` on `pod` (update with conflict retry). Returns the written pod, or None
        when the pod is gone or the write was not needed."""
        if not self.needs_write(pod, status):
            return None
        md = pod.get("metadata") or {}
        uid, name, ns = md.get("uid", ""), md.get("name", ""), md.get("namespace", "default")
        cur = pod
        for attempt in range(self.attempts):
            body = {**cur, "status": _merge_foreign(cur.get("status") or {}, status)}
            try:
                written: Obj = await self.client.update_status("pods", body, ns)
            except errors.Conflict:
                try:
                    cur = await self.client.get("pods", name, ns)
                except errors.NotFound:
                    return None
                if (cur.get("metadata") or {}).get("uid") != uid:
                    return None
                continue
            except errors.NotFound:
                return None
            except errors.ApiError as e:
                log.warning("writing status of %s/%s: %s", ns, name, e)
                await asyncio.sleep(min(0.2 * 2 ** attempt, 2.0))
                continue
            self._last[uid] = (status, _rv(written.get("metadata") or {}))
            return written
        return None


def _merge_foreign(current: Obj, ours: Obj) -> Obj:
    """Our status, with the conditions we do not own taken from the apiserver's current copy."""
    foreign = [c for c in current.get("conditions") or []
               if c.get("type") not in KUBELET_CONDITIONS]
    conds = [c for c in ours.get("conditions") or [] if c.get("type") in KUBELET_CONDITIONS]
    return {**ours, "conditions": conds + foreign}


def _rv(md: Obj) -> int:
    try:
        return int(md.get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0
