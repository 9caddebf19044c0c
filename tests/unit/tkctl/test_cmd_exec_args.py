"""`tkctl exec` takes its command as kubectl does: everything after the first `--`, verbatim,
and refuses the removed `exec POD COMMAND` form with kubectl's message."""

from __future__ import annotations

import pytest

from tkctl import cli, cmd_exec
from tkctl.commands import COMMANDS
from tkctl.context import UsageError


def command(*argv: str) -> list[str]:
    _, args = cli.parse(["exec", *argv], COMMANDS)
    return cmd_exec.command_of(args)


def test_everything_after_the_dash_is_the_command_verbatim() -> None:
    assert command("web", "-c", "c", "--", "sh", "-c", "x") == ["sh", "-c", "x"]
    # A second `--` belongs to the command (argparse alone would drop it).
    assert command("web", "--", "grep", "--", "-v", "f") == ["grep", "--", "-v", "f"]
    assert command("-it", "web", "--", "ls", "-la", "--") == ["ls", "-la", "--"]
    assert command("web", "-n", "ns", "--", "sh", "-n", "x") == ["sh", "-n", "x"]
    assert command("web") == []


def test_the_command_without_a_dash_is_refused_as_kubectl_does() -> None:
    with pytest.raises(UsageError) as e:
        command("web", "ls")
    assert str(e.value) == ("exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- "
                            "[COMMAND] instead\nSee 'tkctl exec -h' for help and examples")
