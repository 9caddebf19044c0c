"""`tkctl auth can-i` and `tkctl auth whoami`: asking the apiserver about ourselves.

Both are creates of virtual, never-stored review objects, as in kubectl: `can-i` sends a
SelfSubjectAccessReview (authorization.k8s.io/v1) and prints `yes` or `no`, exiting 0 or 1 so
scripts can branch on it; `whoami` sends a SelfSubjectReview (authentication.k8s.io/v1) and
prints the user the server authenticated. With `--as`/`--as-group` they answer for the
impersonated identity, which is how an admin checks a RoleBinding before handing it out.

Arguments follow kubectl's `auth can-i VERB (TYPE | TYPE/NAME | NONRESOURCEURL)`: `pods/web`
names the pod `web` (kubectl's meaning), a subresource is `--subresource=log`; a third argument
NAME is accepted as well.
"""

from __future__ import annotations

import argparse
from typing import Any

from api import errors
from api.resources import lookup
from tkctl import cli, printers
from tkctl.context import Command, Context, UsageError

# kubectl's known verbs: any other gets a warning (and is still asked about).
_RESOURCE_VERBS = frozenset({
    "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "use",
    "bind", "impersonate", "*", "approve", "sign", "escalate", "attest",
})
_NON_RESOURCE_VERBS = frozenset({"get", "put", "post", "head", "options", "delete", "patch", "*"})


def configure_can_i(p: argparse.ArgumentParser) -> None:
    p.add_argument("verb", nargs="?", metavar="VERB")
    p.add_argument("target", nargs="?", metavar="TYPE[/NAME] | NONRESOURCEURL")
    p.add_argument("name", nargs="?", metavar="NAME")
    cli.add_bool(p, "-A", "--all-namespaces",
                 help="If true, check the specified action in all namespaces.")
    cli.add_bool(p, "-q", "--quiet",
                 help="If true, suppress output and just return the exit code.")
    p.add_argument("--subresource", default="",
                   help="SubResource such as pod/log or deployment/scale")


def _attributes(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """The spec of the SelfSubjectAccessReview for the command line (kubectl's Complete)."""
    if not args.verb or not args.target:
        raise UsageError("you must specify two arguments: verb resource or verb "
                         "resource/resourceName. See 'tkctl auth can-i -h' for help and "
                         "examples.")
    verb, target = args.verb, args.target
    if target.startswith("/"):
        if args.subresource:
            raise UsageError("--subresource can not be used with NonResourceURL")
        if args.name:
            raise UsageError("NonResourceURL and ResourceName can not specified together")
        if verb not in _NON_RESOURCE_VERBS:
            ctx.print_err(f"Warning: verb '{verb}' is not a known verb")
        return {"nonResourceAttributes": {"path": target, "verb": verb}}
    typed, slash, name = target.partition("/")
    if slash and args.name:
        raise UsageError(f'there is no need to specify a resource name twice ("{target}" '
                         f'and "{args.name}")')
    resource, group, namespaced = _resource(ctx, typed)
    if verb not in _RESOURCE_VERBS:
        ctx.print_err(f"Warning: verb '{verb}' is not a known verb")
    attrs = {
        # A cluster-scoped resource has no namespace: asking "in namespace x" would consult
        # RoleBindings that can never grant it.
        "namespace": "" if args.all_namespaces or not namespaced else ctx.namespace,
        "verb": verb,
        "group": group,
        "resource": resource,
        "subresource": args.subresource,
        "name": name or args.name or "",
    }
    return {"resourceAttributes": {k: v for k, v in attrs.items() if v}}


def _resource(ctx: Context, typed: str) -> tuple[str, str, bool]:
    """(plural resource, API group, namespaced) of what the user typed: `po`, `pods`,
    `deployments.apps`, `*`; an unknown type is asked about as typed, with kubectl's warning."""
    if typed == "*":
        return "*", "", True
    try:
        info = lookup(typed)
        return info.name, info.group, info.namespaced
    except errors.NotFound:
        ctx.print_err(f"Warning: the server doesn't have a resource type '{typed}'")
        resource, _, group = typed.partition(".")
        return resource, group, True


async def run_can_i(ctx: Context, args: argparse.Namespace) -> None:
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "metadata": {},
        "spec": _attributes(ctx, args),
    }
    review = await ctx.client.create("selfsubjectaccessreviews", body)
    st = review.get("status") or {}
    allowed = bool(st.get("allowed"))
    if not args.quiet:
        line = "yes" if allowed else "no"
        if not allowed:
            for extra in (st.get("reason"), st.get("evaluationError")):
                if extra:
                    line += f" - {extra}"
        ctx.print(line)
    if not allowed:
        ctx.failed = True  # exit 1, as kubectl does, without an error line


def configure_whoami(p: argparse.ArgumentParser) -> None:
    cli.add_output(p, ("json", "yaml"))


async def run_whoami(ctx: Context, args: argparse.Namespace) -> None:
    cli.check_output(args.output, ("json", "yaml"))
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
            "metadata": {}}
    review = await ctx.client.create("selfsubjectreviews", body)
    if args.output:
        ctx.print(printers.format_structured(review, args.output))
        return
    for line in printers.TableWriter().format(whoami_rows(review)):
        ctx.print(line)


def whoami_rows(review: dict[str, Any]) -> list[list[str]]:
    """kubectl's table: Username, UID, Groups, then one `Extra: key` row per extra."""
    info = (review.get("status") or {}).get("userInfo") or {}
    rows = [["ATTRIBUTE", "VALUE"]]
    if info.get("username"):
        rows.append(["Username", str(info["username"])])
    if info.get("uid"):
        rows.append(["UID", str(info["uid"])])
    if info.get("groups"):
        rows.append(["Groups", _go_list(info["groups"])])
    for key in sorted(info.get("extra") or {}):
        rows.append([f"Extra: {key}", _go_list(info["extra"][key])])
    return rows


def _go_list(values: Any) -> str:
    """Go's `%v` of a []string: `[a b c]`."""
    return "[" + " ".join(str(v) for v in values or []) + "]"


async def run_auth(ctx: Context, args: argparse.Namespace) -> None:
    ctx.print(cli.group_help(
        "Inspect authorization.",
        [("can-i", "Check whether an action is allowed"),
         ("whoami", "Check self subject attributes")],
        "tkctl auth (can-i | whoami) [flags]",
    ))


COMMANDS = [
    Command(name="auth", summary="Inspect authorization", usage="tkctl auth (can-i | whoami)",
            configure=lambda p: None, run=run_auth, group="Advanced Commands",
            needs_server=False),
    Command(name="auth can-i", summary="Check whether an action is allowed",
            usage="tkctl auth can-i VERB [TYPE | TYPE/NAME | NONRESOURCEURL] [NAME] [flags]",
            configure=configure_can_i, run=run_can_i, group="Advanced Commands"),
    Command(name="auth whoami", summary="Check self subject attributes",
            usage="tkctl auth whoami [-o json|yaml]", configure=configure_whoami,
            run=run_whoami, group="Advanced Commands"),
]
