"""The parts of kubelet/volumes.py that need no apiserver: the AtomicWriter layout, payloads,
hostPath type checks, subPath containment and the managed /etc/hosts (real files in tmp_path)."""

from __future__ import annotations

import base64
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from apiserver.admission import (
    SERVICE_ACCOUNT_MOUNT_PATH,
    mount_service_account_token,
    should_automount,
)
from kubelet.runtime import Mount
from kubelet.volumes import (
    DATA_DIR,
    FileProjection,
    VolumeError,
    VolumeManager,
    _SourceError,
    check_host_path,
    configmap_payload,
    downward_payload,
    managed_hosts,
    secret_payload,
    write_atomic,
)


def fp(text: str, mode: int = 0o644) -> FileProjection:
    return FileProjection(text.encode(), mode)


def test_atomic_writer_layout_and_update(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert write_atomic(target, {"a": fp("1"), "dir/b": fp("2", 0o600)})
    data = os.readlink(target / DATA_DIR)
    assert data.startswith("..") and (target / data).is_dir()
    assert os.readlink(target / "a") == "..data/a"
    assert os.readlink(target / "dir") == "..data/dir"
    assert (target / "a").read_text() == "1"
    assert (target / "dir" / "b").read_text() == "2"
    assert stat.S_IMODE((target / "dir" / "b").stat().st_mode) == 0o600

    # Unchanged payload: nothing rewritten, same timestamped directory.
    assert not write_atomic(target, {"a": fp("1"), "dir/b": fp("2", 0o600)})
    assert os.readlink(target / DATA_DIR) == data

    # Changed: a new directory behind ..data, the old one gone, a dropped key's link gone.
    assert write_atomic(target, {"a": fp("one"), "c": fp("3")})
    new = os.readlink(target / DATA_DIR)
    assert new != data and not (target / data).exists()
    assert (target / "a").read_text() == "one"
    assert not os.path.lexists(target / "dir")
    assert sorted(p.name for p in target.iterdir()) == sorted(["..data", new, "a", "c"])


@pytest.mark.parametrize("bad", ["/abs", "../x", "a/../b", "..hidden", ""])
def test_atomic_writer_refuses_bad_paths(tmp_path: Path, bad: str) -> None:
    with pytest.raises(_SourceError, match="invalid path"):
        write_atomic(tmp_path / "v", {bad: fp("x")})


def test_configmap_and_secret_payloads() -> None:
    cm = {"data": {"a": "1", "b": "2"}, "binaryData": {"bin": base64.b64encode(b"\0\1").decode()}}
    assert configmap_payload(None, cm, 0o644, False) == {
        "a": fp("1"), "b": fp("2"), "bin": FileProjection(b"\0\1", 0o644)}
    items: list[dict[str, Any]] = [{"key": "a", "path": "x/a.txt", "mode": 0o400},
                                   {"key": "b", "path": "b"}]
    assert configmap_payload(items, cm, 0o640, False) == {
        "x/a.txt": fp("1", 0o400), "b": fp("2", 0o640)}
    with pytest.raises(_SourceError, match="configmap references non-existent config key: z"):
        configmap_payload([{"key": "z", "path": "z"}], cm, 0o644, False)
    assert configmap_payload([{"key": "z", "path": "z"}], cm, 0o644, True) == {}
    secret = {"data": {"pw": base64.b64encode(b"hunter2").decode()}}
    assert secret_payload(None, secret, 0o644, False) == {"pw": fp("hunter2")}
    with pytest.raises(_SourceError, match="references non-existent secret key: nope"):
        secret_payload([{"key": "nope", "path": "n"}], secret, 0o644, False)


def test_downward_payload() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"a": "b"}},
           "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "1Mi"}}}]}}
    items: list[dict[str, Any]] = [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}, "mode": 0o600},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory"}}]
    assert downward_payload(items, pod, 0o644) == {
        "name": fp("p"), "labels": fp('a="b"', 0o600), "mem": fp(str(1024 * 1024))}


def test_host_path_types(tmp_path: Path) -> None:
    d, f = tmp_path / "d", tmp_path / "f"
    d.mkdir()
    f.write_text("x")
    check_host_path(str(d), "Directory")
    check_host_path(str(f), "File")
    check_host_path(str(tmp_path / "nothing"), "")  # no type: no check
    with pytest.raises(_SourceError, match=f"hostPath type check failed: {f} is not a directory"):
        check_host_path(str(f), "Directory")
    with pytest.raises(_SourceError, match=f"hostPath type check failed: {d} is not a file"):
        check_host_path(str(d), "File")
    missing = tmp_path / "missing"
    with pytest.raises(_SourceError, match=f"{missing} is not a directory"):
        check_host_path(str(missing), "Directory")
    with pytest.raises(_SourceError, match=f"{missing} does not exist"):
        check_host_path(str(missing), "File")
    with pytest.raises(_SourceError, match=f"{f} is not a socket file"):
        check_host_path(str(f), "Socket")
    with pytest.raises(_SourceError, match="Weird is an invalid volume type"):
        check_host_path(str(f), "Weird")
    check_host_path(str(tmp_path / "new" / "dir"), "DirectoryOrCreate")
    assert (tmp_path / "new" / "dir").is_dir()
    check_host_path(str(tmp_path / "newfile"), "FileOrCreate")
    assert (tmp_path / "newfile").is_file()
    with pytest.raises(_SourceError, match="is not a directory"):
        check_host_path(str(f), "DirectoryOrCreate")
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        check_host_path(str(sock_path), "Socket")
    check_host_path("/dev/null", "CharDevice")


def test_managed_hosts_file() -> None:
    text = managed_hosts(["10.1.0.7"], "web-0", "", [{"ip": "1.2.3.4",
                                                      "hostnames": ["a", "b"]}]).decode()
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert "10.1.0.7\tweb-0\n" in text
    assert text.endswith("\n# Entries added by HostAliases.\n1.2.3.4\ta\tb\n")
    with_domain = managed_hosts(["10.1.0.7"], "w", "sub.ns.svc.cluster.local", None).decode()
    assert "10.1.0.7\tw.sub.ns.svc.cluster.local\tw\n" in with_domain


def _pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "uid-1"},
            "spec": {"containers": [{"name": "c"}], **spec}}


def test_mounts_sub_path_read_only_and_etc_hosts(tmp_path: Path) -> None:
    vm = VolumeManager(None, tmp_path, "n1")  # type: ignore[arg-type]  # no API calls here
    vol = tmp_path / "pods" / "uid-1" / "volumes" / "kubernetes.io~empty-dir" / "data"
    vol.mkdir(parents=True)
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    pod = _pod(volumes=[{"name": "data", "emptyDir": {}},
                        {"name": "cfg", "configMap": {"name": "x"}}])
    container = {"name": "c", "volumeMounts": [
        {"name": "data", "mountPath": "/data"},
        {"name": "data", "mountPath": "/logs", "subPath": "logs/app", "readOnly": True},
        {"name": "cfg", "mountPath": "/etc/cfg"}]}
    paths = {"data": str(vol), "cfg": str(cfg)}
    # No pod IP yet: no /etc/hosts (upstream mounts it only once the sandbox has an IP).
    assert vm.mounts(pod, container, paths) == [
        Mount(str(vol), "/data", False), Mount(str(vol / "logs" / "app"), "/logs", True),
        Mount(str(cfg), "/etc/cfg", True)]
    assert (vol / "logs" / "app").is_dir()
    pod["status"] = {"podIP": "10.9.0.3"}
    mounts = vm.mounts(pod, container, paths)
    hosts = tmp_path / "pods" / "uid-1" / "etc-hosts"
    assert mounts[-1] == Mount(str(hosts), "/etc/hosts", False)
    assert "10.9.0.3\tp\n" in hosts.read_text()
    # A container that mounts its own /etc/hosts keeps it.
    own = {"name": "c", "volumeMounts": [{"name": "data", "mountPath": "/etc/hosts",
                                          "subPath": "hosts"}]}
    assert [m.container_path for m in vm.mounts(pod, own, paths)] == ["/etc/hosts"]


def test_host_network_pods_get_the_node_hosts_file(tmp_path: Path) -> None:
    node_hosts = tmp_path / "node-hosts"
    node_hosts.write_text("127.0.0.1 localhost\n192.168.0.9 node1\n")
    vm = VolumeManager(None, tmp_path, "n1", node_hosts_file=str(node_hosts))  # type: ignore[arg-type]
    pod = _pod(hostNetwork=True)
    pod["status"] = {"podIP": "192.168.0.9"}
    [m] = vm.mounts(pod, {"name": "c"}, {})
    assert Path(m.host_path).read_text() == (
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
        "192.168.0.9 node1\n")


def test_sub_path_may_not_escape_its_volume(tmp_path: Path) -> None:
    vm = VolumeManager(None, tmp_path, "n1")  # type: ignore[arg-type]
    vol = tmp_path / "vol"
    vol.mkdir()
    os.symlink("/etc", vol / "evil")
    pod = _pod(volumes=[{"name": "v", "emptyDir": {}}])
    with pytest.raises(VolumeError, match="not within volume path"):
        vm.mounts(pod, {"name": "c", "volumeMounts": [
            {"name": "v", "mountPath": "/x", "subPath": "evil"}]}, {"v": str(vol)})
    with pytest.raises(VolumeError, match='cannot find volume "nope" to mount into '
                                          'container "c"'):
        vm.mounts(pod, {"name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]},
                  {"v": str(vol)})


def test_service_account_token_mount() -> None:
    spec: dict[str, Any] = {
        "initContainers": [{"name": "i"}],
        "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [
            {"name": "mine", "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}]}],
        "volumes": [{"name": "mine", "emptyDir": {}}]}
    mount_service_account_token(spec)
    [vol] = [v for v in spec["volumes"] if v["name"] != "mine"]
    name = vol["name"]
    assert name.startswith("kube-api-access-") and len(name) == len("kube-api-access-") + 5
    assert vol["projected"]["defaultMode"] == 420
    sources = vol["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    want = {"name": name, "readOnly": True, "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}
    assert spec["initContainers"][0]["volumeMounts"] == [want]
    assert spec["containers"][0]["volumeMounts"] == [want]
    assert len(spec["containers"][1]["volumeMounts"]) == 1  # its own mount there wins
    mount_service_account_token(spec)  # idempotent: the existing volume is reused
    assert len(spec["volumes"]) == 2 and spec["containers"][0]["volumeMounts"] == [want]


def test_should_automount() -> None:
    assert should_automount({}, None)
    assert not should_automount({}, {"automountServiceAccountToken": False})
    assert should_automount({"automountServiceAccountToken": True},
                            {"automountServiceAccountToken": False})
    assert not should_automount({"automountServiceAccountToken": False}, None)
