"""The conformance suite's target, per-test namespaces, tier skips and the end-of-run summary.

Target: `--kubeconfig FILE` and/or `--server HOST:PORT` (options of tests/conftest.py) name a
running cluster: the server overrides the kubeconfig's, credentials come from `--kubeconfig`,
else `$TINYKUBE_CONFIG`. Without either, the session's lab (the `lab` fixture: a fresh one, or
the running lab `--lab NAME`) is the target. A target that cannot be used ends the run at once
with one line saying why (`pytest.exit`), instead of thirty identical errors.

Tiers, as upstream's conformance profiles: every test carries exactly one of the markers
`conformance_api` (an apiserver and the controllers: no pod has to run), `conformance_node`
(pods run on a node) and `conformance_network` (two nodes or more, the overlay and the proxy),
and `upstream("...")`, the name of the upstream conformance test it mirrors. A node test is
skipped, saying so, when no node is Ready and schedulable; a network test when fewer than two
are. `pytest_terminal_summary` prints passed/failed/skipped per tier and the upstream names of
what failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from api import errors
from client.apiclient import ApiClient
from client.config import CONFIG_ENV, ConfigError, load_config
from tests.conformance.framework import TIERS, Conformance, Target

CONFORMANCE_DIR = os.path.dirname(os.path.abspath(__file__))
_results: dict[str, dict[str, Any]] = {}  # nodeid → tier, upstream, outcome, reason


def _in_suite(path: str) -> bool:
    return os.path.abspath(path).startswith(CONFORMANCE_DIR + os.sep)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every conformance test names its tier and its upstream test, or collection fails."""
    problems = []
    for item in items:
        if not _in_suite(str(item.path)):
            continue
        tiers = [t for t in TIERS if item.get_closest_marker(t)]
        upstream = item.get_closest_marker("upstream")
        if len(tiers) != 1 or upstream is None or not upstream.args:
            problems.append(f"{item.nodeid}: needs exactly one of {', '.join(TIERS)} "
                            f"(has {tiers or 'none'}) and @pytest.mark.upstream(\"...\")")
            continue
        # user_properties travel with the reports (also from pytest-xdist workers), so the
        # summary can name the tier and the upstream test without the items.
        item.user_properties.append(("conformance_tier", tiers[0]))
        item.user_properties.append(("upstream", str(upstream.args[0])))
    if problems:
        raise pytest.UsageError("conformance tests without tier/upstream markers:\n  "
                                + "\n  ".join(problems))


# --- the target -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def conformance_target(request: pytest.FixtureRequest) -> Target:
    server = request.config.getoption("--server")
    kubeconfig = request.config.getoption("--kubeconfig")
    if server or kubeconfig:
        path = kubeconfig or os.environ.get(CONFIG_ENV)
        if not path:
            pytest.exit(f"--server {server}: no credentials for it: pass --kubeconfig FILE "
                        f"or set ${CONFIG_ENV} (the cluster's CA and a client certificate "
                        "or token)", returncode=4)
        if not os.path.isfile(path):
            origin = "--kubeconfig" if kubeconfig else f"${CONFIG_ENV}"
            pytest.exit(f"{origin} {path}: no such file", returncode=4)
        where = server or "the kubeconfig's server"
        return Target(os.path.abspath(path), server, f"{where} (credentials: {path})")
    lab = request.getfixturevalue("lab")
    return Target(str(lab.kubeconfig), None, f"lab {lab.name} ({lab.kubeconfig})")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def conformance(conformance_target: Target) -> AsyncIterator[Conformance]:
    t = conformance_target
    try:
        config = load_config(t.kubeconfig, server=t.server)
    except ConfigError as e:
        pytest.exit(f"cannot use {t.kubeconfig}: {e}", returncode=4)
    if not config.secure and not (config.token or config.cert_pem):
        pytest.exit(f"{t.kubeconfig}: no credentials in it (no client certificate, no token)",
                    returncode=4)
    api = ApiClient(config=config, user_agent="tinykube-conformance")
    try:
        await api.wait_ready(timeout=15)
        # One real call: the channel may connect while the credentials are refused.
        await asyncio.wait_for(api.list("namespaces", limit=1), 20)
    except (errors.ApiError, TimeoutError) as e:
        await api.close()
        reason = "does not answer" if isinstance(e, (errors.ServiceUnavailable, TimeoutError)) \
            else f"refused the suite: {type(e).__name__}: {e}"
        pytest.exit(f"the apiserver at {config.server} {reason} "
                    f"(target: {t.description})", returncode=4)
    try:
        yield Conformance(api, t)
    finally:
        await api.close()


@pytest_asyncio.fixture(loop_scope="session")
async def ns(conformance: Conformance) -> AsyncIterator[str]:
    """A namespace of the test's own, deleted after it (its content with it)."""
    name = await conformance.new_namespace()
    yield name
    with contextlib.suppress(errors.ApiError):
        await conformance.api.delete("namespaces", name)


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def _tier_requirements(request: pytest.FixtureRequest) -> None:
    """Skip, saying why, a test whose tier the cluster cannot serve."""
    needed = 2 if request.node.get_closest_marker("conformance_network") else \
        1 if request.node.get_closest_marker("conformance_node") else 0
    if not needed:
        return
    c: Conformance = request.getfixturevalue("conformance")
    nodes = await c.schedulable_nodes()
    if len(nodes) < needed:
        tier = "conformance_network" if needed == 2 else "conformance_node"
        pytest.skip(f"{tier} needs {needed} Ready schedulable node(s); the cluster has "
                    f"{len(nodes)}" + (f" ({', '.join(n.name for n in nodes)})" if nodes else ""))


# --- the summary ------------------------------------------------------------------------------

def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    props = dict(report.user_properties)
    tier = props.get("conformance_tier")
    if tier is None:
        return
    r = _results.setdefault(report.nodeid, {"tier": tier, "upstream": props.get("upstream"),
                                             "outcome": None, "reason": ""})
    if report.failed:
        r["outcome"] = "failed"
    elif report.skipped and r["outcome"] is None:
        r["outcome"] = "skipped"
        if isinstance(report.longrepr, tuple):
            r["reason"] = str(report.longrepr[2]).removeprefix("Skipped: ")
    elif report.when == "call" and report.passed and r["outcome"] is None:
        r["outcome"] = "passed"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _results:
        return
    tr = terminalreporter
    tr.section("tinykube conformance")
    for tier in TIERS:
        rs = [r for r in _results.values() if r["tier"] == tier]
        if not rs:
            continue
        counts = {k: sum(1 for r in rs if r["outcome"] == k)
                  for k in ("passed", "failed", "skipped")}
        tr.write_line(f"{tier:<20} {counts['passed']:>3} passed  {counts['failed']:>3} failed  "
                      f"{counts['skipped']:>3} skipped  (of {len(rs)})",
                      red=bool(counts["failed"]), green=not counts["failed"])
    failed = [(k, r) for k, r in _results.items() if r["outcome"] == "failed"]
    if failed:
        tr.write_line("")
        tr.write_line("failed (upstream conformance test it mirrors → pytest id):", red=True)
        for nodeid, r in failed:
            tr.write_line(f"  {r['upstream']}")
            tr.write_line(f"      → {nodeid}")
    skipped = [(k, r) for k, r in _results.items() if r["outcome"] == "skipped"]
    if skipped:
        tr.write_line("")
        tr.write_line("skipped:", yellow=True)
        for _nodeid, r in skipped:
            tr.write_line(f"  {r['upstream']}: {r['reason']}")


def pytest_report_header(config: pytest.Config) -> list[str]:
    server, kubeconfig = config.getoption("--server"), config.getoption("--kubeconfig")
    if server or kubeconfig:
        return [f"tinykube conformance target: server={server or '(kubeconfig)'} "
                f"kubeconfig={kubeconfig or os.environ.get(CONFIG_ENV) or '(none)'}"]
    return []
