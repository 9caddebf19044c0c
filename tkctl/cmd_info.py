"""`tkctl api-resources` and `tkctl version`: what the server says about itself (Discovery).

Both read the server's Discovery document rather than tkctl's own table, so they show what the
running apiserver serves. The document is read tolerantly: resource lists may sit at the top level
or in per-group-version lists (Kubernetes' APIResourceList shape), and the version may be a string
or a version.Info object.
"""

from __future__ import annotations

import argparse
from importlib import metadata
from typing import Any

from tkctl import cli, printers
from tkctl.context import Command, Context

Obj = dict[str, Any]


# --- discovery document ---------------------------------------------------------------------


def discovered_resources(doc: Any) -> list[Obj]:
    """Every top-level resource (no subresources) as {name, shortNames, apiVersion, group,
    namespaced, kind, verbs}, from any of the shapes a Discovery document may take."""
    found: dict[tuple[str, str], Obj] = {}
    _walk(doc, "", found)
    return sorted(found.values(), key=lambda r: (r["group"] != "", r["group"], r["name"]))


def _walk(node: Any, group_version: str, found: dict[tuple[str, str], Obj]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, group_version, found)
        return
    if not isinstance(node, dict):
        return
    gv = str(node.get("groupVersion") or group_version)
    resources = node.get("resources")
    if isinstance(resources, list):
        for r in resources:
            if isinstance(r, dict):
                _add(r, gv, found)
    for key, value in node.items():
        if key != "resources" and isinstance(value, list | dict):
            _walk(value, gv, found)


def _add(r: Obj, gv: str, found: dict[tuple[str, str], Obj]) -> None:
    name = str(r.get("name") or "")
    if not name or "/" in name or not r.get("kind"):
        return
    api_version = _api_version(r, gv)
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    found[(api_version, name)] = {
        "name": name, "shortNames": list(r.get("shortNames") or r.get("short_names") or []),
        "apiVersion": api_version, "group": group, "namespaced": bool(r.get("namespaced")),
        "kind": str(r["kind"]), "verbs": list(r.get("verbs") or []),
    }


def _api_version(r: Obj, gv: str) -> str:
    if r.get("groupVersion") or r.get("apiVersion"):
        return str(r.get("groupVersion") or r.get("apiVersion"))
    if r.get("version"):
        group = r.get("group") or ""
        return f"{group}/{r['version']}" if group else str(r["version"])
    return gv or "v1"


def server_version(doc: Any) -> Obj:
    """The server's version.Info ({gitVersion, ...}) from a Discovery document."""
    if not isinstance(doc, dict):
        return {}
    value = doc.get("serverVersion") or doc.get("version") or doc.get("gitVersion")
    if isinstance(value, dict):
        return value
    return {"gitVersion": str(value)} if value else {}


def client_version() -> Obj:
    try:
        v = metadata.version("tinykube")
    except metadata.PackageNotFoundError:
        v = "0.1.0"
    return {"gitVersion": v if v.startswith("v") else f"v{v}"}


# --- api-resources ----------------------------------------------------------------------------


def configure_api_resources(p: argparse.ArgumentParser) -> None:
    cli.add_output(p, ("wide", "name"))
    p.add_argument("--namespaced", default=None, choices=["true", "false"],
                   help="If false, only non-namespaced resources; if true, only namespaced ones")
    p.add_argument("--api-group", default=None, help="Limit to resources in this API group")
    cli.add_bool(p, "--no-headers", help="Don't print headers")


def resource_rows(resources: list[Obj], wide: bool) -> list[list[str]]:
    header = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    rows = [header + (["VERBS"] if wide else [])]
    for r in resources:
        row = [r["name"], ",".join(r["shortNames"]), r["apiVersion"],
               str(r["namespaced"]).lower(), r["kind"]]
        if wide:
            row.append("[" + " ".join(r["verbs"]) + "]")
        rows.append(row)
    return rows


async def run_api_resources(ctx: Context, args: argparse.Namespace) -> None:
    cli.check_output(args.output, ("wide", "name"))
    resources = discovered_resources(await ctx.client.discovery())
    if args.namespaced is not None:
        resources = [r for r in resources if r["namespaced"] == (args.namespaced == "true")]
    if args.api_group is not None:
        resources = [r for r in resources if r["group"] == args.api_group]
    if args.output == "name":
        for r in resources:
            ctx.print(f"{r['name']}.{r['group']}" if r["group"] else r["name"])
        return
    rows = resource_rows(resources, args.output == "wide")
    for line in printers.TableWriter().format(rows[1:] if args.no_headers else rows):
        ctx.print(line)


# --- version --------------------------------------------------------------------------------


def configure_version(p: argparse.ArgumentParser) -> None:
    cli.add_bool(p, "--client", help="If true, shows client version only (no server required)")
    cli.add_output(p, ("json", "yaml"))


async def run_version(ctx: Context, args: argparse.Namespace) -> None:
    cli.check_output(args.output, ("json", "yaml"))
    info: Obj = {"clientVersion": client_version()}
    if not args.output:
        ctx.print(f"Client Version: {info['clientVersion']['gitVersion']}")
    if not args.client:
        info["serverVersion"] = server_version(await ctx.client.discovery())
        if not args.output:
            ctx.print(f"Server Version: {info['serverVersion'].get('gitVersion', 'unknown')}")
    if args.output:
        ctx.print(printers.format_structured(info, args.output))


API_RESOURCES = Command(
    name="api-resources", summary="Print the supported API resources on the server",
    usage="tkctl api-resources [flags]", configure=configure_api_resources,
    run=run_api_resources, group="Other Commands",
)
VERSION = Command(
    name="version", summary="Print the client and server version information",
    usage="tkctl version [flags]", configure=configure_version, run=run_version,
    group="Other Commands",
)
