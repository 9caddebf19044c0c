"""The harness reaps the CNI bridges of test sessions that died without cleaning up.

A kubelet the harness starts on this machine gets a bridge `tkbr<cluster tag><n>`. When the
test process is killed with SIGKILL the bridge stays, link down, still holding its pod-subnet
route; the kernel keeps routing to it, so the next session's kubelet with the same subnet is
unreachable from the host (seen in CI after a killed run). These run real bridges and routes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import cluster
from harness.netns import bridge_gone


def _tag() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture
def bridges() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


def _bridge(made: list[str], tag: str, subnet: str | None = None) -> str:
    name = f"tkbr{tag}0"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    made.append(name)
    if subnet is not None:
        # What the CNI plugin leaves: the gateway address, hence a connected route, link down.
        subprocess.run(["ip", "addr", "add", subnet, "dev", name], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
    return name


def _dead_identity() -> str:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return f"{proc.stdout.strip()} 1"


def test_a_dead_sessions_bridge_and_route_go_a_live_ones_stay(bridges: list[str]) -> None:
    dead, live, unowned, mine = _tag(), _tag(), _tag(), _tag()
    owners: Path = cluster._BRIDGE_OWNERS
    owners.mkdir(parents=True, exist_ok=True)
    (owners / dead).write_text(_dead_identity() + "\n")
    identity = cluster._process_identity(os.getpid())
    assert identity is not None
    (owners / live).write_text(identity + "\n")
    dead_bridge = _bridge(bridges, dead, "10.199.77.1/24")
    live_bridge = _bridge(bridges, live)
    unowned_bridge = _bridge(bridges, unowned)
    route = subprocess.run(["ip", "route", "show", "10.199.77.0/24"], capture_output=True,
                           text=True, check=True).stdout
    assert dead_bridge in route

    cluster.claim_bridges(mine)

    try:
        assert bridge_gone(dead_bridge) and bridge_gone(unowned_bridge)
        assert not bridge_gone(live_bridge), "a live process's bridge was deleted"
        assert subprocess.run(["ip", "route", "show", "10.199.77.0/24"], capture_output=True,
                              text=True, check=True).stdout.strip() == ""
        assert not (owners / dead).exists(), "a dead owner's record stayed"
        assert (owners / mine).read_text().strip() == identity
        assert (owners / live).exists()
    finally:
        for tag in (live, mine):
            (owners / tag).unlink(missing_ok=True)


def test_process_identity_tells_a_gone_process() -> None:
    dead = int(_dead_identity().split()[0])
    assert cluster._process_identity(dead) is None
    me = cluster._process_identity(os.getpid())
    assert me is not None and me.split()[0] == str(os.getpid()) and me.split()[1].isdigit()
