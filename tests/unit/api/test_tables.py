"""meta.k8s.io/v1 Tables and PartialObjectMetadataLists as kube-apiserver sends them.

Expected cells are those of upstream's pkg/printers/internalversion/printers_test.go (the same
objects written as JSON), so a change that drifts from kubectl's output fails here.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from api import printers, tables
from api.errors import BadRequest
from api.resources import RESOURCES, lookup

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
Obj = dict[str, Any]


def ts(seconds_ago: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cells(kind_or_resource: str, obj: Obj) -> list[Any]:
    info = lookup(kind_or_resource)
    row = tables.to_table(info, [obj], now=NOW)["rows"][0]
    return list(row["cells"])


def columns(resource: str) -> list[Obj]:
    return list(tables.to_table(lookup(resource), [], now=NOW)["columnDefinitions"])


# --- every kind ---------------------------------------------------------------------------


@pytest.mark.parametrize("resource", sorted(RESOURCES))
def test_every_resource_gets_a_table(resource: str) -> None:
    info = RESOURCES[resource]
    obj = {"apiVersion": info.api_version, "kind": info.kind,
           "metadata": {"name": "x", "namespace": "default", "creationTimestamp": ts(5),
                        "resourceVersion": "7"}}
    table = tables.to_table(info, [obj], now=NOW, list_meta={"resourceVersion": "9"})
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    defs = table["columnDefinitions"]
    assert defs and all(set(d) == {"name", "type", "format", "description", "priority"}
                        for d in defs)
    assert all(d["type"] in ("string", "integer", "date", "boolean", "number") for d in defs)
    assert all(d["description"] for d in defs)
    assert all(isinstance(c, str | int) for c in table["rows"][0]["cells"])
    assert len(table["rows"][0]["cells"]) == len(defs)
    # Exactly one name column; it leads, except for events (last, and only with -o wide).
    named = [i for i, d in enumerate(defs) if d["format"] == "name"]
    assert len(named) == 1
    assert defs[named[0]]["name"] == "Name"
    assert defs[named[0]]["description"].startswith("Name must be unique within a namespace.")
    assert named[0] == (len(defs) - 1 if info.kind == "Event" else 0)
    assert table["rows"][0]["cells"][named[0]] == "x"
    json.dumps(table)  # plain JSON all the way down


def test_kinds_without_a_printer_get_the_default_table() -> None:
    role = {"kind": "Role", "metadata": {"name": "pod-reader",
                                         "creationTimestamp": "2024-01-01T11:00:00Z"}}
    table = tables.to_table(lookup("roles"), [role], now=NOW)
    assert [(d["name"], d["type"], d["format"]) for d in table["columnDefinitions"]] == [
        ("Name", "string", "name"), ("Created At", "date", "")]
    assert table["columnDefinitions"][1]["description"].startswith(
        "CreationTimestamp is a timestamp representing the server time")
    assert table["rows"][0]["cells"] == ["pod-reader", "2024-01-01T11:00:00Z"]
    # No timestamp: Go's zero time, as metav1.Time{}.UTC().Format(time.RFC3339).
    assert cells("clusterroles", {"metadata": {"name": "c"}}) == ["c", "0001-01-01T00:00:00Z"]
    for kind in ("Role", "ClusterRole", "SelfSubjectAccessReview", "TokenReview"):
        assert printers.printer_for(kind) is printers.DEFAULT


# --- pods ---------------------------------------------------------------------------------


def pod(name: str = "test1", *, containers: int = 2, statuses: list[Obj] | None = None,
        phase: str = "podPhase", **status: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": f"c{i}"} for i in range(containers)]},
            "status": {"phase": phase, "containerStatuses": statuses or [], **status}}


RUNNING = {"running": {}}


def test_pod_columns_and_wide_priority() -> None:
    defs = columns("pods")
    assert [(d["name"], d["type"], d["priority"]) for d in defs] == [
        ("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0),
        ("Restarts", "string", 0), ("Age", "string", 0), ("IP", "string", 1),
        ("Node", "string", 1), ("Nominated Node", "string", 1),
        ("Readiness Gates", "string", 1)]
    assert defs[5]["description"].startswith("podIP address allocated to the pod.")


@pytest.mark.parametrize(("obj", "want"), [
    # printers_test.go TestPrintPod / TestPrintNonTerminatedPod
    (pod(statuses=[{"ready": True, "restartCount": 3, "state": RUNNING},
                   {"restartCount": 3}]),
     ["test1", "1/2", "podPhase", "6", "<unknown>"]),
    (pod("test2", statuses=[{"ready": True, "restartCount": 3, "state": RUNNING},
                            {"state": {"waiting": {"reason": "ContainerWaitingReason"}},
                             "restartCount": 3}]),
     ["test2", "1/2", "ContainerWaitingReason", "6", "<unknown>"]),
    (pod("test3", statuses=[{"ready": True, "restartCount": 3, "state": RUNNING},
                            {"state": {"terminated": {"reason": "ContainerTerminatedReason"}},
                             "restartCount": 3}]),
     ["test3", "1/2", "ContainerTerminatedReason", "6", "<unknown>"]),
    (pod("test4", phase="Running", statuses=[
        {"ready": True, "restartCount": 3, "state": RUNNING},
        {"state": {"terminated": {"exitCode": 2}}, "restartCount": 3}]),
     ["test4", "1/2", "ExitCode:2", "6", "<unknown>"]),
    (pod("test5", phase="Running", statuses=[
        {"state": {"terminated": {"signal": 9, "exitCode": 137}}}]),
     ["test5", "0/2", "Signal:9", "0", "<unknown>"]),
    # A completed container next to a running one: Running (or NotReady) rather than Completed.
    (pod("test6", phase="Running", conditions=[{"type": "Ready", "status": "True"}],
         statuses=[{"ready": True, "state": RUNNING},
                   {"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]),
     ["test6", "1/2", "Running", "0", "<unknown>"]),
    # A pod held by schedulingGates.
    (pod("test7", phase="Pending",
         conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]),
     ["test7", "0/2", "SchedulingGated", "0", "<unknown>"]),
])
def test_pod_rows_match_upstream(obj: Obj, want: list[Any]) -> None:
    assert cells("pods", obj)[:5] == want


def test_pod_restarts_say_when_the_last_one_ended() -> None:
    crashing = pod(phase="Running", statuses=[{
        "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ts(30)}}}])
    crashing["metadata"]["creationTimestamp"] = ts(300)
    assert cells("pods", crashing)[:5] == ["test1", "0/2", "CrashLoopBackOff", "3 (30s ago)",
                                           "5m"]


def test_pod_with_sidecars_matches_upstream() -> None:
    # printers_test.go TestPrintPodWithRestartableInitContainer
    sidecars = [{"name": "restartable-init-1", "restartPolicy": "Always"},
                {"name": "restartable-init-2", "restartPolicy": "Always"}]
    starting = pod(containers=1, phase="Pending",
                   conditions=[{"type": "Initialized", "status": "False"}],
                   statuses=[{"ready": False, "restartCount": 0, "state": {"waiting": {}}}],
                   initContainerStatuses=[
                       {"name": "restartable-init-1", "ready": False, "restartCount": 3,
                        "state": RUNNING, "started": False,
                        "lastState": {"terminated": {"finishedAt": ts(10)}}},
                       {"name": "restartable-init-2", "ready": False, "state": {"waiting": {}},
                        "started": False}])
    starting["spec"]["initContainers"] = sidecars
    assert cells("pods", starting)[1:4] == ["0/3", "Init:0/2", "3 (10s ago)"]
    running = pod("test2", containers=1, phase="Running",
                  conditions=[{"type": "Initialized", "status": "True"}],
                  statuses=[{"ready": True, "restartCount": 4, "state": RUNNING,
                             "lastState": {"terminated": {"finishedAt": ts(20)}}}],
                  initContainerStatuses=[
                      {"name": "restartable-init-1", "ready": False, "restartCount": 3,
                       "state": RUNNING, "started": True,
                       "lastState": {"terminated": {"finishedAt": ts(10)}}},
                      {"name": "restartable-init-2", "ready": False, "state": RUNNING,
                       "started": True}])
    running["spec"]["initContainers"] = sidecars
    assert cells("pods", running)[1:4] == ["1/3", "Running", "7 (10s ago)"]


def test_pod_deletion_and_terminal_phases() -> None:
    going = pod(phase="Running", statuses=[{"ready": True, "state": RUNNING}])
    going["metadata"]["deletionTimestamp"] = ts(1)
    assert cells("pods", going)[2] == "Terminating"
    lost = {**going, "status": {**going["status"], "reason": "NodeLost"}}
    assert cells("pods", lost)[2] == "Unknown"
    # A pod that already finished keeps its last word while it is deleted.
    done = pod(phase="Succeeded", statuses=[
        {"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}])
    done["metadata"]["deletionTimestamp"] = ts(1)
    assert cells("pods", done)[2] == "Completed"


def test_pod_wide_cells_match_upstream() -> None:
    # printers_test.go TestPrintPodwide
    obj = pod(statuses=[{"ready": True, "restartCount": 3, "state": RUNNING},
                        {"restartCount": 3}],
              podIPs=[{"ip": "1.1.1.1"}, {"ip": "2001:db8::"}], nominatedNodeName="node1",
              conditions=[{"type": "condition1", "status": "False"},
                          {"type": "condition2", "status": "True"}])
    obj["spec"].update(nodeName="test1", readinessGates=[
        {"conditionType": "condition1"}, {"conditionType": "condition2"},
        {"conditionType": "condition3"}])
    assert cells("pods", obj) == ["test1", "1/2", "podPhase", "6", "<unknown>", "1.1.1.1",
                                  "test1", "node1", "1/3"]
    bare = pod("test2", statuses=[{"ready": True, "restartCount": 3, "state": RUNNING}])
    assert cells("pods", bare)[5:] == ["<none>", "<none>", "<none>", "<none>"]


def test_finished_pods_carry_a_completed_condition() -> None:
    # printers_test.go TestPrintPodConditions
    table = tables.to_table(lookup("pods"), [
        pod(phase="Running"), pod(phase="Succeeded"), pod("test2", phase="Failed")], now=NOW)
    assert "conditions" not in table["rows"][0]
    assert table["rows"][1]["conditions"] == [{
        "type": "Completed", "status": "True", "reason": "Succeeded",
        "message": "The pod has completed successfully."}]
    assert table["rows"][2]["conditions"] == [{
        "type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]


# --- deployments, replica sets ------------------------------------------------------------


def test_deployment_row_matches_upstream() -> None:
    # printers_test.go TestPrintDeployment
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "test1", "creationTimestamp": ts(0)},
           "spec": {"replicas": 5, "selector": {"matchLabels": {"foo": "bar"}},
                    "template": {"spec": {"containers": [
                        {"name": "fake-container1", "image": "fake-image1"},
                        {"name": "fake-container2", "image": "fake-image2"}]}}},
           "status": {"replicas": 10, "updatedReplicas": 2, "availableReplicas": 1,
                      "unavailableReplicas": 4}}
    assert cells("deployments", dep) == [
        "test1", "0/5", 2, 1, "0s", "fake-container1,fake-container2",
        "fake-image1,fake-image2", "foo=bar"]
    assert [(d["name"], d["priority"]) for d in columns("deployments")] == [
        ("Name", 0), ("Ready", 0), ("Up-to-date", 0), ("Available", 0), ("Age", 0),
        ("Containers", 1), ("Images", 1), ("Selector", 1)]


def test_selectors_print_as_labels_selector_string() -> None:
    sel = {"matchLabels": {"app": "x"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["b", "a"]},
        {"key": "gone", "operator": "DoesNotExist"},
        {"key": "env", "operator": "NotIn", "values": ["prod"]},
        {"key": "has", "operator": "Exists"}]}
    # Requirements sorted by key, values sorted, as labels.internalSelector.String().
    assert printers.label_selector_string(sel) == "app=x,env notin (prod),!gone,has,tier in (a,b)"
    assert printers.format_label_selector(None) == "<none>"
    assert printers.format_label_selector(
        {"matchExpressions": [{"key": "k", "operator": "Bogus"}]}) == "<error>"


def test_replica_set_and_replication_controller_rows() -> None:
    tmpl = {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2"}]}}
    rs = {"kind": "ReplicaSet", "metadata": {"name": "web-7f", "creationTimestamp": ts(30)},
          "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                   "template": tmpl},
          "status": {"replicas": 3, "readyReplicas": 1}}
    assert cells("replicasets", rs) == ["web-7f", 3, 3, 1, "30s", "nginx", "nginx:1.14.2",
                                        "app=web"]
    rc = {**rs, "kind": "ReplicationController",
          "spec": {"replicas": 2, "selector": {"b": "2", "a": "1"}, "template": tmpl}}
    assert cells("replicationcontrollers", rc)[1:] == [2, 3, 1, "30s", "nginx", "nginx:1.14.2",
                                                       "a=1,b=2"]
    assert [d["type"] for d in columns("replicasets")][1:4] == ["integer"] * 3


# --- nodes ----------------------------------------------------------------------------------


def node(conditions: list[Obj] | None = None, **spec: Any) -> Obj:
    return {"kind": "Node", "metadata": {"name": "foo1"}, "spec": spec,
            "status": {"conditions": conditions or []}}


@pytest.mark.parametrize(("obj", "status"), [
    # printers_test.go TestPrintNodeStatus
    (node([{"type": "Ready", "status": "True"}]), "Ready"),
    (node([{"type": "Ready", "status": "True"}], unschedulable=True),
     "Ready,SchedulingDisabled"),
    (node([{"type": "Ready", "status": "False"}]), "NotReady"),
    (node([{"type": "Ready", "status": "False"}], unschedulable=True),
     "NotReady,SchedulingDisabled"),
    (node([{"type": "Ready", "status": "Unknown"}]), "NotReady"),
    (node(), "Unknown"),
    (node(unschedulable=True), "Unknown,SchedulingDisabled"),
    (node([{"type": "InvalidValue", "status": "True"}]), "Unknown"),
])
def test_node_status_matches_upstream(obj: Obj, status: str) -> None:
    assert cells("nodes", obj)[:3] == ["foo1", status, "<none>"]


def test_node_row_and_wide_cells() -> None:
    obj = {"kind": "Node",
           "metadata": {"name": "node-1", "creationTimestamp": ts(3 * 86400), "labels": {
               "node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "",
               "kubernetes.io/role": "worker"}},
           "status": {"conditions": [{"type": "Ready", "status": "True"}],
                      "addresses": [{"type": "InternalIP", "address": "172.18.0.2"},
                                    {"type": "ExternalIP", "address": "1.2.3.4"}],
                      "nodeInfo": {"kubeletVersion": "v1.30.0", "osImage": "Debian 12",
                                   "kernelVersion": "6.1.0"}}}
    assert cells("nodes", obj) == ["node-1", "Ready", "control-plane,worker", "3d", "v1.30.0",
                                   "172.18.0.2", "1.2.3.4", "Debian 12", "6.1.0", "<unknown>"]
    assert [d["name"] for d in columns("nodes") if d["priority"] == 1] == [
        "Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"]


# --- services -------------------------------------------------------------------------------


def service(**spec: Any) -> Obj:
    return {"kind": "Service", "metadata": {"name": "test1"}, "spec": spec}


def test_service_rows_match_upstream() -> None:
    # printers_test.go TestPrintService
    assert cells("services", service(
        type="ClusterIP", ports=[{"protocol": "tcp", "port": 2233}], clusterIPs=["10.9.8.7"],
        selector={"foo": "bar"})) == [
        "test1", "ClusterIP", "10.9.8.7", "<none>", "2233/tcp", "<unknown>", "foo=bar"]
    assert cells("services", service(
        type="NodePort", ports=[{"protocol": "TCP", "port": 8888, "nodePort": 9999}],
        clusterIPs=["10.9.8.7"]))[1:5] == ["NodePort", "10.9.8.7", "<none>", "8888:9999/TCP"]
    assert cells("services", service(
        type="LoadBalancer", ports=[{"protocol": "TCP", "port": 8888}],
        clusterIPs=["10.9.8.7"]))[3] == "<pending>"
    lb = service(type="LoadBalancer", ports=[{"protocol": "TCP", "port": 8888}],
                 clusterIPs=["10.9.8.7"], externalIPs=["80.11.12.10"])
    lb["status"] = {"loadBalancer": {"ingress": [
        {"ip": "3.4.5.6"}, {"ip": "2.3.4.5"}, {"hostname": "lb.example.com"}, {"ip": "2.3.4.5"}]}}
    # Ingress addresses sorted and deduplicated, then the external IPs; never clipped, since
    # the apiserver always generates the wide row.
    assert cells("services", lb)[3] == "2.3.4.5,3.4.5.6,lb.example.com,80.11.12.10"
    assert cells("services", service(type="ExternalName", externalName="my.database.example.com",
                                     clusterIPs=[]))[1:5] == [
        "ExternalName", "<none>", "my.database.example.com", "<none>"]
    headless = service(type="ClusterIP", clusterIP="None", clusterIPs=["None"], ports=[
        {"protocol": "UDP", "port": 53}])
    assert cells("services", headless)[2:5] == ["None", "<none>", "53/UDP"]


def test_endpoints_cells() -> None:
    ep = {"kind": "Endpoints", "metadata": {"name": "web"},
          "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}],
                       "ports": [{"port": 80}, {"port": 443}]}]}
    assert cells("endpoints", ep)[1] == "10.0.0.1:80,[fd00::2]:80,10.0.0.1:443 + 1 more..."
    assert cells("endpoints", {**ep, "subsets": []})[1] == "<none>"
    # Subsets with only not-ready addresses print empty, as upstream's formatEndpoints.
    assert cells("endpoints", {**ep, "subsets": [{"notReadyAddresses": [{"ip": "10.0.0.1"}],
                                                  "ports": [{"port": 80}]}]})[1] == ""


# --- events and the small kinds ------------------------------------------------------------


def test_event_columns_and_cells() -> None:
    defs = columns("events")
    assert [(d["name"], d["priority"]) for d in defs] == [
        ("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0), ("Subobject", 1),
        ("Source", 1), ("Message", 0), ("First Seen", 1), ("Count", 1), ("Name", 1)]
    ev = {"kind": "Event", "metadata": {"name": "web-1.17a", "namespace": "default"},
          "type": "Normal", "reason": "Scheduled", "message": "  Successfully assigned\n ",
          "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{c}"},
          "firstTimestamp": ts(120), "lastTimestamp": ts(42), "count": 3,
          "source": {"component": "kubelet", "host": "node-1"}}
    assert cells("events", ev) == ["42s", "Normal", "Scheduled", "pod/web-1",
                                   "spec.containers{c}", "kubelet, node-1",
                                   "Successfully assigned", "2m", 3, "web-1.17a"]
    # The events.k8s.io shape: eventTime, series, reporting fields, no count.
    new = {"kind": "Event", "metadata": {"name": "e"}, "eventTime": "2024-05-01T11:59:00.000000Z",
           "reportingComponent": "scheduler", "involvedObject": {"kind": "Node"}}
    assert cells("events", new) == ["60s", "", "", "node", "", "scheduler", "", "60s", 1, "e"]
    series = {**new, "series": {"count": 5, "lastObservedTime": "2024-05-01T11:59:50.000000Z"}}
    assert [cells("events", series)[i] for i in (0, 7, 8)] == ["10s", "60s", 5]


def test_small_kinds_cells() -> None:
    md = {"name": "x", "creationTimestamp": ts(5)}
    assert cells("namespaces", {"metadata": md, "status": {"phase": "Terminating"}}) == [
        "x", "Terminating", "5s"]
    assert cells("configmaps", {"metadata": md, "data": {"a": "1", "b": "2"},
                                "binaryData": {"c": ""}}) == ["x", 3, "5s"]
    assert cells("secrets", {"metadata": md, "type": "kubernetes.io/tls",
                             "data": {"tls.crt": "", "tls.key": ""}}) == [
        "x", "kubernetes.io/tls", 2, "5s"]
    assert cells("serviceaccounts", {"metadata": md, "secrets": [{"name": "t"}]}) == [
        "x", 1, "5s"]
    assert cells("leases", {"metadata": md, "spec": {"holderIdentity": "cm-1"}}) == [
        "x", "cm-1", "5s"]
    binding = {"metadata": md, "roleRef": {"kind": "ClusterRole", "name": "view"},
               "subjects": [{"kind": "User", "name": "jane"}, {"kind": "User", "name": "bob"},
                            {"kind": "Group", "name": "devs"},
                            {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]}
    assert cells("rolebindings", binding) == ["x", "ClusterRole/view", "5s", "jane, bob",
                                              "devs", "tools/ci"]
    assert [d["description"] for d in columns("clusterrolebindings")][3:] == [
        "Users in the clusterRoleBinding", "Groups in the clusterRoleBinding",
        "ServiceAccounts in the clusterRoleBinding"]


@pytest.mark.parametrize(("resource", "wide"), [
    ("pods", ["IP", "Node", "Nominated Node", "Readiness Gates"]),
    ("deployments", ["Containers", "Images", "Selector"]),
    ("replicasets", ["Containers", "Images", "Selector"]),
    ("replicationcontrollers", ["Containers", "Images", "Selector"]),
    ("services", ["Selector"]),
    ("nodes", ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version",
               "Container-Runtime"]),
    ("events", ["Subobject", "Source", "First Seen", "Count", "Name"]),
    ("rolebindings", ["Users", "Groups", "ServiceAccounts"]),
    ("clusterrolebindings", ["Users", "Groups", "ServiceAccounts"]),
    ("namespaces", []), ("configmaps", []), ("secrets", []), ("endpoints", []),
    ("serviceaccounts", []), ("leases", []), ("roles", []),
])
def test_wide_columns_have_priority_one(resource: str, wide: list[str]) -> None:
    assert [d["name"] for d in columns(resource) if d["priority"] == 1] == wide
    assert {d["priority"] for d in columns(resource)} <= {0, 1}


def test_tkctl_prints_the_same_columns() -> None:
    # One definition: tkctl's headers are the Table's column names, upper-cased, wide or not.
    from tkctl.printers import TableOptions, headers_for

    for info in RESOURCES.values():
        defs = columns(info.name)
        assert headers_for(info.kind, TableOptions(wide=True)) == [
            d["name"].upper() for d in defs], info.kind
        assert headers_for(info.kind, TableOptions()) == [
            d["name"].upper() for d in defs if d["priority"] == 0], info.kind


# --- includeObject and list metadata --------------------------------------------------------


def test_include_object_variants() -> None:
    obj = pod()
    obj["metadata"].update(namespace="default", uid="u-1", resourceVersion="12",
                           labels={"app": "web"})
    info = lookup("pods")
    metadata_row = tables.to_table(info, [obj], now=NOW)["rows"][0]
    assert metadata_row["object"] == {
        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"]}
    assert metadata_row["object"]["metadata"] is not obj["metadata"]  # a copy, not shared
    assert tables.to_table(info, [obj], include_object="", now=NOW)["rows"][0] == metadata_row
    none_row = tables.to_table(info, [obj], include_object="None", now=NOW)["rows"][0]
    assert none_row == {"cells": metadata_row["cells"], "object": None}
    full = tables.to_table(info, [obj], include_object="Object", now=NOW)["rows"][0]
    assert full["object"] == obj
    # An object stored without its type gets it, as the conversion to the request's version.
    bare = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    typed = tables.to_table(info, [bare], include_object="Object", now=NOW)["rows"][0]
    assert (typed["object"]["apiVersion"], typed["object"]["kind"]) == ("v1", "Pod")
    with pytest.raises(BadRequest, match='unrecognized includeObject value: "Everything"'):
        tables.to_table(info, [obj], include_object="Everything", now=NOW)


def test_list_metadata_is_carried_into_the_table() -> None:
    info = lookup("configmaps")
    items = [{"metadata": {"name": n, "resourceVersion": "3"}} for n in ("a", "b")]
    table = tables.to_table(info, items, now=NOW, list_meta={
        "resourceVersion": "41", "continue": "eyJydiI6NDF9", "remainingItemCount": 7})
    assert table["metadata"] == {"resourceVersion": "41", "continue": "eyJydiI6NDF9",
                                 "remainingItemCount": 7}
    assert [r["cells"][0] for r in table["rows"]] == ["a", "b"]
    # The last page: no continue; an empty list still has a resourceVersion.
    assert tables.to_table(info, [], now=NOW, list_meta={"resourceVersion": "41"}) == {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "41"},
        "columnDefinitions": table["columnDefinitions"], "rows": []}
    # A GET of one object: the object's own resourceVersion.
    assert tables.to_table(info, items[:1], now=NOW)["metadata"] == {"resourceVersion": "3"}


def test_partial_object_metadata_list() -> None:
    info = lookup("deployments")
    items = [{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 2},
              "metadata": {"name": n, "namespace": "default", "resourceVersion": "5"}}
             for n in ("a", "b")]
    lst = tables.partial_object_metadata_list(info, items, {"resourceVersion": "9",
                                                            "continue": "c"})
    assert lst == {
        "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "9", "continue": "c"},
        "items": [{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": it["metadata"]} for it in items]}
    assert tables.partial_object_metadata_list(info, [], None) == {
        "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": {},
        "items": []}
