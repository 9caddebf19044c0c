"""The proxier re-syncs for its own Node's addresses, not for every status heartbeat."""

from __future__ import annotations

from typing import Any

from api.core import Node
from proxy.model import ServiceMap
from proxy.proxier import Proxier


class _Backend:
    def sync(self, services: ServiceMap, node_ips: Any) -> None:  # pragma: no cover
        raise AssertionError("no sync expected")

    def cleanup(self) -> None:  # pragma: no cover
        pass


def _node(name: str, ip: str, heartbeat: str) -> Node:
    return Node.model_validate({
        "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                   "conditions": [{"type": "Ready", "status": "True",
                                   "lastHeartbeatTime": heartbeat}]}})


def test_only_address_changes_of_its_own_node_trigger_a_sync() -> None:
    p = Proxier(client=None, node_name="n1", backend=_Backend())  # type: ignore[arg-type]
    p._synced = True
    runs: list[int] = []
    p.runner.run = lambda: runs.append(1)  # type: ignore[method-assign]
    old = _node("n1", "10.0.0.1", "2026-01-01T00:00:00Z")
    p._node_changed(_node("n1", "10.0.0.1", "2026-01-01T00:00:10Z"), old)  # heartbeat only
    assert runs == []
    p._node_changed(_node("n2", "10.0.0.9", "2026-01-01T00:00:10Z"),
                    _node("n2", "10.0.0.8", "2026-01-01T00:00:00Z"))  # another node
    assert runs == []
    p._node_changed(_node("n1", "10.0.0.2", "2026-01-01T00:00:20Z"), old)  # new address
    assert runs == [1]
    p._node_changed(_node("n1", "10.0.0.2", "2026-01-01T00:00:20Z"))  # added (or deleted)
    assert runs == [1, 1]
