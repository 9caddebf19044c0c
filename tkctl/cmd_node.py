"""`tkctl cordon`, `uncordon` and `drain`: take a node out of service and back, like kubectl.

Cordon sets `spec.unschedulable` (the scheduler then skips the node, and the node lifecycle
controller adds the `node.kubernetes.io/unschedulable` taint). Drain cordons, then evicts every
pod on the node through the `pods/eviction` subresource and waits until they are gone, refusing
— before evicting anything — pods whose loss nobody would repair (no controller: `--force`),
pods with emptyDir data (`--delete-emptydir-data`) and DaemonSet pods (`--ignore-daemonsets`
skips them); mirror pods are skipped since only their kubelet can remove them. The messages are
kubectl's (k8s.io/kubectl/pkg/drain).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from api import errors
from tkctl import cli
from tkctl.context import Command, Context, UsageError

Obj = dict[str, Any]
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
DAEMONSET_FATAL = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
DAEMONSET_WARNING = "ignoring DaemonSet-managed Pods"
LOCAL_STORAGE_FATAL = "Pods with local storage (use --delete-emptydir-data to override)"
LOCAL_STORAGE_WARNING = "deleting Pods with local storage"
UNMANAGED_FATAL = "Pods declare no controller (use --force to override)"
UNMANAGED_WARNING = "deleting Pods that declare no controller"
POLL_INTERVAL = 1.0  # kubectl polls deleted pods every second


# --- cordon / uncordon ----------------------------------------------------------------------

def configure_cordon(p: argparse.ArgumentParser) -> None:
    p.add_argument("nodes", nargs="*", metavar="NODE")
    cli.add_selector(p)
    p.add_argument("--dry-run", default="none", choices=["none", "client", "server"],
                   help="none, client or server")


async def _nodes(ctx: Context, args: argparse.Namespace) -> list[Obj]:
    if not args.nodes and not args.selector:
        raise UsageError(f"USAGE: tkctl {args.verb} NODE [flags]")
    if args.nodes and args.selector:
        raise UsageError("cannot specify both a node name and a selector")
    if args.selector:
        items, _ = await ctx.client.list_all("nodes", label_selector=args.selector)
        return items
    out = []
    for name in args.nodes:
        try:
            out.append(await ctx.client.get("nodes", name))
        except errors.ApiError as e:
            ctx.api_error(e)
    return out


async def set_unschedulable(ctx: Context, node: Obj, desired: bool, dry_run: str) -> bool:
    """Cordon or uncordon one node; prints kubectl's line. False if that failed."""
    name = node["metadata"]["name"]
    verb = "cordoned" if desired else "uncordoned"
    if bool((node.get("spec") or {}).get("unschedulable")) == desired:
        ctx.print(f"node/{name} already {verb}")
        return True
    if dry_run != "client":
        try:
            await ctx.client.patch("nodes", name, {"spec": {"unschedulable": desired or None}},
                                   dry_run=dry_run == "server")
        except errors.ApiError as e:
            ctx.api_error(e)
            return False
    suffix = {"client": " (dry run)", "server": " (server dry run)"}.get(dry_run, "")
    ctx.print(f"node/{name} {verb}{suffix}")
    return True


async def run_cordon(ctx: Context, args: argparse.Namespace) -> None:
    args.verb = "cordon"
    for node in await _nodes(ctx, args):
        await set_unschedulable(ctx, node, True, args.dry_run)


async def run_uncordon(ctx: Context, args: argparse.Namespace) -> None:
    args.verb = "uncordon"
    for node in await _nodes(ctx, args):
        await set_unschedulable(ctx, node, False, args.dry_run)


# --- drain: which pods, pure ----------------------------------------------------------------

@dataclass
class DrainPlan:
    """The pods to evict, the warnings to print, and the refusals (message → pods)."""

    evict: list[Obj] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    fatal: dict[str, list[str]] = field(default_factory=dict)

    def errors(self) -> list[str]:
        return [f"cannot delete {msg}: {', '.join(pods)}" for msg, pods in self.fatal.items()]

    def warning_line(self) -> str:
        return "; ".join(f"{msg}: {', '.join(pods)}" for msg, pods in self.warnings.items())


def _controller(pod: Obj) -> Obj | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def _finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def plan_drain(pods: list[Obj], *, force: bool, ignore_daemonsets: bool,
               delete_emptydir_data: bool) -> DrainPlan:
    """kubectl's filters, in its order: DaemonSet, mirror, local storage, unreplicated."""
    plan = DrainPlan()
    for pod in pods:
        md = pod.get("metadata") or {}
        shown = f"{md.get('namespace')}/{md.get('name')}"
        ctrl = _controller(pod)
        if ctrl is not None and ctrl.get("kind") == "DaemonSet":
            key = DAEMONSET_WARNING if ignore_daemonsets else DAEMONSET_FATAL
            (plan.warnings if ignore_daemonsets else plan.fatal).setdefault(key, []).append(
                shown)
            continue
        if MIRROR_ANNOTATION in (md.get("annotations") or {}):
            continue  # only its kubelet can remove it
        if not _finished(pod):
            volumes = (pod.get("spec") or {}).get("volumes") or []
            if any("emptyDir" in v for v in volumes):
                if not delete_emptydir_data:
                    plan.fatal.setdefault(LOCAL_STORAGE_FATAL, []).append(shown)
                    continue
                plan.warnings.setdefault(LOCAL_STORAGE_WARNING, []).append(shown)
            if ctrl is None:
                if not force:
                    plan.fatal.setdefault(UNMANAGED_FATAL, []).append(shown)
                    continue
                plan.warnings.setdefault(UNMANAGED_WARNING, []).append(shown)
        plan.evict.append(pod)
    return plan


# --- drain ----------------------------------------------------------------------------------

def configure_drain(p: argparse.ArgumentParser) -> None:
    p.add_argument("nodes", nargs="*", metavar="NODE")
    cli.add_selector(p)
    cli.add_bool(p, "--force", help="Continue even if there are pods that do not declare a "
                                    "controller")
    cli.add_bool(p, "--ignore-daemonsets", help="Ignore DaemonSet-managed pods")
    cli.add_bool(p, "--delete-emptydir-data", help="Continue even if there are pods using "
                                                   "emptyDir (local data that will be deleted "
                                                   "when the node is drained)")
    p.add_argument("--grace-period", type=int, default=-1,
                   help="Period of time in seconds given to each pod to terminate gracefully. "
                        "If negative, the default value specified in the pod will be used.")
    p.add_argument("--timeout", type=cli.duration, default=0.0,
                   help="The length of time to wait before giving up, zero means infinite")
    p.add_argument("--pod-selector", default="", help="Label selector to filter pods on the node")
    cli.add_bool(p, "--disable-eviction", help="Force drain to use delete, even if eviction is "
                                               "supported")
    p.add_argument("--dry-run", default="none", choices=["none", "client", "server"],
                   help="none, client or server")


async def run_drain(ctx: Context, args: argparse.Namespace) -> None:
    args.verb = "drain"
    pending: list[tuple[str, str]] = []
    for node in await _nodes(ctx, args):
        name = node["metadata"]["name"]
        if not await set_unschedulable(ctx, node, True, args.dry_run):
            continue
        error = await _drain_node(ctx, args, name)
        if error:
            ctx.error(f'unable to drain node "{name}" due to error: {error}, continuing '
                      "command...")
            pending.append((name, error))
        else:
            ctx.print(f"node/{name} drained" + (" (dry run)" if args.dry_run != "none" else ""))
    if pending:
        ctx.print_err("There are pending nodes to be drained:")
        for name, _ in pending:
            ctx.print_err(f" {name}")
        for _, error in pending:
            ctx.print_err(error)


def _aggregate(errs: list[str]) -> str:
    """k8s.io/apimachinery's NewAggregate: one error bare, several in brackets."""
    return errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"


async def _drain_node(ctx: Context, args: argparse.Namespace, node: str) -> str:
    """Evict the node's pods and wait for them; '' on success, else the error text."""
    pods, _ = await ctx.client.list_all("pods", None, field_selector=f"spec.nodeName={node}",
                                        label_selector=args.pod_selector)
    plan = plan_drain(pods, force=args.force, ignore_daemonsets=args.ignore_daemonsets,
                      delete_emptydir_data=args.delete_emptydir_data)
    if plan.fatal:
        return _aggregate(plan.errors())
    if plan.warnings:
        ctx.print_err(f"Warning: {plan.warning_line()}")
    if args.dry_run != "none":
        for pod in plan.evict:
            ctx.print(f"evicting pod {pod['metadata']['namespace']}/{pod['metadata']['name']} "
                      "(dry run)")
        return ""
    deadline = time.monotonic() + args.timeout if args.timeout > 0 else None
    results = await asyncio.gather(*(_evict_and_wait(ctx, args, pod, deadline)
                                     for pod in plan.evict))
    errs = [e for e in results if e]
    return _aggregate(errs) if errs else ""


async def _evict_and_wait(ctx: Context, args: argparse.Namespace, pod: Obj,
                          deadline: float | None) -> str:
    md = pod["metadata"]
    ns, name, uid = md["namespace"], md["name"], md.get("uid", "")
    grace = args.grace_period if args.grace_period >= 0 else None
    try:
        if args.disable_eviction:
            await ctx.client.delete("pods", name, ns, grace_period_seconds=grace)
        else:
            ctx.print_err(f"evicting pod {ns}/{name}")
            body: Obj = {"apiVersion": "policy/v1", "kind": "Eviction",
                         "metadata": {"name": name, "namespace": ns}}
            if grace is not None:
                body["deleteOptions"] = {"gracePeriodSeconds": grace}
            await ctx.client.create("pods", body, ns, name=name, subresource="eviction")
    except errors.NotFound:
        return ""
    except errors.ApiError as e:
        return f'error when evicting pods/"{name}" -n "{ns}": {e.message}'
    while True:
        try:
            cur = await ctx.client.get("pods", name, ns)
        except errors.NotFound:
            break
        if (cur.get("metadata") or {}).get("uid") != uid:
            break  # a new pod with the same name: ours is gone
        if deadline is not None and time.monotonic() >= deadline:
            return (f'error when waiting for pod "{name}" in namespace "{ns}" to terminate: '
                    f"global timeout reached: {args.timeout:g}s")
        await asyncio.sleep(POLL_INTERVAL)
    ctx.print(f"pod/{name} {'deleted' if args.disable_eviction else 'evicted'}")
    return ""


COMMANDS = [
    Command(name="cordon", summary="Mark node as unschedulable",
            usage="tkctl cordon NODE [--selector=...]", configure=configure_cordon,
            run=run_cordon, group="Cluster Management Commands"),
    Command(name="uncordon", summary="Mark node as schedulable",
            usage="tkctl uncordon NODE [--selector=...]", configure=configure_cordon,
            run=run_uncordon, group="Cluster Management Commands"),
    Command(name="drain", summary="Drain node in preparation for maintenance",
            usage="tkctl drain NODE [--force] [--ignore-daemonsets] [--delete-emptydir-data] "
                  "[--grace-period=N] [--timeout=DURATION]",
            configure=configure_drain, run=run_drain, group="Cluster Management Commands"),
]
