"""`tkctl taint` and `tkctl create ns` against the real apiserver and etcd, as a user runs them
(`python -m tkctl` as a subprocess).

The nodes here are Node objects of this module's own (`tt-*`, removed at the end), not the
shared hollow nodes: a taint on those would change what other tests schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from api import errors
from harness.cluster import Cluster
from tests.integration.test_tkctl import tk

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def nodes(cluster: Cluster) -> AsyncIterator[list[str]]:
    """Two fresh nodes labelled with a per-test `tt-run` label, deleted afterwards."""
    run = uuid.uuid4().hex[:6]
    names = [f"tt-{run}-{i}" for i in range(2)]
    for name in names:
        await cluster.client.create("nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"tt-run": run}}})
    yield names
    for name in names:
        with contextlib.suppress(errors.NotFound):
            await cluster.client.delete("nodes", name)


async def taints(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    node = await cluster.client.get("nodes", name)
    return [{k: t[k] for k in ("key", "value", "effect") if k in t}
            for t in (node.get("spec") or {}).get("taints") or []]


async def test_add_refuse_overwrite_remove(cluster: Cluster, nodes: list[str]) -> None:
    n = nodes[0]
    r = await tk(cluster, "taint", "nodes", n, "dedicated=infra:NoSchedule")
    assert (r.code, r.out, r.err) == (0, f"node/{n} tainted\n", "")
    assert await taints(cluster, n) == [
        {"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]

    r = await tk(cluster, "taint", "nodes", n, "dedicated=other:NoSchedule")
    assert r.code == 1 and r.out == ""
    assert r.err == (f"error: node {n} already has dedicated taint(s) with same effect(s) and "
                     "--overwrite is false\n")
    r = await tk(cluster, "taint", "nodes", n, "dedicated=other:NoSchedule", "--overwrite")
    assert (r.code, r.out) == (0, f"node/{n} modified\n"), r
    # Same key, another effect: a second taint, no --overwrite needed; node/NAME form.
    r = await tk(cluster, "taint", f"node/{n}", "dedicated:NoExecute")
    assert (r.code, r.out) == (0, f"node/{n} tainted\n"), r
    assert await taints(cluster, n) == [
        {"key": "dedicated", "effect": "NoExecute"},
        {"key": "dedicated", "value": "other", "effect": "NoSchedule"}]

    r = await tk(cluster, "taint", "nodes", n, "dedicated:NoExecute-")
    assert (r.code, r.out) == (0, f"node/{n} untainted\n"), r
    r = await tk(cluster, "taint", "nodes", n, "dedicated:NoExecute-")
    assert (r.code, r.err) == (1, 'error: taint "dedicated:NoExecute" not found\n'), r
    r = await tk(cluster, "taint", "nodes", n, "dedicated-")
    assert (r.code, r.out) == (0, f"node/{n} untainted\n"), r
    assert await taints(cluster, n) == []


async def test_bad_specs_change_nothing(cluster: Cluster, nodes: list[str]) -> None:
    n = nodes[0]
    r = await tk(cluster, "taint", "nodes", n, "k=v:Sometimes")
    assert (r.code, r.err) == (1, "error: invalid taint effect: Sometimes, unsupported taint "
                                  "effect\n"), r
    r = await tk(cluster, "taint", "pods", "p", "k=v:NoSchedule")
    assert r.err == "error: invalid resource type pods, only node types are supported\n", r
    r = await tk(cluster, "taint", "nodes", "no-such-node", "k=v:NoSchedule")
    assert (r.code, r.err) == (1, 'Error from server (NotFound): nodes "no-such-node" not '
                                  'found\n'), r
    r = await tk(cluster, "taint", "nodes", "k=v:NoSchedule")
    assert r.err == ("error: at least one resource name must be specified since 'all' "
                     "parameter is not set\n"), r
    assert await taints(cluster, n) == []


async def test_selector_and_dry_run(cluster: Cluster, nodes: list[str]) -> None:
    run = nodes[0].split("-")[1]
    r = await tk(cluster, "taint", "nodes", "-l", f"tt-run={run}", "gpu:PreferNoSchedule",
                 "--dry-run=client")
    assert r.code == 0 and sorted(r.out.splitlines()) == [
        f"node/{n} tainted (dry run)" for n in nodes], r
    r = await tk(cluster, "taint", "nodes", "-l", f"tt-run={run}", "gpu:PreferNoSchedule",
                 "--dry-run=server")
    assert r.code == 0 and sorted(r.out.splitlines()) == [
        f"node/{n} tainted (server dry run)" for n in nodes], r
    for n in nodes:
        assert await taints(cluster, n) == []
    r = await tk(cluster, "taint", "nodes", "-l", f"tt-run={run}", "gpu:PreferNoSchedule")
    assert r.code == 0 and sorted(r.out.splitlines()) == [f"node/{n} tainted" for n in nodes]
    for n in nodes:
        assert await taints(cluster, n) == [{"key": "gpu", "effect": "PreferNoSchedule"}]
    r = await tk(cluster, "taint", "nodes", "--all", "-l", f"tt-run={run}", "gpu-")
    assert r.err == ("error: setting 'all' parameter with a non empty selector is "
                     "prohibited\n"), r


async def test_concurrent_writers_lose_no_taint(cluster: Cluster, nodes: list[str]) -> None:
    """Each taint is a patch of the whole list with the node's resourceVersion as precondition,
    redone on Conflict: concurrent `tkctl taint` processes on one node all land (a process
    fails only when another succeeded, so 4 writers need at most 4 attempts each)."""
    n = nodes[1]
    results = await asyncio.gather(*(
        tk(cluster, "taint", "nodes", n, f"k{i}=v:NoSchedule") for i in range(4)))
    assert all((r.code, r.out) == (0, f"node/{n} tainted\n") for r in results), results
    assert sorted(t["key"] for t in await taints(cluster, n)) == ["k0", "k1", "k2", "k3"]


async def test_create_ns_alias(cluster: Cluster) -> None:
    name = f"tt-ns-{uuid.uuid4().hex[:6]}"
    r = await tk(cluster, "create", "ns", name)
    assert (r.code, r.out) == (0, f"namespace/{name} created\n"), r
    r = await tk(cluster, "get", "ns", name, "-o", "name")
    assert (r.code, r.out) == (0, f"namespace/{name}\n"), r
    # No namespace controller here to finalize it: do not wait for it to go.
    r = await tk(cluster, "delete", "ns", name, "--wait=false")
    assert (r.code, r.out) == (0, f'namespace "{name}" deleted\n'), r
