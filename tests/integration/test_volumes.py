"""Volumes, environment and the ServiceAccount token, against a real secure cluster (issue 4).

The kubelet side runs here in-process with a *node* identity (system:node:vol-node), exactly the
credentials tk-kubelet has: the Node authorizer lets it read only the ConfigMaps, Secrets and
ServiceAccount tokens of pods bound to that node, and NodeRestriction checks the token's pod.
Files are real, in a temporary root dir. A controller-manager runs the serviceaccount and
root-ca-cert-publisher controllers, which the token volume depends on.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from api import errors
from client.apiclient import ApiClient
from client.config import in_cluster
from harness.cluster import Cluster
from harness.wait import until
from kubelet.envvars import EnvError, container_env
from kubelet.volumes import DATA_DIR, VolumeError, VolumeManager

Obj = dict[str, Any]
NODE = "vol-node"
SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def vcluster() -> AsyncIterator[Cluster]:
    async with Cluster() as c:
        await c.client.create("nodes", {"apiVersion": "v1", "kind": "Node",
                                        "metadata": {"name": NODE}})
        c.start_controller_manager(
            "--controllers", "serviceaccount,root-ca-cert-publisher,namespace",
            "--no-leader-elect")
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def ns(vcluster: Cluster) -> str:
    name = await vcluster.new_namespace("vol-")

    async def ready() -> bool:
        try:
            await vcluster.client.get("serviceaccounts", "default", name)
            await vcluster.client.get("configmaps", "kube-root-ca.crt", name)
            return True
        except errors.NotFound:
            return False
    await until(ready, timeout=30, what="default ServiceAccount and kube-root-ca.crt")
    return name


# async: the client opens a grpc.aio channel, which needs a current event loop; a sync fixture
# had one only when no earlier test on the xdist worker had left it unset (asyncio.run does),
# so the module's tests errored at setup in some orders.
@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def node_client(vcluster: Cluster) -> ApiClient:
    return vcluster.client_as(f"system:node:{NODE}", ["system:nodes"])


def volume_manager(node_client: ApiClient, tmp_path: Path) -> VolumeManager:
    return VolumeManager(node_client, tmp_path / "kubelet", NODE)


async def make(client: ApiClient, ns: str, kind: str, name: str, **body: Any) -> Obj:
    resource = {"ConfigMap": "configmaps", "Secret": "secrets"}[kind]
    return await client.create(resource, {"apiVersion": "v1", "kind": kind,
                                          "metadata": {"name": name}, **body}, ns)


async def make_pod(client: ApiClient, ns: str, name: str, containers: list[Obj] | None = None,
                   **spec: Any) -> Obj:
    return await client.create("pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"nodeName": NODE,
                 "containers": containers or [{"name": "c", "image": "tinykube/busybox:1"}],
                 **spec}}, ns)


async def setup_eventually(vm: VolumeManager, pod: Obj) -> dict[str, str]:
    """The Node authorizer's view of which pods are on the node follows the watch cache, a
    moment after the pod's create returned: retry what it refuses for that reason only."""
    async def attempt() -> dict[str, str] | None:
        try:
            return await vm.setup(pod)
        except VolumeError as e:
            if "no relationship found" in str(e):
                return None
            raise
    return await until(attempt, timeout=10, what="volume setup")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_configmap_and_secret_files_update_atomically(
        vcluster: Cluster, ns: str, node_client: ApiClient, tmp_path: Path) -> None:
    admin = vcluster.client
    await make(admin, ns, "ConfigMap", "cfg", data={"app.conf": "v=1", "other": "x"})
    await make(admin, ns, "Secret", "creds", data={"user": b64("ada"), "pw": b64("s3cret")})
    pod = await make_pod(admin, ns, "files", automountServiceAccountToken=False, volumes=[
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "some", "configMap": {"name": "cfg", "defaultMode": 0o600,
                                       "items": [{"key": "app.conf", "path": "conf/app",
                                                  "mode": 0o400}]}},
        {"name": "creds", "secret": {"secretName": "creds"}},
    ])
    vm = volume_manager(node_client, tmp_path)
    paths = await setup_eventually(vm, pod)
    uid = pod["metadata"]["uid"]
    base = tmp_path / "kubelet" / "pods" / uid / "volumes"
    assert paths == {"cfg": str(base / "kubernetes.io~configmap" / "cfg"),
                     "some": str(base / "kubernetes.io~configmap" / "some"),
                     "creds": str(base / "kubernetes.io~secret" / "creds")}
    cfg = Path(paths["cfg"])
    assert (cfg / "app.conf").read_text() == "v=1"
    assert os.readlink(cfg / "app.conf") == f"{DATA_DIR}/app.conf"
    assert oct((cfg / "other").stat().st_mode & 0o777) == oct(0o644)
    some = Path(paths["some"])
    assert sorted(p.name for p in some.iterdir() if not p.name.startswith("..")) == ["conf"]
    assert (some / "conf" / "app").read_text() == "v=1"
    assert oct((some / "conf" / "app").stat().st_mode & 0o777) == oct(0o400)
    assert (Path(paths["creds"]) / "pw").read_text() == "s3cret"
    assert vm.pod_dirs() == [uid]

    first = os.readlink(cfg / DATA_DIR)
    await vm.setup(pod)  # nothing changed: nothing rewritten
    assert os.readlink(cfg / DATA_DIR) == first
    cm = await admin.get("configmaps", "cfg", ns)
    cm["data"] = {"app.conf": "v=2"}
    await admin.update("configmaps", cm)
    await vm.setup(pod)  # the next sync publishes the new version with one rename
    assert os.readlink(cfg / DATA_DIR) != first
    assert (cfg / "app.conf").read_text() == "v=2"
    assert not os.path.lexists(cfg / "other")
    assert not (cfg / first).exists()

    await vm.teardown(uid)
    assert vm.pod_dirs() == []


async def test_missing_configmap_and_secret_fail_the_mount_as_upstream(
        vcluster: Cluster, ns: str, node_client: ApiClient, tmp_path: Path) -> None:
    admin = vcluster.client
    pod = await make_pod(admin, ns, "missing", automountServiceAccountToken=False, volumes=[
        {"name": "cfg", "configMap": {"name": "nope"}},
        {"name": "opt", "configMap": {"name": "nope2", "optional": True}},
        {"name": "sec", "secret": {"secretName": "nope3"}},
    ])
    vm = volume_manager(node_client, tmp_path)
    with pytest.raises(VolumeError) as e:
        await setup_eventually(vm, pod)
    assert str(e.value) == 'MountVolume.SetUp failed for volume "cfg" : configmap "nope" not found'
    assert e.value.messages == [
        str(e.value), 'MountVolume.SetUp failed for volume "sec" : secret "nope3" not found']
    await make(admin, ns, "ConfigMap", "nope", data={"k": "v"})
    await make(admin, ns, "Secret", "nope3", data={"k": b64("v")})
    paths = await vm.setup(pod)
    assert (Path(paths["cfg"]) / "k").read_text() == "v"
    # Optional and missing: an empty volume (only the writer's own `..` entries).
    assert [p.name for p in Path(paths["opt"]).iterdir() if not p.name.startswith("..")] == []


async def test_node_cannot_read_what_its_pods_do_not_reference(
        vcluster: Cluster, ns: str, node_client: ApiClient) -> None:
    await make(vcluster.client, ns, "ConfigMap", "private", data={"k": "v"})
    with pytest.raises(errors.Forbidden, match="no relationship found"):
        await node_client.get("configmaps", "private", ns)


async def test_service_account_token_volume(
        vcluster: Cluster, ns: str, node_client: ApiClient, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    admin = vcluster.client
    pod = await make_pod(admin, ns, "api", containers=[
        {"name": "c", "image": "tinykube/busybox:1"}], initContainers=[
        {"name": "init", "image": "tinykube/busybox:1"}])
    spec = pod["spec"]
    [vol] = spec["volumes"]
    assert vol["name"].startswith("kube-api-access-") and len(vol["name"]) == 21
    assert vol["projected"]["sources"][0]["serviceAccountToken"] == {
        "expirationSeconds": 3607, "path": "token"}
    want = {"name": vol["name"], "readOnly": True, "mountPath": SA_PATH}
    assert spec["containers"][0]["volumeMounts"] == [want]
    assert spec["initContainers"][0]["volumeMounts"] == [want]

    vm = volume_manager(node_client, tmp_path)
    paths = await setup_eventually(vm, pod)
    root = Path(paths[vol["name"]])
    assert "kubernetes.io~projected" in str(root)
    assert (root / "ca.crt").read_bytes() == vcluster.ca_pem
    assert (root / "namespace").read_text() == ns
    token = (root / "token").read_text()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["exp"] - claims["iat"] == 3607
    review = await admin.create("tokenreviews", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token}})
    status = review["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == f"system:serviceaccount:{ns}:default"
    assert status["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["api"]
    assert status["user"]["extra"]["authentication.kubernetes.io/pod-uid"] == [
        pod["metadata"]["uid"]]

    # What a process in the pod does with the mount: a working in-cluster client.
    host, _, port = vcluster.token_address.rpartition(":")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    async with ApiClient(config=in_cluster(root=str(root))) as in_pod:
        with pytest.raises(errors.Forbidden, match=f"system:serviceaccount:{ns}:default"):
            await in_pod.list("secrets", ns)  # authenticated (not 401), just not allowed

    # The same token until 80% of its lifetime has passed, then a new one (counted by the
    # TokenRequests the kubelet sends: two in the same second may be byte-identical).
    requests = 0
    create = node_client.create

    async def counting(*args: Any, **kwargs: Any) -> Obj:
        nonlocal requests
        requests += kwargs.get("subresource") == "token"
        return await create(*args, **kwargs)
    monkeypatch.setattr(node_client, "create", counting)
    await vm.setup(pod)
    assert requests == 0 and (root / "token").read_text() == token
    for cached in vm._tokens.values():  # as if 81% of its lifetime had passed
        shift = 0.81 * (cached.expires - cached.issued)
        cached.issued -= shift
        cached.expires -= shift
    await vm.setup(pod)
    assert requests == 1
    await vm.setup(pod)
    assert requests == 1

    # The kubelet asks only for tokens bound to its own pods.
    with pytest.raises(errors.Forbidden):
        await node_client.create("serviceaccounts", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
            ns, name="default", subresource="token")


async def test_no_token_volume_when_automount_is_off(vcluster: Cluster, ns: str) -> None:
    admin = vcluster.client
    pod = await make_pod(admin, ns, "no-token", automountServiceAccountToken=False)
    assert not pod["spec"].get("volumes")
    assert not pod["spec"]["containers"][0].get("volumeMounts")
    await admin.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                           "metadata": {"name": "quiet"},
                                           "automountServiceAccountToken": False}, ns)
    pod = await make_pod(admin, ns, "quiet", serviceAccountName="quiet")
    assert not pod["spec"].get("volumes")
    # The pod's own setting wins over its account's.
    pod = await make_pod(admin, ns, "loud", serviceAccountName="quiet",
                         automountServiceAccountToken=True)
    assert pod["spec"]["volumes"][0]["name"].startswith("kube-api-access-")


async def test_downward_api_host_path_and_empty_dir(
        vcluster: Cluster, ns: str, node_client: ApiClient, tmp_path: Path) -> None:
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "file").write_text("x")
    pod = await make_pod(vcluster.client, ns, "mixed", automountServiceAccountToken=False,
                         volumes=[
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}}]}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "ram", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
        {"name": "h", "hostPath": {"path": str(host_dir), "type": "Directory"}},
        {"name": "made", "hostPath": {"path": str(tmp_path / "made"),
                                      "type": "DirectoryOrCreate"}},
    ])
    vm = volume_manager(node_client, tmp_path)
    paths = await vm.setup(pod)
    info = Path(paths["info"])
    assert "kubernetes.io~downward-api" in str(info)
    assert (info / "labels").read_text() == 'app="mixed"'
    assert (info / "name").read_text() == "mixed"
    assert (info / "uid").read_text() == pod["metadata"]["uid"]
    scratch = Path(paths["scratch"])
    assert scratch.is_dir() and oct(scratch.stat().st_mode & 0o777) == oct(0o777)
    (scratch / "kept").write_text("data")
    await vm.setup(pod)
    assert (scratch / "kept").read_text() == "data"  # setup again keeps an emptyDir's data
    assert paths["h"] == str(host_dir) and (tmp_path / "made").is_dir()
    # medium Memory: a tmpfs when the kubelet may mount one (root with CAP_SYS_ADMIN), else
    # a plain directory (and the manager remembers that mounting failed).
    can_mount = os.geteuid() == 0 and vm._memory_ok is not False
    assert os.path.ismount(paths["ram"]) is can_mount

    bad = await make_pod(vcluster.client, ns, "bad-host", automountServiceAccountToken=False,
                         volumes=[{"name": "h", "hostPath": {"path": str(host_dir / "file"),
                                                             "type": "Directory"}}])
    with pytest.raises(VolumeError) as e:
        await vm.setup(bad)
    assert str(e.value) == (f'MountVolume.SetUp failed for volume "h" : hostPath type check '
                            f'failed: {host_dir / "file"} is not a directory')
    await vm.teardown(pod["metadata"]["uid"])
    assert not os.path.exists(paths["ram"])  # unmounted, then removed
    await vm.teardown(bad["metadata"]["uid"])
    assert vm.pod_dirs() == [] and host_dir.is_dir()  # hostPath contents are the host's


async def test_environment(vcluster: Cluster, ns: str, node_client: ApiClient) -> None:
    admin = vcluster.client
    await make(admin, ns, "ConfigMap", "env-cfg",
               data={"MODE": "prod", "LEVEL": "3", "2nd": "x", "1st": "y"})
    await make(admin, ns, "Secret", "env-sec", data={"TOKEN": b64("t0k")})
    container = {
        "name": "c", "image": "tinykube/busybox:1",
        "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}},
        "envFrom": [{"configMapRef": {"name": "env-cfg"}},
                    {"prefix": "S_", "secretRef": {"name": "env-sec"}},
                    {"configMapRef": {"name": "absent", "optional": True}}],
        "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.labels['app']"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                               "divisor": "1Mi"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu",
                                                               "divisor": "1m"}}},
            {"name": "K_MODE", "valueFrom": {"configMapKeyRef": {"name": "env-cfg",
                                                                 "key": "MODE"}}},
            {"name": "K_TOKEN", "valueFrom": {"secretKeyRef": {"name": "env-sec",
                                                               "key": "TOKEN"}}},
            {"name": "K_OPT", "valueFrom": {"configMapKeyRef": {"name": "env-cfg", "key": "no",
                                                                "optional": True}}},
            {"name": "URL", "value": "http://$(IP):80/$(POD)?$$(POD)&$(UNSET)"},
            {"name": "MODE", "value": "dev-$(MODE)"},
        ]}
    pod = await make_pod(admin, ns, "env", containers=[container])
    warnings: list[str] = []

    async def resolve() -> list[tuple[str, str]] | None:
        try:
            return await container_env(node_client, pod, container, pod_ip="10.1.2.3",
                                       host_ip="192.168.5.5", node_name=NODE,
                                       warnings=warnings)
        except EnvError as e:
            if "no relationship found" in str(e):
                return None
            raise
    env = dict(await until(resolve, timeout=10, what="env"))
    assert env == {
        "MODE": "dev-prod", "LEVEL": "3", "S_TOKEN": "t0k", "POD": "env", "NS": ns,
        "IP": "10.1.2.3", "HOST": "192.168.5.5", "NODE": NODE, "APP": "env", "SA": "default",
        "MEM": "64", "CPU": "250", "K_MODE": "prod", "K_TOKEN": "t0k",
        "URL": "http://10.1.2.3:80/env?$(POD)&$(UNSET)"}
    assert warnings[-1] == (f"Keys [1st, 2nd] from the EnvFrom configMap {ns}/env-cfg were "
                            "skipped since they are considered invalid environment variable "
                            "names.")

    kw: dict[str, Any] = {"pod_ip": "10.1.2.3", "host_ip": "192.168.5.5", "node_name": NODE}
    for i, (ref, message) in enumerate((
            ({"configMapKeyRef": {"name": "env-cfg", "key": "nokey"}},
             f"couldn't find key nokey in ConfigMap {ns}/env-cfg"),
            ({"secretKeyRef": {"name": "env-sec", "key": "nokey"}},
             f"couldn't find key nokey in Secret {ns}/env-sec"),
            ({"configMapKeyRef": {"name": "gone", "key": "k"}}, 'configmap "gone" not found'),
            ({"secretKeyRef": {"name": "gone", "key": "k"}}, 'secret "gone" not found'))):
        c = {"name": "c", "image": "x", "env": [{"name": "X", "valueFrom": ref}]}
        p = await make_pod(admin, ns, f"env-err-{i}", containers=[c])

        async def failure(p: Obj = p, c: Obj = c) -> str | None:
            try:
                await container_env(node_client, p, c, **kw)
            except EnvError as e:
                return None if "no relationship found" in str(e) else str(e)
            raise AssertionError("resolved")
        assert await until(failure, timeout=10, what="env error") == message


async def test_root_ca_publisher_keeps_the_configmap(vcluster: Cluster, ns: str) -> None:
    admin = vcluster.client
    cm = await admin.get("configmaps", "kube-root-ca.crt", ns)
    assert cm["data"] == {"ca.crt": vcluster.ca_pem.decode()}
    assert cm["metadata"]["annotations"]["kubernetes.io/description"].startswith(
        "Contains a CA bundle")
    uid = cm["metadata"]["uid"]

    cm["data"] = {"ca.crt": "tampered", "extra": "x"}
    await admin.update("configmaps", cm)

    async def reset() -> bool:
        now = await admin.get("configmaps", "kube-root-ca.crt", ns)
        return now["data"] == {"ca.crt": vcluster.ca_pem.decode()}
    await until(reset, timeout=20, what="kube-root-ca.crt reset")

    await admin.delete("configmaps", "kube-root-ca.crt", ns)

    async def recreated() -> bool:
        try:
            now = await admin.get("configmaps", "kube-root-ca.crt", ns)
        except errors.NotFound:
            return False
        return bool(now["metadata"]["uid"] != uid and now["data"]["ca.crt"])
    await until(recreated, timeout=20, what="kube-root-ca.crt recreated")
