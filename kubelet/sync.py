"""What the kubelet must do to a pod's containers, decided without touching Docker.

The heart of a kubelet is a comparison: the pod's spec on one side, the containers Docker has for
that pod on the other, and out comes a list of actions — create the sandbox, start this init
container, start these app containers, kill those. Upstream calls it `computePodActions`
(pkg/kubelet/kuberuntime/kuberuntime_manager.go); this module is that function and its helpers
(`PodSandboxChanged`, `findNextInitContainerToRun`, `ShouldContainerBeRestarted`), plus the
garbage-collection choice of which dead containers to keep. Everything here is pure: the inputs
are the pod (a dict) and the container list (anything shaped like `runtime.ContainerInfo`), so
the unit tests exercise every branch without a Docker engine.

Only the *latest* container of each name matters for decisions (Docker keeps older, dead ones
for `logs --previous`); "latest" is the highest restart count, ties broken by creation time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

Obj = dict[str, Any]

RUNNING, EXITED, CREATED, UNKNOWN = "running", "exited", "created", "unknown"


class Container(Protocol):
    """What sync needs of a container: `kubelet.runtime.ContainerInfo` has all of it."""

    id: str
    name: str
    labels: dict[str, str]
    state: str
    exit_code: int | None
    reason: str
    created_at: str
    started_at: str
    finished_at: str

    @property
    def container_name(self) -> str: ...
    @property
    def restart_count(self) -> int: ...
    @property
    def is_sandbox(self) -> bool: ...


C = TypeVar("C", bound=Container)


def parse_time(text: str) -> float:
    """Seconds since the epoch of a Docker/RFC 3339 time (nanoseconds allowed); 0 for "" or
    Docker's zero time."""
    if not text or text.startswith("0001-"):
        return 0.0
    t = text.strip().replace("Z", "+00:00")
    # Python parses at most microseconds: cut the fraction to 6 digits.
    if "." in t:
        head, _, rest = t.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        t = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    try:
        return dt.datetime.fromisoformat(t).timestamp()
    except ValueError:
        return 0.0


def created(c: Container) -> float:
    """Creation time with sub-second precision when the runtime gives it (`created`)."""
    exact = getattr(c, "created", 0.0)
    return float(exact) if exact else parse_time(c.created_at)


def _order(c: Container) -> tuple[int, float]:
    return (c.restart_count, created(c))


def newest_first(containers: Iterable[C]) -> list[C]:
    return sorted(containers, key=_order, reverse=True)


def latest_by_name(containers: Iterable[C]) -> dict[str, C]:
    """The newest app container of every name (sandboxes left out)."""
    out: dict[str, C] = {}
    for c in newest_first(x for x in containers if not x.is_sandbox):
        out.setdefault(c.container_name, c)
    return out


def sandboxes(containers: Iterable[C]) -> list[C]:
    """The pod's sandboxes, newest (highest attempt) first."""
    return sorted((c for c in containers if c.is_sandbox),
                  key=lambda c: (sandbox_attempt(c), created(c)), reverse=True)


def sandbox_attempt(c: Container) -> int:
    """The attempt number at the end of the sandbox's Docker name `k8s_POD_..._<attempt>`."""
    tail = c.name.lstrip("/").rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def restart_policy(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("restartPolicy") or "Always")


def containers_of(pod: Obj) -> list[Obj]:
    return list((pod.get("spec") or {}).get("containers") or [])


def init_containers_of(pod: Obj) -> list[Obj]:
    return list((pod.get("spec") or {}).get("initContainers") or [])


def is_terminating(pod: Obj) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def is_terminal(pod: Obj) -> bool:
    """The pod's phase is Succeeded or Failed: it never runs again (upstream's pod workers
    move such a pod to terminated and never sync it again)."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def should_restart_on_failure(pod: Obj) -> bool:
    return restart_policy(pod) != "Never"


def should_be_restarted(container: Obj, pod: Obj, latest: Mapping[str, Container]) -> bool:
    """ShouldContainerBeRestarted: never started → start; running → no; created or unknown →
    start again; exited → by restartPolicy (OnFailure only for a non-zero exit)."""
    if is_terminating(pod):
        return False
    st = latest.get(container["name"])
    if st is None:
        return True
    if st.state == RUNNING:
        return False
    if st.state in (UNKNOWN, CREATED):
        return True
    policy = restart_policy(pod)
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return (st.exit_code or 0) != 0
    return True


def _succeeded(name: str, latest: Mapping[str, Container]) -> bool:
    st = latest.get(name)
    return st is not None and st.state == EXITED and st.exit_code == 0


def is_init_failed(st: Container) -> bool:
    if st.reason == "OOMKilled":
        return True
    if st.state == EXITED and (st.exit_code or 0) != 0:
        return True
    return st.state == UNKNOWN


def next_init_container(pod: Obj, latest: Mapping[str, Container]
                        ) -> tuple[Container | None, Obj | None, bool]:
    """findNextInitContainerToRun: (status of a failed init container, the init container to
    run next, whether initialisation is done)."""
    inits = init_containers_of(pod)
    if not inits:
        return None, None, True
    # An app container running means the init containers ran once (they may be gone since).
    for c in containers_of(pod):
        st = latest.get(c["name"])
        if st is not None and st.state == RUNNING:
            return None, None, True
    for c in reversed(inits):
        st = latest.get(c["name"])
        if st is not None and is_init_failed(st):
            return st, c, False
    for i in range(len(inits) - 1, -1, -1):
        st = latest.get(inits[i]["name"])
        if st is None:
            continue
        if st.state == RUNNING:
            return None, None, False
        if st.state == EXITED:
            if i == len(inits) - 1:
                return None, None, True
            return None, inits[i + 1], False
    return None, inits[0], False


@dataclass
class KillInfo:
    name: str
    message: str
    reason: str = ""  # "" | "LivenessProbe" | "StartupProbe" | "Unknown"
    spec: Obj | None = None


@dataclass
class PodActions:
    """What `compute_pod_actions` decided (upstream's podActions)."""

    kill_pod: bool = False
    create_sandbox: bool = False
    sandbox_id: str = ""          # the current sandbox (to use, or to kill when re-created)
    attempt: int = 0              # the attempt number of a sandbox to create
    next_init: Obj | None = None  # the init container to start now
    start: list[Obj] = field(default_factory=list)
    kill: dict[str, KillInfo] = field(default_factory=dict)  # container id → why

    @property
    def idle(self) -> bool:
        return not (self.kill_pod or self.create_sandbox or self.next_init or self.start
                    or self.kill)


def sandbox_changed(pod: Obj, containers: Sequence[Container], *, has_ip: bool = True
                    ) -> tuple[bool, int, str]:
    """PodSandboxChanged: (create a sandbox?, its attempt number, the current sandbox id).

    A new sandbox is needed when there is none, when the newest is not running (it died, or the
    node rebooted), when more than one is running, or when the pod has no IP (networking was
    never set up for it; not for hostNetwork pods).
    """
    boxes = sandboxes(containers)
    if not boxes:
        return True, 0, ""
    newest = boxes[0]
    attempt = sandbox_attempt(newest)
    running = sum(1 for b in boxes if b.state == RUNNING)
    if running > 1 or newest.state != RUNNING:
        return True, attempt + 1, newest.id
    host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
    if not host_network and not has_ip:
        return True, attempt + 1, newest.id
    return False, attempt, newest.id


def compute_pod_actions(pod: Obj, containers: Sequence[Container], *,
                        probe_failure: Callable[[str, str], str | None] | None = None,
                        has_ip: bool = True,
                        container_hash: Callable[[Obj], str] | None = None,
                        hash_of: Callable[[Container], str] | None = None) -> PodActions:
    """Upstream's computePodActions for one pod.

    `probe_failure(name, container_id)` returns a message when the running container failed its
    liveness or startup probe; `container_hash(spec)` and `hash_of(container)` compare a running
    container with its spec (a changed spec means kill and start again).
    """
    create, attempt, sandbox_id = sandbox_changed(pod, containers, has_ip=has_ip)
    if is_terminal(pod):
        # Whatever Docker lost since (a dead sandbox, containers garbage-collected or pruned),
        # a Succeeded or Failed pod is not brought back: only stop what still runs.
        running = any(c.state == RUNNING for c in containers)
        return PodActions(kill_pod=running, sandbox_id=sandbox_id, attempt=attempt)
    actions = PodActions(kill_pod=create, create_sandbox=create, sandbox_id=sandbox_id,
                         attempt=attempt)
    app = [c for c in containers if not c.is_sandbox]
    latest = latest_by_name(app)
    if create:
        if not should_restart_on_failure(pod) and attempt != 0 and app:
            # restartPolicy Never and containers already ran: do not bring the pod back.
            actions.create_sandbox = False
            return actions
        to_start = [c for c in containers_of(pod)
                    if not (restart_policy(pod) == "OnFailure" and _succeeded(c["name"], latest))]
        if not to_start:
            _, _, done = next_init_container(pod, latest)
            if done:
                actions.create_sandbox = False
                return actions
        if is_terminating(pod):
            actions.create_sandbox = False
            return actions
        inits = init_containers_of(pod)
        if inits:
            actions.next_init = inits[0]
            return actions
        actions.start = to_start
        return actions

    failed_init, nxt, done = next_init_container(pod, latest)
    if not done:
        if nxt is not None:
            if failed_init is not None and not should_restart_on_failure(pod):
                actions.kill_pod = True
            else:
                if failed_init is not None and failed_init.state == UNKNOWN:
                    actions.kill[failed_init.id] = KillInfo(nxt["name"], "unknown state",
                                                            "Unknown", nxt)
                if not is_terminating(pod):
                    actions.next_init = nxt
        return actions

    spec_names = {c["name"] for c in containers_of(pod) + init_containers_of(pod)}
    for c in app:
        if c.state == RUNNING and c.container_name not in spec_names:
            actions.kill[c.id] = KillInfo(c.container_name,
                                          f"Container {c.container_name} is not in the pod spec")
    keep = 0
    for spec in containers_of(pod):
        name = spec["name"]
        st = latest.get(name)
        if st is None or st.state != RUNNING:
            if should_be_restarted(spec, pod, latest):
                actions.start.append(spec)
                if st is not None and st.state == UNKNOWN:
                    actions.kill[st.id] = KillInfo(name, "unknown state", "Unknown", spec)
            continue
        restart = should_restart_on_failure(pod)
        message, reason = "", ""
        if container_hash is not None and hash_of is not None and \
                hash_of(st) and hash_of(st) != container_hash(spec):
            message, restart = f"Container {name} definition changed", True
        elif probe_failure is not None and (failure := probe_failure(name, st.id)):
            reason = "StartupProbe" if "startup" in failure else "LivenessProbe"
            message = failure if failure.startswith("Container ") else \
                f"Container {name} failed {'startup' if reason == 'StartupProbe' else 'liveness'}" \
                " probe"
        else:
            keep += 1
            continue
        if restart and not is_terminating(pod):
            message = f"{message}, will be restarted"
            actions.start.append(spec)
        actions.kill[st.id] = KillInfo(name, message, reason, spec)
    if keep == 0 and not actions.start:
        actions.kill_pod = True
    return actions


def restart_count_for(name: str, containers: Iterable[Container]) -> int:
    """The restart count of a new container of that name: the latest one's + 1 (0 if none)."""
    latest = latest_by_name(containers).get(name)
    return latest.restart_count + 1 if latest is not None else 0


def containers_to_remove(pod: Obj | None, containers: Sequence[C]) -> list[C]:
    """Dead containers the garbage collector may remove now.

    Per container name the newest container stays, and the newest dead one before it
    (`logs --previous`, `lastState`); older dead ones go, as do dead containers whose name is
    no longer in the spec. Of the sandboxes, every dead one but the newest goes.
    """
    names = {c["name"] for c in containers_of(pod or {}) + init_containers_of(pod or {})}
    out: list[C] = []
    by_name: dict[str, list[C]] = {}
    for c in newest_first(x for x in containers if not x.is_sandbox):
        by_name.setdefault(c.container_name, []).append(c)
    for name, group in by_name.items():
        dead: list[C] = [c for c in group if c.state in (EXITED, CREATED) and c is not group[0]]
        if name not in names:
            out.extend(c for c in group if c.state in (EXITED, CREATED))
            continue
        # group[0], the newest, always stays (upstream never evicts it); of the older dead
        # ones the newest stays too (maxPerPodContainer = 1): the status' lastState.
        kept_exited = False
        for c in dead:
            if c.state == EXITED and not kept_exited:
                kept_exited = True
                continue
            out.append(c)
    boxes = sandboxes(containers)
    out.extend(b for b in boxes[1:] if b.state != RUNNING)
    return out
