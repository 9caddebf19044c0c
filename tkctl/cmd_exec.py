"""`tkctl exec`: run a command in a container, as `kubectl exec`.

The command runs in the container through the apiserver (pods/exec), which proxies to the
kubelet of the pod's node. Its stdout and stderr come back separately (one stream with `-t`,
as a terminal gives); with `-i` our stdin is forwarded, and its end closes the command's stdin;
with `-it` on a terminal, the local terminal is put in raw mode (keys go to the remote shell as
typed, Ctrl-C included), resized remotely on SIGWINCH, and restored on the way out. The command's
exit status becomes tkctl's, with kubectl's `command terminated with exit code N` on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from api.proto import tinykube_pb2 as pb
from tkctl import cli
from tkctl.cmd_logs import ByteSink, attachable_pod, binary_out, default_container
from tkctl.context import Command, Context, UsageError

_NO_TTY = "Unable to use a TTY - input is not a terminal or the right kind of file"
_NO_DASH = ("exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead"
            "\nSee 'tkctl exec -h' for help and examples")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", metavar="(POD | TYPE/NAME)")
    p.add_argument("command", nargs="*", metavar="COMMAND [args...]")
    p.add_argument("-c", "--container", default="",
                   help="Container name. If omitted, use the kubectl.kubernetes.io/"
                        "default-container annotation for selecting the container to be "
                        "attached or the first container in the pod will be chosen")
    cli.add_bool(p, "-i", "--stdin", help="Pass stdin to the container")
    cli.add_bool(p, "-t", "--tty", help="Stdin is a TTY")
    cli.add_bool(p, "-q", "--quiet", help="Only print output from the remote session")
    # The command is everything after the first `--`, verbatim (cobra's ArgsLenAtDash):
    # argparse drops a further `--` from the positionals (`-- sh -c -- x` would lose it).
    argv = list(getattr(p, "argv", ()))
    p.set_defaults(dash_command=argv[argv.index("--") + 1:] if "--" in argv else None)


def command_of(args: argparse.Namespace) -> list[str]:
    """The command to run, as kubectl takes it: only after `--` (kubectl 1.31 refuses the old
    `exec POD COMMAND` form)."""
    dash: list[str] | None = getattr(args, "dash_command", None)
    if dash is None:
        if args.command:
            raise UsageError(_NO_DASH)
        return []
    return dash


def _fileno(stream: Any) -> int | None:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None


class _Input:
    """Requests after `start`: stdin read by a daemon thread (a blocking read cannot be
    cancelled; the thread dies with the process), terminal resizes from SIGWINCH."""

    def __init__(self, stdin: Any | None, tty_fd: int | None) -> None:
        self.stdin = stdin
        self.tty_fd = tty_fd
        self.queue: asyncio.Queue[pb.ExecRequest] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()

    def _put(self, req: pb.ExecRequest) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: the session is over
            self.loop.call_soon_threadsafe(self.queue.put_nowait, req)

    def _chunks(self) -> Iterator[bytes]:
        fd = _fileno(self.stdin)
        if fd is not None:
            while chunk := os.read(fd, 32 * 1024):
                yield chunk
            return
        assert self.stdin is not None
        data = self.stdin.read()  # a StringIO (tests in-process)
        yield data.encode() if isinstance(data, str) else data

    def _read(self) -> None:
        try:
            for chunk in self._chunks():
                if chunk:
                    self._put(pb.ExecRequest(stdin=chunk))
        except OSError:
            pass
        self._put(pb.ExecRequest(stdin_close=True))

    def resize(self) -> None:
        if self.tty_fd is None:
            return
        size = shutil.get_terminal_size()
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(self.tty_fd)
        self.queue.put_nowait(pb.ExecRequest(
            resize=pb.TerminalSize(width=size.columns, height=size.lines)))

    def start(self) -> None:
        if self.stdin is not None:
            threading.Thread(target=self._read, name="tkctl exec stdin", daemon=True).start()
        if self.tty_fd is not None:
            self.resize()
            self.loop.add_signal_handler(signal.SIGWINCH, self.resize)

    def stop(self) -> None:
        if self.tty_fd is not None:
            self.loop.remove_signal_handler(signal.SIGWINCH)

    async def requests(self) -> AsyncIterator[pb.ExecRequest]:
        while True:
            yield await self.queue.get()


@contextlib.contextmanager
def _raw_terminal(fd: int | None) -> Iterator[None]:
    """The local terminal in raw mode for the session, restored however it ends."""
    if fd is None:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def run(ctx: Context, args: argparse.Namespace) -> None:
    if not args.target:
        raise UsageError("pod, type/name or --filename must be specified")
    command = command_of(args)
    if not command:
        raise UsageError("you must specify at least one command for the container")
    pod = await attachable_pod(ctx, args.target)
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise UsageError(f"cannot exec into a container in a completed pod; current phase is "
                         f"{phase}")
    container = args.container or default_container(ctx, pod, quiet=args.quiet)
    stdin = (ctx.stdin or sys.stdin) if args.stdin else None
    tty = bool(args.tty and stdin is not None)
    tty_fd: int | None = None
    if tty:
        fd = _fileno(stdin)
        if fd is not None and os.isatty(fd):
            tty_fd = fd
        else:
            tty = False
            if not args.quiet:
                ctx.print_err(_NO_TTY)
    start = pb.ExecStart(namespace=ctx.namespace, name=pod["metadata"]["name"],
                         container=container, command=command,
                         stdin=stdin is not None, tty=tty)
    out, err = binary_out(ctx.out), binary_out(ctx.err)
    inp = _Input(stdin, tty_fd)
    code: int | None = None
    with _raw_terminal(tty_fd):
        inp.start()
        try:
            async for resp in ctx.client.exec(start, inp.requests()):
                _write(out, resp.stdout)
                _write(err, resp.stderr)
                if resp.error:
                    ctx.error(resp.error)
                if resp.exited:
                    code = resp.exit_code
        finally:
            inp.stop()
    if code:
        ctx.print_err(f"command terminated with exit code {code}")
        ctx.exit_code = code


def _write(stream: ByteSink, data: bytes) -> None:
    if data:
        stream.write(data)
        stream.flush()


COMMAND = Command(
    "exec", "Execute a command in a container",
    "tkctl exec (POD | TYPE/NAME) [-c CONTAINER] [flags] -- COMMAND [args...]",
    configure, run, group="Troubleshooting and Debugging Commands",
)
