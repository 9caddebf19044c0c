"""The verbs tkctl knows, and one invocation from argv to exit code.

`COMMANDS` is the registry: a new verb (e.g. `scale`) is a module exposing a `context.Command`
plus one entry here. `execute` parses, runs the verb against a fresh client, turns every expected
failure (usage mistakes, unreadable manifests, API errors) into one `error: ...` line and returns
kubectl's exit code: 0 on success, 1 if anything failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from typing import TextIO

from api import errors
from client.apiclient import ApiClient
from tkctl import cli, cmd_apply, cmd_delete, cmd_describe, cmd_get, cmd_info, cmd_label, cmd_patch
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
    client = ApiClient(getattr(args, "server", None), user_agent="tkctl")
    namespace = getattr(args, "namespace", None)
    ctx = Context(client=client, namespace=namespace or DEFAULT_NAMESPACE,
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
    return 1 if ctx.failed else 0


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

