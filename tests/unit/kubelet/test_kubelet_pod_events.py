"""Which pod updates wake the kubelet's pod worker (kubelet.kubelet.needs_sync)."""

from __future__ import annotations

import copy
from typing import Any

from kubelet.kubelet import needs_sync

POD: dict[str, Any] = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "5",
                 "labels": {"a": "b"}},
    "spec": {"containers": [{"name": "c", "image": "i"}],
             "readinessGates": [{"conditionType": "example.com/gate"}]},
    "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]},
}


def _with(**changes: Any) -> dict[str, Any]:
    pod = copy.deepcopy(POD)
    for path, value in changes.items():
        section, key = path.split("__")
        pod[section][key] = value
    return pod


def test_first_sight_syncs() -> None:
    assert needs_sync(None, POD)


def test_the_echo_of_a_status_write_does_not_sync() -> None:
    new = _with(metadata__resourceVersion="6",
                status__conditions=[{"type": "Ready", "status": "True"}])
    new["status"]["phase"] = "Running"
    new["status"]["containerStatuses"] = [{"name": "c", "ready": True}]
    assert not needs_sync(POD, new)


def test_spec_and_metadata_changes_sync() -> None:
    assert needs_sync(POD, _with(metadata__deletionTimestamp="2026-01-01T00:00:00Z"))
    assert needs_sync(POD, _with(metadata__deletionGracePeriodSeconds=1))
    assert needs_sync(POD, _with(metadata__labels={"a": "c"}))
    assert needs_sync(POD, _with(spec__activeDeadlineSeconds=5))


def test_a_readiness_gate_condition_syncs() -> None:
    new = _with(status__conditions=[{"type": "Ready", "status": "False"},
                                    {"type": "example.com/gate", "status": "True"}])
    assert needs_sync(POD, new)
