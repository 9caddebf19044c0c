"""The EventRecorder against a real apiserver: aggregation into one Event with a count."""

from __future__ import annotations

import uuid

import pytest

from api.core import ConfigMap, Event
from client.events import NORMAL, WARNING, EventRecorder
from harness.cluster import Cluster

pytestmark = pytest.mark.integration


async def test_identical_events_aggregate_to_count_three(cluster: Cluster,
                                                         namespace: str) -> None:
    created = await cluster.client.create("configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
        "data": {"k": "v"}}, namespace)
    cm = ConfigMap.model_validate(created)
    rec = EventRecorder(cluster.client, "test-controller", "host-1")
    try:
        for _ in range(3):
            rec.event(cm, WARNING, "FailedSync", "could not sync settings")
        rec.event(cm, NORMAL, "Synced", "settings synced")
        await rec.flush()
    finally:
        await rec.close()

    items, _ = await cluster.client.list_all(
        "events", namespace, field_selector="involvedObject.name=settings")
    events = sorted((Event.model_validate(i) for i in items), key=lambda e: e.reason or "")
    assert [(e.reason, e.count) for e in events] == [("FailedSync", 3), ("Synced", 1)]
    failed = events[0]
    assert failed.type == "Warning" and failed.message == "could not sync settings"
    assert failed.involved_object.kind == "ConfigMap"
    assert failed.involved_object.uid == cm.metadata.uid
    assert failed.source is not None and failed.source.component == "test-controller"
    assert failed.first_timestamp is not None and failed.last_timestamp is not None
    assert failed.first_timestamp <= failed.last_timestamp
    assert failed.name.startswith("settings.")


async def test_cluster_scoped_object_event_goes_to_default(cluster: Cluster) -> None:
    name = f"ev-{uuid.uuid4().hex[:10]}"
    ns_obj = await cluster.client.create(
        "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    rec = EventRecorder(cluster.client, "test-controller")
    try:
        rec.event(ns_obj, NORMAL, "Created", "namespace created")
        await rec.flush()
    finally:
        await rec.close()
    items, _ = await cluster.client.list_all(
        "events", "default", field_selector=f"involvedObject.name={name}")
    assert [(i["involvedObject"]["kind"], i["count"]) for i in items] == [("Namespace", 1)]
