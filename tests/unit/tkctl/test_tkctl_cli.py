"""Command-line handling: kubectl's one-line errors, exit codes, flag spellings."""

from __future__ import annotations

import argparse
import io
import socket

import pytest

from tkctl import cli
from tkctl.commands import COMMANDS, execute
from tkctl.context import UsageError


async def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await execute(list(argv), stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["get", "pods", "--foo"], "error: unknown flag: --foo"),
        (["get", "pods", "--foo=bar"], "error: unknown flag: --foo"),
        (["get", "pods", "-z"], "error: unknown shorthand flag: 'z' in -z"),
        (["frobnicate"], 'error: unknown command "frobnicate" for "tkctl"'),
        (["get", "pods", "-o"], "error: flag needs an argument: 'o' in -o"),
        (["get", "pods", "--output"], "error: flag needs an argument: --output"),
        (["get", "pods", "-o", "xml"], 'error: unable to match a printer suitable for the output '
                                       'format "xml", allowed formats are: custom-columns,'
                                       'custom-columns-file,json,jsonpath,jsonpath-file,name,'
                                       'wide,yaml'),
        (["get"], "error: You must specify the type of resource to get."),
        (["get", "flurbs"], 'error: the server doesn\'t have a resource type "flurbs"'),
        (["get", "deploy", "deploy/x"], "error: there is no need to specify a resource type"),
        (["apply"], "error: must specify one of -f and -k"),
        (["apply", "-f", "missing.yaml"], 'error: the path "missing.yaml" does not exist'),
        (["delete", "pods"], "error: resource(s) were provided, but no name was specified"),
        (["delete", "pod", "x", "--cascade=sideways"], "error: invalid cascade value (sideways)"),
        (["delete", "pod", "x", "--grace-period", "soon"],
         'error: invalid argument "soon" for "--grace-period" flag'),
        (["label", "pod", "x"], "error: at least one label update is required"),
        (["label", "pod", "x", "a b=c"], "error: invalid label spec: a b"),
        (["patch", "deploy", "x", "-p", "{}", "--type", "strategic"],
         "error: strategic merge patch is not supported by tinykube: use --type merge"),
        (["patch", "deploy", "x"], "error: must specify --patch or --patch-file"),
        (["get", "pods", "--all-namespaces=maybe"], 'error: invalid argument "maybe"'),
        (["--bogus"], "error: unknown flag: --bogus"),
    ],
)
async def test_user_mistakes_print_one_line_and_exit_1(argv: list[str], message: str) -> None:
    code, out, err = await run(*argv, "--server", closed_port())
    assert code == 1
    assert err.startswith(message), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""


async def test_bad_manifest_on_stdin_is_one_line() -> None:
    code, _, err = await run("apply", "-f", "-", stdin="kind: Pod\nmetadata: {name: [x\n")
    assert code == 1
    assert err.startswith("error: error parsing STDIN: error converting YAML to JSON: yaml: line")
    assert err.count("\n") == 1


async def test_unreachable_server_is_one_kubectl_line() -> None:
    server = closed_port()
    code, _, err = await run("get", "pods", "--server", server)
    assert code == 1
    assert err == (f"The connection to the server {server} was refused - did you specify the "
                   "right host or port?\n")


async def test_help_and_overview_exit_0() -> None:
    code, out, _ = await run()
    assert code == 0 and "get " in out and "apply " in out
    code, out, _ = await run("--help")
    assert code == 0 and "Basic Commands:" in out


def test_help_for_a_verb_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.parse(["get", "--help"], COMMANDS)
    assert e.value.code == 0
    assert "--all-namespaces" in capsys.readouterr().out


def parse(*argv: str) -> argparse.Namespace:
    command, args = cli.parse(list(argv), COMMANDS)
    assert command is not None
    return args


def test_global_flags_before_or_after_the_verb() -> None:
    a = parse("-n", "kube-system", "--server=h:1", "get", "pods")
    assert (a.namespace, a.server, a.resources) == ("kube-system", "h:1", ["pods"])
    b = parse("get", "pods", "--namespace=x", "-s", "h:2")
    assert (b.namespace, b.server) == ("x", "h:2")


def test_flags_between_positionals() -> None:
    """kubectl accepts `annotate deploy web -n demo key="a b"`: positionals after a flag."""
    a = parse("annotate", "deploy", "web", "-n", "demo", "kubernetes.io/change-cause=a b")
    assert (a.namespace, a.args) == ("demo", ["deploy", "web", "kubernetes.io/change-cause=a b"])
    b = parse("get", "pods", "-n", "demo", "web", "-o", "name")
    assert (b.namespace, b.resources, b.output) == ("demo", ["pods", "web"], "name")


def test_pflag_spellings() -> None:
    a = parse("get", "pods", "-o=yaml", "-A=true", "--show-labels=false", "-lapp=web")
    assert (a.output, a.all_namespaces, a.show_labels, a.selector) == ("yaml", True, False,
                                                                       "app=web")
    b = parse("describe", "pods", "--show-events=false")
    assert b.show_events is False
    assert parse("describe", "pods").show_events is True
    with pytest.raises(UsageError, match="unknown flag: --all-name"):
        cli.parse(["get", "pods", "--all-name"], COMMANDS)  # no abbreviations


def test_delete_flags() -> None:
    a = parse("delete", "deploy", "web", "--cascade=orphan", "--grace-period=0", "--now=false")
    assert (a.cascade, a.grace_period, a.now) == ("orphan", 0, False)
    assert parse("delete", "deploy", "web", "--cascade").cascade == "background"


def test_split_verb() -> None:
    assert cli.split_verb(["-n", "x", "get", "po"]) == ("get", ["-n", "x", "po"])
    assert cli.split_verb(["--server=a", "get"]) == ("get", ["--server=a"])
    assert cli.split_verb(["-n", "x"]) == (None, ["-n", "x"])


def test_request_timeout_durations() -> None:
    assert cli.duration("5") == 5.0
    assert cli.duration("1m30s") == 90.0
    assert cli.duration("500ms") == 0.5
    with pytest.raises(ValueError):
        cli.duration("soon")
    assert parse("--request-timeout=2s", "get", "pods").request_timeout == 2.0


async def test_bad_request_timeout_is_one_line() -> None:
    code, _, err = await run("get", "pods", "--request-timeout", "soon")
    assert code == 1
    assert err == 'error: invalid argument "soon" for "--request-timeout" flag\n'
