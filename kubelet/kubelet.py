"""The Kubelet: converges Docker to the pods bound to this node, and reports what it sees.

What it does, in upstream's terms:
- watches only its own pods (`spec.nodeName=<node>` field selector) and gives each pod uid a
  worker (kubelet/podworkers.py) woken by pod events, by the PLEG (Docker's container events
  for this node's containers, plus a relist every `relist_period` as a safety net), by probe
  results, by back-off timers and by a periodic resync;
- `sync_pod` is level-triggered: it reads the pod's containers from Docker, asks
  `sync.compute_pod_actions` what to do, does it (sandbox + CNI, volumes, images, env, create,
  start, postStart; kill with preStop and the grace period; CrashLoopBackOff), then writes the
  status `status.generate_pod_status` computes, only if it changed;
- a pod with a deletionTimestamp is terminated gracefully (preStop hooks, SIGTERM, SIGKILL at
  the end of the grace period, all containers in parallel), its sandbox's network released
  (CNI DEL), containers and volumes removed, a final status written, and the object deleted
  with grace 0 and a uid precondition, so a new pod of the same name is never touched;
- a pod that vanished from the API (a force delete), or containers of pods this node does not
  run, are torn down with upstream's minimum grace (1s, SIGKILL 2s after SIGTERM); a delete
  that shortens the grace period of a termination in progress kills again with the shorter one;
- only updates of spec, metadata or foreign conditions wake a pod's worker: the echo of the
  kubelet's own status write does not;
- restart safety: after a restart it waits for the pod cache, then adopts what Docker has —
  running containers are left alone, restart counts come from labels, the pod IP from the CNI
  result cache — and only then starts acting;
- `resolve()` tells the logs/exec server (kubelet/server.py) which container a request means.

The Kubelet holds no state that matters across restarts: Docker's labels and the API are the
truth; the in-memory caches (containers per pod, back-offs, the reason a container is waiting)
are rebuilt or simply start over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from api import errors
from api.core import Pod, Service
from api.meta import now_rfc3339
from client.apiclient import ApiClient
from client.events import NORMAL, WARNING, EventRecorder
from client.informer import SharedInformer
from kubelet import labels as L
from kubelet.backoff import Backoff, go_duration
from kubelet.cni import CNI, CNIError
from kubelet.envvars import EnvError, container_env, service_env, services_for_pod
from kubelet.images import ImageError, ImageManager
from kubelet.node import NodeManager
from kubelet.podworkers import PodWorkers
from kubelet.prober import ProbeManager
from kubelet.runtime import (
    ContainerInfo,
    ContainerNotFound,
    DockerRuntime,
    RuntimeFailure,
    RuntimeUnavailable,
    container_config,
)
from kubelet.status import KUBELET_CONDITIONS, Reason, StatusManager, generate_pod_status
from kubelet.sync import (
    EXITED,
    RUNNING,
    PodActions,
    compute_pod_actions,
    containers_to_remove,
    init_containers_of,
    is_terminating,
    latest_by_name,
    parse_time,
    restart_count_for,
    sandboxes,
)
from kubelet.volumes import VolumeError, VolumeManager

log = logging.getLogger("kubelet")

Obj = dict[str, Any]

DEFAULT_GRACE = 30
MIN_GRACE = 2.0  # upstream minimumGracePeriodInSeconds: SIGTERM always gets this long
# The grace period of a pod that vanished from the API (a force delete, or containers of a pod
# this kubelet never saw): upstream's pod workers never go below 1s
# (calculateEffectiveGracePeriod), and kill orphans with an override of 1s (HandlePodCleanups).
FORCE_GRACE = 1.0


@dataclass
class PodState:
    """What the kubelet knows of one pod uid."""

    uid: str
    pod: Obj | None = None        # the latest object from the informer; None once gone
    last: Obj = field(default_factory=dict)  # the last known object (for teardown)
    ids: set[str] = field(default_factory=set)  # Docker ids of its containers
    infos: list[ContainerInfo] = field(default_factory=list)  # as last inspected
    ip: str | None = None
    reasons: dict[str, Reason] = field(default_factory=dict)
    volumes: dict[str, str] | None = None
    volumes_at: float = 0.0
    fingerprint: frozenset[tuple[str, str]] = frozenset()
    finished: bool = False        # torn down (and the object deleted, if it was terminating)
    # While a termination kills the containers: the monotonic time by which they will have
    # been killed. A delete that shortens the grace period brings it forward (upstream's pod
    # workers cancel the kill and kill again with the shorter grace: it may only decrease).
    kill_deadline: float = math.inf


def pod_key(pod: Obj) -> str:
    md = pod.get("metadata") or {}
    return f"{md.get('namespace', '')}/{md.get('name', '')}"


def format_pod(pod: Obj) -> str:
    """upstream format.Pod: name_namespace(uid)."""
    md = pod.get("metadata") or {}
    return f"{md.get('name', '')}_{md.get('namespace', '')}({md.get('uid', '')})"


def grace_period(pod: Obj) -> float:
    md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    if md.get("deletionGracePeriodSeconds") is not None:
        return float(md["deletionGracePeriodSeconds"])
    if spec.get("terminationGracePeriodSeconds") is not None:
        return float(spec["terminationGracePeriodSeconds"])
    return float(DEFAULT_GRACE)


def _sync_relevant(pod: Obj) -> tuple[Any, ...]:
    md = {k: v for k, v in (pod.get("metadata") or {}).items()
          if k not in ("resourceVersion", "managedFields")}
    foreign = [c for c in (pod.get("status") or {}).get("conditions") or []
               if isinstance(c, dict) and c.get("type") not in KUBELET_CONDITIONS]
    return md, pod.get("spec"), foreign


def needs_sync(old: Obj | None, new: Obj) -> bool:
    """Whether a pod update calls for a sync: not when only the status changed, which is
    mostly the echo of the kubelet's own status write (upstream's pod config sends those as
    RECONCILE, not UPDATE). Conditions the kubelet does not own (readiness gates) do count:
    they change the Ready condition (upstream's NeedToReconcilePodReadiness)."""
    return old is None or _sync_relevant(old) != _sync_relevant(new)


def pod_from_labels(info: ContainerInfo) -> Obj:
    """A stand-in pod object for containers whose pod the API no longer has."""
    lb = info.labels
    spec: Obj = {"containers": []}
    if lb.get(L.TERMINATION_GRACE, "").isdigit():
        spec["terminationGracePeriodSeconds"] = int(lb[L.TERMINATION_GRACE])
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": lb.get(L.POD_NAME, ""), "namespace": lb.get(L.POD_NAMESPACE, ""),
                         "uid": lb.get(L.POD_UID, "")}, "spec": spec}


def container_ref(pod: Obj, name: str, init: bool = False) -> Obj:
    """The involvedObject of a container's event (with upstream's fieldPath)."""
    md = pod.get("metadata") or {}
    ref = {"apiVersion": "v1", "kind": "Pod", "name": md.get("name"),
           "namespace": md.get("namespace"), "uid": md.get("uid"),
           "resourceVersion": md.get("resourceVersion"),
           "fieldPath": f"spec.{'initContainers' if init else 'containers'}{{{name}}}"}
    return {k: v for k, v in ref.items() if v}


class Kubelet:
    def __init__(self, client: ApiClient, node_name: str, runtime: DockerRuntime, cni: CNI,
                 node: NodeManager, volumes: VolumeManager, *,
                 pod_infra_image: str = "tinykube/pause:1",
                 crash_backoff: Backoff | None = None, image_backoff: Backoff | None = None,
                 sync_frequency: float = 60.0, relist_period: float = 1.0,
                 recorder: EventRecorder | None = None) -> None:
        self.client = client
        self.node_name = node_name
        self.runtime = runtime
        self.cni = cni
        self.node = node
        self.volumes = volumes
        self.pod_infra_image = pod_infra_image
        # (`is None`, not `or`: an empty Backoff is falsy, it has a length.)
        self.crash_backoff = Backoff() if crash_backoff is None else crash_backoff
        self.image_backoff = Backoff(self.crash_backoff.initial, self.crash_backoff.maximum,
                                     self.crash_backoff.reset_after) \
            if image_backoff is None else image_backoff
        self.sync_frequency = sync_frequency
        self.relist_period = relist_period
        self.recorder = recorder if recorder is not None else \
            EventRecorder(client, "kubelet", host=node_name)
        self.images = ImageManager(runtime, self.record, self.image_backoff)
        self.prober = ProbeManager(runtime, self.record, self._probe_changed)
        self.status = StatusManager(client)
        self.workers = PodWorkers(self.sync_pod, max_retry=max(self.crash_backoff.initial, 1.0))
        self.states: dict[str, PodState] = {}
        self.pods: SharedInformer[Pod] = SharedInformer(
            client, Pod, resource="pods", field_selector=f"spec.nodeName={node_name}")
        # Every Service, for the pods' Service environment variables (upstream's service
        # lister; the Node authorizer lets a node read Services).
        self.services: SharedInformer[Service] = SharedInformer(
            client, Service, resource="services")
        self._synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()  # expedited kills

    # --- events -----------------------------------------------------------------------------

    def record(self, pod: Obj, type_: str, reason: str, message: str) -> None:
        self.recorder.event(pod, type_, reason, message)

    def _container_event(self, pod: Obj, spec: Obj, type_: str, reason: str,
                         message: str) -> None:
        init = any(c.get("name") == spec.get("name") for c in init_containers_of(pod))
        self.recorder.event(container_ref(pod, spec.get("name", ""), init), type_, reason,
                            message)

    # --- wiring -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled. Cancelling leaves the containers running, as a real kubelet does."""
        await self._wait_runtime()
        await self.node.register()
        self._tasks.append(asyncio.create_task(self.node.run(), name="node status"))
        self.pods.add_event_handler(on_add=self._pod_event,
                                    on_update=lambda _old, new: self._pod_event(new),
                                    on_delete=self._pod_deleted)
        self.services.start()
        self.pods.start()
        await self.pods.wait_for_sync()
        await self.services.wait_for_sync()
        self.node.health.pleg_started()  # judged from now on: see kubelet/health.py
        await self._relist(initial=True)
        self.node.health.relisted()
        self._synced.set()
        for uid, st in list(self.states.items()):
            if st.pod is not None or st.ids:
                self.workers.wake(uid)
        await self._cleanup_orphan_volumes()
        self._tasks += [
            asyncio.create_task(self._relist_loop(), name="pleg relist"),
            asyncio.create_task(self._events_loop(), name="pleg events"),
            asyncio.create_task(self._resync_loop(), name="resync"),
        ]
        log.info("kubelet %s running", self.node_name)
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.close()

    async def close(self) -> None:
        for t in [*self._tasks, *self._background]:
            t.cancel()
        await self.workers.stop()
        await self.pods.stop()
        await self.services.stop()
        with contextlib.suppress(Exception):
            await self.prober.close()
        await self.recorder.close(grace=2.0)

    def _service_env(self, pod: Obj) -> dict[str, str]:
        """The Service variables of `pod` (upstream getServiceEnvVarMap). Until the Service
        informer has listed once the answer would silently miss variables, so the container
        waits, as upstream's does, with CreateContainerConfigError."""
        if not self.services.has_synced:
            raise EnvError("services have not yet been read at least once, cannot construct "
                           "envvars")
        md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        links = spec.get("enableServiceLinks")
        namespace = str(md.get("namespace") or "default")
        # Only two namespaces can matter: skip converting every other Service in the cluster.
        candidates = (svc.to_dict() for svc in self.services.store.list()
                      if svc.metadata is not None
                      and svc.metadata.namespace in (namespace, "default"))
        return service_env(services_for_pod(candidates, namespace,
                                            enable_service_links=links is None or bool(links)))

    async def _wait_runtime(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.runtime.ping()
                return
            except RuntimeUnavailable as e:
                log.warning("container runtime not available: %s; retrying", e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _state(self, uid: str) -> PodState:
        st = self.states.get(uid)
        if st is None:
            st = self.states[uid] = PodState(uid)
        return st

    def _pod_event(self, pod: Pod) -> None:
        data = pod.to_dict()
        uid = (data.get("metadata") or {}).get("uid", "")
        st = self._state(uid)
        previous = st.pod
        st.pod, st.last = data, data
        if st.finished:
            return
        if is_terminating(data):
            self._shorten_grace(st, grace_period(data))
        if self._synced.is_set() and needs_sync(previous, data):
            self.workers.wake(uid)

    def _pod_deleted(self, pod: Pod) -> None:
        uid = pod.metadata.uid or ""
        st = self.states.get(uid)
        if st is None:
            return
        st.pod = None
        if st.finished:
            self._forget(uid)
            return
        # Gone from the API without the kubelet's confirmation: force-deleted. A termination
        # in progress must not sit out the rest of its grace period.
        self._shorten_grace(st, FORCE_GRACE)
        if self._synced.is_set():
            self.workers.wake(uid)

    def _shorten_grace(self, st: PodState, grace: float) -> None:
        """A kill in progress whose grace period was shortened: stop the containers again with
        the shorter one (a second `docker stop` SIGKILLs at its own, earlier, deadline)."""
        if math.isinf(st.kill_deadline):
            return
        grace = max(grace, FORCE_GRACE)
        deadline = time.monotonic() + max(grace, MIN_GRACE)
        if deadline >= st.kill_deadline - 0.5:
            return
        st.kill_deadline = deadline
        task = asyncio.create_task(self._expedite(st, grace),
                                   name=f"shortened kill of {st.uid}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _expedite(self, st: PodState, grace: float) -> None:
        results = await asyncio.gather(*(self.runtime.inspect(i) for i in list(st.ids)),
                                       return_exceptions=True)
        running = [r for r in results if isinstance(r, ContainerInfo)
                   and not r.is_sandbox and r.state == RUNNING]
        if running:
            log.info("pod %s: grace period shortened to %.0fs", st.uid, grace)
        await asyncio.gather(*(self._stop(c, grace) for c in running))

    def _forget(self, uid: str) -> None:
        if uid in self.workers:
            return  # the worker ends soon and looks again
        self.states.pop(uid, None)
        self.status.forget(uid)

    def _probe_changed(self, uid: str) -> None:
        if uid in self.states and not self.states[uid].finished:
            self.workers.wake(uid, create=True)

    # --- PLEG -------------------------------------------------------------------------------

    async def _relist(self, initial: bool = False) -> None:
        """List this node's containers; wake the pods whose containers changed; start the
        teardown of containers whose pod is not ours (after the pod cache synced)."""
        # Only the first relist needs each container's details (adoption: st.infos, the IP);
        # later ones only notice changes, and the list alone says what changed.
        infos = await self.runtime.list_containers(self.node_name, detail=initial)
        by_uid: dict[str, list[ContainerInfo]] = {}
        for c in infos:
            if c.pod_uid:
                by_uid.setdefault(c.pod_uid, []).append(c)
        for uid, cs in by_uid.items():
            st = self._state(uid)
            if not st.last:
                st.last = pod_from_labels(cs[0])
            st.ids.update(c.id for c in cs)
            fp = frozenset((c.id, c.state) for c in cs)
            if fp != st.fingerprint:
                st.fingerprint = fp
                if initial:
                    st.infos = cs
                    if st.ip is None:
                        st.ip = self._adopted_ip(st.pod or st.last, cs)
                elif not st.finished:
                    self.workers.wake(uid)
        for uid, st in self.states.items():
            if uid not in by_uid and st.fingerprint:
                st.fingerprint = frozenset()
                if not initial and not st.finished:
                    self.workers.wake(uid)

    def _adopted_ip(self, pod: Obj, cs: list[ContainerInfo]) -> str | None:
        boxes = [b for b in sandboxes(cs) if b.state == RUNNING]
        if not boxes:
            return None
        if (pod.get("spec") or {}).get("hostNetwork"):
            return self.node.node_ip
        return self.cni.cached_ip(boxes[0].id)

    async def _relist_loop(self) -> None:
        while True:
            await asyncio.sleep(self.relist_period)
            try:
                await self._relist()
                self.node.health.relisted()  # the PLEG health check's heartbeat
            except RuntimeFailure as e:
                log.warning("relist: %s", e)
            except Exception:
                log.exception("relist failed")
            self.crash_backoff.gc(time.time())
            self.image_backoff.gc(time.time())

    async def _events_loop(self) -> None:
        while True:
            try:
                async for ev in self.runtime.events(self.node_name):
                    attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                    uid = attrs.get(L.POD_UID)
                    if uid and uid in self.states and ev.get("Action") in (
                            "start", "die", "oom", "destroy", "kill", "stop"):
                        st = self.states[uid]
                        if not st.finished:
                            self.workers.wake(uid)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info("docker event stream ended (%s); reconnecting", e)
            await asyncio.sleep(1.0)

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_frequency)
            for uid, st in list(self.states.items()):
                if st.pod is not None and not st.finished:
                    self.workers.wake(uid)

    async def _cleanup_orphan_volumes(self) -> None:
        for uid in self.volumes.pod_dirs():
            if uid not in self.states:
                try:
                    await self.volumes.teardown(uid)
                    log.info("removed the volumes of orphaned pod %s", uid)
                except (VolumeError, OSError) as e:
                    log.warning("orphaned pod %s: %s", uid, e)

    # --- resolve (logs / exec) --------------------------------------------------------------

    def resolve(self, namespace: str, name: str, container: str | None,
                previous: bool) -> str:
        pod = next((st.pod for st in self.states.values() if st.pod is not None
                    and (st.pod.get("metadata") or {}).get("namespace") == namespace
                    and (st.pod.get("metadata") or {}).get("name") == name), None)
        if pod is None:
            raise errors.NotFound(message=f'pods "{name}" not found', kind="pods", name=name)
        uid = pod["metadata"].get("uid", "")
        specs = (pod.get("spec") or {}).get("containers") or []
        inits = init_containers_of(pod)
        all_names = [c["name"] for c in inits + specs]
        if not container:
            if len(specs) == 1:
                container = specs[0]["name"]
            else:
                raise errors.BadRequest(
                    message=f"a container name must be specified for pod {name}, choose one "
                            f"of: [{' '.join(c['name'] for c in specs)}]"
                            + (f" or one of the init containers: "
                               f"[{' '.join(c['name'] for c in inits)}]" if inits else ""))
        if container not in all_names:
            raise errors.BadRequest(
                message=f"container {container} is not valid for pod {name}")
        st = self.states.get(uid)
        mine = [c for c in (st.infos if st else []) if not c.is_sandbox
                and c.container_name == container]
        mine.sort(key=lambda c: (c.restart_count, c.created), reverse=True)
        # upstream validateContainerLogStatus reads the status: a container waiting to be
        # restarted (CrashLoopBackOff, ...) has its newest, exited instance as lastState, so
        # that one is "previous" too.
        reason = st.reasons.get(container) if st is not None else None
        waiting = reason is not None and bool(mine) and mine[0].state == EXITED
        if previous:
            last = mine[0] if waiting else (mine[1] if len(mine) > 1 else None)
            if last is None or last.state != EXITED:
                raise errors.BadRequest(message=f'previous terminated container "{container}" '
                                                f'in pod "{name}" not found')
            return last.id
        if not mine:
            why = {"ErrImagePull": "image can't be pulled",
                   "ImagePullBackOff": "trying and failing to pull image"}.get(
                reason.reason if reason else "", reason.reason if reason else "ContainerCreating")
            raise errors.BadRequest(message=f'container "{container}" in pod "{name}" is '
                                            f"waiting to start: {why}")
        return mine[0].id

    # --- the sync ---------------------------------------------------------------------------

    async def _inspect(self, st: PodState) -> list[ContainerInfo]:
        """Fresh state of every container of the pod we know of (relist + our own creations)."""
        ids = list(st.ids)
        results = await asyncio.gather(*(self.runtime.inspect(i) for i in ids))
        infos = [r for r in results if r is not None]
        st.ids = {c.id for c in infos}
        st.infos = infos
        return infos

    async def sync_pod(self, uid: str) -> float | None:
        st = self.states.get(uid)
        if st is None:
            return None
        if st.finished and (st.pod is None or is_terminating(st.pod)):
            self._forget_after(uid)
            return None
        pod = st.pod
        if pod is None:
            await self._teardown(st, st.last, FORCE_GRACE)
            st.finished = True
            self._forget_after(uid)
            return None
        if is_terminating(pod):
            return await self._terminate(st, pod)
        return await self._sync_running(st, pod)

    def _forget_after(self, uid: str) -> None:
        st = self.states.get(uid)
        if st is not None and st.pod is None:
            self.states.pop(uid, None)
            self.status.forget(uid)
        self.prober.remove_pod(uid)

    async def _sync_running(self, st: PodState, pod: Obj) -> float | None:
        infos = await self._inspect(st)
        actions = compute_pod_actions(
            pod, infos, has_ip=bool(st.ip),
            probe_failure=lambda name, cid: self.prober.liveness_failed(st.uid, name, cid),
            container_hash=L.container_hash,
            hash_of=lambda c: c.labels.get(L.CONTAINER_HASH, ""))
        again = math.inf
        if not actions.idle:
            again = min(again, await self._apply(st, pod, infos, actions))
            infos = await self._inspect(st)
        # Garbage: dead containers beyond the newest per name (not for finished pods' last
        # containers, which containers_to_remove keeps anyway).
        removed = False
        for c in containers_to_remove(pod, infos):
            with contextlib.suppress(RuntimeFailure):
                await self.runtime.remove(c.id)
                st.ids.discard(c.id)
                removed = True
        if removed:  # (after _apply, infos above are fresh already: no second inspect)
            infos = await self._inspect(st)
        if st.volumes is not None and time.monotonic() - st.volumes_at > self.sync_frequency \
                and any(c.state == RUNNING for c in infos if not c.is_sandbox):
            await self._setup_volumes(st, pod)  # configMap/secret contents, tokens refreshed
        self._update_probes(st, pod, infos)
        await self._write_status(st, pod, infos)
        return again

    def _update_probes(self, st: PodState, pod: Obj, infos: list[ContainerInfo]) -> None:
        now_wall, now_mono = time.time(), time.monotonic()
        running: dict[str, tuple[str, float]] = {}
        for name, c in latest_by_name(infos).items():
            if c.state == RUNNING:
                started = parse_time(c.started_at) or now_wall
                running[name] = (c.id, now_mono - max(0.0, now_wall - started))
        try:
            self.prober.update_pod(pod, st.ip or "", running)
        except Exception:
            log.exception("prober update for %s", pod_key(pod))

    async def _write_status(self, st: PodState, pod: Obj, infos: list[ContainerInfo],
                            terminal: bool = False) -> None:
        boxes = sandboxes(infos)
        sandbox_ready = bool(boxes and boxes[0].state == RUNNING and st.ip)
        status = generate_pod_status(
            pod, infos, pod_ip=st.ip if sandbox_ready or terminal else None,
            host_ip=self.node.node_ip, now=now_rfc3339(),
            ready=lambda name, cid: self.prober.ready(st.uid, name, cid),
            started=lambda name, cid: self.prober.started(st.uid, name, cid),
            reasons=st.reasons, sandbox_ready=sandbox_ready and not terminal, terminal=terminal)
        written = await self.status.write(pod, status)
        if written is not None and st.pod is not None and \
                (st.pod.get("metadata") or {}).get("uid") == st.uid:
            # Our own write is the freshest copy until the informer delivers it.
            if _rv(written) >= _rv(st.pod):
                st.pod = written

    async def _apply(self, st: PodState, pod: Obj, infos: list[ContainerInfo],
                     actions: PodActions) -> float:
        """Carry out the actions; returns when the pod wants to be synced again."""
        again = math.inf
        if actions.kill_pod:
            await self._kill_pod(st, pod, infos, grace_period(pod))
            if actions.create_sandbox and actions.attempt > 0:
                self.record(pod, NORMAL, "SandboxChanged",
                            "Pod sandbox changed, it will be killed and re-created.")
            infos = await self._inspect(st)
        else:
            kills = []
            for cid, why in actions.kill.items():
                info = next((c for c in infos if c.id == cid), None)
                if info is not None and why.spec is not None:
                    kills.append(self._kill_container(pod, info, why.spec, grace_period(pod),
                                                      why.message))
                elif info is not None:
                    kills.append(self._stop(info, grace_period(pod)))
            if kills:
                await asyncio.gather(*kills)
                infos = await self._inspect(st)
        if actions.create_sandbox:
            ok = await self._create_sandbox(st, pod, actions.attempt)
            if not ok:
                return self.crash_backoff.initial
            infos = await self._inspect(st)
        boxes = [b for b in sandboxes(infos) if b.state == RUNNING]
        if not boxes:
            return again if not (actions.start or actions.next_init) else \
                self.crash_backoff.initial
        sandbox_id = boxes[0].id
        to_start = [actions.next_init] if actions.next_init is not None else actions.start
        if not to_start:
            return again
        if not await self._setup_volumes(st, pod):
            return self.crash_backoff.initial
        for spec in to_start:
            assert spec is not None
            wait = await self._start_container(st, pod, spec, sandbox_id, infos)
            if wait is not None:
                again = min(again, wait)
        return again

    async def _setup_volumes(self, st: PodState, pod: Obj) -> bool:
        try:
            st.volumes = await self.volumes.setup(pod)
            st.volumes_at = time.monotonic()
            return True
        except VolumeError as e:
            self.record(pod, WARNING, "FailedMount", str(e))
            for c in (pod.get("spec") or {}).get("containers") or []:
                st.reasons.setdefault(c["name"], Reason("ContainerCreating", ""))
            return False

    async def _create_sandbox(self, st: PodState, pod: Obj, attempt: int) -> bool:
        sandbox_id = ""
        try:
            sandbox_id = await self.runtime.create_sandbox(pod, self.node_name, attempt,
                                                           self.pod_infra_image)
            st.ids.add(sandbox_id)
            await self.runtime.start(sandbox_id)
            if (pod.get("spec") or {}).get("hostNetwork"):
                st.ip = self.node.node_ip
            else:
                netns = await self.runtime.netns_path(sandbox_id)
                st.ip = await self.cni.add(sandbox_id, netns, pod, self.node.pod_cidr)
            st.reasons.clear()
            return True
        except (RuntimeFailure, CNIError, OSError) as e:
            what = "failed to set up sandbox network" if isinstance(e, CNIError) else \
                "failed to create sandbox"
            self.record(pod, WARNING, "FailedCreatePodSandBox",
                        f"Failed to create pod sandbox: {what}: {e}")
            log.warning("pod %s: sandbox: %s", pod_key(pod), e)
            if sandbox_id:
                with contextlib.suppress(RuntimeFailure):
                    await self.runtime.remove(sandbox_id)
                st.ids.discard(sandbox_id)
            st.ip = None
            return False

    async def _start_container(self, st: PodState, pod: Obj, spec: Obj, sandbox_id: str,
                               infos: list[ContainerInfo]) -> float | None:
        """Start one container (upstream startContainer, with doBackOff first); returns a delay
        after which the pod wants another sync, or None."""
        name = spec["name"]
        latest = latest_by_name(infos).get(name)
        if latest is not None and latest.state == EXITED:
            key = f"{st.uid}_{name}"
            finished = parse_time(latest.finished_at) or time.time()
            remaining = self.crash_backoff.in_backoff(key, time.time(), since=finished)
            if remaining > 0:
                delay = go_duration(self.crash_backoff.get(key))
                self._container_event(pod, spec, WARNING, "BackOff",
                                      f"Back-off restarting failed container {name} in pod "
                                      f"{format_pod(pod)}")
                st.reasons[name] = Reason(
                    "CrashLoopBackOff",
                    f"back-off {delay} restarting failed container={name} pod={format_pod(pod)}")
                return remaining + 0.05
            self.crash_backoff.next(key, finished)
        try:
            await self.images.ensure(pod, spec, involved=container_ref(
                pod, name, any(c.get("name") == name for c in init_containers_of(pod))))
        except ImageError as e:
            # upstream startContainer: "Error: ErrImagePull" / "Error: ImagePullBackOff"
            self._container_event(pod, spec, WARNING, "Failed", f"Error: {e.reason}")
            st.reasons[name] = Reason(e.reason, e.message)
            return self.image_backoff.initial
        pod_with_ip = _with_ip(pod, st.ip)
        try:
            env = await container_env(self.client, pod_with_ip, spec, pod_ip=st.ip or "",
                                      host_ip=self.node.node_ip, node_name=self.node_name,
                                      services=self._service_env(pod))
            mounts = self.volumes.mounts(pod_with_ip, spec, st.volumes or {})
        except (EnvError, VolumeError) as e:
            self._container_event(pod, spec, WARNING, "Failed", f"Error: {e}")
            st.reasons[name] = Reason("CreateContainerConfigError", str(e))
            return self.crash_backoff.initial
        restarts = restart_count_for(name, infos)
        try:
            cfg = container_config(pod, spec, sandbox_id=sandbox_id, restart_count=restarts,
                                   env=env, mounts=mounts, node_name=self.node_name)
            cid = await self.runtime.create_container(cfg)
        except (RuntimeFailure, ValueError) as e:
            self._container_event(pod, spec, WARNING, "Failed", f"Error: {e}")
            st.reasons[name] = Reason("CreateContainerError", str(e))
            return self.crash_backoff.initial
        st.ids.add(cid)
        self._container_event(pod, spec, NORMAL, "Created", f"Created container {name}")
        try:
            await self.runtime.start(cid)
        except RuntimeFailure as e:
            self._container_event(pod, spec, WARNING, "Failed", f"Error: {e}")
            st.reasons[name] = Reason("RunContainerError", str(e))
            return self.crash_backoff.initial
        self._container_event(pod, spec, NORMAL, "Started", f"Started container {name}")
        st.reasons.pop(name, None)
        post_start = (spec.get("lifecycle") or {}).get("postStart")
        if post_start:
            msg = await self.prober.run_handler(pod, spec, cid, st.ip or "", post_start,
                                                grace_period(pod))
            if msg is not None:
                self._container_event(pod, spec, WARNING, "FailedPostStartHook", msg)
                info = await self.runtime.inspect(cid)
                if info is not None:
                    await self._kill_container(pod, info, spec, grace_period(pod),
                                               "FailedPostStartHook", run_pre_stop=False)
                st.reasons[name] = Reason("PostStartHookError", msg)
        return None

    # --- killing ----------------------------------------------------------------------------

    async def _stop(self, info: ContainerInfo, grace: float) -> None:
        if info.state != RUNNING:
            return
        try:
            await self.runtime.stop(info.id, max(MIN_GRACE, grace))
        except ContainerNotFound:
            pass
        except RuntimeFailure as e:
            log.warning("stopping %s: %s", info.name, e)

    async def _kill_container(self, pod: Obj, info: ContainerInfo, spec: Obj | None,
                              grace: float, message: str = "", *,
                              run_pre_stop: bool = True) -> None:
        """killContainer: the Killing event, the preStop hook, then SIGTERM with what is left
        of the grace period (at least 2s), SIGKILL after it."""
        if info.state != RUNNING:
            return
        name = info.container_name
        ref_spec = spec or {"name": name}
        self._container_event(pod, ref_spec, NORMAL, "Killing",
                              message or f"Stopping container {name}")
        started = time.monotonic()
        pre_stop = ((spec or {}).get("lifecycle") or {}).get("preStop")
        if pre_stop and run_pre_stop:
            st = self.states.get((pod.get("metadata") or {}).get("uid", ""))
            try:
                async with asyncio.timeout(grace + 1):  # not wait_for: see kubelet/prober.py
                    msg = await self.prober.run_handler(
                        pod, spec or {}, info.id, (st.ip if st else "") or "", pre_stop, grace)
            except TimeoutError:
                msg = f"PreStopHook did not finish within the grace period ({grace:.0f}s)"
            if msg is not None:
                self._container_event(pod, ref_spec, WARNING, "FailedPreStopHook", msg)
        remaining = max(MIN_GRACE, grace - (time.monotonic() - started))
        await self._stop(info, remaining)

    async def _kill_pod(self, st: PodState, pod: Obj, infos: list[ContainerInfo],
                        grace: float) -> None:
        """Stop every running container in parallel, then the sandbox (network released)."""
        specs = {c["name"]: c for c in ((pod.get("spec") or {}).get("containers") or [])
                 + init_containers_of(pod)}
        app = [c for c in infos if not c.is_sandbox and c.state == RUNNING]
        await asyncio.gather(*(self._kill_container(pod, c, specs.get(c.container_name), grace)
                               for c in app))
        await self._stop_sandboxes(st, pod, infos)

    async def _stop_sandboxes(self, st: PodState, pod: Obj, infos: list[ContainerInfo]) -> None:
        for box in sandboxes(infos):
            # Release the network of a running sandbox, or of one whose ADD result is still
            # cached (it died without a DEL); a sandbox already released costs nothing.
            if not (pod.get("spec") or {}).get("hostNetwork") and (
                    box.state == RUNNING or self.cni.cached_ip(box.id) is not None):
                netns: str | None = None
                if box.state == RUNNING:
                    with contextlib.suppress(RuntimeFailure):
                        netns = await self.runtime.netns_path(box.id)
                try:
                    await self.cni.delete(box.id, netns, pod)
                except (CNIError, OSError) as e:
                    log.warning("pod %s: CNI DEL of %s: %s", pod_key(pod), box.id[:12], e)
            if box.state == RUNNING:
                with contextlib.suppress(ContainerNotFound):
                    await self.runtime.stop(box.id, MIN_GRACE)

    async def _teardown(self, st: PodState, pod: Obj, grace: float) -> None:
        """Everything of the pod goes: containers stopped (gracefully) and removed, sandbox
        network released, volumes removed, probes stopped."""
        infos = await self._inspect(st)
        await self._kill_pod(st, pod, infos, grace)
        self.prober.remove_pod(st.uid)
        for c in infos:
            with contextlib.suppress(RuntimeFailure):
                await self.runtime.remove(c.id)
        st.ids.clear()
        st.infos = []
        try:
            await self.volumes.teardown(st.uid)
        except (VolumeError, OSError) as e:
            log.warning("pod %s: volume teardown: %s", pod_key(pod), e)
        log.info("pod %s (%s) torn down", pod_key(pod), st.uid)

    async def _terminate(self, st: PodState, pod: Obj) -> float | None:
        """Graceful deletion, then the final status and the delete with grace 0."""
        infos = await self._inspect(st)
        grace = grace_period(pod)
        st.kill_deadline = time.monotonic() + max(grace, MIN_GRACE)
        try:
            await self._kill_pod(st, pod, infos, grace)
        finally:
            st.kill_deadline = math.inf
        stopped = await self._inspect(st)
        with contextlib.suppress(errors.ApiError):
            await self._write_status(st, pod, stopped, terminal=True)
        await self._teardown(st, pod, 0)
        md = pod.get("metadata") or {}
        try:
            await self.client.delete("pods", md.get("name", ""), md.get("namespace"),
                                     grace_period_seconds=0, precondition_uid=st.uid)
        except (errors.NotFound, errors.Conflict):
            pass
        st.finished = True
        if st.pod is None:
            self._forget_after(st.uid)
        else:
            self.prober.remove_pod(st.uid)
        return None


def _with_ip(pod: Obj, ip: str | None) -> Obj:
    """The pod with its IP in the status (env vars and /etc/hosts read it from there)."""
    if not ip:
        return pod
    status = dict(pod.get("status") or {})
    status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
    return {**pod, "status": status}


def _rv(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0
