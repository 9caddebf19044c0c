"""Pure parts of the verbs: target parsing, label plans, patch types, discovery, error lines."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from api import errors
from client.apiclient import Unreachable
from tkctl import cmd_info, cmd_label, cmd_patch, describe, resolve
from tkctl.context import UsageError, format_api_error

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def test_parse_targets_forms() -> None:
    t = resolve.parse_targets(["po", "a", "b"], "get")
    assert [(x.info.name, x.names) for x in t] == [("pods", ["a", "b"])]
    t = resolve.parse_targets(["deploy,svc"], "get")
    assert [x.info.name for x in t] == ["deployments", "services"]
    t = resolve.parse_targets(["deploy/x", "svc/y", "deployments.apps/z"], "get")
    assert [(x.info.name, x.names) for x in t] == [("deployments", ["x", "z"]),
                                                    ("services", ["y"])]
    assert [x.info.name for x in resolve.parse_targets(["all"], "get")] == list(resolve.ALL)
    with pytest.raises(UsageError, match="single resource and name"):
        resolve.parse_targets(["deploy/x", "y"], "get")
    with pytest.raises(errors.NotFound, match='resource type "nope"'):
        resolve.parse_targets(["nope"], "get")


def test_label_changes_and_overwrite_rule() -> None:
    ch = cmd_label.parse_changes(["env=prod", "tier-", "example.com/team=a"], "label")
    assert ch.set == {"env": "prod", "example.com/team": "a"} and ch.remove == ["tier"]
    assert cmd_label.plan({"tier": "fe", "env": "prod"}, ch, False, "label") == {
        "example.com/team": "a", "tier": None}
    with pytest.raises(UsageError, match=r"'env' already has a value \(dev\), and --overwrite "
                                         "is false"):
        cmd_label.plan({"env": "dev"}, ch, False, "label")
    assert cmd_label.plan({"env": "dev"}, ch, True, "label")["env"] == "prod"
    with pytest.raises(UsageError, match="invalid label value"):
        cmd_label.parse_changes(["a=has space"], "label")
    assert cmd_label.parse_changes(["note=any text: ok"], "annotation").set == {
        "note": "any text: ok"}
    with pytest.raises(UsageError, match="can not both modify and remove"):
        cmd_label.parse_changes(["a=b", "a-"], "label")


def test_patch_types() -> None:
    assert cmd_patch.patch_type("") == "merge"
    assert cmd_patch.patch_type("json") == "json"
    with pytest.raises(UsageError, match="--type merge"):
        cmd_patch.patch_type("strategic")


def test_discovery_shapes() -> None:
    flat = {"resources": [
        {"name": "deployments", "shortNames": ["deploy"], "group": "apps", "version": "v1",
         "namespaced": True, "kind": "Deployment", "verbs": ["get"]},
        {"name": "deployments/scale", "kind": "Scale", "group": "apps", "version": "v1"},
        {"name": "nodes", "shortNames": ["no"], "version": "v1", "namespaced": False,
         "kind": "Node"}], "serverVersion": {"gitVersion": "v0.1.0"}}
    nested = {"kind": "APIGroupDiscoveryList", "items": [
        {"groupVersion": "v1", "resources": [
            {"name": "nodes", "shortNames": ["no"], "namespaced": False, "kind": "Node"}]},
        {"groupVersion": "apps/v1", "resources": [
            {"name": "deployments", "shortNames": ["deploy"], "namespaced": True,
             "kind": "Deployment"}]}], "version": "v0.1.0"}
    for doc in (flat, nested):
        found = cmd_info.discovered_resources(doc)
        assert [(r["name"], r["apiVersion"]) for r in found] == [("nodes", "v1"),
                                                                 ("deployments", "apps/v1")]
        assert cmd_info.server_version(doc) == {"gitVersion": "v0.1.0"}
    rows = cmd_info.resource_rows(cmd_info.discovered_resources(flat), False)
    assert rows[0] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert rows[2] == ["deployments", "deploy", "apps/v1", "true", "Deployment"]


def test_api_error_lines() -> None:
    nf = errors.NotFound(message='pods "x" not found')
    assert format_api_error(nf, "s") == 'Error from server (NotFound): pods "x" not found'
    ae = errors.AlreadyExists(message='deployments.apps "x" already exists')
    assert format_api_error(ae, "s", verb="creating", source="d.yaml") == (
        'Error from server (AlreadyExists): error when creating "d.yaml": deployments.apps "x" '
        "already exists")
    inv = errors.invalid("Deployment", "web", [
        errors.Cause("spec.replicas", "Invalid value: -1: must be >= 0")])
    assert format_api_error(inv, "s") == (
        'The Deployment "web" is invalid: spec.replicas: Invalid value: -1: must be >= 0')
    two = errors.invalid("Pod", "p", [errors.Cause("a", "bad"), errors.Cause("b", "worse")])
    assert format_api_error(two, "s") == 'The Pod "p" is invalid: [a: bad, b: worse]'
    down = Unreachable(message="failed to connect to all addresses")
    assert format_api_error(down, "h:1").startswith("error: the server at h:1 is not reachable")
    refused = Unreachable(message="failed to connect to all addresses; last error: UNKNOWN: "
                          "ipv4:127.0.0.1:1: Failed to connect to remote host: Connection "
                          "refused")
    assert format_api_error(refused, "h:1") == (
        "The connection to the server h:1 was refused - did you specify the right host or "
        "port?")
    # The apiserver answered: its etcd is down. Say that, whatever words the answer has.
    etcd = errors.ServiceUnavailable(message="etcd unavailable: failed to connect to all "
                                     "addresses; last error: Connection refused")
    assert format_api_error(etcd, "h:1") == (
        "Error from server (ServiceUnavailable): etcd unavailable: failed to connect to all "
        "addresses; last error: Connection refused")


def ts(seconds_ago: int) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


EVENT = {"type": "Normal", "reason": "Scheduled", "message": "Successfully assigned default/web",
         "source": {"component": "default-scheduler"}, "firstTimestamp": ts(70),
         "lastTimestamp": ts(70), "count": 1}


def test_describe_pod_page() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                        "ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc",
                                             "controller": True}]},
           "spec": {"nodeName": "node-1", "containers": [
               {"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}],
                "env": [{"name": "A", "value": "1"}]}]},
           "status": {"phase": "Running", "podIP": "10.244.0.5", "hostIP": "172.18.0.2",
                      "conditions": [{"type": "Ready", "status": "True"}],
                      "containerStatuses": [{"name": "nginx", "ready": True, "restartCount": 0,
                                             "state": {"running": {"startedAt": ts(60)}}}]}}
    page = describe.describe_pod(pod, [EVENT, {**EVENT, "count": 4, "reason": "Pulled",
                                               "lastTimestamp": ts(5)}], NOW)
    lines = page.splitlines()
    assert lines[0] == "Name:             web"
    assert "Node:             node-1/172.18.0.2" in lines
    assert "Controlled By:    ReplicaSet/web-abc" in lines
    assert "    Port:           80/TCP" in lines
    assert any(line.split() == ["A:", "1"] for line in lines)
    i = lines.index("Events:")
    assert lines[i + 1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert lines[i + 3].split()[:4] == ["Normal", "Scheduled", "70s", "default-scheduler"]
    assert "5s (x4 over 70s)" in lines[i + 4]


def test_describe_generic_and_no_events() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg",
          "namespace": "default", "creationTimestamp": ts(5)}, "data": {"logLevel": "debug"}}
    page = describe.describe_generic(cm, [], NOW).splitlines()
    assert page[0].startswith("Name:") and page[-1].startswith("Events:")
    assert page[-1].endswith("<none>")
    assert any(line.strip().startswith("Creation Timestamp:") for line in page)
    assert any("Log Level:" in line and "debug" in line for line in page)


def test_describe_deployment_page() -> None:
    dep = {"kind": "Deployment", "metadata": {"name": "web", "namespace": "default", "uid": "u",
           "annotations": {"deployment.kubernetes.io/revision": "2"}},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                        "maxSurge": "25%", "maxUnavailable": "25%"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
           "status": {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}}
    rs = {"metadata": {"name": "web-2", "annotations": {"deployment.kubernetes.io/revision": "2"}},
          "spec": {"replicas": 3}, "status": {"replicas": 3}}
    page = describe.describe_deployment(dep, [rs], None, NOW)
    assert "3 desired | 3 updated | 3 total | 3 available | 0 unavailable" in page
    assert "25% max unavailable, 25% max surge" in page
    assert re.search(r"^NewReplicaSet:\s+web-2 \(3/3 replicas created\)$", page, re.M)
    assert "Events" not in page


def test_describe_configmap_and_secret() -> None:
    cm = {"kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"},
          "data": {"level": "debug"}}
    page = describe.describe_configmap(cm, [], NOW).splitlines()
    i = page.index("Data")
    assert page[i:i + 5] == ["Data", "====", "level:", "----", "debug"]
    assert page[-1].split() == ["Events:", "<none>"]
    secret = {"kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
              "type": "Opaque", "data": {"password": "aHVudGVyMg=="}}  # "hunter2"
    text = describe.describe_secret(secret, None, NOW)
    assert "password:  7 bytes" in text and "hunter2" not in text and "aHVudGVy" not in text
