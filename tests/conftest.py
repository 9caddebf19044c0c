"""Shared fixtures: one real etcd + apiserver per test process, and a fresh namespace per test.

The cluster is secure like a real one (its own PKI, etcd with client certificates, the apiserver
with TLS, client certificates, RBAC, audit log, Secrets encrypted at rest): `cluster.client` is
the admin, `cluster.client_as(user, groups)` anyone else, `cluster.kubeconfig` the admin
kubeconfig for tkctl.

Tests that only create objects in their own namespace share the cluster (fast); a test that
kills, restarts or reconfigures the apiserver starts its own `harness.cluster.Cluster()`.
Under pytest-xdist every worker process gets its own cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from harness.cluster import Cluster

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.path) or "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster("--watch-bookmark-interval", "1") as c:
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def namespace(cluster: Cluster) -> str:
    return await cluster.new_namespace()


# The control plane the controller, scheduler and hollow-node tests share: its own etcd and
# apiserver (so that `cluster`'s API tests never see a scheduler bind their pods), a scheduler,
# a controller-manager with every controller, and three hollow nodes `hollow-0..2` (4 cpu,
# 16Gi, 110 pods) that heartbeat every second. Timings are short so that node-failure tests
# take seconds: a node is Unknown 4s after its last heartbeat.
#
# Tests here must not change what others rely on: never taint, cordon or delete the shared
# hollow nodes (start a `cluster.start_hollow_nodes(...)` of your own with another
# `--name-prefix` and pin pods there with a nodeSelector), and never kill the shared scheduler
# or controller-manager (start your own `Cluster()` for that).
SHARED_NODES = ("hollow-0", "hollow-1", "hollow-2")
CONTROLLER_MANAGER_FLAGS = (
    "--node-monitor-period", "0.5", "--node-monitor-grace-period", "4",
    "--node-startup-grace-period", "4",
)
HOLLOW_FLAGS = ("--name-prefix", "hollow-", "--lease-interval", "1")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def control_plane() -> AsyncIterator[Cluster]:
    async with Cluster("--watch-bookmark-interval", "1") as c:
        c.start_scheduler()
        c.start_controller_manager(*CONTROLLER_MANAGER_FLAGS)
        c.start_hollow_nodes(len(SHARED_NODES), *HOLLOW_FLAGS)
        # Every test starts from the same place: the nodes registered and Ready (else a test's
        # first pods meet "0/0 nodes are available" and the scheduler's back-off).
        await c.wait_nodes_ready(len(SHARED_NODES))
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def cp_namespace(control_plane: Cluster) -> str:
    """A fresh namespace in the shared control plane."""
    return await control_plane.new_namespace()
