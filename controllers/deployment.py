"""The deployment controller: rolls a Deployment's pods from one ReplicaSet to the next.

A Deployment never touches pods. For each pod template it owns one ReplicaSet named
`<deployment>-<pod-template-hash>` and moves replicas between them: the RollingUpdate strategy
grows the new ReplicaSet and shrinks the old ones within maxSurge / maxUnavailable, Recreate
empties the old ones before the new one starts. A resize in mid-rollout is spread over the
ReplicaSets in proportion to their size (the desired-replicas / max-replicas annotations remember
what each was sized for). Revisions, history cleanup, pause, progress deadline and conditions
follow upstream's pkg/controller/deployment; the arithmetic lives in `deployment_util`.

Like upstream it needs no expectations: ReplicaSet names are deterministic, so a create the
cache has not seen yet comes back AlreadyExists instead of making a twin, and every scale is an
update with the cached resourceVersion, so a stale view is a Conflict and a retry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from api import errors
from api.apps import Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec
from api.core import Pod, PodTemplateSpec
from api.meta import LabelSelector, ObjectMeta, OwnerReference
from api.podutil import POD_TEMPLATE_HASH, controller_ref, new_controller_ref, pod_phase
from api.selectors import Selector, from_label_selector
from client.store import split_meta_namespace_key
from controllers import deployment_util as du
from controllers.base import Controller, ControllerContext

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DeploymentController(Controller):
    name = "deployment"
    component = "deployment-controller"

    def __init__(self, ctx: ControllerContext, workers: int | None = None,
                 clock: Clock = _utcnow) -> None:
        super().__init__(ctx, workers)
        self.now = clock

    # --- wiring -----------------------------------------------------------------------------

    def setup(self) -> None:
        self.d_informer = self.factory.informer_for(Deployment)
        self.rs_informer = self.factory.informer_for(ReplicaSet)
        self.pod_informer = self.factory.informer_for(Pod)
        self.d_informer.add_event_handler(
            on_add=self.enqueue, on_update=lambda _old, new: self.enqueue(new),
            on_delete=self.enqueue)
        self.rs_informer.add_event_handler(
            on_add=self._rs_added, on_update=self._rs_updated, on_delete=self._rs_deleted)
        self.pod_informer.add_event_handler(on_delete=self._pod_deleted)

    def _owner(self, obj: ReplicaSet | Pod, ref: OwnerReference | None = None
               ) -> Deployment | None:
        """The Deployment a controllerRef names, if it still is that object (uid match)."""
        ref = ref or controller_ref(obj)
        if ref is None or ref.kind != "Deployment":
            return None
        d = self.d_informer.lister.get(ref.name, obj.namespace)
        return d if d is not None and d.metadata.uid == ref.uid else None

    def _matching(self, rs: ReplicaSet) -> list[Deployment]:
        """Deployments whose selector matches an orphan ReplicaSet (adoption candidates)."""
        out = []
        for d in self.d_informer.lister.list(rs.namespace):
            sel = _selector(d)
            if sel is not None and not sel.empty and sel.matches(rs.metadata.labels):
                out.append(d)
        return out

    def _rs_added(self, rs: ReplicaSet) -> None:
        if rs.metadata.deletion_timestamp is not None:
            self._rs_deleted(rs)
            return
        if controller_ref(rs) is not None:
            d = self._owner(rs)
            if d is not None:
                self.enqueue(d)
            return
        for d in self._matching(rs):
            self.enqueue(d)

    def _rs_updated(self, old: ReplicaSet, cur: ReplicaSet) -> None:
        if old.metadata.resource_version == cur.metadata.resource_version:
            return  # a resync: Deployments have their own
        old_ref, cur_ref = controller_ref(old), controller_ref(cur)
        if old_ref is not None and (cur_ref is None or cur_ref.uid != old_ref.uid):
            d = self._owner(old, old_ref)
            if d is not None:
                self.enqueue(d)
        if cur_ref is not None:
            d = self._owner(cur)
            if d is not None:
                self.enqueue(d)
            return
        if old.metadata.labels != cur.metadata.labels or old_ref is not None:
            for d in self._matching(cur):
                self.enqueue(d)

    def _rs_deleted(self, rs: ReplicaSet) -> None:
        d = self._owner(rs)
        if d is not None:
            self.enqueue(d)

    def _pod_deleted(self, pod: Pod) -> None:
        """Recreate waits for old pods to be gone: look again when one goes."""
        ref = controller_ref(pod)
        if ref is None or ref.kind != "ReplicaSet":
            return
        rs = self.rs_informer.lister.get(ref.name, pod.namespace)
        if rs is None or rs.metadata.uid != ref.uid:
            return
        d = self._owner(rs)
        if d is not None and du.strategy_type(d) == du.RECREATE:
            self.enqueue(d)

    # --- sync -------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ns, name = split_meta_namespace_key(key)
        cached = self.d_informer.lister.get(name, ns)
        if cached is None:
            return
        d = cached.model_copy(deep=True)
        sel = _selector(d)
        if sel is None or sel.empty:
            self.recorder.event(d, "Warning", "SelectingAll",
                                "This deployment is selecting all pods. A non-empty selector "
                                "is required.")
            if (_status(d).observed_generation or 0) < (d.metadata.generation or 0):
                st = _status(d).model_copy()
                st.observed_generation = d.metadata.generation
                await self._write_status(d, st)
            return
        rss = await self._claim_replica_sets(d, sel)
        if d.metadata.deletion_timestamp is not None:
            await self._sync_status_only(d, rss)
            return
        await self._check_paused_conditions(d)
        if d.spec and d.spec.paused:
            await self._sync_scale(d, rss)
            return
        if await self._is_scaling_event(d, rss):
            await self._sync_scale(d, rss)
            return
        if du.strategy_type(d) == du.RECREATE:
            await self._rollout_recreate(d, rss)
        else:
            await self._rollout_rolling(d, rss)

    # --- ownership --------------------------------------------------------------------------

    async def _claim_replica_sets(self, d: Deployment, sel: Selector) -> list[ReplicaSet]:
        """ClaimReplicaSets: keep ours that match, adopt matching orphans, release the rest."""
        owned: list[ReplicaSet] = []
        fresh_checked = False
        for rs in self.rs_informer.lister.list(d.namespace):
            ref = controller_ref(rs)
            matches = sel.matches(rs.metadata.labels)
            if ref is not None:
                if ref.uid != d.metadata.uid:
                    continue
                if matches:
                    owned.append(rs)
                elif d.metadata.deletion_timestamp is None:
                    await self._release(d, rs)
                continue
            if (not matches or d.metadata.deletion_timestamp is not None
                    or rs.metadata.deletion_timestamp is not None):
                continue
            if not fresh_checked:
                await self.recheck_not_deleted("deployments", d)
                fresh_checked = True
            adopted = await self._adopt(d, rs)
            if adopted is not None:
                owned.append(adopted)
        return owned

    async def _adopt(self, d: Deployment, rs: ReplicaSet) -> ReplicaSet | None:
        refs = [r.to_dict() for r in rs.metadata.owner_references or []]
        refs.append(new_controller_ref(d).to_dict())
        patch = {"metadata": {"ownerReferences": refs, "uid": rs.metadata.uid,
                              "resourceVersion": rs.metadata.resource_version}}
        try:
            out = await self.client.patch("replicasets", rs.name, patch, rs.namespace)
        except errors.NotFound:
            return None
        return ReplicaSet.model_validate(out)

    async def _release(self, d: Deployment, rs: ReplicaSet) -> None:
        refs = [r.to_dict() for r in rs.metadata.owner_references or []
                if r.uid != d.metadata.uid]
        patch = {"metadata": {"ownerReferences": refs or None, "uid": rs.metadata.uid,
                              "resourceVersion": rs.metadata.resource_version}}
        try:
            await self.client.patch("replicasets", rs.name, patch, rs.namespace)
        except (errors.NotFound, errors.Invalid):
            pass

    def _pods_by_rs(self, d: Deployment, rss: list[ReplicaSet]) -> dict[str, list[Pod]]:
        """getPodMapForDeployment: the Deployment's pods, grouped by their ReplicaSet's uid."""
        uids: dict[str, list[Pod]] = {rs.metadata.uid: [] for rs in rss if rs.metadata.uid}
        sel = _selector(d)
        for pod in self.pod_informer.lister.list(d.namespace, sel):
            ref = controller_ref(pod)
            if ref is not None and ref.uid in uids:
                uids[ref.uid].append(pod)
        return uids

    # --- the new ReplicaSet and revisions -----------------------------------------------------

    async def _get_all_replica_sets(self, d: Deployment, rss: list[ReplicaSet], create: bool
                                    ) -> tuple[ReplicaSet | None, list[ReplicaSet]]:
        """getAllReplicaSetsAndSyncRevision: (new or None, all old)."""
        old = du.find_old_replica_sets(d, rss)
        new = await self._get_new_replica_set(d, rss, old, create)
        return new, old

    async def _get_new_replica_set(self, d: Deployment, rss: list[ReplicaSet],
                                   old: list[ReplicaSet], create: bool) -> ReplicaSet | None:
        existing = du.find_new_replica_set(d, rss)
        new_revision = du.max_revision(old) + 1
        if existing is not None:
            return await self._sync_existing_new(d, existing, new_revision)
        if not create:
            return None
        return await self._create_new(d, old, new_revision)

    async def _sync_existing_new(self, d: Deployment, existing: ReplicaSet,
                                 new_revision: int) -> ReplicaSet:
        rs = existing.model_copy(deep=True)
        changed = du.set_new_replica_set_annotations(d, rs, new_revision, exists=True)
        min_ready = d.spec.min_ready_seconds if d.spec else None
        if changed or (rs.spec and rs.spec.min_ready_seconds != min_ready):
            assert rs.spec is not None
            rs.spec.min_ready_seconds = min_ready
            return await self._update_rs(rs)
        await self._set_revision(d, (rs.metadata.annotations or {}).get(du.REVISION, ""))
        if du.has_progress_deadline(d) and du.get_condition(d.status, du.PROGRESSING) is None:
            st = _status(d).model_copy(deep=True)
            du.set_condition(st, du.new_condition(
                du.PROGRESSING, "True", du.FOUND_NEW_RS, f'Found new replica set "{rs.name}"',
                self.now()))
            await self._write_status(d, st)
        return rs

    async def _create_new(self, d: Deployment, old: list[ReplicaSet],
                          new_revision: int) -> ReplicaSet:
        assert d.spec is not None
        template = (d.spec.template or PodTemplateSpec()).model_copy(deep=True)
        collision = _status(d).collision_count
        h = du.compute_hash(d.spec.template, collision)
        tmeta = template.metadata = template.metadata or ObjectMeta()
        tmeta.labels = {**(tmeta.labels or {}), POD_TEMPLATE_HASH: h}
        sel = (d.spec.selector or LabelSelector()).model_copy(deep=True)
        sel.match_labels = {**(sel.match_labels or {}), POD_TEMPLATE_HASH: h}
        rs = ReplicaSet(
            metadata=ObjectMeta(name=f"{d.name}-{h}", namespace=d.namespace,
                                owner_references=[new_controller_ref(d)],
                                labels=dict(tmeta.labels)),
            spec=ReplicaSetSpec(replicas=0, min_ready_seconds=d.spec.min_ready_seconds,
                                selector=sel, template=template))
        assert rs.spec is not None
        rs.spec.replicas = du.new_rs_new_replicas(d, [*old, rs], rs)
        du.set_new_replica_set_annotations(d, rs, new_revision, exists=False)
        try:
            created = ReplicaSet.model_validate(
                await self.client.create("replicasets", rs.to_dict(), d.namespace))
        except errors.AlreadyExists:
            return await self._on_name_taken(d, rs)
        except errors.ApiError as e:
            await self._on_create_failed(d, rs, e)
            raise
        n = du.spec_replicas(created)
        if n > 0:
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled up replica set {created.name} from 0 to {n}")
        await self._set_revision(d, str(new_revision))
        if du.has_progress_deadline(d):
            st = _status(d).model_copy(deep=True)
            du.set_condition(st, du.new_condition(
                du.PROGRESSING, "True", du.NEW_RS_CREATED,
                f'Created new replica set "{created.name}"', self.now()))
            await self._write_status(d, st)
        return created

    async def _on_name_taken(self, d: Deployment, rs: ReplicaSet) -> ReplicaSet:
        """AlreadyExists: ours (a slow cache), or a hash collision to step around."""
        cur = ReplicaSet.model_validate(await self.client.get("replicasets", rs.name,
                                                              rs.namespace))
        ref = controller_ref(cur)
        template = d.spec.template if d.spec else None
        if ref is not None and ref.uid == d.metadata.uid and du.equal_ignore_hash(
                template, cur.spec.template if cur.spec else None):
            return cur
        st = _status(d).model_copy(deep=True)
        st.collision_count = (st.collision_count or 0) + 1
        await self._write_status(d, st)
        raise errors.AlreadyExists(
            message=f'replicasets.apps "{rs.name}" already exists (hash collision; '
                    f"collisionCount now {st.collision_count})")

    async def _on_create_failed(self, d: Deployment, rs: ReplicaSet,
                                e: errors.ApiError) -> None:
        msg = f'Failed to create new replica set "{rs.name}": {e.message}'
        if du.has_progress_deadline(d):
            st = _status(d).model_copy(deep=True)
            du.set_condition(st, du.new_condition(du.PROGRESSING, "False", du.FAILED_RS_CREATE,
                                                  msg, self.now()))
            try:
                await self._write_status(d, st)
            except errors.ApiError:
                pass
        self.recorder.event(d, "Warning", du.FAILED_RS_CREATE, msg)

    async def _set_revision(self, d: Deployment, rev: str) -> None:
        """The Deployment's revision annotation follows its new ReplicaSet's.

        Upstream writes it along with status; our status subresource keeps metadata, so this
        is a merge patch of the one annotation on the object itself (no generation bump).
        """
        if not rev or (d.metadata.annotations or {}).get(du.REVISION) == rev:
            return
        out = await self.client.patch(
            "deployments", d.name, {"metadata": {"annotations": {du.REVISION: rev}}},
            d.namespace)
        du.set_deployment_revision(d, rev)
        d.metadata.resource_version = (out.get("metadata") or {}).get("resourceVersion")

    # --- scaling ----------------------------------------------------------------------------

    async def _update_rs(self, rs: ReplicaSet) -> ReplicaSet:
        return ReplicaSet.model_validate(
            await self.client.update("replicasets", rs.to_dict(), rs.namespace))

    async def _scale_rs(self, rs: ReplicaSet, size: int, d: Deployment,
                        op: str = "") -> ReplicaSet:
        """scaleReplicaSet: set the size and the replica annotations; event when it moved."""
        old = du.spec_replicas(rs)
        desired, max_r = du.spec_replicas(d), du.spec_replicas(d) + du.max_surge(d)
        if old == size and not du.replicas_annotations_need_update(rs, desired, max_r):
            return rs
        new = rs.model_copy(deep=True)
        assert new.spec is not None
        new.spec.replicas = size
        du.set_replicas_annotations(new, desired, max_r)
        out = await self._update_rs(new)
        if old != size:
            op = op or ("up" if size > old else "down")
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled {op} replica set {rs.name} from {old} to {size}")
        return out

    async def _scale_and_record(self, rs: ReplicaSet, size: int,
                                d: Deployment) -> tuple[bool, ReplicaSet]:
        """scaleReplicaSetAndRecordEvent: (whether the size changed, the ReplicaSet)."""
        if du.spec_replicas(rs) == size:
            return False, rs
        return True, await self._scale_rs(rs, size, d)

    async def _is_scaling_event(self, d: Deployment, rss: list[ReplicaSet]) -> bool:
        """A resize (not a template change): an active ReplicaSet was sized for another
        replica count than the Deployment now wants."""
        new, old = await self._get_all_replica_sets(d, rss, create=False)
        for rs in du.filter_active([*old, new]):
            desired = du.desired_replicas_annotation(rs)
            if desired is not None and desired != du.spec_replicas(d):
                return True
        return False

    async def _scale(self, d: Deployment, new: ReplicaSet | None,
                     old: list[ReplicaSet]) -> None:
        """dc.scale: one active ReplicaSet takes the whole count; a saturated new one ends
        the old ones; otherwise a rolling Deployment resizes them proportionally."""
        target = du.find_active_or_latest(new, old)
        if target is not None:
            if du.spec_replicas(target) != du.spec_replicas(d):
                await self._scale_and_record(target, du.spec_replicas(d), d)
            return
        if du.is_saturated(d, new):
            for rs in du.filter_active(old):
                await self._scale_and_record(rs, 0, d)
            return
        if not du.is_rolling_update(d):
            return
        active = du.filter_active([*old, new])
        sizes, op = du.proportional_sizes(d, active)
        for rs in active:
            await self._scale_rs(rs, sizes[rs.name], d, op)

    async def _sync_scale(self, d: Deployment, rss: list[ReplicaSet]) -> None:
        """dc.sync: paused Deployments and scaling events; no rollout, just sizes."""
        new, old = await self._get_all_replica_sets(d, rss, create=False)
        await self._scale(d, new, old)
        if d.spec and d.spec.paused:
            await self._cleanup(d, old)
        await self._sync_status(d, [*old, new], new)

    async def _sync_status_only(self, d: Deployment, rss: list[ReplicaSet]) -> None:
        new, old = await self._get_all_replica_sets(d, rss, create=False)
        await self._sync_status(d, [*old, new], new)

    async def _cleanup(self, d: Deployment, old: list[ReplicaSet]) -> None:
        """cleanupDeployment: delete revisions beyond revisionHistoryLimit."""
        for rs in du.history_to_delete(d, old):
            try:
                await self.client.delete("replicasets", rs.name, rs.namespace,
                                         precondition_uid=rs.metadata.uid or "")
            except (errors.NotFound, errors.Conflict):
                pass

    # --- strategies -------------------------------------------------------------------------

    async def _rollout_rolling(self, d: Deployment, rss: list[ReplicaSet]) -> None:
        new, old = await self._get_all_replica_sets(d, rss, create=True)
        assert new is not None
        all_rss: list[ReplicaSet | None] = [*old, new]
        if await self._reconcile_new(d, all_rss, new):
            await self._sync_rollout_status(d, all_rss, new)
            return
        if await self._reconcile_old(d, all_rss, du.filter_active(old), new):
            await self._sync_rollout_status(d, all_rss, new)
            return
        if du.deployment_complete(d, _status(d)):
            await self._cleanup(d, old)
        await self._sync_rollout_status(d, all_rss, new)

    async def _reconcile_new(self, d: Deployment, all_rss: list[ReplicaSet | None],
                             new: ReplicaSet) -> bool:
        want = du.spec_replicas(d)
        if du.spec_replicas(new) == want:
            return False
        if du.spec_replicas(new) > want:
            return (await self._scale_and_record(new, want, d))[0]
        return (await self._scale_and_record(new, du.new_rs_new_replicas(d, all_rss, new), d))[0]

    async def _reconcile_old(self, d: Deployment, all_rss: list[ReplicaSet | None],
                             old: list[ReplicaSet], new: ReplicaSet) -> bool:
        """reconcileOldReplicaSets: first drop old pods that are not available anyway, then
        scale old ReplicaSets down as far as availability allows."""
        if du.sum_spec(old) == 0:
            return False
        budget = du.max_scaled_down(d, all_rss, new)
        if budget <= 0:
            return False
        plan = du.cleanup_unhealthy_plan(old, budget)
        cleaned = 0
        old = list(old)
        for i, rs in enumerate(old):
            if rs.name in plan:
                cleaned += du.spec_replicas(rs) - plan[rs.name]
                old[i] = await self._scale_rs(rs, plan[rs.name], d)
        all_now: list[ReplicaSet | None] = [*old, new]
        scaled = 0
        plan = du.scale_down_old_plan(d, all_now, old)
        for rs in old:
            if rs.name in plan:
                scaled += du.spec_replicas(rs) - plan[rs.name]
                await self._scale_rs(rs, plan[rs.name], d)
        return cleaned + scaled > 0

    async def _rollout_recreate(self, d: Deployment, rss: list[ReplicaSet]) -> None:
        new, old = await self._get_all_replica_sets(d, rss, create=False)
        all_rss: list[ReplicaSet | None] = [*old, new]
        scaled_down = False
        for rs in du.filter_active(old):
            changed, _ = await self._scale_and_record(rs, 0, d)
            scaled_down = scaled_down or changed
        if scaled_down:
            await self._sync_rollout_status(d, all_rss, new)
            return
        if self._old_pods_running(d, rss, new, old):
            await self._sync_rollout_status(d, all_rss, new)
            return
        if new is None:
            new, old = await self._get_all_replica_sets(d, rss, create=True)
            all_rss = [*old, new]
        assert new is not None
        await self._scale_and_record(new, du.spec_replicas(d), d)
        if du.deployment_complete(d, _status(d)):
            await self._cleanup(d, old)
        await self._sync_rollout_status(d, all_rss, new)

    def _old_pods_running(self, d: Deployment, rss: list[ReplicaSet], new: ReplicaSet | None,
                          old: list[ReplicaSet]) -> bool:
        if du.sum_actual(old) > 0:
            return True
        new_uid = new.metadata.uid if new is not None else None
        for uid, pods in self._pods_by_rs(d, rss).items():
            if uid == new_uid:
                continue
            if any(pod_phase(p) not in ("Failed", "Succeeded") for p in pods):
                return True
        return False

    # --- status -----------------------------------------------------------------------------

    async def _check_paused_conditions(self, d: Deployment) -> None:
        """DeploymentPaused / DeploymentResumed, so a long pause never reads as no progress."""
        if not du.has_progress_deadline(d):
            return
        cond = du.get_condition(d.status, du.PROGRESSING)
        if cond is not None and cond.reason == du.TIMED_OUT:
            return
        paused_cond = cond is not None and cond.reason == du.PAUSED
        paused = bool(d.spec and d.spec.paused)
        if paused == paused_cond:
            return
        st = _status(d).model_copy(deep=True)
        reason, msg = (du.PAUSED, "Deployment is paused") if paused else (
            du.RESUMED, "Deployment is resumed")
        du.set_condition(st, du.new_condition(du.PROGRESSING, "Unknown", reason, msg,
                                              self.now()))
        await self._write_status(d, st)

    async def _sync_status(self, d: Deployment, all_rss: list[ReplicaSet | None],
                           new: ReplicaSet | None) -> None:
        """syncDeploymentStatus: counts and Available only (paused, scaling, deleting)."""
        st = du.calculate_status(all_rss, new, d, self.now())
        if du.status_dict(st) != du.status_dict(d.status):
            await self._write_status(d, st)

    async def _sync_rollout_status(self, d: Deployment, all_rss: list[ReplicaSet | None],
                                   new: ReplicaSet | None) -> None:
        """syncRolloutStatus: counts, Available, Progressing (deadline) and ReplicaFailure."""
        now = self.now()
        st = du.calculate_status(all_rss, new, d, now)
        du.rollout_progress(d, st, new, now)
        failure = du.replica_failure(all_rss, new)
        if failure is not None:
            du.set_condition(st, failure)
        else:
            du.remove_condition(st, du.REPLICA_FAILURE)
        if du.status_dict(st) == du.status_dict(d.status):
            after = du.stuck_requeue_after(d, st, now)
            if after == 0:
                self.queue.add_rate_limited(d.key)
            elif after is not None:
                self.enqueue_after(d, after)
            return
        await self._write_status(d, st)

    async def _write_status(self, d: Deployment, st: DeploymentStatus) -> None:
        body = d.to_dict()
        body["status"] = st.to_dict()
        out = await self.client.update_status("deployments", body, d.namespace)
        d.status = st
        d.metadata.resource_version = (out.get("metadata") or {}).get("resourceVersion")


def _status(d: Deployment) -> DeploymentStatus:
    return d.status or DeploymentStatus()


def _selector(d: Deployment) -> Selector | None:
    try:
        return from_label_selector(d.spec.selector if d.spec else None)
    except errors.ApiError:
        return None
