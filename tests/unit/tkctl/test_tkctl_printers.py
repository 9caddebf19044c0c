"""kubectl-shaped tables, ages and structured output from sample objects."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml

from tkctl import printers
from tkctl.printers import TableOptions, format_table, human_duration

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def ts(seconds_ago: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("seconds", "want"),
    [
        (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"),
        (182, "3m2s"), (599, "9m59s"), (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"),
        (4 * 3600 + 10 * 60, "4h10m"), (8 * 3600, "8h"), (47 * 3600, "47h"),
        (2 * 86400, "2d"), (2 * 86400 + 5 * 3600, "2d5h"), (9 * 86400, "9d"),
        (400 * 86400, "400d"), (3 * 365 * 86400, "3y"), (3 * 365 * 86400 + 10 * 86400, "3y10d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration_matches_kubectl(seconds: int, want: str) -> None:
    assert human_duration(seconds) == want


def test_age_of_missing_or_bad_timestamp() -> None:
    assert printers.age(None, NOW) == "<unknown>"
    assert printers.age("yesterday", NOW) == "<unknown>"
    assert printers.age(ts(65), NOW) == "65s"


def pod(name: str = "web-1", *, phase: str = "Running", ready: bool = True, restarts: int = 0,
        **extra: object) -> dict:
    state = {"running": {"startedAt": ts(60)}} if phase == "Running" else {
        "waiting": {"reason": "ContainerCreating"}}
    obj: dict = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": ts(300),
                     "labels": {"app": "web", "tier": "fe"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "node-1"},
        "status": {"phase": phase, "podIP": "10.244.1.5", "containerStatuses": [
            {"name": "c", "ready": ready, "restartCount": restarts, "state": state}]},
    }
    obj.update(extra)
    return obj


def test_pod_table() -> None:
    lines = format_table([pod(), pod("web-2", phase="Pending", ready=False)],
                         TableOptions(), NOW)
    assert lines == [
        "NAME    READY   STATUS              RESTARTS   AGE",
        "web-1   1/1     Running             0          5m",
        "web-2   0/1     ContainerCreating   0          5m",
    ]


def test_pod_wide_namespace_and_labels() -> None:
    lines = format_table([pod()], TableOptions(wide=True, with_namespace=True, show_labels=True),
                         NOW)
    assert lines[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP",
                                "NODE", "NOMINATED", "NODE", "READINESS", "GATES", "LABELS"]
    assert lines[1].split() == ["default", "web-1", "1/1", "Running", "0", "5m", "10.244.1.5",
                                "node-1", "<none>", "<none>", "app=web,tier=fe"]


def test_pod_status_edge_cases() -> None:
    crashing = pod(restarts=3)
    crashing["status"]["containerStatuses"][0].update(
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        lastState={"terminated": {"exitCode": 1, "finishedAt": ts(30)}}, ready=False)
    assert printers.row_for(crashing, TableOptions(), NOW)[1:4] == [
        "0/1", "CrashLoopBackOff", "3 (30s ago)"]
    terminating = pod()
    terminating["metadata"]["deletionTimestamp"] = ts(1)
    assert printers.pod_status(terminating)[2] == "Terminating"
    init = pod(phase="Pending")
    init["spec"]["initContainers"] = [{"name": "i"}]
    init["status"]["initContainerStatuses"] = [{"name": "i", "state": {"running": {}}}]
    assert printers.pod_status(init)[2] == "Init:0/1"
    failed = pod()
    failed["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 2}}
    assert printers.pod_status(failed)[2] == "ExitCode:2"


def test_deployment_replicaset_rc_tables() -> None:
    tmpl = {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2"}]}}
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "nginx-deployment", "creationTimestamp": ts(7200)},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "nginx"}},
                    "template": tmpl},
           "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert format_table([dep], TableOptions(wide=True), NOW) == [
        "NAME               READY   UP-TO-DATE   AVAILABLE   AGE    CONTAINERS   IMAGES         "
        "SELECTOR",
        "nginx-deployment   2/3     3            2           120m   nginx        nginx:1.14.2   "
        "app=nginx",
    ]
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": "nginx-7fb96c846b", "creationTimestamp": ts(30)},
          "spec": {"replicas": 3}, "status": {"replicas": 3, "readyReplicas": 1}}
    assert format_table([rs], TableOptions(), NOW) == [
        "NAME               DESIRED   CURRENT   READY   AGE",
        "nginx-7fb96c846b   3         3         1       30s",
    ]
    rc = {**rs, "apiVersion": "v1", "kind": "ReplicationController",
          "spec": {"replicas": 2, "selector": {"app": "x"}, "template": tmpl}}
    assert format_table([rc], TableOptions(wide=True), NOW)[1].split()[-1] == "app=x"


def test_service_table() -> None:
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "creationTimestamp": ts(10)},
           "spec": {"type": "NodePort", "clusterIP": "10.96.0.12", "selector": {"app": "web"},
                    "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                              {"port": 53, "protocol": "UDP"}]}}
    assert format_table([svc], TableOptions(wide=True), NOW) == [
        "NAME   TYPE       CLUSTER-IP   EXTERNAL-IP   PORT(S)               AGE   SELECTOR",
        "web    NodePort   10.96.0.12   <none>        80:30080/TCP,53/UDP   10s   app=web",
    ]
    lb = {**svc, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.13"}}
    assert printers.service_external_ip(lb) == "<pending>"
    assert printers.service_ports(lb) == "<none>"


def test_node_table_and_wide() -> None:
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-1", "creationTimestamp": ts(3 * 86400),
                         "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}],
                       "nodeInfo": {"kubeletVersion": "v0.1.0", "osImage": "Debian 12",
                                    "kernelVersion": "6.1.0",
                                    "containerRuntimeVersion": "docker://24.0.7"}}}
    lines = format_table([node], TableOptions(wide=True), NOW)
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP",
                                "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert lines[1].split("   ")[1].strip() == "Ready,SchedulingDisabled"
    assert "control-plane" in lines[1] and "172.18.0.2" in lines[1] and "Debian 12" in lines[1]
    node["status"]["conditions"] = []
    assert printers.node_status(node) == "Unknown,SchedulingDisabled"
    del node["spec"]["unschedulable"]
    # A node whose kubelet stopped posting: kubectl says NotReady, not Unknown.
    for ready, cell in (("Unknown", "NotReady"), ("False", "NotReady"), ("True", "Ready")):
        node["status"]["conditions"] = [{"type": "Ready", "status": ready}]
        assert printers.node_status(node) == cell


def test_small_kinds() -> None:
    rows = {
        "Namespace": ({"status": {"phase": "Terminating"}}, ["Terminating", "5s"]),
        "ConfigMap": ({"data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}}, ["3", "5s"]),
        "Secret": ({"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}},
                   ["kubernetes.io/tls", "2", "5s"]),
        "ServiceAccount": ({"secrets": [{"name": "x"}]}, ["1", "5s"]),
        "Lease": ({"spec": {"holderIdentity": "cm-1"}}, ["cm-1", "5s"]),
        "Endpoints": ({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                                    "ports": [{"port": 80}, {"port": 443}]}]},
                      ["10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...", "5s"]),
        "Widget": ({}, ["5s"]),
    }
    for kind, (body, want) in rows.items():
        obj = {"kind": kind, "metadata": {"name": "x", "creationTimestamp": ts(5)}, **body}
        assert printers.row_for(obj, TableOptions(), NOW) == ["x", *want], kind
    assert printers.headers_for("Widget", TableOptions()) == ["NAME", "AGE"]
    assert printers.format_endpoints({"subsets": []}) == "<none>"


def test_event_table() -> None:
    ev = {"kind": "Event", "metadata": {"name": "web-1.17a", "namespace": "default"},
          "type": "Normal", "reason": "Scheduled",
          "message": "Successfully assigned\ndefault/web-1",
          "involvedObject": {"kind": "Pod", "name": "web-1"}, "lastTimestamp": ts(42),
          "source": {"component": "default-scheduler"}, "count": 1}
    assert format_table([ev], TableOptions(), NOW) == [
        "LAST SEEN   TYPE     REASON      OBJECT      MESSAGE",
        "42s         Normal   Scheduled   pod/web-1   Successfully assigned default/web-1",
    ]


def test_no_headers_and_kind_prefix() -> None:
    lines = format_table([pod()], TableOptions(no_headers=True, with_kind=True), NOW)
    assert lines == ["pod/web-1   1/1   Running   0     5m"]


def test_table_writer_remembers_widths() -> None:
    w = printers.TableWriter()
    first = w.format([["NAME", "STATUS"], ["a-very-long-name", "Running"]])
    later = w.format([["b", "Pending"]])
    assert first[1].index("Running") == later[0].index("Pending")


def test_names_and_structured_output() -> None:
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    assert printers.resource_name(dep) == "deployment.apps/web"
    assert printers.resource_name(pod()) == "pod/web-1"
    lst = printers.as_list([dep])
    assert json.loads(printers.format_structured(lst, "json")) == {
        "apiVersion": "v1", "kind": "List", "items": [dep], "metadata": {"resourceVersion": ""}}
    assert printers.format_structured(dep, "json").startswith('{\n    "apiVersion"')
    assert yaml.safe_load(printers.format_structured(dep, "yaml")) == dep
    assert printers.format_structured(dep, "yaml").splitlines()[0] == "apiVersion: apps/v1"


def test_selector_formatting() -> None:
    sel = {"matchLabels": {"app": "x"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["a", "b"]},
        {"key": "gone", "operator": "DoesNotExist"}]}
    assert printers.format_selector(sel) == "app=x,tier in (a,b),!gone"
    assert printers.format_selector(None) == "<none>"


def test_tabwrite_aligns_blocks_like_go() -> None:
    lines = printers.tabwrite(["Name:\tweb", "Namespace:\tdefault", "Containers:",
                               "  c:", "    Image:\tnginx", "    Port:\t80/TCP"])
    assert lines == ["Name:       web", "Namespace:  default", "Containers:", "  c:",
                     "    Image:  nginx", "    Port:   80/TCP"]


def test_label_columns() -> None:
    opts = TableOptions(label_columns=["app", "example.com/tier", "missing"])
    assert format_table([pod()], opts, NOW) == [
        "NAME    READY   STATUS    RESTARTS   AGE   APP   TIER   MISSING",
        "web-1   1/1     Running   0          5m    web          ",
    ]
