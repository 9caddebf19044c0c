"""The deployment controller's arithmetic, kept pure so that it can be tested without a cluster.

Upstream keeps these in pkg/controller/deployment/util: how a pod template is hashed into a
ReplicaSet name, how maxSurge/maxUnavailable resolve against the replica count, which ReplicaSet
is "new", how revisions are numbered, how a scaling event is spread proportionally over the
ReplicaSets of an unfinished rollout, and how status and conditions are computed. Every function
here takes models and returns values or mutates only the object it is given; no I/O, and time
comes in as an argument.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from api.apps import (
    Deployment,
    DeploymentCondition,
    DeploymentStatus,
    IntOrString,
    ReplicaSet,
)
from api.core import PodTemplateSpec
from api.meta import format_rfc3339, parse_rfc3339
from api.podutil import POD_TEMPLATE_HASH

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
DEPRECATED_ROLLBACK_TO = "deprecated.deployment.rollback.to"
CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"

# Annotations a Deployment does not hand down to its ReplicaSets (and rollback does not copy back).
ANNOTATIONS_TO_SKIP = frozenset({
    LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS,
    DEPRECATED_ROLLBACK_TO,
})
# Upstream's cap on the revision-history annotation (maxRevHistoryLengthInChars).
MAX_REV_HISTORY_CHARS = 2000

ROLLING_UPDATE, RECREATE = "RollingUpdate", "Recreate"
PROGRESSING, AVAILABLE, REPLICA_FAILURE = "Progressing", "Available", "ReplicaFailure"

# Condition reasons, upstream's names.
REPLICASET_UPDATED = "ReplicaSetUpdated"
FAILED_RS_CREATE = "ReplicaSetCreateError"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

MAX_INT32 = 2**31 - 1

# --- hashing --------------------------------------------------------------------------------

# k8s.io/apimachinery/pkg/util/rand: no vowels (no words) and no look-alike characters.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode_string(s: str) -> str:
    """rand.SafeEncodeString: each byte mapped into the safe alphabet."""
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in s.encode())


def _template_dict(template: PodTemplateSpec | dict[str, Any] | None) -> dict[str, Any]:
    if template is None:
        return {}
    return template.to_dict() if isinstance(template, PodTemplateSpec) else template


def compute_hash(template: PodTemplateSpec | dict[str, Any] | None,
                 collision_count: int | None = None) -> str:
    """controller.ComputeHash: fnv32a of the template (+ the collision count), safe-encoded.

    Upstream hashes Go's spew dump of the struct; we hash canonical JSON (sorted keys, no
    spaces), so names differ from a real cluster's but are just as deterministic.
    """
    data = json.dumps(_template_dict(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        # Upstream writes a little-endian uint32 into an 8-byte buffer: 4 bytes + 4 zeros.
        data += struct.pack("<I", collision_count & 0xFFFFFFFF) + b"\0\0\0\0"
    return safe_encode_string(str(fnv32a(data)))


def _normalized(value: Any) -> Any:
    """Semantic equality treats unset and empty alike: drop None, {} and []."""
    if isinstance(value, dict):
        out = {k: _normalized(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def template_without_hash(template: PodTemplateSpec | dict[str, Any] | None) -> dict[str, Any]:
    t = json.loads(json.dumps(_template_dict(template)))
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(POD_TEMPLATE_HASH, None)
    result: dict[str, Any] = _normalized(t)
    return result


def equal_ignore_hash(t1: PodTemplateSpec | dict[str, Any] | None,
                      t2: PodTemplateSpec | dict[str, Any] | None) -> bool:
    """EqualIgnoreHash: same template once the pod-template-hash label is set aside."""
    return template_without_hash(t1) == template_without_hash(t2)


# --- replicas and fenceposts ----------------------------------------------------------------

def spec_replicas(obj: Deployment | ReplicaSet | None) -> int:
    if obj is None or obj.spec is None or obj.spec.replicas is None:
        return 0 if obj is None else 1
    return obj.spec.replicas


def value_from_int_or_percent(v: IntOrString | None, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent; ValueError for a malformed percentage."""
    if v is None:
        return 0
    if isinstance(v, int):
        return v
    if not v.endswith("%"):
        raise ValueError(f"invalid value for IntOrString: invalid value {v!r}")
    try:
        pct = int(v[:-1])
    except ValueError:
        raise ValueError(f"invalid value for IntOrString: invalid value {v!r}") from None
    scaled = pct * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


def resolve_fenceposts(max_surge: IntOrString | None, max_unavailable: IntOrString | None,
                       desired: int) -> tuple[int, int]:
    """(surge, unavailable): surge rounds up, unavailable down; never both zero."""
    surge = value_from_int_or_percent(max_surge if max_surge is not None else 0, desired, True)
    unavailable = value_from_int_or_percent(
        max_unavailable if max_unavailable is not None else 0, desired, False)
    if surge == 0 and unavailable == 0:
        # Validation forbids 0/0, but rounding down can get there: surge might be blocked
        # by quota, so allow one unavailable pod rather than stall.
        unavailable = 1
    return surge, unavailable


def strategy_type(d: Deployment) -> str:
    st = d.spec.strategy if d.spec else None
    return (st.type if st else None) or ROLLING_UPDATE


def is_rolling_update(d: Deployment) -> bool:
    return strategy_type(d) == ROLLING_UPDATE


def _fenceposts(d: Deployment) -> tuple[int, int]:
    st = d.spec.strategy if d.spec else None
    ru = st.rolling_update if st else None
    return resolve_fenceposts(ru.max_surge if ru else None, ru.max_unavailable if ru else None,
                              spec_replicas(d))


def max_surge(d: Deployment) -> int:
    return _fenceposts(d)[0] if is_rolling_update(d) else 0


def max_unavailable(d: Deployment) -> int:
    replicas = spec_replicas(d)
    if not is_rolling_update(d) or replicas == 0:
        return 0
    return min(_fenceposts(d)[1], replicas)


def min_available(d: Deployment) -> int:
    return spec_replicas(d) - max_unavailable(d) if is_rolling_update(d) else 0


# --- replica set bookkeeping ----------------------------------------------------------------

def available(rs: ReplicaSet | None) -> int:
    return (rs.status.available_replicas or 0) if rs is not None and rs.status else 0


def available_for_planning(rs: ReplicaSet | None) -> int:
    """The available pods an owned ReplicaSet can be counted on for: at most its spec.

    Right after a scale-down the ReplicaSet's status still reports the pods it is about to
    delete; its controller deletes the unavailable ones first, so once it acts at most
    `spec.replicas` available pods remain. Counting the stale figure would let the next sync
    scale old ReplicaSets down a second time for the same available pods (below
    minAvailable), or "clean up" a negative number of unhealthy pods, i.e. scale up.
    """
    return min(available(rs), spec_replicas(rs)) if rs is not None else 0


def ready(rs: ReplicaSet | None) -> int:
    return (rs.status.ready_replicas or 0) if rs is not None and rs.status else 0


def actual(rs: ReplicaSet | None) -> int:
    return (rs.status.replicas or 0) if rs is not None and rs.status else 0


def sum_spec(rss: Iterable[ReplicaSet | None]) -> int:
    return sum(spec_replicas(rs) for rs in rss if rs is not None)


def sum_actual(rss: Iterable[ReplicaSet | None]) -> int:
    return sum(actual(rs) for rs in rss)


def sum_ready(rss: Iterable[ReplicaSet | None]) -> int:
    return sum(ready(rs) for rs in rss)


def sum_available(rss: Iterable[ReplicaSet | None]) -> int:
    return sum(available(rs) for rs in rss)


def filter_active(rss: Iterable[ReplicaSet | None]) -> list[ReplicaSet]:
    """controller.FilterActiveReplicaSets: those that want pods."""
    return [rs for rs in rss if rs is not None and spec_replicas(rs) > 0]


def _created(rs: ReplicaSet) -> str:
    return rs.metadata.creation_timestamp or ""


def by_creation(rss: Iterable[ReplicaSet]) -> list[ReplicaSet]:
    """Oldest first; ties by name (ReplicaSetsByCreationTimestamp)."""
    return sorted(rss, key=lambda rs: (_created(rs), rs.name))


def by_size_newer(rss: Iterable[ReplicaSet]) -> list[ReplicaSet]:
    """Largest first; among equals the newer first (ReplicaSetsBySizeNewer)."""
    by_age = sorted(by_creation(rss), key=lambda rs: (_created(rs), rs.name), reverse=True)
    return sorted(by_age, key=lambda rs: -spec_replicas(rs))


def by_size_older(rss: Iterable[ReplicaSet]) -> list[ReplicaSet]:
    """Largest first; among equals the older first (ReplicaSetsBySizeOlder)."""
    return sorted(by_creation(rss), key=lambda rs: -spec_replicas(rs))


def revision(obj: Deployment | ReplicaSet) -> int:
    """The revision annotation as a number (0 if absent); ValueError if malformed."""
    v = (obj.metadata.annotations or {}).get(REVISION)
    return int(v) if v is not None else 0


def _revision_or_none(obj: ReplicaSet) -> int | None:
    try:
        return revision(obj)
    except ValueError:
        return None


def by_revision(rss: Iterable[ReplicaSet]) -> list[ReplicaSet]:
    """Lowest revision first; ties (or unparsable) by creation (ReplicaSetsByRevision)."""
    return sorted(by_creation(rss), key=lambda rs: _revision_or_none(rs) or 0)


def max_revision(rss: Iterable[ReplicaSet]) -> int:
    return max((r for rs in rss if (r := _revision_or_none(rs)) is not None), default=0)


def find_new_replica_set(d: Deployment, rss: Sequence[ReplicaSet]) -> ReplicaSet | None:
    """The oldest ReplicaSet whose template equals the Deployment's (hash label aside)."""
    template = d.spec.template if d.spec else None
    for rs in by_creation(rss):
        if equal_ignore_hash(rs.spec.template if rs.spec else None, template):
            return rs
    return None


def find_old_replica_sets(d: Deployment, rss: Sequence[ReplicaSet]) -> list[ReplicaSet]:
    """Every owned ReplicaSet except the new one (upstream's allOldRSs)."""
    new = find_new_replica_set(d, rss)
    return [rs for rs in rss if new is None or rs.metadata.uid != new.metadata.uid]


def set_replicas_annotations(rs: ReplicaSet, desired: int, max_replicas: int) -> bool:
    ann = rs.metadata.annotations = dict(rs.metadata.annotations or {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(key) != value:
            ann[key] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: ReplicaSet, desired: int, max_replicas: int) -> bool:
    ann = rs.metadata.annotations or {}
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_replicas)


def _int_annotation(rs: ReplicaSet, key: str) -> int | None:
    v = (rs.metadata.annotations or {}).get(key)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def desired_replicas_annotation(rs: ReplicaSet) -> int | None:
    return _int_annotation(rs, DESIRED_REPLICAS)


def copy_deployment_annotations(d: Deployment, rs: ReplicaSet) -> bool:
    """Hand the Deployment's annotations down to its new ReplicaSet (not the skipped ones)."""
    ann = rs.metadata.annotations = dict(rs.metadata.annotations or {})
    changed = False
    for k, v in (d.metadata.annotations or {}).items():
        if k in ANNOTATIONS_TO_SKIP or ann.get(k) == v:
            continue
        ann[k] = v
        changed = True
    return changed


def set_new_replica_set_annotations(d: Deployment, rs: ReplicaSet, new_revision: int,
                                    exists: bool) -> bool:
    """SetNewReplicaSetAnnotations: copy annotations, raise the revision (keeping the one it
    had in revision-history when a rollback revives it), and on creation record the replica
    annotations. Returns whether anything changed."""
    changed = copy_deployment_annotations(d, rs)
    ann = rs.metadata.annotations = dict(rs.metadata.annotations or {})
    old = ann.get(REVISION)
    try:
        old_int = int(old) if old else 0
    except ValueError:
        return False
    if old_int < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old is not None:
            _append_revision_history(ann, old)
    if not exists and set_replicas_annotations(rs, spec_replicas(d),
                                               spec_replicas(d) + max_surge(d)):
        changed = True
    return changed


def _append_revision_history(ann: dict[str, str], old: str) -> None:
    history = ann.get(REVISION_HISTORY, "")
    if not history:
        ann[REVISION_HISTORY] = old
        return
    parts = history.split(",")
    total = len(history) + len(old) + 1
    start = 0
    while total > MAX_REV_HISTORY_CHARS and start < len(parts):
        total -= len(parts[start]) + 1
        start += 1
    if total <= MAX_REV_HISTORY_CHARS:
        ann[REVISION_HISTORY] = ",".join([*parts[start:], old])


def set_deployment_revision(d: Deployment, rev: str) -> bool:
    ann = d.metadata.annotations = dict(d.metadata.annotations or {})
    if ann.get(REVISION) == rev:
        return False
    ann[REVISION] = rev
    return True


# --- scaling --------------------------------------------------------------------------------

def new_rs_new_replicas(d: Deployment, all_rss: Sequence[ReplicaSet | None],
                        new_rs: ReplicaSet) -> int:
    """NewRSNewReplicas: how far the new ReplicaSet may grow now.

    Upstream counts the ReplicaSets' spec.replicas only, so an old ReplicaSet that was just
    told to shrink counts as smaller before its pods are gone, and for a moment there can be
    more than replicas + maxSurge pods. Here each ReplicaSet counts as the larger of what it
    wants and the pods its status reports, so the new one grows only once the old one's pods
    are actually gone: the surge bound then holds for pods, not just for specs.
    """
    if strategy_type(d) == RECREATE:
        return spec_replicas(d)
    surge = max_surge(d)
    current = sum(max(spec_replicas(rs), actual(rs)) for rs in all_rss if rs is not None)
    max_total = spec_replicas(d) + surge
    if current >= max_total:
        return spec_replicas(new_rs)
    up = min(max_total - current, spec_replicas(d) - spec_replicas(new_rs))
    return spec_replicas(new_rs) + up


def is_saturated(d: Deployment, rs: ReplicaSet | None) -> bool:
    """The new ReplicaSet owns every desired replica and all of them are available."""
    if rs is None:
        return False
    desired = desired_replicas_annotation(rs)
    n = spec_replicas(d)
    return desired == n and spec_replicas(rs) == n and available(rs) == n


def find_active_or_latest(new_rs: ReplicaSet | None,
                          old_rss: Sequence[ReplicaSet]) -> ReplicaSet | None:
    """The only active ReplicaSet, or the newest if none is active; None if several are."""
    if new_rs is None and not old_rss:
        return None
    olds = list(reversed(by_creation(old_rss)))
    active = filter_active([*olds, new_rs])
    if not active:
        return new_rs if new_rs is not None else olds[0]
    return active[0] if len(active) == 1 else None


def _rs_fraction(rs: ReplicaSet, d: Deployment, status_replicas: int) -> int:
    if spec_replicas(d) == 0:
        return -spec_replicas(rs)
    deployment_replicas = spec_replicas(d) + max_surge(d)
    annotated = _int_annotation(rs, MAX_REPLICAS)
    if annotated is None:
        annotated = status_replicas
    if annotated == 0:  # unreachable upstream (no scaling up from zero); guard the division
        return 0
    # Go's math.Round: half away from zero (Python's round() is banker's).
    size = spec_replicas(rs) * deployment_replicas / annotated
    return math.floor(size + 0.5) - spec_replicas(rs)


def get_proportion(rs: ReplicaSet | None, d: Deployment, to_add: int, added: int,
                   status_replicas: int) -> int:
    """GetProportion: this ReplicaSet's share of a scaling event, within what remains."""
    if rs is None or spec_replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _rs_fraction(rs, d, status_replicas)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_sizes(d: Deployment, rss: Sequence[ReplicaSet]) -> tuple[dict[str, int], str]:
    """Spread a resize of a mid-rollout Deployment over its active ReplicaSets.

    Returns the new size for every active ReplicaSet (by name) and "up"/"down"/"" for the
    event wording. Bigger ReplicaSets go first; leftovers from rounding go to the first.
    """
    active = filter_active(rss)
    allowed = spec_replicas(d) + max_surge(d) if spec_replicas(d) > 0 else 0
    to_add = allowed - sum_spec(active)
    op = ""
    if to_add > 0:
        active, op = by_size_newer(active), "up"
    elif to_add < 0:
        active, op = by_size_older(active), "down"
    status_replicas = (d.status.replicas or 0) if d.status else 0
    sizes: dict[str, int] = {}
    added = 0
    for rs in active:
        if to_add != 0:
            p = get_proportion(rs, d, to_add, added, status_replicas)
            sizes[rs.name] = spec_replicas(rs) + p
            added += p
        else:
            sizes[rs.name] = spec_replicas(rs)
    if active and to_add != 0:
        first = active[0].name
        sizes[first] = max(0, sizes[first] + to_add - added)
    return sizes, op


def cleanup_unhealthy_plan(old_rss: Sequence[ReplicaSet], max_cleanup: int) -> dict[str, int]:
    """cleanupUnhealthyReplicas: scale old ReplicaSets down by their unavailable pods first,
    oldest first, at most `max_cleanup` in total. Returns new sizes of those that change."""
    plan: dict[str, int] = {}
    total = 0
    for rs in by_creation(old_rss):
        if total >= max_cleanup:
            break
        n = spec_replicas(rs)
        if n == 0 or n == available_for_planning(rs):
            continue
        down = min(max_cleanup - total, n - available_for_planning(rs))
        plan[rs.name] = n - down
        total += down
    return plan


def scale_down_old_plan(d: Deployment, all_rss: Sequence[ReplicaSet | None],
                        old_rss: Sequence[ReplicaSet]) -> dict[str, int]:
    """scaleDownOldReplicaSetsForRollingUpdate: remove old pods while the available count
    stays at least minAvailable, oldest ReplicaSets first. Unlike upstream, availability is
    counted with `available_for_planning` (a stale status cannot be spent twice)."""
    min_avail = spec_replicas(d) - max_unavailable(d)
    avail = sum(available_for_planning(rs) for rs in all_rss)
    if avail <= min_avail:
        return {}
    budget = avail - min_avail
    plan: dict[str, int] = {}
    total = 0
    for rs in by_creation(old_rss):
        if total >= budget:
            break
        n = spec_replicas(rs)
        if n == 0:
            continue
        down = min(n, budget - total)
        plan[rs.name] = n - down
        total += down
    return plan


def max_scaled_down(d: Deployment, all_rss: Sequence[ReplicaSet | None],
                    new_rs: ReplicaSet | None) -> int:
    """How many old pods a rolling update may remove now without going below minAvailable,
    counting the new ReplicaSet's not-yet-available pods as unavailable."""
    min_avail = spec_replicas(d) - max_unavailable(d)
    new_unavailable = (spec_replicas(new_rs) - available_for_planning(new_rs)
                       if new_rs is not None else 0)
    return sum_spec(all_rss) - min_avail - new_unavailable


def history_to_delete(d: Deployment, old_rss: Sequence[ReplicaSet]) -> list[ReplicaSet]:
    """cleanupDeployment: the oldest revisions beyond revisionHistoryLimit that are fully
    scaled down and observed; those still running or not yet observed are kept."""
    limit = d.spec.revision_history_limit if d.spec else None
    if limit is None or limit == MAX_INT32:
        return []
    alive = [rs for rs in old_rss if rs.metadata.deletion_timestamp is None]
    diff = len(alive) - limit
    if diff <= 0:
        return []
    out = []
    for rs in by_revision(alive)[:diff]:
        gen = rs.metadata.generation or 0
        observed = (rs.status.observed_generation or 0) if rs.status else 0
        if actual(rs) != 0 or spec_replicas(rs) != 0 or gen > observed:
            continue
        out.append(rs)
    return out


# --- status and conditions ------------------------------------------------------------------



def new_condition(type_: str, status: str, reason: str, message: str,
                  now: dt.datetime) -> DeploymentCondition:
    ts = format_rfc3339(now)
    return DeploymentCondition(type=type_, status=status, reason=reason, message=message,
                               last_update_time=ts, last_transition_time=ts)


def get_condition(status: DeploymentStatus | None, type_: str) -> DeploymentCondition | None:
    for c in (status.conditions if status else None) or []:
        if c.type == type_:
            return c
    return None


def set_condition(status: DeploymentStatus, cond: DeploymentCondition) -> None:
    """SetDeploymentCondition: no-op for the same status and reason; the transition time is
    kept while the status stays the same."""
    cur = get_condition(status, cond.type)
    if cur is not None and cur.status == cond.status and cur.reason == cond.reason:
        return
    if cur is not None and cur.status == cond.status:
        cond = cond.model_copy(update={"last_transition_time": cur.last_transition_time})
    status.conditions = [c for c in status.conditions or [] if c.type != cond.type] + [cond]


def remove_condition(status: DeploymentStatus, type_: str) -> None:
    status.conditions = [c for c in status.conditions or [] if c.type != type_] or None


def has_progress_deadline(d: Deployment) -> bool:
    pds = d.spec.progress_deadline_seconds if d.spec else None
    return pds is not None and pds != MAX_INT32


def calculate_status(all_rss: Sequence[ReplicaSet | None], new_rs: ReplicaSet | None,
                     d: Deployment, now: dt.datetime) -> DeploymentStatus:
    """calculateStatus: counts from the ReplicaSets' status plus the Available condition."""
    avail = sum_available(all_rss)
    total = sum_spec(all_rss)
    old = d.status or DeploymentStatus()
    status = DeploymentStatus(
        observed_generation=d.metadata.generation,
        replicas=sum_actual(all_rss),
        updated_replicas=actual(new_rs),
        ready_replicas=sum_ready(all_rss),
        available_replicas=avail,
        unavailable_replicas=max(0, total - avail),
        collision_count=old.collision_count,
        conditions=[c.model_copy() for c in old.conditions or []] or None,
    )
    if avail >= spec_replicas(d) - max_unavailable(d):
        set_condition(status, new_condition(AVAILABLE, "True", MIN_AVAILABLE,
                                            "Deployment has minimum availability.", now))
    else:
        set_condition(status, new_condition(AVAILABLE, "False", MIN_UNAVAILABLE,
                                            "Deployment does not have minimum availability.",
                                            now))
    return status


def deployment_complete(d: Deployment, st: DeploymentStatus) -> bool:
    n = spec_replicas(d)
    return ((st.updated_replicas or 0) == n and (st.replicas or 0) == n
            and (st.available_replicas or 0) == n
            and (st.observed_generation or 0) >= (d.metadata.generation or 0))


def deployment_progressing(d: Deployment, new: DeploymentStatus) -> bool:
    """Progress: more updated, fewer old, more ready or more available pods than before."""
    old = d.status or DeploymentStatus()
    old_old = (old.replicas or 0) - (old.updated_replicas or 0)
    new_old = (new.replicas or 0) - (new.updated_replicas or 0)
    return ((new.updated_replicas or 0) > (old.updated_replicas or 0) or new_old < old_old
            or (new.ready_replicas or 0) > (old.ready_replicas or 0)
            or (new.available_replicas or 0) > (old.available_replicas or 0))


def deployment_timed_out(d: Deployment, st: DeploymentStatus, now: dt.datetime) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(st, PROGRESSING)
    if cond is None or cond.reason == NEW_RS_AVAILABLE:
        return False
    if cond.reason == TIMED_OUT:
        return True
    if not cond.last_update_time:
        return False
    deadline = parse_rfc3339(cond.last_update_time) + dt.timedelta(
        seconds=(d.spec.progress_deadline_seconds or 0) if d.spec else 0)
    return deadline < now


def rollout_progress(d: Deployment, st: DeploymentStatus, new_rs: ReplicaSet | None,
                     now: dt.datetime) -> None:
    """The Progressing part of syncRolloutStatus, applied to `st` (the computed status)."""
    if not has_progress_deadline(d):
        remove_condition(st, PROGRESSING)
    cur = get_condition(d.status, PROGRESSING)
    complete_before = (st.replicas or 0) == (st.updated_replicas or 0) and cur is not None \
        and cur.reason == NEW_RS_AVAILABLE
    if not has_progress_deadline(d) or complete_before:
        return
    if deployment_complete(d, st):
        name = new_rs.name if new_rs else ""
        set_condition(st, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE,
                                        f'ReplicaSet "{name}" has successfully progressed.',
                                        now))
    elif deployment_progressing(d, st):
        msg = (f'ReplicaSet "{new_rs.name}" is progressing.' if new_rs
               else f'Deployment "{d.name}" is progressing.')
        cond = new_condition(PROGRESSING, "True", REPLICASET_UPDATED, msg, now)
        # Unlike other conditions, Progressing gets a fresh lastUpdateTime at every sign of
        # progress even with the same reason: that time is what the deadline counts from.
        if cur is not None:
            if cur.status == "True":
                cond.last_transition_time = cur.last_transition_time
            remove_condition(st, PROGRESSING)
        set_condition(st, cond)
    elif deployment_timed_out(d, st, now):
        msg = (f'ReplicaSet "{new_rs.name}" has timed out progressing.' if new_rs
               else f'Deployment "{d.name}" has timed out progressing.')
        set_condition(st, new_condition(PROGRESSING, "False", TIMED_OUT, msg, now))


def replica_failure(all_rss: Sequence[ReplicaSet | None],
                    new_rs: ReplicaSet | None) -> DeploymentCondition | None:
    """A ReplicaFailure condition of the new (else any) ReplicaSet, as a Deployment condition."""
    ordered = [new_rs, *[rs for rs in all_rss if rs is not new_rs]]
    for rs in ordered:
        for c in ((rs.status.conditions if rs is not None and rs.status else None) or []):
            if c.type == REPLICA_FAILURE:
                return DeploymentCondition(
                    type=c.type, status=c.status, reason=c.reason, message=c.message,
                    last_transition_time=c.last_transition_time,
                    last_update_time=c.last_transition_time)
    return None


def stuck_requeue_after(d: Deployment, st: DeploymentStatus, now: dt.datetime) -> float | None:
    """requeueStuckDeployment: seconds until the progress deadline should be rechecked
    (0: at once, rate limited), None when no check is due."""
    cur = get_condition(d.status, PROGRESSING)
    if not has_progress_deadline(d) or cur is None:
        return None
    if deployment_complete(d, st) or cur.reason == TIMED_OUT or not cur.last_update_time:
        return None
    deadline = parse_rfc3339(cur.last_update_time) + dt.timedelta(
        seconds=(d.spec.progress_deadline_seconds or 0) if d.spec else 0)
    after = (deadline - now).total_seconds()
    return 0.0 if after < 1 else after + 1


def status_dict(st: DeploymentStatus | None) -> dict[str, Any]:
    return st.to_dict() if st is not None else {}
