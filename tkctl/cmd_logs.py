"""`tkctl logs`: print the logs of a container in a pod, as `kubectl logs`.

The bytes come from the kubelet of the pod's node, proxied by the apiserver (pods/log); they are
written to stdout as they arrive, untouched. `TYPE/NAME` of a workload (deployment, replicaset,
replicationcontroller) means one of its pods, chosen as kubectl chooses it. Without `-c`, a pod
with several containers logs its default one (the `kubectl.kubernetes.io/default-container`
annotation, else the first), with kubectl's `Defaulted container ...` note on stderr.

The pod lookup and the default container are shared with `tkctl exec` (cmd_exec.py).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Protocol, TextIO

from api import errors, selectors
from api.meta import LabelSelector
from api.resources import lookup
from tkctl import cli
from tkctl.context import Command, Context, UsageError

Obj = dict[str, Any]
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
_LOGS_USAGE = "logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", metavar="(POD | TYPE/NAME)")
    p.add_argument("container_arg", nargs="?", metavar="CONTAINER", help=argparse.SUPPRESS)
    p.add_argument("-c", "--container", default="", help="Print the logs of this container")
    cli.add_bool(p, "-f", "--follow", help="Specify if the logs should be streamed.")
    cli.add_bool(p, "-p", "--previous", help="If true, print the logs for the previous "
                 "instance of the container in a pod if it exists.")
    p.add_argument("--tail", type=int, default=-1,
                   help="Lines of recent log file to display. Defaults to -1, showing all log "
                        "lines.")
    cli.add_bool(p, "--timestamps", help="Include timestamps on each line in the log output")
    p.add_argument("--since", type=cli.duration, default=0.0,
                   help="Only return logs newer than a relative duration like 5s, 2m, or 3h. "
                        "Defaults to all logs.")
    p.add_argument("--limit-bytes", type=int, default=0,
                   help="Maximum bytes of logs to return. Defaults to no limit.")


class ByteSink(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


def binary_out(stream: TextIO | None) -> ByteSink:
    """Where raw bytes go: the binary buffer under a text stream (stdout by default)."""
    target = stream or sys.stdout
    buffer = getattr(target, "buffer", None)
    if buffer is None:
        return _TextWriter(target)  # a StringIO in tests
    target.flush()
    sink: ByteSink = buffer
    return sink


class _TextWriter:
    """Bytes onto a text stream that has no buffer (decoded, undecodable bytes replaced)."""

    def __init__(self, text: TextIO) -> None:
        self.text = text

    def write(self, data: bytes) -> int:
        self.text.write(data.decode(errors="replace"))
        return len(data)

    def flush(self) -> None:
        self.text.flush()


async def run(ctx: Context, args: argparse.Namespace) -> None:
    if not args.target:
        raise UsageError(f"expected '{_LOGS_USAGE}'.\nPOD or TYPE/NAME is a required argument "
                         "for the logs command")
    container = args.container or args.container_arg or ""
    if args.container and args.container_arg:
        raise UsageError("only one of -c or an inline [CONTAINER] arg is allowed")
    if args.limit_bytes < 0:
        raise UsageError("--limit-bytes must be greater than 0")
    if args.tail < -1:
        raise UsageError("--tail must be greater than or equal to -1")
    pod = await attachable_pod(ctx, args.target)
    container = container or default_container(ctx, pod)
    name = pod["metadata"]["name"]
    out = binary_out(ctx.out)
    async for data in ctx.client.logs(
            ctx.namespace, name, container=container, follow=args.follow,
            previous=args.previous, tail_lines=args.tail, timestamps=args.timestamps,
            since_seconds=int(args.since), limit_bytes=args.limit_bytes):
        out.write(data)
        out.flush()


# --- shared with `tkctl exec` ---------------------------------------------------------------


async def attachable_pod(ctx: Context, target: str) -> Obj:
    """The pod `POD` or `TYPE/NAME` means (kubectl's AttachablePodForObject)."""
    kind, slash, name = target.partition("/")
    if not slash:
        return await ctx.client.get("pods", target, ctx.namespace)
    if not kind or not name:
        raise UsageError("arguments in resource/name form must have a single resource and name")
    info = lookup(kind)
    if info.name == "pods":
        return await ctx.client.get("pods", name, ctx.namespace)
    if info.name not in ("deployments", "replicasets", "replicationcontrollers"):
        raise UsageError(f"cannot attach to {info.kind}: not implemented")
    owner = await ctx.client.get(info.name, name, ctx.namespace)
    raw = (owner.get("spec") or {}).get("selector")
    if info.name == "replicationcontrollers":
        selector = selectors.from_map(raw or (owner["spec"].get("template") or {}).get(
            "metadata", {}).get("labels"))
    else:
        selector = selectors.from_label_selector(
            LabelSelector.model_validate(raw) if raw is not None else None)
    items, _ = await ctx.client.list_all("pods", ctx.namespace, label_selector=str(selector))
    if not items or selector.matches_nothing:
        raise errors.NotFound(message=f"no pods found for {info.kind.lower()} {name}",
                              kind="pods")
    return sorted(items, key=_logging_order)[0]


def _logging_order(pod: Obj) -> tuple[bool, bool, bool, int, str]:
    """kubectl's podutils.ByLogging: scheduled first, then running, then ready, then the one
    with more restarts, then the older."""
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or [])
    restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])
    return (not (pod.get("spec") or {}).get("nodeName"), status.get("phase") != "Running",
            not ready, -restarts, str((pod.get("metadata") or {}).get("creationTimestamp", "")))


def default_container(ctx: Context, pod: Obj, *, quiet: bool = False) -> str:
    """The container kubectl picks when none is named; `Defaulted container "a" out of: a, b`
    on stderr when the pod has several."""
    containers = [str(c.get("name", "")) for c in (pod.get("spec") or {}).get("containers") or []]
    if len(containers) <= 1:
        return containers[0] if containers else ""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    chosen = annotations.get(DEFAULT_CONTAINER_ANNOTATION) or ""
    if chosen not in containers:
        chosen = containers[0]
    if not quiet:
        init = [str(c.get("name", ""))
                for c in (pod.get("spec") or {}).get("initContainers") or []]
        others = ", ".join(containers) + (f" (init: {', '.join(init)})" if init else "")
        ctx.print_err(f'Defaulted container "{chosen}" out of: {others}')
    return chosen


COMMAND = Command(
    "logs", "Print the logs for a container in a pod",
    "tkctl logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER] [options]",
    configure, run, group="Troubleshooting and Debugging Commands",
)
