"""`tkctl rollout status|history|undo|restart|pause|resume`: kubectl's rollout verbs.

Everything here is client-side, as in kubectl: `status` reads the Deployment's status and
conditions until the rollout is complete; `history` lists the revisions its ReplicaSets carry;
`undo` copies the pod template of the ReplicaSet with the wanted revision back into the
Deployment (the controller then rolls forward to it, reviving that ReplicaSet); `restart` stamps
the template with `kubectl.kubernetes.io/restartedAt` so that a new rollout replaces every pod;
`pause`/`resume` flip `spec.paused`. Only Deployments roll out here (kubectl also knows
DaemonSets and StatefulSets, which tinykube does not have); other kinds get kubectl's refusal.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from api import errors
from api.resources import ResourceInfo
from tkctl import cli, describe
from tkctl.context import Command, Context, UsageError
from tkctl.resolve import Target, parse_targets, ref

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
POD_TEMPLATE_HASH = "pod-template-hash"
# kubectl's annotationsToSkip: kept from the Deployment, never copied from the ReplicaSet.
ANNOTATIONS_TO_SKIP = frozenset({
    "kubectl.kubernetes.io/last-applied-configuration", REVISION,
    "deployment.kubernetes.io/revision-history", "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas", "deprecated.deployment.rollback.to",
})


class RolloutError(Exception):
    """A rollout that cannot go on (deadline exceeded, deleted): `error: <message>`."""


# --- pure parts ------------------------------------------------------------------------------

def _cond(d: Obj, type_: str) -> Obj | None:
    for c in (d.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def deployment_status(d: Obj, revision: int = 0) -> tuple[str, bool]:
    """kubectl's DeploymentStatusViewer: (message, done); RolloutError when it failed."""
    md, sp, st = d.get("metadata") or {}, d.get("spec") or {}, d.get("status") or {}
    name = md.get("name", "")
    if revision > 0:
        have = int((md.get("annotations") or {}).get(REVISION) or 0)
        if have != revision:
            raise RolloutError(f"desired revision ({revision}) is different from the running "
                               f"revision ({have})")
    if (md.get("generation") or 0) > (st.get("observedGeneration") or 0):
        return "Waiting for deployment spec update to be observed...", False
    cond = _cond(d, "Progressing")
    if cond is not None and cond.get("reason") == "ProgressDeadlineExceeded":
        raise RolloutError(f'deployment "{name}" exceeded its progress deadline')
    want = sp.get("replicas", 1)
    updated, total = st.get("updatedReplicas", 0), st.get("replicas", 0)
    avail = st.get("availableReplicas", 0)
    if updated < want:
        return (f'Waiting for deployment "{name}" rollout to finish: {updated} out of {want} '
                "new replicas have been updated..."), False
    if total > updated:
        return (f'Waiting for deployment "{name}" rollout to finish: {total - updated} old '
                "replicas are pending termination..."), False
    if avail < updated:
        return (f'Waiting for deployment "{name}" rollout to finish: {avail} of {updated} '
                "updated replicas are available..."), False
    return f'deployment "{name}" successfully rolled out', True


def _revision(rs: Obj) -> int | None:
    try:
        return int(((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION) or 0)
    except ValueError:
        return None


def owned_by(d: Obj, rss: list[Obj]) -> list[Obj]:
    uid = (d.get("metadata") or {}).get("uid")
    return [rs for rs in rss if any(
        r.get("controller") and r.get("uid") == uid
        for r in (rs.get("metadata") or {}).get("ownerReferences") or [])]


def history_table(rss: list[Obj]) -> str:
    """REVISION / CHANGE-CAUSE, one line per revision, oldest first (tabwriter padding 2)."""
    rows: dict[int, str] = {}
    for rs in rss:
        r = _revision(rs)
        if r is None:
            continue
        ann = (rs.get("metadata") or {}).get("annotations") or {}
        rows[r] = ann.get(CHANGE_CAUSE) or "<none>"
    if not rows:
        return "No rollout history found."
    lines = ["REVISION\tCHANGE-CAUSE", *(f"{r}\t{rows[r]}" for r in sorted(rows))]
    width = max(len(line.split("\t")[0]) for line in lines) + 2
    return "\n".join(a.ljust(width) + b for a, b in (line.split("\t") for line in lines))


def revision_template(rss: list[Obj], revision: int) -> Obj:
    for rs in rss:
        if _revision(rs) == revision:
            return dict((rs.get("spec") or {}).get("template") or {})
    raise RolloutError("unable to find the specified revision")


def _without_hash(template: Obj | None) -> Obj:
    """A copy of the template without its pod-template-hash label."""
    t: Obj = json.loads(json.dumps(template or {}))
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(POD_TEMPLATE_HASH, None)
    return t


def _normalized(v: Any) -> Any:
    if isinstance(v, dict):
        out = {k: _normalized(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x not in (None, {}, [])}
    if isinstance(v, list):
        return [_normalized(x) for x in v]
    return v


def rollback_target(d: Obj, rss: list[Obj], to_revision: int) -> Obj:
    """The ReplicaSet to roll back to: that revision, or the one before the latest."""
    latest: tuple[int, Obj | None] = (-1, None)
    previous: tuple[int, Obj | None] = (-1, None)
    for rs in rss:
        r = _revision(rs)
        if r is None:
            continue
        if to_revision > 0:
            if r == to_revision:
                return rs
        elif r > latest[0]:
            previous, latest = latest, (r, rs)
        elif r > previous[0]:
            previous = (r, rs)
    if to_revision > 0:
        raise RolloutError(f"unable to find specified revision {to_revision} in history")
    if previous[1] is None:
        name = (d.get("metadata") or {}).get("name", "")
        raise RolloutError(f'no rollout history found for deployment "{name}"')
    return previous[1]


def rollback_patch(d: Obj, rs: Obj) -> list[Obj] | None:
    """kubectl's JSON patch restoring the ReplicaSet's template and annotations; None when
    the Deployment already has that template."""
    template = _without_hash((rs.get("spec") or {}).get("template"))
    d_template = _without_hash((d.get("spec") or {}).get("template"))
    if _normalized(template) == _normalized(d_template):
        return None
    d_ann = (d.get("metadata") or {}).get("annotations") or {}
    rs_ann = (rs.get("metadata") or {}).get("annotations") or {}
    annotations = {k: v for k, v in d_ann.items() if k in ANNOTATIONS_TO_SKIP}
    annotations.update({k: v for k, v in rs_ann.items() if k not in ANNOTATIONS_TO_SKIP})
    return [{"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations}]


def restart_stamp(now: dt.datetime) -> str:
    """Go's time.Now().Format(time.RFC3339): local time, seconds, "Z" for UTC."""
    local = now.astimezone()
    if local.utcoffset() == dt.timedelta(0):
        return local.strftime("%Y-%m-%dT%H:%M:%SZ")
    return local.isoformat(timespec="seconds")


def restart_patch(d: Obj, now: dt.datetime) -> Obj:
    """kubectl's restart patch; RolloutError when it would change nothing (a restart in the
    same second), with kubectl's message."""
    stamp = restart_stamp(now)
    tmd = ((d.get("spec") or {}).get("template") or {}).get("metadata") or {}
    if (tmd.get("annotations") or {}).get(RESTARTED_AT) == stamp:
        name = (d.get("metadata") or {}).get("name", "")
        raise RolloutError(f"failed to create patch for {name}: if restart has already been "
                           "triggered within the past second, please wait before attempting "
                           "to trigger another")
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}


# --- command line ---------------------------------------------------------------------------

def _configure_targets(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="(TYPE NAME | TYPE/NAME)")


def _configure_status(p: argparse.ArgumentParser) -> None:
    _configure_targets(p)
    p.add_argument("-w", "--watch", default=True, action=argparse.BooleanOptionalAction,
                   help="Watch the status of the rollout until it's done")
    p.add_argument("--timeout", type=cli.duration, default=0.0,
                   help="How long to wait before ending (e.g. 1s, 2m; 0 means forever)")
    p.add_argument("--revision", type=int, default=0,
                   help="Pin to a specific revision for showing its status")


def _configure_history(p: argparse.ArgumentParser) -> None:
    _configure_targets(p)
    p.add_argument("--revision", type=int, default=0,
                   help="See the details, including the pod template, of this revision")


def _configure_undo(p: argparse.ArgumentParser) -> None:
    _configure_targets(p)
    p.add_argument("--to-revision", type=int, default=0,
                   help="The revision to roll back to (0: the previous one)")


def _targets(args: argparse.Namespace, verb: str) -> list[tuple[ResourceInfo, str]]:
    if not args.args:
        raise UsageError("required resource not specified")
    targets: list[Target] = parse_targets(args.args, f"rollout {verb}")
    out = [(t.info, n) for t in targets for n in t.names]
    if not out:
        raise UsageError("resource(s) were provided, but no name was specified")
    return out


def _group_kind(info: ResourceInfo) -> str:
    return f"{info.kind}.{info.group}" if info.group else info.kind


def _is_deployment(info: ResourceInfo) -> bool:
    return info.name == "deployments"


async def _get(ctx: Context, info: ResourceInfo, name: str) -> Obj:
    return await ctx.client.get(info.name, name, ctx.namespace)


async def _replica_sets(ctx: Context, d: Obj) -> list[Obj]:
    items, _ = await ctx.client.list_all("replicasets", ctx.namespace)
    return owned_by(d, items)


async def run_status(ctx: Context, args: argparse.Namespace) -> None:
    targets = _targets(args, "status")
    if len(targets) != 1:
        raise UsageError("rollout status is only supported on individual resources and "
                         f"resource collections, but {len(targets)} resources were found")
    info, name = targets[0]
    if not _is_deployment(info):
        raise UsageError(f"no status viewer has been implemented for {_group_kind(info)}")
    try:
        async with asyncio.timeout(args.timeout or None):
            await _watch_status(ctx, name, args)
    except TimeoutError:
        ctx.error("timed out waiting for the condition")
    except RolloutError as e:
        ctx.error(str(e))


async def _watch_status(ctx: Context, name: str, args: argparse.Namespace) -> None:
    last = ""

    def show(d: Obj) -> bool:
        nonlocal last
        msg, done = deployment_status(d, args.revision)
        if msg != last:
            ctx.print(msg)
            last = msg
        return done or not args.watch

    while True:
        d = await ctx.client.get("deployments", name, ctx.namespace)
        if show(d):
            return
        rv = (d.get("metadata") or {}).get("resourceVersion", "")
        try:
            async for ev in ctx.client.watch("deployments", ctx.namespace, resource_version=rv,
                                             field_selector=f"metadata.name={name}"):
                if ev.type == "DELETED":
                    raise RolloutError("object has been deleted")
                if ev.type in ("ADDED", "MODIFIED") and show(ev.object):
                    return
        except errors.Gone:
            continue


async def run_history(ctx: Context, args: argparse.Namespace) -> None:
    for info, name in _targets(args, "history"):
        if not _is_deployment(info):
            ctx.error(f'no history viewer has been implemented for "{_group_kind(info)}"')
            continue
        try:
            d = await _get(ctx, info, name)
            rss = await _replica_sets(ctx, d)
        except errors.ApiError as e:
            ctx.api_error(e)
            continue
        shown = f"{ref(info)}/{name}"
        if args.revision > 0:
            try:
                template = revision_template(rss, args.revision)
            except RolloutError as e:
                ctx.error(str(e))
                continue
            page = describe.Page(dt.datetime.now(dt.UTC))
            describe.pod_template(page, template)
            ctx.print(f"{shown} with revision #{args.revision}")
            ctx.print(page.render())
        else:
            ctx.print(f"{shown} ")
            ctx.print(history_table(rss))
            ctx.print()


async def run_undo(ctx: Context, args: argparse.Namespace) -> None:
    for info, name in _targets(args, "undo"):
        if not _is_deployment(info):
            ctx.error(f'no rollbacker has been implemented for "{_group_kind(info)}"')
            continue
        try:
            await _undo(ctx, info, name, args.to_revision)
        except RolloutError as e:
            ctx.error(str(e))
        except errors.ApiError as e:
            ctx.api_error(e)


async def _undo(ctx: Context, info: ResourceInfo, name: str, to_revision: int) -> None:
    d = await _get(ctx, info, name)
    if (d.get("spec") or {}).get("paused"):
        raise RolloutError("you cannot rollback a paused deployment; resume it first with "
                           f"'tkctl rollout resume {ref(info)}/{name}' and try again")
    rs = rollback_target(d, await _replica_sets(ctx, d), to_revision)
    patch = rollback_patch(d, rs)
    shown = f"{ref(info)}/{name}"
    if patch is None:
        ctx.print(f"{shown} skipped rollback (current template already matches revision "
                  f"{to_revision})")
        return
    try:
        await ctx.client.patch(info.name, name, patch, ctx.namespace, patch_type="json")
    except errors.ApiError as e:
        raise RolloutError(f"failed restoring revision {to_revision}: {e.message}") from None
    ctx.print(f"{shown} rolled back")


def _patcher(verb: str, done: str, already: str,
             make: Callable[[Obj], Obj | None]) -> Callable[[Context, argparse.Namespace], Any]:
    """pause / resume / restart: fetch, build a merge patch (None: nothing to do), apply."""

    async def run(ctx: Context, args: argparse.Namespace) -> None:
        for info, name in _targets(args, verb):
            shown = f"{ref(info)}/{name}"
            if not _is_deployment(info):
                ctx.error(f'{info.name}{"." + info.group if info.group else ""} "{name}" '
                          f"{_gerund(verb)} is not supported")
                continue
            try:
                d = await _get(ctx, info, name)
                patch = make(d)
                if patch is None:
                    ctx.print(f"{shown} {already}")
                    continue
                await ctx.client.patch(info.name, name, patch, ctx.namespace)
            except RolloutError as e:
                ctx.error(str(e))
                continue
            except errors.ApiError as e:
                ctx.api_error(e)
                continue
            ctx.print(f"{shown} {done}")

    return run


def _gerund(verb: str) -> str:
    return {"pause": "pausing", "resume": "resuming", "restart": "restarting"}[verb]


def _pause(d: Obj) -> Obj | None:
    return None if (d.get("spec") or {}).get("paused") else {"spec": {"paused": True}}


def _resume(d: Obj) -> Obj | None:
    return {"spec": {"paused": None}} if (d.get("spec") or {}).get("paused") else None


def _restart(d: Obj) -> Obj | None:
    if (d.get("spec") or {}).get("paused"):
        raise RolloutError("can't restart paused deployment (run rollout resume first)")
    return restart_patch(d, dt.datetime.now(dt.UTC))


async def run_rollout(ctx: Context, args: argparse.Namespace) -> None:
    ctx.print(cli.group_help("Manage the rollout of one or many resources.", [
        ("history", "View rollout history"),
        ("pause", "Mark the provided resource as paused"),
        ("restart", "Restart a resource"),
        ("resume", "Resume a paused resource"),
        ("status", "Show the status of the rollout"),
        ("undo", "Undo a previous rollout"),
    ], "tkctl rollout SUBCOMMAND [options]"))


_G = "Advanced Commands"
_T = "(TYPE NAME | TYPE/NAME)"
COMMANDS = [
    Command(name="rollout", summary="Manage the rollout of a resource",
            usage="tkctl rollout SUBCOMMAND", configure=lambda p: None, run=run_rollout,
            group=_G, needs_server=False),
    Command(name="rollout status", summary="Show the status of the rollout",
            usage=f"tkctl rollout status {_T} [--watch=false] [--timeout D] [--revision N]",
            configure=_configure_status, run=run_status, group=_G),
    Command(name="rollout history", summary="View rollout history",
            usage=f"tkctl rollout history {_T} [--revision N]",
            configure=_configure_history, run=run_history, group=_G),
    Command(name="rollout undo", summary="Undo a previous rollout",
            usage=f"tkctl rollout undo {_T} [--to-revision N]",
            configure=_configure_undo, run=run_undo, group=_G),
    Command(name="rollout restart", summary="Restart a resource",
            usage=f"tkctl rollout restart {_T}", configure=_configure_targets,
            run=_patcher("restart", "restarted", "restarted", _restart), group=_G),
    Command(name="rollout pause", summary="Mark the provided resource as paused",
            usage=f"tkctl rollout pause {_T}", configure=_configure_targets,
            run=_patcher("pause", "paused", "already paused", _pause), group=_G),
    Command(name="rollout resume", summary="Resume a paused resource",
            usage=f"tkctl rollout resume {_T}", configure=_configure_targets,
            run=_patcher("resume", "resumed", "already resumed", _resume), group=_G),
]
