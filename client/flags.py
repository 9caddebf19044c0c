"""Flags every control-plane process shares, parsed the same way everywhere.

The scheduler, the controller-manager, the hollow nodes (and later the kubelet and the agents)
all take `--kubeconfig`/`--server` to find the apiserver and `--leader-elect*` to compete for a
Lease, with upstream's names and defaults. Parsing them in one place keeps the error messages
alike (`tk-scheduler: error: --kubeconfig: …`, never a stack trace) and keeps each component's
`__main__.py` to wiring.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from api import errors
from api.durations import parse_duration
from client.apiclient import ApiClient
from client.config import ConfigError, load_config
from client.leaderelection import LeaderElector


def duration(text: str) -> float:
    """Seconds of a Go duration as upstream flags take them: 10m, 1h30m, 1s, 500ms.

    A bare number is taken as seconds (tests and the lab shorten timings with `--x 2`).
    """
    try:
        return parse_duration(text)
    except ValueError:
        if text.startswith("-"):
            raise argparse.ArgumentTypeError(
                f"invalid duration {text!r}: must not be negative") from None
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r} (want e.g. 10m, 1h, 30s)") from None


def csv(values: list[str] | str | None) -> list[str]:
    """Repeatable flags that also take comma-separated lists."""
    if isinstance(values, str):
        values = [values]
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors prefixed by the program name, exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def add_client_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection")
    g.add_argument("--kubeconfig", default=None,
                   help="kubeconfig with the server and this component's credentials "
                        "(default: $TINYKUBE_CONFIG, then ~/.tinykube/config)")
    g.add_argument("-s", "--server", default=None,
                   help="the apiserver's gRPC address host:port (overrides the kubeconfig's "
                        "tinykube.io/grpc extension)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def add_leader_election_flags(p: argparse.ArgumentParser, *, default_name: str) -> None:
    g = p.add_argument_group("leader election (a Lease in kube-system)")
    g.add_argument("--leader-elect", default=True, action=argparse.BooleanOptionalAction,
                   help="compete for the lease and act only while holding it (default on)")
    g.add_argument("--leader-elect-lease-duration", type=duration, default=15.0,
                   metavar="DURATION")
    g.add_argument("--leader-elect-renew-deadline", type=duration, default=10.0,
                   metavar="DURATION")
    g.add_argument("--leader-elect-retry-period", type=duration, default=2.0,
                   metavar="DURATION")
    g.add_argument("--leader-elect-resource-name", default=default_name)
    g.add_argument("--leader-elect-resource-namespace", default="kube-system")


def check_leader_election(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if not (a.leader_elect_lease_duration > a.leader_elect_renew_deadline
            > a.leader_elect_retry_period > 0):
        p.error("--leader-elect-lease-duration must exceed --leader-elect-renew-deadline, "
                "which must exceed --leader-elect-retry-period (> 0)")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def make_client(p: argparse.ArgumentParser, a: argparse.Namespace, user_agent: str) -> ApiClient:
    """The apiserver client the flags describe; a bad kubeconfig is one line naming it."""
    try:
        cfg = load_config(a.kubeconfig, server=a.server)
    except ConfigError as e:
        p.error(str(e))
    return ApiClient(config=cfg, user_agent=user_agent)


def identity() -> str:
    """A leader-election identity unique per process, readable in `tkctl get lease`."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


async def run_leader_elected(client: ApiClient, a: argparse.Namespace,
                             work: Callable[[], Awaitable[Any]], name: str) -> None:
    """Run `work` while we hold the lease (or at once with --no-leader-elect).

    Returns when leadership is lost, or when `work` ended by itself (a controller crashed): the
    caller then exits non-zero. Like upstream, a process that lost its lease restarts from
    scratch rather than risk acting beside the new leader, and one whose work died must not sit
    on the lease doing nothing. Cancelling this (SIGTERM) stops the work and releases the
    lease, so a successor takes over at its next retry instead of waiting for expiry.
    """
    log = logging.getLogger(name)
    if not a.leader_elect:
        await _guarded(work, name)
        return
    elector_task: asyncio.Task[None] | None = None

    async def lead() -> None:
        await _guarded(work, name)
        # The work is over but the elector would keep renewing: stop it (releasing the lease).
        assert elector_task is not None
        elector_task.cancel()

    elector = LeaderElector(
        client,
        lock_name=a.leader_elect_resource_name,
        namespace=a.leader_elect_resource_namespace, identity=identity(),
        on_started_leading=lead, lease_duration=a.leader_elect_lease_duration,
        renew_deadline=a.leader_elect_renew_deadline,
        retry_period=a.leader_elect_retry_period, release_on_cancel=True)
    elector_task = asyncio.create_task(elector.run(), name=f"{name} leader election")
    try:
        await elector_task
    except asyncio.CancelledError:
        me = asyncio.current_task()
        if me is not None and me.cancelling():
            raise  # we were asked to stop (SIGTERM): not a failure
        return  # lead() stopped the elector: the work ended
    log.error("%s: leader election lost; exiting", name)


async def run_elected_component(client: ApiClient, a: argparse.Namespace,
                                work: Callable[[], Awaitable[Any]], prog: str,
                                *closers: Callable[[], Awaitable[Any]]) -> NoReturn:
    """A leader-elected component's whole life: wait for the apiserver, run `work` under the
    lease, close `closers` and the client, and exit 1 (only reached when the lease was lost or
    the work died: restart and compete again; SIGTERM cancels this instead)."""
    try:
        await client.wait_ready()
        await run_leader_elected(client, a, work, prog)
    finally:
        for close in closers:
            await close()
        await client.close()
    sys.exit(1)


async def _guarded(work: Callable[[], Awaitable[Any]], name: str) -> None:
    """`work()`, with an unexpected end logged instead of raised (the caller exits 1)."""
    try:
        await work()
    except asyncio.CancelledError:
        raise
    except Exception:
        logging.getLogger(name).exception("%s: stopped on an unexpected error; exiting", name)
    else:
        logging.getLogger(name).error("%s: work ended unexpectedly; exiting", name)


def run_main(coro: Awaitable[Any], prog: str) -> None:
    """asyncio.run with signals and failures turned into exit codes, not tracebacks.

    SIGTERM (and Ctrl-C) cancel the main task, so the component stops its work, releases its
    lease and exits 0, as upstream's components do when asked to terminate; an apiserver that
    cannot be reached (or refuses us) at start-up is one line and exit 1.
    """

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await coro
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        return
    except ConfigError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except errors.ApiError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(1)
