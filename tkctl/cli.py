"""Command-line parsing with kubectl's conventions, on argparse.

kubectl (cobra/pflag) differs from argparse in ways users notice, so this module bridges them:
global flags (`-n`, `--server`) go before or after the verb; `--flag=true|false` works for boolean
flags; `-o=yaml` works like `-oyaml`; flags are never abbreviated; and every parse failure becomes a
`UsageError` carrying kubectl's one-line wording (`unknown flag: --foo`, `unknown command "x" for
"tkctl"`) instead of argparse's usage dump and exit 2. Verbs are `context.Command`s: adding one
(e.g. `scale`) is a new module plus an entry in `commands.COMMANDS`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import NoReturn

from api.durations import parse_duration
from tkctl.context import Command, UsageError
from tkctl.printers import OUTPUT_FORMATS

PROG = "tkctl"
_GLOBAL_VALUE_FLAGS = (
    "-n", "--namespace", "-s", "--server", "--request-timeout", "--kubeconfig", "--as",
    "--as-group",
)
_GROUP_ORDER = (
    "Basic Commands", "Deploy Commands", "Cluster Management Commands",
    "Troubleshooting and Debugging Commands", "Advanced Commands",
    "Settings Commands", "Other Commands",
)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise `UsageError` with kubectl's wording."""

    def __init__(self, *args: object, argv: Sequence[str] = (), **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.argv = list(argv)

    def error(self, message: str) -> NoReturn:
        raise UsageError(translate_error(message, self.argv))


# --- error wording --------------------------------------------------------------------------


def translate_error(message: str, argv: Sequence[str]) -> str:
    """Turn an argparse message into the line kubectl would print."""
    if message.startswith("unrecognized arguments: "):
        return _unknown(message.removeprefix("unrecognized arguments: ").split()[0])
    m = re.match(r"argument ([^:]+): expected one argument", message)
    if m:
        return _needs_argument(m.group(1).split("/"), argv)
    m = re.match(r"argument ([^:]+): invalid (?:\w+ value|choice): '([^']*)'(.*)", message)
    if m:
        flag = m.group(1).split("/")[-1]
        return f'invalid argument "{m.group(2)}" for "{flag}" flag{_choices(m.group(3))}'
    if message.startswith("the following arguments are required: "):
        return "required flag(s) " + ", ".join(
            f'"{a.split("/")[-1].lstrip("-")}"'
            for a in message.removeprefix("the following arguments are required: ").split(", ")
        ) + " not set"
    return message


def _unknown(token: str) -> str:
    if token.startswith("--"):
        return f"unknown flag: {token.split('=', 1)[0]}"
    if token.startswith("-") and len(token) > 1:
        return f"unknown shorthand flag: '{token[1]}' in {token}"
    return f'unexpected argument "{token}"'


def _needs_argument(names: list[str], argv: Sequence[str]) -> str:
    used = next((a for a in reversed(argv) if a in names), names[-1])
    if used.startswith("--"):
        return f"flag needs an argument: {used}"
    return f"flag needs an argument: '{used.lstrip('-')}' in {used}"


def _choices(rest: str) -> str:
    m = re.search(r"\(choose from (.*)\)", rest)
    if not m:
        return ""
    return ": must be one of " + ", ".join(c.strip(" '") for c in m.group(1).split(","))


# --- flag helpers for verbs -----------------------------------------------------------------


def add_global_flags(p: argparse.ArgumentParser) -> None:
    """`-n`, `-s`, `--kubeconfig`, `--as`..., accepted by every verb, before or after it."""
    p.add_argument("-n", "--namespace", default=argparse.SUPPRESS,
                   help="If present, the namespace scope for this CLI request")
    p.add_argument("-s", "--server", default=argparse.SUPPRESS,
                   help="The apiserver's gRPC address (HOST:PORT); overrides the kubeconfig's "
                        "(default $TINYKUBE_SERVER). For `pki`, the URL written into the "
                        "kubeconfigs")
    p.add_argument("--kubeconfig", default=argparse.SUPPRESS,
                   help="Path to the kubeconfig file to use (default $TINYKUBE_CONFIG, else "
                        "~/.tinykube/config)")
    p.add_argument("--as", dest="as_user", default=argparse.SUPPRESS,
                   help="Username to impersonate for the operation")
    p.add_argument("--as-group", dest="as_group", action="append", default=argparse.SUPPRESS,
                   help="Group to impersonate for the operation; repeat for more groups")
    p.add_argument("--request-timeout", default=argparse.SUPPRESS, type=duration,
                   help="How long to wait for the server (e.g. 1s, 2m, 3h; 0: no limit); "
                        "ends a watch quietly")




def duration(text: str) -> float:
    """A Go duration (`1s`, `1m30s`, `500ms`) or plain seconds, as kubectl's --request-timeout."""
    return parse_duration(text)


duration.__name__ = "duration"  # argparse names the type in its error message


def add_output(p: argparse.ArgumentParser, formats: Sequence[str] = OUTPUT_FORMATS) -> None:
    p.add_argument("-o", "--output", default="",
                   help=f"Output format. One of: ({', '.join(formats)}).")


def check_output(value: str, formats: Sequence[str] = OUTPUT_FORMATS) -> None:
    if value and value not in formats:
        raise UsageError(
            f'unable to match a printer suitable for the output format "{value}", allowed '
            f"formats are: {','.join(sorted(formats))}"
        )


def add_filename(p: argparse.ArgumentParser, what: str, *, required: bool = False) -> None:
    p.add_argument("-f", "--filename", action="append", default=[], required=required,
                   help=f"Filename, directory, or '-' (stdin) of the manifests to {what}")
    p.add_argument("-R", "--recursive", action="store_true",
                   help="Process the directory used in -f, --filename recursively")


def add_selector(p: argparse.ArgumentParser) -> None:
    p.add_argument("-l", "--selector", default="",
                   help="Selector (label query) to filter on, supports '=', '==', '!=', 'in', "
                        "'notin' (e.g. -l key1=value1,key2=value2)")


def add_bool(p: argparse.ArgumentParser, *names: str, help: str) -> None:
    """A boolean flag that also accepts `--name=true|false`, as pflag does."""
    p.add_argument(*names, action="store_true", help=help)


# --- argv ---------------------------------------------------------------------------------


def normalize(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """Rewrite pflag-only spellings into argparse ones: `-o=yaml`, `--all=false`."""
    out: list[str] = []
    for i, tok in enumerate(argv):
        if tok == "--":
            return out + list(argv[i:])
        out.extend(_normalize_token(tok, parser))
    return out


def _normalize_token(tok: str, parser: argparse.ArgumentParser) -> list[str]:
    short = re.match(r"^(-[A-Za-z])=(.*)$", tok)
    if short and not _is_bool(parser, short.group(1)):
        return [short.group(1), short.group(2)]
    flag, eq, value = tok.partition("=")
    if not (eq and flag.startswith("-") and _is_bool(parser, flag)):
        return [tok]
    if value.lower() in ("true", "1", "t"):
        return [flag]
    if value.lower() in ("false", "0", "f"):
        negated = "--no-" + flag.lstrip("-")
        return [negated] if negated in parser._option_string_actions else []
    raise UsageError(
        f'invalid argument "{value}" for "{flag}" flag: strconv.ParseBool: parsing '
        f'"{value}": invalid syntax'
    )


def _is_bool(parser: argparse.ArgumentParser, flag: str) -> bool:
    action = parser._option_string_actions.get(flag)
    return action is not None and action.nargs == 0 and not isinstance(
        action, argparse._HelpAction
    )


def split_verb(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(verb, the other arguments): the verb is the first word not taken by a global flag."""
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in _GLOBAL_VALUE_FLAGS:
            i += 2
            continue
        if tok.startswith("-"):
            i += 1
            continue
        return tok, [*argv[:i], *argv[i + 1:]]
    return None, list(argv)


def _unknown_leading_flag(rest: Sequence[str]) -> str | None:
    """A flag other than a global one or --help given without a verb (`tkctl --foo`)."""
    allowed = {"-h", "--help", *_GLOBAL_VALUE_FLAGS}
    for tok in rest:
        if not tok.startswith("-"):
            continue
        if tok.split("=", 1)[0] in allowed or re.match(r"^-[ns].", tok):
            continue
        return tok
    return None


def build_parser(command: Command, argv: Sequence[str] = ()) -> Parser:
    p = Parser(prog=f"{PROG} {command.name}", description=command.summary,
               usage=command.usage, argv=argv)
    add_global_flags(p)
    command.configure(p)
    return p


Parsed = tuple[Command | None, argparse.Namespace]


def index(commands: Sequence[Command]) -> dict[str, Command]:
    """Every name a verb answers to, its aliases included, to the verb."""
    out = {c.name: c for c in commands}
    for c in commands:
        out.update((alias, c) for alias in c.aliases)
    return out


def parse(argv: Sequence[str], commands: Sequence[Command]) -> Parsed:
    """Pick the verb and parse its flags; (None, ...) means: print the overview help."""
    verb, rest = split_verb(argv)
    if verb is None:
        bad = _unknown_leading_flag(rest)
        if bad:
            raise UsageError(_unknown(bad))
        return None, argparse.Namespace()
    if verb == "help":
        return _help_for(rest, commands)
    by_name = index(commands)
    if verb not in by_name:
        raise UsageError(f'unknown command "{verb}" for "{PROG}"')
    command, rest = _subcommand(by_name, verb, rest)
    parser = build_parser(command, rest)
    # kubectl takes flags between positionals (`annotate deploy x -n demo k=v`): intermixed.
    return command, parser.parse_intermixed_args(normalize(rest, parser))


def _subcommand(
    by_name: dict[str, Command], verb: str, rest: list[str]
) -> tuple[Command, list[str]]:
    """`auth can-i`, `pki init`, `create token`: a verb's subcommand is its first word, with
    only global flags before it (so `create -f token` is still a file named token)."""
    subs = {name.split(" ", 1)[1] for name in by_name if name.startswith(verb + " ")}
    if not subs:
        return by_name[verb], rest
    i = 0
    while i < len(rest) and rest[i].startswith("-"):
        tok = rest[i]
        if tok in _GLOBAL_VALUE_FLAGS:
            i += 2
        elif tok.split("=", 1)[0] in _GLOBAL_VALUE_FLAGS or re.match(r"^-[ns].", tok):
            i += 1
        else:
            return by_name[verb], rest
    if i < len(rest):
        word = rest[i]
        if word not in subs:
            raise UsageError(f'unknown command "{word}" for "{PROG} {verb}"')
        return by_name[f"{verb} {word}"], [*rest[:i], *rest[i + 1:]]
    return by_name[verb], rest


def _help_for(rest: list[str], commands: Sequence[Command]) -> Parsed:
    words = [w for w in rest if not w.startswith("-")]
    if words:
        by_name = index(commands)
        if words[0] not in by_name:
            raise UsageError(f'unknown help topic "{words[0]}" for "{PROG}"')
        command, _ = _subcommand(by_name, words[0], words[1:2])
        build_parser(command).parse_args(["--help"])
    return None, argparse.Namespace()


def group_help(intro: str, subcommands: Sequence[tuple[str, str]], usage: str) -> str:
    """What a verb with subcommands (`tkctl auth`, `tkctl pki`) prints when run bare."""
    width = max(len(name) for name, _ in subcommands) + 3
    return "\n".join([
        intro, "", "Available Commands:",
        *(f"  {name.ljust(width)}{summary}" for name, summary in subcommands),
        "", "Usage:", f"  {usage}",
    ])


def overview(commands: Sequence[Command]) -> str:
    """`tkctl` with no verb: the grouped list of verbs, like `kubectl`'s help."""
    lines = [f"{PROG} controls the tinykube cluster manager.", ""]
    groups = sorted({c.group for c in commands},
                    key=lambda g: _GROUP_ORDER.index(g) if g in _GROUP_ORDER else 99)
    top = [c for c in commands if " " not in c.name]  # subcommands: `tkctl auth --help`
    width = max(len(c.name) for c in top) + 3
    for group in groups:
        lines.append(f"{group}:")
        lines += [f"  {c.name.ljust(width)}{c.summary}" for c in top if c.group == group]
        lines.append("")
    lines += [
        "Global flags:",
        "  -n, --namespace   the namespace scope for this request (default \"default\")",
        "  --kubeconfig      the kubeconfig to use (default $TINYKUBE_CONFIG, else "
        "~/.tinykube/config)",
        "  -s, --server      the apiserver address; overrides the kubeconfig's (default "
        "$TINYKUBE_SERVER)",
        "  --as, --as-group  act as another user / group (impersonation)",
        "",
        "Usage:",
        f"  {PROG} [flags] [options]",
        "",
        f'Use "{PROG} <command> --help" for more information about a given command.',
    ]
    return "\n".join(lines)
