"""The verbs tkctl knows, and one invocation from argv to exit code.

`COMMANDS` is the registry: a new verb (e.g. `scale`) is a module exposing a `context.Command`
plus one entry here. `execute` parses, runs the verb against a fresh client, turns every expected
failure (usage mistakes, unreadable manifests, API errors) into one `error: ...` line and returns
kubectl's exit code: 0 on success, 1 if anything failed.
"""

from __future__ import annotations

import os

# gRPC's C core logs failed TLS handshakes on stderr at INFO; a CLI prints one line of its own
# instead. Read once when grpc is first imported, hence before the imports below.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse
import asyncio
import sys
import traceback
from typing import TextIO

from api import errors
from client.apiclient import ApiClient
from client.config import DEFAULT_SERVER, ClientConfig, ConfigError, load_config
from tkctl import (
    cli,
    cmd_apply,
    cmd_auth,
    cmd_delete,
    cmd_describe,
    cmd_exec,
    cmd_get,
    cmd_info,
    cmd_label,
    cmd_logs,
    cmd_node,
    cmd_patch,
    cmd_pki,
    cmd_rollout,
    cmd_scale,
    cmd_taint,
    cmd_wait,
)
from tkctl.context import DEFAULT_NAMESPACE, Command, Context, UsageError
from tkctl.manifests import ManifestError

COMMANDS: list[Command] = [
    cmd_apply.CREATE,
    cmd_get.COMMAND,
    cmd_delete.COMMAND,
    cmd_describe.COMMAND,
    cmd_apply.APPLY,
    cmd_patch.COMMAND,
    cmd_apply.REPLACE,
    cmd_label.LABEL,
    cmd_label.ANNOTATE,
    cmd_info.API_RESOURCES,
    cmd_info.VERSION,
    cmd_apply.CREATE_TOKEN,
    cmd_apply.CREATE_NAMESPACE,
    *cmd_auth.COMMANDS,
    *cmd_pki.COMMANDS,
    *cmd_rollout.COMMANDS,
    cmd_scale.COMMAND,
    *cmd_node.COMMANDS,
    cmd_taint.COMMAND,
    cmd_logs.COMMAND,
    cmd_exec.COMMAND,
    cmd_wait.COMMAND,
]


async def execute(
    argv: list[str], *, stdin: TextIO | None = None, stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one tkctl command line; returns the process exit code."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        command, args = cli.parse(argv, COMMANDS)
    except UsageError as e:
        print(f"error: {e}", file=err)
        return 1
    except SystemExit as e:  # --help printed by argparse
        return int(e.code or 0)
    if command is None:
        print(cli.overview(COMMANDS), file=out)
        return 0
    try:
        client = _client(command, args)
    except (ConfigError, UsageError) as e:
        print(f"error: {e}", file=err)
        return 1
    namespace = getattr(args, "namespace", None)
    ctx = Context(client=client,
                  namespace=namespace or client.config.namespace or DEFAULT_NAMESPACE,
                  explicit_namespace=bool(namespace), out=out, err=err, stdin=stdin)
    timeout = getattr(args, "request_timeout", 0.0) or None
    try:
        async with asyncio.timeout(timeout):
            await _run(ctx, command, args)
    except TimeoutError:
        if not ctx.watching:
            ctx.error(f"the server did not answer within the request timeout ({timeout:g}s)")
    finally:
        await client.close()
    if ctx.exit_code is not None:
        return ctx.exit_code
    return 1 if ctx.failed else 0


def _client(command: Command, args: argparse.Namespace) -> ApiClient:
    """The client from the kubeconfig (`--kubeconfig`, $TINYKUBE_CONFIG, ~/.tinykube/config)
    with `--server`, `--as`, `--as-group` applied. A verb that needs no server gets one that is
    never used, so that `pki init` works before any kubeconfig exists."""
    server = getattr(args, "server", None)
    user, groups = getattr(args, "as_user", None), getattr(args, "as_group", None) or ()
    if groups and not user:
        raise UsageError("requesting groups or user-extra without impersonating a user "
                         "(--as-group needs --as)")
    if command.needs_server:
        config = load_config(getattr(args, "kubeconfig", None), server)
    else:
        config = ClientConfig(server=server or DEFAULT_SERVER)
    return ApiClient(config=config, user_agent="tkctl",
                     impersonate_user=user, impersonate_groups=groups)


async def _run(ctx: Context, command: Command, args: argparse.Namespace) -> None:
    try:
        await command.run(ctx, args)
    except (UsageError, ManifestError) as e:
        ctx.error(str(e))
    except errors.ApiError as e:
        ctx.api_error(e)
    except BrokenPipeError:
        raise  # stdout closed (`| head`): __main__ stops quietly
    except Exception as e:  # a bug in tkctl: still one line, unless debugging
        if os.environ.get("TKCTL_DEBUG"):
            traceback.print_exc(file=ctx.err)
        ctx.error(f"internal error: {type(e).__name__}: {e}")

