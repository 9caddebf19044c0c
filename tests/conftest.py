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
