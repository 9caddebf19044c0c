"""The api tier again, through the real kubectl: the twin of test_api_machinery.py and of the
api-tier half of test_apps.py, plus upstream's kubectl ([sig-cli]) conformance tests that need
no running pod.

Every step is a `kubectl` command against the target's kubeconfig, over Kubernetes' HTTP API
(the kubeconfig's `server:`; `--server`, the gRPC address, is not kubectl's): create, get,
list with label and field selectors, watch (`get -w --output-watch-events`, and from a
resourceVersion through `get --raw`), replace with a stale resourceVersion (Conflict), patch,
label, scale (and `get --subresource=scale`), delete with every cascade, rollout, events, diff,
server-side dry run. What the suite asserts is what kubectl printed or the JSON it got.

The binary is `$TK_KUBECTL` (a name on PATH or a path), else `kubectl` on PATH; without one
every test here is skipped with the reason "no kubectl binary on this machine". One test is of
the node tier (a rollout that waits for available pods); the rest of the api tier.

Upstream: test/e2e/kubectl/kubectl.go, and the files test_api_machinery.py and test_apps.py
name.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.conformance.framework import (
    API_TIMEOUT,
    BUSYBOX,
    NO_KUBECTL,
    POD_TIMEOUT,
    SERVE_HOSTNAME,
    Conformance,
    Kubectl,
    Obj,
    Target,
    busybox_pod,
    configmap,
    container,
    controller_of,
    find_kubectl,
    pod_template,
    replicaset,
    service,
    until,
)

# xdist_group: every test using the lab runs in one pytest-xdist worker (tests/conftest.py).
pytestmark = pytest.mark.xdist_group("lab")

TIMEOUT = 60.0
Events = list[tuple[str, Obj]]


@pytest.fixture(scope="session")
def kubectl(conformance_target: Target) -> Kubectl:
    try:
        binary = find_kubectl()
    except ValueError as e:
        pytest.fail(str(e), pytrace=False)
    if binary is None:
        pytest.skip(f"{NO_KUBECTL} ($TK_KUBECTL, or kubectl on PATH)")
    return Kubectl(binary, conformance_target.kubeconfig)


@pytest_asyncio.fixture(loop_scope="session")
async def kns(kubectl: Kubectl) -> AsyncIterator[str]:
    """A namespace of the test's own, made and removed with kubectl."""
    name = f"conf-k-{uuid.uuid4().hex[:10]}"
    await kubectl.ok("create", "namespace", name)
    await kubectl.ok("label", "namespace", name, "e2e-suite=conformance")

    async def default_sa() -> bool:
        return (await kubectl.run("get", "serviceaccount", "default", "-n", name)).code == 0
    await until(default_sa, API_TIMEOUT, what=f"ServiceAccount default in namespace {name}")
    yield name
    await kubectl.run("delete", "namespace", name, "--wait=false")


def names(events: Events) -> list[tuple[str, str]]:
    return [(t, str(o["metadata"]["name"])) for t, o in events]


def mutations(events: Events) -> list[tuple[str, str, str]]:
    return [(t, str(o["metadata"]["name"]), str((o.get("data") or {}).get("mutation", "")))
            for t, o in events]


async def mutate(k: Kubectl, ns: str, name: str, value: str) -> Obj:
    out = await k.ok("patch", "configmap", name, "-n", ns, "--type=merge", "-o", "json",
                     "-p", json.dumps({"data": {"mutation": value}}))
    obj: Obj = json.loads(out)
    return obj


def sleeper_template(labels: Obj) -> Obj:
    return pod_template(labels, container("c", BUSYBOX, ["sleep", "3600"]))


async def owned_pods(k: Kubectl, ns: str, owner_uid: str) -> list[Obj]:
    pods = (await k.json("get", "pods", "-n", ns))["items"]
    return [p for p in pods
            if controller_of(p) == owner_uid and not p["metadata"].get("deletionTimestamp")]


async def wait_owned(k: Kubectl, ns: str, owner_uid: str, count: int, what: str) -> list[Obj]:
    async def check() -> list[Obj] | None:
        pods = await owned_pods(k, ns, owner_uid)
        return pods if len(pods) == count else None
    result: list[Obj] = await until(check, TIMEOUT, what=f"{count} pod(s) of {what}")
    return result


async def gone(k: Kubectl, *args: str) -> bool:
    """`kubectl get ARGS` says NotFound."""
    r = await k.run("get", *args)
    return r.code == 1 and "NotFound" in r.err


# --- the kinds, one lifecycle each -------------------------------------------------------------

KINDS: list[Any] = [
    pytest.param("namespaces", lambda n: {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}},
        marks=pytest.mark.upstream("[sig-api-machinery] Namespaces [Serial] should patch a "
                                   "Namespace [Conformance]"), id="namespace"),
    pytest.param("configmaps", lambda n: configmap(n, {"k": "v"}),
                 marks=pytest.mark.upstream("[sig-node] ConfigMap should update ConfigMap "
                                            "successfully [Conformance]"), id="configmap"),
    pytest.param("secrets", lambda n: {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": n}, "type": "Opaque",
        "data": {"k": base64.b64encode(b"v").decode()}},
        marks=pytest.mark.upstream("[sig-node] Secrets should patch a secret [Conformance]"),
        id="secret"),
    pytest.param("services", lambda n: service(n, {"app": n}),
                 marks=pytest.mark.upstream("[sig-network] Services should complete a service "
                                            "status lifecycle [Conformance]"), id="service"),
    pytest.param("endpoints", lambda n: {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": n},
        "subsets": [{"addresses": [{"ip": "10.0.0.24"}], "ports": [{"port": 80}]}]},
        marks=pytest.mark.upstream("[sig-network] Services should test the lifecycle of an "
                                   "Endpoint [Conformance]"), id="endpoints"),
    pytest.param("serviceaccounts", lambda n: {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": n}},
        marks=pytest.mark.upstream("[sig-auth] ServiceAccounts should run through the "
                                   "lifecycle of a ServiceAccount [Conformance]"),
        id="serviceaccount"),
    pytest.param("pods", lambda n: busybox_pod(n, "sleep 3600"),
                 marks=pytest.mark.upstream("[sig-node] Pods should run through the lifecycle "
                                            "of Pods and PodStatus [Conformance]"), id="pod"),
    pytest.param("replicationcontrollers",
                 lambda n: replicaset(n, 0, sleeper_template({"app": n}),
                                      kind="ReplicationController"),
                 marks=pytest.mark.upstream("[sig-apps] ReplicationController should test the "
                                            "lifecycle of a ReplicationController "
                                            "[Conformance]"), id="replicationcontroller"),
    pytest.param("replicasets", lambda n: replicaset(n, 0, sleeper_template({"app": n})),
                 marks=pytest.mark.upstream("[sig-apps] ReplicaSet should list and delete a "
                                            "collection of ReplicaSets [Conformance]"),
                 id="replicaset"),
    pytest.param("deployments", lambda n: {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": n},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": n}},
                 "template": sleeper_template({"app": n})}},
        marks=pytest.mark.upstream("[sig-apps] Deployment should run the lifecycle of a "
                                   "Deployment [Conformance]"), id="deployment"),
    pytest.param("leases", lambda n: {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": n},
        "spec": {"holderIdentity": "holder", "leaseDurationSeconds": 30}},
        marks=pytest.mark.upstream("[sig-node] Lease lease API should be available "
                                   "[Conformance]"), id="lease"),
    pytest.param("events", lambda n: {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": n},
        "involvedObject": {"kind": "Pod", "name": "nobody", "apiVersion": "v1"},
        "reason": "Testing", "message": "a test event", "type": "Normal",
        "source": {"component": "conformance"}},
        marks=pytest.mark.upstream("[sig-instrumentation] Events should manage the lifecycle "
                                   "of an event [Conformance]"), id="event"),
]


@pytest.mark.conformance_api
@pytest.mark.parametrize(("resource", "manifest"), KINDS)
async def test_kubectl_lifecycle_of_a_kind(kubectl: Kubectl, kns: str, resource: str,
                                           manifest: Any) -> None:
    """create, get (table and JSON), list by label and by field, a watch that sees it all,
    replace with a stale resourceVersion (Conflict), replace, label, patch, delete."""
    k = kubectl
    cluster = resource == "namespaces"
    name = f"{kns}-x" if cluster else "lifecycle"
    ns = [] if cluster else ["-n", kns]
    obj: Obj = manifest(name)
    obj["metadata"]["labels"] = {"conformance": kns}
    async with k.watch(resource, *ns, "--field-selector", f"metadata.name={name}") as watch:
        await watch.started()
        created = json.loads(await k.ok("create", *ns, "-f", "-", "-o", "json",
                                        input=json.dumps(obj)))
        try:
            assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
            # The table comes from the server: a header and the object's row (an Event's
            # columns, as upstream's, have no NAME).
            header, row = (await k.ok("get", resource, name, *ns)).splitlines()
            if resource == "events":
                assert header.split()[:2] == ["LAST", "SEEN"] and "Testing" in row, row
            else:
                assert header.split()[0] == "NAME" and row.split()[0] == name, (header, row)
            assert await k.names(resource, *ns, "-l", f"conformance={kns}") == [name]
            assert await k.names(resource, *ns, "--field-selector", f"metadata.name={name}") \
                == [name]
            # replace carrying the resourceVersion of the create, after another write: Conflict.
            await k.ok("annotate", resource, name, *ns, "conformance/step=annotated")
            stale = {**created, "metadata": {**created["metadata"],
                                             "annotations": {"conformance/step": "stale"}}}
            err = await k.fails("replace", *ns, "-f", "-", input=json.dumps(stale))
            assert "the object has been modified" in err, err
            current = await k.json("get", resource, name, *ns)
            assert current["metadata"]["annotations"]["conformance/step"] == "annotated"

            async def replaced() -> bool:
                # A controller or kubelet writing its status meanwhile is a Conflict too:
                # read again and retry, as a client must.
                current = await k.json("get", resource, name, *ns)
                current["metadata"]["annotations"]["conformance/step"] = "replaced"
                r = await k.run("replace", *ns, "-f", "-", input=json.dumps(current))
                assert r.code == 0 or "the object has been modified" in r.err, r
                return r.code == 0
            await until(replaced, API_TIMEOUT, what=f"kubectl replace {resource}/{name}")
            await k.ok("label", resource, name, *ns, "conformance-label=added")
            await k.ok("patch", resource, name, *ns, "--type=merge",
                       "-p", '{"metadata":{"labels":{"conformance-patch":"merged"}}}')
            got = await k.json("get", resource, name, *ns)
            assert got["metadata"]["annotations"]["conformance/step"] == "replaced"
            assert {"conformance-label": "added", "conformance-patch": "merged"}.items() \
                <= got["metadata"]["labels"].items()
            assert await k.names(resource, *ns, "-l", "conformance-patch=merged") == [name]
        finally:
            out = await k.ok("delete", resource, name, *ns, "--wait=true", timeout=TIMEOUT + 30)
        assert "deleted" in out, out
        assert await gone(k, resource, name, *ns)
        events: Events = []
        while not events or events[-1][0] != "DELETED":
            events += await watch.next(1)
        kinds = [t for t, _ in events]
        assert kinds[0] == "ADDED" and kinds[-1] == "DELETED", names(events)
        assert set(kinds[1:-1]) <= {"MODIFIED"}, names(events)
        labelled = [o for t, o in events if t == "MODIFIED"
                    and (o["metadata"].get("labels") or {}).get("conformance-patch")]
        assert labelled, f"no MODIFIED event with the patched label: {names(events)}"


# --- ConfigMaps, Secrets, ServiceAccounts -------------------------------------------------------

@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-node] ConfigMap should run through a ConfigMap lifecycle [Conformance]")
async def test_kubectl_configmap_lifecycle(kubectl: Kubectl, kns: str) -> None:
    """create from literals, label, patch, list by label and field selector (one namespace and
    all), delete by label selector."""
    k = kubectl
    await k.ok("create", "configmap", "cm-life", "-n", kns, "--from-literal=valueName=value")
    await k.ok("label", "configmap", "cm-life", "-n", kns, "test-configmap-static=true")
    await k.ok("create", "configmap", "cm-bystander", "-n", kns, "--from-literal=k=v")
    await k.ok("patch", "configmap", "cm-life", "-n", kns, "--type=merge", "-p", json.dumps(
        {"metadata": {"labels": {"test-configmap": "patched"}}, "data": {"valueName": "value1"}}))
    got = await k.json("get", "configmap", "cm-life", "-n", kns)
    assert got["data"] == {"valueName": "value1"}
    assert got["metadata"]["labels"] == {"test-configmap-static": "true",
                                         "test-configmap": "patched"}
    assert await k.names("configmaps", "-n", kns, "-l", "test-configmap-static=true") == \
        ["cm-life"]
    assert await k.names("configmaps", "-n", kns, "--field-selector",
                         "metadata.name=cm-life") == ["cm-life"]
    everywhere = await k.ok("get", "configmaps", "-A", "-l", "test-configmap=patched",
                            "-o", "custom-columns=NS:.metadata.namespace,NAME:.metadata.name",
                            "--no-headers")
    assert [kns, "cm-life"] in [line.split() for line in everywhere.splitlines()]
    out = await k.ok("delete", "configmaps", "-n", kns, "-l", "test-configmap-static=true")
    assert out.strip() == 'configmap "cm-life" deleted', out
    assert await k.names("configmaps", "-n", kns, "--field-selector",
                         "metadata.name!=kube-root-ca.crt") == ["cm-bystander"]


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-node] ConfigMap should fail to create ConfigMap with empty key "
                      "[Conformance]")
async def test_kubectl_configmap_empty_key(kubectl: Kubectl, kns: str) -> None:
    err = await kubectl.fails("create", "-n", kns, "-f", "-",
                              input=json.dumps(configmap("cm-empty-key", {"": "value"})))
    assert "is invalid" in err and "data" in err, err
    assert await gone(kubectl, "configmap", "cm-empty-key", "-n", kns)


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-node] Secrets should patch a secret [Conformance]")
async def test_kubectl_secret_patch(kubectl: Kubectl, kns: str) -> None:
    k = kubectl
    await k.ok("create", "secret", "generic", "s", "-n", kns, "--from-literal=key=value")
    await k.ok("label", "secret", "s", "-n", kns, "testsecret-constant=true")
    assert await k.names("secrets", "-n", kns, "-l", "testsecret-constant=true") == ["s"]
    new = base64.b64encode(b"value1").decode()
    await k.ok("patch", "secret", "s", "-n", kns, "-p", json.dumps(
        {"metadata": {"labels": {"testsecret": "true"}}, "data": {"key": new}}))
    data = await k.ok("get", "secret", "s", "-n", kns, "-o", "jsonpath={.data.key}")
    assert base64.b64decode(data) == b"value1"
    await k.ok("delete", "secrets", "-n", kns, "-l", "testsecret-constant=true")
    r = await k.run("get", "secrets", "-n", kns, "-l", "testsecret-constant=true")
    assert r.code == 0 and r.out == "" and "No resources found" in r.err, r


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-auth] ServiceAccounts should run through the lifecycle of a "
                      "ServiceAccount [Conformance]")
async def test_kubectl_serviceaccount_lifecycle(kubectl: Kubectl, kns: str) -> None:
    k = kubectl
    async with k.watch("serviceaccounts", "-n", kns, "-l",
                       "test-serviceaccount-static=true") as watch:
        await watch.started()
        await k.create({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": "testserviceaccount",
                                     "labels": {"test-serviceaccount-static": "true"}}}, kns)
        assert names(await watch.next(1)) == [("ADDED", "testserviceaccount")]
        await k.ok("patch", "serviceaccount", "testserviceaccount", "-n", kns, "-p",
                   '{"automountServiceAccountToken": false}')
        ((kind, obj),) = await watch.next(1)
        assert kind == "MODIFIED" and obj["automountServiceAccountToken"] is False
        await k.ok("delete", "serviceaccounts", "-n", kns, "-l",
                   "test-serviceaccount-static=true")
        assert names(await watch.next(1)) == [("DELETED", "testserviceaccount")]


# --- watches ------------------------------------------------------------------------------------

@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-api-machinery] Watchers should observe add, update, and delete watch "
                      "notifications on configmaps [Conformance]")
async def test_kubectl_watchers_with_label_selectors(kubectl: Kubectl, kns: str) -> None:
    k = kubectl
    async with k.watch("configmaps", "-n", kns, "-l", "watch=a") as watch_a, \
            k.watch("configmaps", "-n", kns, "-l", "watch=b") as watch_b, \
            k.watch("configmaps", "-n", kns, "-l", "watch in (a,b)") as watch_ab:
        for w in (watch_a, watch_b, watch_ab):
            await w.started()
        await k.create(configmap("cm-a", {"mutation": "0"}, {"watch": "a"}), kns)
        await mutate(k, kns, "cm-a", "1")
        await k.create(configmap("cm-other", {"mutation": "0"}, {"watch": "c"}), kns)
        await k.ok("delete", "configmap", "cm-a", "-n", kns)
        await k.create(configmap("cm-b", {"mutation": "0"}, {"watch": "b"}), kns)
        await k.ok("delete", "configmap", "cm-b", "-n", kns)
        a = [("ADDED", "cm-a", "0"), ("MODIFIED", "cm-a", "1"), ("DELETED", "cm-a", "1")]
        b = [("ADDED", "cm-b", "0"), ("DELETED", "cm-b", "0")]
        assert mutations(await watch_a.next(3)) == a
        assert mutations(await watch_b.next(2)) == b
        assert mutations(await watch_ab.next(5)) == a + b
        for w in (watch_a, watch_b, watch_ab):
            await w.quiet(1)


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-api-machinery] Watchers should observe an object deletion if it stops "
                      "meeting the requirements of the selector [Conformance]")
async def test_kubectl_watch_object_leaving_the_selector(kubectl: Kubectl, kns: str) -> None:
    k = kubectl
    async with k.watch("configmaps", "-n", kns, "-l", "watch-this=yes") as watch:
        await watch.started()
        await k.create(configmap("cm", {"mutation": "0"}, {"watch-this": "yes"}), kns)
        await mutate(k, kns, "cm", "1")
        await k.ok("label", "configmap", "cm", "-n", kns, "watch-this=no", "--overwrite")
        await mutate(k, kns, "cm", "2")  # unseen
        await k.ok("label", "configmap", "cm", "-n", kns, "watch-this=yes", "--overwrite")
        await k.ok("delete", "configmap", "cm", "-n", kns)
        assert mutations(await watch.next(5)) == [
            ("ADDED", "cm", "0"), ("MODIFIED", "cm", "1"), ("DELETED", "cm", "1"),
            ("ADDED", "cm", "2"), ("DELETED", "cm", "2")]


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-api-machinery] Watchers should be able to start watching from a "
                      "specific resource version [Conformance]")
async def test_kubectl_watch_from_a_resource_version(kubectl: Kubectl, kns: str) -> None:
    """kubectl's own watches start at its list; a watch from an older resourceVersion is the raw
    API's, which `kubectl get --raw` speaks (the server ends it after timeoutSeconds)."""
    k = kubectl
    await k.create(configmap("cm", {"mutation": "0"}), kns)
    first = await mutate(k, kns, "cm", "1")
    await mutate(k, kns, "cm", "2")
    await k.ok("delete", "configmap", "cm", "-n", kns)
    rv = first["metadata"]["resourceVersion"]
    out = await k.ok("get", "--raw", f"/api/v1/namespaces/{kns}/configmaps?watch=1&"
                     f"resourceVersion={rv}&fieldSelector=metadata.name%3Dcm&timeoutSeconds=3")
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert mutations([(e["type"], e["object"]) for e in events if e["type"] != "BOOKMARK"]) == [
        ("MODIFIED", "cm", "2"), ("DELETED", "cm", "2")]


# --- namespaces and Services ------------------------------------------------------------------

@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-api-machinery] Namespaces [Serial] should ensure that all services are "
                      "removed when a namespace is deleted [Conformance]")
async def test_kubectl_namespace_deletion_removes_services(kubectl: Kubectl) -> None:
    k = kubectl
    victim = f"conf-k-{uuid.uuid4().hex[:10]}"
    await k.ok("create", "namespace", victim)
    try:
        await k.ok("create", "service", "clusterip", "test-service", "--tcp=80:9376",
                   "-n", victim)
        await k.ok("create", "configmap", "cm", "--from-literal=k=v", "-n", victim)
        out = await k.ok("delete", "namespace", victim, "--timeout=90s", timeout=120)
        assert out.strip() == f'namespace "{victim}" deleted', out
        r = await k.run("get", "services,configmaps", "-n", victim)
        assert r.out == "" and "No resources found" in r.err, r
        await k.ok("create", "namespace", victim)
        r = await k.run("get", "services", "-n", victim)
        assert r.out == "" and "No resources found" in r.err, r
    finally:
        await k.run("delete", "namespace", victim, "--wait=false")


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-network] Services should find a service from listing all namespaces "
                      "[Conformance]")
async def test_kubectl_find_service_listing_all_namespaces(kubectl: Kubectl) -> None:
    out = await kubectl.ok("get", "services", "--all-namespaces")
    rows = [line.split()[:2] for line in out.splitlines()]
    assert rows[0] == ["NAMESPACE", "NAME"], out
    assert ["default", "kubernetes"] in rows, out


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-cli] Kubectl client Kubectl api-versions should check if v1 is in "
                      "available api versions [Conformance]")
async def test_kubectl_api_versions(kubectl: Kubectl) -> None:
    versions = (await kubectl.ok("api-versions")).split()
    assert {"v1", "apps/v1", "coordination.k8s.io/v1"} <= set(versions), versions


# --- labels, patches, replace, dry run, diff ---------------------------------------------------

@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-cli] Kubectl client Kubectl label should update the label on a "
                      "resource [Conformance]")
async def test_kubectl_label(kubectl: Kubectl, kns: str) -> None:
    """Upstream labels a running pod; whether it runs makes no difference to the label."""
    k = kubectl
    await k.create(busybox_pod("pause", "sleep 3600"), kns)
    await k.ok("label", "pods", "pause", "testing-label=testing-label-value", "-n", kns)
    out = await k.ok("get", "pod", "pause", "-L", "testing-label", "-n", kns)
    header, row = out.splitlines()
    assert header.split()[-1] == "TESTING-LABEL" and row.split()[-1] == "testing-label-value"
    await k.ok("label", "pods", "pause", "testing-label-", "-n", kns)
    out = await k.ok("get", "pod", "pause", "-L", "testing-label", "-n", kns)
    assert "testing-label-value" not in out, out


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-cli] Kubectl client Kubectl patch should add annotations for pods in "
                      "rc [Conformance]")
async def test_kubectl_patch_annotations_of_an_rcs_pods(kubectl: Kubectl, kns: str) -> None:
    k = kubectl
    out = await k.create(replicaset("agnhost-primary", 2, sleeper_template({"app": "agnhost"}),
                                    kind="ReplicationController"), kns)
    assert out.strip() == "replicationcontroller/agnhost-primary created", out
    rc = await k.json("get", "rc", "agnhost-primary", "-n", kns)
    for pod in await wait_owned(k, kns, rc["metadata"]["uid"], 2, "agnhost-primary"):
        name = pod["metadata"]["name"]
        await k.ok("patch", "pod", name, "-n", kns, "-p",
                   '{"metadata":{"annotations":{"x":"y"}}}')
        got = await k.json("get", "pod", name, "-n", kns)
        assert got["metadata"]["annotations"]["x"] == "y"


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-cli] Kubectl client Kubectl replace should update a single-container "
                      "pod's image [Conformance]")
async def test_kubectl_replace_a_pods_image(kubectl: Kubectl, kns: str) -> None:
    k = kubectl
    out = await k.ok("run", "e2e-test-httpd-pod", f"--image={SERVE_HOSTNAME}",
                     "--image-pull-policy=IfNotPresent", "--labels=run=e2e-test-httpd-pod",
                     "-n", kns)
    assert out.strip() == "pod/e2e-test-httpd-pod created", out

    async def replaced() -> bool:
        # A kubelet writing the pod's status between the get and the replace makes it a
        # Conflict, as it would upstream: read again and retry.
        pod = await k.json("get", "pod", "e2e-test-httpd-pod", "-n", kns)
        pod["spec"]["containers"][0]["image"] = BUSYBOX
        r = await k.run("replace", "-f", "-", "-n", kns, input=json.dumps(pod))
        assert r.code == 0 or "the object has been modified" in r.err, r
        return r.code == 0
    await until(replaced, API_TIMEOUT, what="kubectl replace without a Conflict")
    got = await k.ok("get", "pod", "e2e-test-httpd-pod", "-n", kns,
                     "-o", "jsonpath={.spec.containers[0].image}")
    assert got == BUSYBOX


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-cli] Kubectl client Kubectl server-side dry-run should check if "
                      "kubectl can dry-run update Pods [Conformance]")
async def test_kubectl_server_side_dry_run(kubectl: Kubectl, kns: str) -> None:
    k = kubectl
    await k.ok("run", "e2e-test-httpd-pod", f"--image={SERVE_HOSTNAME}",
               "--image-pull-policy=IfNotPresent", "-n", kns)
    patch = json.dumps({"spec": {"containers": [{"name": "e2e-test-httpd-pod",
                                                 "image": BUSYBOX}]}})
    out = await k.ok("patch", "pod", "e2e-test-httpd-pod", "-n", kns, "-p", patch,
                     "--dry-run=server", "-o", "jsonpath={.spec.containers[0].image}")
    assert out == BUSYBOX  # what the write would have made ...
    got = await k.ok("get", "pod", "e2e-test-httpd-pod", "-n", kns,
                     "-o", "jsonpath={.spec.containers[0].image}")
    assert got == SERVE_HOSTNAME  # ... and nothing written


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-cli] Kubectl client Kubectl diff should check if kubectl diff finds a "
                      "difference for Deployments [Conformance]")
async def test_kubectl_diff_finds_a_difference(kubectl: Kubectl, kns: str) -> None:
    k = kubectl
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "httpd-deployment", "labels": {"app": "httpd"}},
                  "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "httpd"}},
                           "template": sleeper_template({"app": "httpd"})}}
    await k.ok("apply", "-n", kns, "-f", "-", input=json.dumps(deployment))
    assert (await k.run("diff", "-n", kns, "-f", "-", input=json.dumps(deployment))).code == 0
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = SERVE_HOSTNAME
    r = await k.run("diff", "-n", kns, "-f", "-", input=json.dumps(deployment))
    assert r.code == 1, r  # 1: differences found (>1 would be an error)
    assert f"+        image: {SERVE_HOSTNAME}" in r.out, r.out
    assert f"-        image: {BUSYBOX}" in r.out, r.out


# --- scale, cascades, rollouts, events ----------------------------------------------------------

@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-apps] ReplicaSet Replicaset should have a working scale subresource "
                      "[Conformance]")
async def test_kubectl_scale_a_replicaset(kubectl: Kubectl, kns: str) -> None:
    k = kubectl
    await k.create(replicaset("test-rs", 1, sleeper_template({"app": "rs"})), kns)
    uid = (await k.json("get", "rs", "test-rs", "-n", kns))["metadata"]["uid"]
    await wait_owned(k, kns, uid, 1, "test-rs")
    scale = await k.json("get", "rs", "test-rs", "-n", kns, "--subresource=scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1
    out = await k.ok("scale", "rs", "test-rs", "--replicas=2", "-n", kns)
    assert out.strip() == "replicaset.apps/test-rs scaled", out
    await wait_owned(k, kns, uid, 2, "test-rs scaled to 2")
    # A precondition that does not hold: nothing written.
    err = await k.fails("scale", "rs", "test-rs", "--current-replicas=5", "--replicas=3",
                        "-n", kns)
    assert "Expected replicas to be 5, was 2" in err, err
    await k.ok("scale", "rs", "test-rs", "--current-replicas=2", "--replicas=3", "-n", kns)
    await wait_owned(k, kns, uid, 3, "test-rs scaled to 3")

    async def status_counts() -> bool:
        got = await k.ok("get", "rs", "test-rs", "-n", kns, "-o", "jsonpath={.status.replicas}")
        return got == "3"
    await until(status_counts, TIMEOUT, what="test-rs status.replicas == 3")


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-cli] Kubectl client Update Demo should scale a replication controller "
                      "[Conformance]")
async def test_kubectl_scale_a_replication_controller(kubectl: Kubectl, kns: str) -> None:
    """Upstream also checks that the pods serve; here (tier api) that the RC owns that many."""
    k = kubectl
    await k.create(replicaset("update-demo-nautilus", 2,
                              sleeper_template({"name": "update-demo"}),
                              kind="ReplicationController"), kns)
    uid = (await k.json("get", "rc", "update-demo-nautilus", "-n", kns))["metadata"]["uid"]
    await wait_owned(k, kns, uid, 2, "update-demo-nautilus")
    await k.ok("scale", "rc", "update-demo-nautilus", "--replicas=1", "--timeout=5m", "-n", kns,
               timeout=TIMEOUT + 30)
    await wait_owned(k, kns, uid, 1, "update-demo-nautilus scaled down")
    await k.ok("scale", "rc", "update-demo-nautilus", "--replicas=2", "--timeout=5m", "-n", kns,
               timeout=TIMEOUT + 30)
    await wait_owned(k, kns, uid, 2, "update-demo-nautilus scaled up")


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-api-machinery] Garbage collector should orphan pods created by rc if "
                      "delete options say so [Conformance]")
async def test_kubectl_delete_cascade_orphan(kubectl: Kubectl, kns: str) -> None:
    k = kubectl
    await k.create(replicaset("simpletest.rc", 2, sleeper_template({"app": "gc-orphan"}),
                              kind="ReplicationController"), kns)
    uid = (await k.json("get", "rc", "simpletest.rc", "-n", kns))["metadata"]["uid"]
    pods = {p["metadata"]["name"] for p in await wait_owned(k, kns, uid, 2, "simpletest.rc")}
    out = await k.ok("delete", "rc", "simpletest.rc", "--cascade=orphan", "-n", kns)
    assert out.strip() == 'replicationcontroller "simpletest.rc" deleted', out

    async def orphaned() -> bool:
        now = (await k.json("get", "pods", "-n", kns, "-l", "app=gc-orphan"))["items"]
        return {p["metadata"]["name"] for p in now} == pods and \
            not any(p["metadata"].get("ownerReferences") for p in now)
    await until(orphaned, TIMEOUT, what="both pods kept, without ownerReferences")


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-api-machinery] Garbage collector should keep the rc around until all "
                      "its pods are deleted if the deleteOptions says so [Conformance]")
async def test_kubectl_delete_cascade_foreground(kubectl: Kubectl, kns: str) -> None:
    k = kubectl
    await k.create(replicaset("simpletest.rc", 3, sleeper_template({"app": "gc-fg"}),
                              kind="ReplicationController"), kns)
    uid = (await k.json("get", "rc", "simpletest.rc", "-n", kns))["metadata"]["uid"]
    await wait_owned(k, kns, uid, 3, "simpletest.rc")
    await k.ok("delete", "rc", "simpletest.rc", "--cascade=foreground", "--wait=false",
               "-n", kns)
    r = await k.run("get", "rc", "simpletest.rc", "-n", kns, "-o", "json")
    if r.code == 0:  # still there, as it should be while it has pods: marked
        meta = json.loads(r.out)["metadata"]
        assert meta.get("deletionTimestamp")
        assert "foregroundDeletion" in (meta.get("finalizers") or [])
    # kubectl wait until it is gone; by then its pods are too.
    await k.ok("wait", "--for=delete", "rc/simpletest.rc", "-n", kns, f"--timeout={TIMEOUT:.0f}s",
               timeout=TIMEOUT + 30)
    r = await k.run("get", "pods", "-n", kns, "-l", "app=gc-fg")
    assert r.out == "", f"the RC went while its pods remained:\n{r.out}"


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-api-machinery] Garbage collector should delete RS created by "
                      "deployment when not orphaning [Conformance]")
async def test_kubectl_delete_a_deployment_with_its_replicasets(kubectl: Kubectl,
                                                                kns: str) -> None:
    k = kubectl
    out = await k.ok("create", "deployment", "simpletest-deployment", f"--image={BUSYBOX}",
                     "--replicas=2", "-n", kns, "--", "sleep", "3600")
    assert out.strip() == "deployment.apps/simpletest-deployment created", out

    async def rs_created() -> bool:
        return bool(await k.names("rs", "-n", kns, "-l", "app=simpletest-deployment"))
    await until(rs_created, TIMEOUT, what="the Deployment's ReplicaSet")
    await k.ok("delete", "deployment", "simpletest-deployment", "-n", kns)

    async def all_gone() -> bool:
        r = await k.run("get", "rs,pods", "-n", kns, "-l", "app=simpletest-deployment")
        return r.code == 0 and r.out == ""
    await until(all_gone, TIMEOUT, what="the ReplicaSet and its pods garbage-collected")


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-instrumentation] Events should ensure that an event can be fetched, "
                      "patched, deleted, and listed [Conformance]")
async def test_kubectl_events(kubectl: Kubectl, kns: str) -> None:
    """The events a controller records, as `kubectl get events` and `kubectl events` show them,
    then an event's own lifecycle: patch, list by field selector, delete."""
    k = kubectl
    await k.create(replicaset("evented", 1, sleeper_template({"app": "evented"}),
                              kind="ReplicationController"), kns)

    async def recorded() -> str | None:
        out = await k.ok("get", "events", "-n", kns, "--field-selector",
                         "involvedObject.kind=ReplicationController,involvedObject.name=evented,"
                         "reason=SuccessfulCreate")
        return out or None
    table = await until(recorded, TIMEOUT, what="the RC's SuccessfulCreate event")
    header, *rows = table.splitlines()
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], table
    assert rows[0].split()[1:4] == ["Normal", "SuccessfulCreate",
                                    "replicationcontroller/evented"], table
    assert "Created pod: evented-" in rows[0], table
    out = await k.ok("events", "-n", kns, "--for", "replicationcontroller/evented")
    assert "SuccessfulCreate" in out and "Created pod: evented-" in out, out
    # The event itself: fetched, patched, listed by field selector, deleted.
    listed = await k.json("get", "events", "-n", kns, "--field-selector",
                          "involvedObject.name=evented,reason=SuccessfulCreate")
    name = listed["items"][0]["metadata"]["name"]
    await k.ok("patch", "event", name, "-n", kns, "--type=merge",
               "-p", '{"message":"This is a patched event"}')
    got = await k.json("get", "event", name, "-n", kns)
    assert got["message"] == "This is a patched event"
    await k.ok("delete", "event", name, "-n", kns)
    assert await gone(k, "event", name, "-n", kns)


@pytest.mark.conformance_node
@pytest.mark.upstream("[sig-apps] Deployment RollingUpdateDeployment should delete old pods and "
                      "create new ones [Conformance]")
async def test_kubectl_rollout(kubectl: Kubectl, kns: str, conformance: Conformance) -> None:
    """rollout status, a new revision (set env), history, undo, restart, pause and resume.
    (`conformance`: the session's client, which the node tier's check of Ready nodes asks.)"""
    k = kubectl
    rollout = ["rollout", "status", "deployment/web", "-n", kns, f"--timeout={POD_TIMEOUT:.0f}s"]
    await k.ok("create", "deployment", "web", f"--image={SERVE_HOSTNAME}", "--replicas=2",
               "--port=9376", "-n", kns)
    out = await k.ok(*rollout, timeout=POD_TIMEOUT + 30)
    assert out.splitlines()[-1] == 'deployment "web" successfully rolled out', out
    out = await k.ok("set", "env", "deployment/web", "VERSION=v2", "-n", kns)
    assert out.strip() == "deployment.apps/web env updated", out
    await k.ok(*rollout, timeout=POD_TIMEOUT + 30)
    history = await k.ok("rollout", "history", "deployment/web", "-n", kns)
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]
    rss = (await k.json("get", "rs", "-n", kns, "-l", "app=web"))["items"]
    by_revision = {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]:
                   r["spec"]["replicas"] for r in rss}
    assert by_revision == {"1": 0, "2": 2}, by_revision
    out = await k.ok("rollout", "undo", "deployment/web", "-n", kns)
    assert out.strip() == "deployment.apps/web rolled back", out
    await k.ok(*rollout, timeout=POD_TIMEOUT + 30)
    env = await k.ok("get", "deployment", "web", "-n", kns,
                     "-o", "jsonpath={.spec.template.spec.containers[0].env}")
    assert "VERSION" not in env, env  # revision 1's template, as revision 3
    pods = (await k.json("get", "pods", "-n", kns, "-l", "app=web"))["items"]
    assert len([p for p in pods if not p["metadata"].get("deletionTimestamp")]) == 2
    await k.ok("rollout", "pause", "deployment/web", "-n", kns)
    assert (await k.ok("get", "deployment", "web", "-n", kns,
                       "-o", "jsonpath={.spec.paused}")) == "true"
    await k.ok("rollout", "resume", "deployment/web", "-n", kns)
    out = await k.ok("rollout", "restart", "deployment/web", "-n", kns)
    assert out.strip() == "deployment.apps/web restarted", out
    await k.ok(*rollout, timeout=POD_TIMEOUT + 30)
    history = await k.ok("rollout", "history", "deployment/web", "-n", kns)
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == \
        ["2", "3", "4"]
