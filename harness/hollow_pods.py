"""What a hollow node reports for a pod: the status a kubelet would post, computed without I/O.

The hollow nodes (`harness.hollow_nodes`) play the kubelet for pods bound to them. What a kubelet
would write for a pod at a given moment — Running with a podIP, Ready or not yet, a container
that exited and restarts in CrashLoopBackOff — is a pure function of the pod, the node's
addresses and the clock, so it lives here, apart from the process that writes it, and unit tests
check it without a cluster.

Annotations steer a hollow pod, so tests can produce the states a real workload would:
- `hollow.tinykube.io/ready-after: "<seconds>"`: Running at once, Ready that long after start;
- `hollow.tinykube.io/never-ready: "true"`: Running, never Ready (a readiness probe that fails);
- `hollow.tinykube.io/exit: "<code>"`: the containers exit with that code right after they
  start: phase Succeeded/Failed when restartPolicy does not restart them, else a restart loop
  with kubelet's CrashLoopBackOff back-off (10s doubling to 5m).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any

from api.meta import format_rfc3339, parse_rfc3339

ANNOTATION_READY_AFTER = "hollow.tinykube.io/ready-after"
ANNOTATION_NEVER_READY = "hollow.tinykube.io/never-ready"
ANNOTATION_EXIT = "hollow.tinykube.io/exit"

# kubelet's CrashLoopBackOff: 10s, doubling, capped at 5 minutes.
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0

# The pod conditions a running pod carries, in the order the kubelet writes them.
_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
               "PodScheduled")




@dataclass(frozen=True)
class Steering:
    """The hollow annotations of a pod, parsed (a malformed value is ignored, like an unknown
    annotation)."""

    ready_after: float = 0.0
    never_ready: bool = False
    exit_code: int | None = None

    @classmethod
    def of(cls, annotations: dict[str, str] | None) -> Steering:
        a = annotations or {}
        ready_after = 0.0
        try:
            ready_after = max(0.0, float(a.get(ANNOTATION_READY_AFTER, "0")))
        except ValueError:
            pass
        exit_code: int | None = None
        try:
            exit_code = int(a[ANNOTATION_EXIT]) if ANNOTATION_EXIT in a else None
        except ValueError:
            pass
        return cls(ready_after, a.get(ANNOTATION_NEVER_READY, "").lower() == "true", exit_code)


class PodCIDRAllocator:
    """Pod IPs from one node's podCIDR: never the same address twice while in use.

    Like host-local IPAM in the bridge CNI plugin: the network and broadcast addresses and the
    first host (the bridge's gateway) are never handed out; a released address is reused only
    after every other free one (round robin), so a deleted pod's IP does not reappear at once.
    """

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr, strict=False)
        self._first = int(self.network.network_address) + 2
        self._last = int(self.network.broadcast_address) - 1
        self._next = self._first
        self._used: dict[str, int] = {}  # pod uid → address
        self._taken: set[int] = set()

    def __contains__(self, ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip) in self.network
        except ValueError:
            return False

    def claim(self, uid: str, ip: str) -> bool:
        """Record an address a pod already has (after a restart); False if not ours or taken."""
        if ip not in self:
            return False
        n = int(ipaddress.ip_address(ip))
        if self._used.get(uid) == n:
            return True
        if n in self._taken or not self._first <= n <= self._last:
            return False
        self._used[uid] = n
        self._taken.add(n)
        return True

    def allocate(self, uid: str) -> str | None:
        """The pod's address (the same one again for the same uid); None when the range is full."""
        if uid in self._used:
            return str(ipaddress.ip_address(self._used[uid]))
        size = self._last - self._first + 1
        for i in range(size):
            n = self._first + (self._next - self._first + i) % size
            if n not in self._taken:
                self._next = n + 1 if n < self._last else self._first
                self._used[uid] = n
                self._taken.add(n)
                return str(ipaddress.ip_address(n))
        return None

    def release(self, uid: str) -> None:
        n = self._used.pop(uid, None)
        if n is not None:
            self._taken.discard(n)

    @property
    def in_use(self) -> int:
        return len(self._used)


def _condition(current: dict[str, dict[str, Any]], type_: str, status: str, now: str,
               reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    """A pod condition; its lastTransitionTime moves only when its status changes."""
    old = current.get(type_)
    if old is not None and type_ == "PodScheduled":
        return old  # the binding's condition (set by the apiserver), left as it is
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    out: dict[str, Any] = {"type": type_, "status": status, "lastTransitionTime": since or now}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def _crash_backoff(restarts: int) -> float:
    return min(BACKOFF_INITIAL * 2 ** max(0, restarts - 1), BACKOFF_MAX)


def _restarts(policy: str, code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and code != 0)


def desired_status(pod: dict[str, Any], host_ip: str, pod_ip: str,
                   now: dt.datetime) -> tuple[dict[str, Any], float | None]:
    """(the status the kubelet would post now, seconds until it would change by itself).

    Derived from the pod's current status so that times already reported (startTime,
    transition times, container start times) stay put and a second call without a clock
    change returns the same status: the caller writes only when something differs.
    """
    md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    status = pod.get("status") or {}
    steer = Steering.of(md.get("annotations"))
    now_s = format_rfc3339(now)
    start_s = status.get("startTime") or now_s
    start = parse_rfc3339(start_s)
    containers = [c.get("name", "") for c in spec.get("containers") or []]
    old_cs = {c.get("name"): c for c in status.get("containerStatuses") or []}
    policy = spec.get("restartPolicy") or "Always"

    requeue: float | None = None
    phase = "Running"
    ready = not steer.never_ready
    if ready and steer.ready_after > 0:
        ready_at = start + dt.timedelta(seconds=steer.ready_after)
        ready = now >= ready_at
        if not ready:
            requeue = (ready_at - now).total_seconds()
    statuses: list[dict[str, Any]] = []
    if steer.exit_code is not None and not _restarts(policy, steer.exit_code):
        phase = "Succeeded" if steer.exit_code == 0 else "Failed"
        ready = False
        statuses = [_terminated(pod, n, steer.exit_code, start_s, old_cs.get(n)) for n in
                    containers]
    elif steer.exit_code is not None:
        ready = False
        statuses, requeue = _crash_looping(pod, containers, steer.exit_code, old_cs, start_s,
                                           now)
    else:
        statuses = [_running(pod, n, start_s, ready) for n in containers]

    current = {c.get("type"): c for c in status.get("conditions") or []}
    not_ready = [n for n in containers if phase == "Running" and not ready]
    if phase == "Running":
        reason, msg = ((None, None) if ready else
                       ("ContainersNotReady",
                        f"containers with unready status: [{' '.join(not_ready)}]"))
    else:
        reason, msg = "PodCompleted", None
    conds = {
        "PodReadyToStartContainers": _condition(current, "PodReadyToStartContainers",
                                                "True" if phase == "Running" else "False", now_s),
        "Initialized": _condition(current, "Initialized", "True", now_s,
                                  "PodCompleted" if phase != "Running" else None),
        "Ready": _condition(current, "Ready", "True" if ready else "False", now_s, reason, msg),
        "ContainersReady": _condition(current, "ContainersReady", "True" if ready else "False",
                                      now_s, reason, msg),
        "PodScheduled": _condition(current, "PodScheduled", "True", now_s),
    }
    out = {k: v for k, v in status.items() if k not in ("phase", "conditions",
                                                       "containerStatuses")}
    out.update({
        "phase": phase,
        "conditions": [conds[t] for t in _CONDITIONS],
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "startTime": start_s,
        "containerStatuses": statuses,
    })
    if phase == "Running" and pod_ip:
        out["podIP"], out["podIPs"] = pod_ip, [{"ip": pod_ip}]
    return out, requeue


def _image(pod: dict[str, Any], name: str) -> str:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == name:
            return str(c.get("image") or "")
    return ""


def _container_id(pod: dict[str, Any], name: str) -> str:
    return f"hollow://{(pod.get('metadata') or {}).get('uid', '')}/{name}"


def _base(pod: dict[str, Any], name: str) -> dict[str, Any]:
    image = _image(pod, name)
    return {"name": name, "image": image, "imageID": f"hollow://{image}",
            "containerID": _container_id(pod, name)}


def _running(pod: dict[str, Any], name: str, start: str, ready: bool) -> dict[str, Any]:
    return {**_base(pod, name), "state": {"running": {"startedAt": start}}, "ready": ready,
            "restartCount": 0, "started": True}


def _terminated(pod: dict[str, Any], name: str, code: int, start: str,
                old: dict[str, Any] | None) -> dict[str, Any]:
    old_term = ((old or {}).get("state") or {}).get("terminated") or {}
    finished = old_term.get("finishedAt") or start
    return {**_base(pod, name), "ready": False, "restartCount": 0, "started": False,
            "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0
                                     else "Error", "startedAt": start, "finishedAt": finished,
                                     "containerID": _container_id(pod, name)}}}


def _crash_looping(pod: dict[str, Any], names: list[str], code: int,
                   old_cs: dict[str | None, dict[str, Any]], start: str,
                   now: dt.datetime) -> tuple[list[dict[str, Any]], float]:
    """Containers that exit at once and are restarted after kubelet's back-off, forever."""
    md = pod.get("metadata") or {}
    out: list[dict[str, Any]] = []
    requeue = BACKOFF_MAX
    for name in names:
        old = old_cs.get(name) or {}
        restarts = int(old.get("restartCount") or 0)
        last = (old.get("lastState") or {}).get("terminated") or {}
        finished = parse_rfc3339(last["finishedAt"]) if last.get("finishedAt") else None
        if finished is None or now >= finished + dt.timedelta(seconds=_crash_backoff(restarts)):
            # The back-off ran out: the container ran again, and exited again.
            restarts, finished = restarts + 1, now
        wait = _crash_backoff(restarts)
        requeue = min(requeue, max(0.0, (finished + dt.timedelta(seconds=wait)
                                         - now).total_seconds()))
        fin_s = format_rfc3339(finished)
        out.append({
            **_base(pod, name), "ready": False, "restartCount": restarts, "started": False,
            "state": {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {int(wait)}s restarting failed container={name} "
                           f"pod={md.get('name')}_{md.get('namespace')}({md.get('uid')})"}},
            "lastState": {"terminated": {
                "exitCode": code, "reason": "Completed" if code == 0 else "Error",
                "startedAt": fin_s if restarts > 1 else start, "finishedAt": fin_s,
                "containerID": _container_id(pod, name)}},
        })
    return out, requeue


def same_status(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether posting `b` over `a` would change nothing a reader cares about."""
    return _norm(a) == _norm(b)


def _norm(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_norm(x) for x in v]
    return v
