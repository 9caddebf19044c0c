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

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from harness.cluster import Cluster
from harness.docker import ensure_images
from harness.netcluster import NetCluster
from lab import commands as lab_commands
from lab.cluster import Lab

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    # Here, not in tests/conformance/conftest.py: pytest reads options only from the conftest
    # at the root of the tests.
    group = parser.getgroup("tinykube", "which cluster tests/lab and tests/conformance use")
    group.addoption("--server", default=None, metavar="HOST:PORT",
                    help="tests/conformance: run against this apiserver (credentials from "
                         "--kubeconfig, else $TINYKUBE_CONFIG) instead of a lab of its own")
    group.addoption("--kubeconfig", default=None, metavar="FILE",
                    help="tests/conformance: run against the cluster of this kubeconfig")
    group.addoption("--lab", default=None, metavar="NAME",
                    help="tests/lab and tests/conformance: use the running lab NAME (as "
                         "`lab/lab --name NAME up` made it) instead of bringing one up; "
                         "walkthroughs reset it")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        if "/integration/" in path or "/e2e/" in path:
            item.add_marker(pytest.mark.integration)


# Docker (H1): tests marked `docker` use this: a Docker engine that answers (scripts/dockerd
# starts one if needed) with tinykube's images built (lab/images/build); once per process, and
# xdist workers take turns on a lock file.
@pytest.fixture(scope="session")
def docker_ready() -> None:
    ensure_images()


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


# The real kubelet (issue 4), shared by the pod tests of one test process: its own etcd and
# apiserver, a scheduler, a controller-manager whose node IPAM hands out /24s from a /16 unique
# to this xdist worker (10.100+N.0.0/16: two workers never share a pod range on the one host),
# and one real kubelet `kubelet-<worker>` on the machine's Docker engine with short back-offs.
# Tests create pods in their own `kl_namespace` and leave the kubelet alone (a test that kills
# or restarts a kubelet starts one of its own with `kubelet_cluster.start_kubelet`).
KUBELET_TEST_FLAGS = (
    "--crash-loop-backoff-initial", "1s", "--crash-loop-backoff-max", "8s",
    "--lease-interval", "2s", "--node-status-update-frequency", "2s", "--sync-frequency", "5s",
)


def xdist_worker() -> tuple[str, int]:
    """("gw0", 0) under pytest-xdist worker gw0; ("gw0", 0) without xdist too."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = "".join(ch for ch in name if ch.isdigit())
    return name, int(digits or 0)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kubelet_cluster(docker_ready: None) -> AsyncIterator[Cluster]:
    worker, index = xdist_worker()
    async with Cluster("--watch-bookmark-interval", "1") as c:
        c.start_scheduler()
        c.start_controller_manager("--cluster-cidr", f"10.{100 + index}.0.0/16",
                                   "--node-cidr-mask-size", "24")
        c.start_kubelet(f"kubelet-{worker}", *KUBELET_TEST_FLAGS)
        await c.wait_nodes_ready(1, timeout=60)
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def kl_namespace(kubelet_cluster: Cluster) -> AsyncIterator[str]:
    """A fresh namespace in the kubelet cluster, deleted after the test (the namespace
    controller deletes its pods, the kubelet stops their containers): a later test does not
    share the node with every earlier test's containers."""
    name = await kubelet_cluster.new_namespace()
    yield name
    with contextlib.suppress(Exception):
        await kubelet_cluster.client.delete("namespaces", name)


# Cluster networking (issue 5): two hosts (network namespaces on a veth underlay), each running
# a real kubelet, tk-netagent and tk-proxy, shared by the network tests of one test process.
# Those tests are in the xdist group "net" (one process builds it), create what they need in
# their own `net_namespace`, and leave the shared nodes' agents running (a test that kills or
# restarts one waits until it has resynced before it ends).
@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def net_cluster(docker_ready: None) -> AsyncIterator[NetCluster]:
    async with NetCluster(nodes=2) as nc:
        yield nc


@pytest_asyncio.fixture(loop_scope="session")
async def net_namespace(net_cluster: NetCluster) -> AsyncIterator[str]:
    """A fresh namespace in the networked cluster, deleted after the test."""
    name = await net_cluster.c.new_namespace()
    yield name
    with contextlib.suppress(Exception):
        await net_cluster.c.client.delete("namespaces", name)


# The multi-node lab (issue 6): docker-compose containers for etcd, the control plane and two
# workers (lab/docker-compose.yml), brought up fresh once per session under its own name
# ($TK_TEST_LAB, default "tktest", so a reader's lab "tk" is never touched) and taken down at
# the end, checking that nothing of it is left. `--lab NAME` uses a running lab instead and
# leaves it running. Tests in tests/lab and tests/conformance share it (each module marks
# itself xdist_group("lab"), so one pytest-xdist worker runs them all, in file order):
# they create what they need in namespaces of their own; a test that stops a worker or a
# component starts it again and waits until the node is Ready before it ends.
@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest, docker_ready: None) -> Iterator[Lab]:
    given = request.config.getoption("--lab")
    if given:
        lab = Lab(given)
        s = lab.require_settings()
        lab_commands.wait_ready(lab, s, timeout=60)
        yield lab
        return
    lab = Lab(os.environ.get("TK_TEST_LAB", "tktest"))
    lab_commands.ensure_node_image()
    lab_commands.down(lab)
    try:
        lab_commands.up(lab, 2, None)
        yield lab
    finally:
        # Also after a failed `up`: nothing of the lab may outlive the session.
        lab_commands.down(lab)  # raises if a container, volume or the network is left
