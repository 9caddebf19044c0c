"""The kubelet's CNI driver (kubelet/cni.py) with the real plugin and real network namespaces:
config discovery and reload, ADD/DEL through exec, runtimeConfig and prevResult chaining, the
result cache that survives a kubelet restart, errors surfacing as CNIError."""

from __future__ import annotations

import itertools
import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelet.cni import CNI, NOT_READY, CNIError
from netagent import cni as plugin

TK_CNI = str(Path(sys.executable).parent / "tk-cni")
_counter = itertools.count()
POD = {"metadata": {"name": "p", "namespace": "ns1", "uid": "u-1"}}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.tmp = tmp
        self.bin, self.conf, self.cache = tmp / "bin", tmp / "net.d", tmp / "cache"
        self.bin.mkdir()
        self.conf.mkdir()
        self.bridge = f"tkk{self.tag}"
        # 10.197.0.0/16 is this module's (test_cni_plugin.py has 10.198 and 10.199); each
        # xdist worker has its own hundred /24s and runs its tests one after another.
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or "0"
        self.subnet = f"10.197.{20 + int(worker) % 2 * 100 + next(_counter) % 100}.0/24"
        self.namespaces: list[str] = []

    def install(self) -> None:
        subprocess.run([TK_CNI, "install", "--bin-dir", str(self.bin), "--conf-dir",
                        str(self.conf), "--bridge", self.bridge, "--subnet-file",
                        str(self.tmp / "subnet.env"), "--data-dir", str(self.tmp / "ipam")],
                       check=True, capture_output=True)

    def netns(self) -> str:
        name = f"tkk-{self.tag}-{len(self.namespaces)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.namespaces.append(name)
        return f"/run/netns/{name}"

    def cni(self) -> CNI:
        return CNI(str(self.conf), [str(self.tmp / "nothing"), str(self.bin)], str(self.cache),
                   timeout=20)

    def held(self) -> list[str]:
        d = self.tmp / "ipam" / "tinykube"
        return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.exists() else []


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        for name in e.namespaces:
            subprocess.run(["ip", "netns", "del", name], check=False)
        subprocess.run(["ip", "link", "del", e.bridge], capture_output=True, check=False)
        for rule in plugin.forward_rules(e.bridge):
            subprocess.run(["iptables", "-w", "-D", *rule], capture_output=True, check=False)


async def test_add_delete_with_cache_across_restart(env: Env) -> None:
    cni = env.cni()
    assert cni.not_ready_reason() == NOT_READY
    with pytest.raises(CNIError, match="cni config uninitialized"):
        await cni.add("c" * 64, env.netns(), POD, env.subnet)
    env.install()
    assert cni.not_ready_reason() is None  # the new file is noticed
    netns = env.netns()
    cid = "a" * 64
    pod_ip = await cni.add(cid, netns, POD, env.subnet)
    assert pod_ip.startswith(env.subnet.rsplit(".", 2)[0] + ".")
    assert env.held() == [pod_ip]
    assert cni.cached_ip(cid) == pod_ip
    cached = json.loads((env.cache / "results" / f"tinykube-{cid}-eth0").read_text())
    assert cached["kind"] == "cniCacheV1" and cached["networkName"] == "tinykube"
    assert cached["capabilityArgs"] == {"ipRanges": [[{"subnet": env.subnet}]]}
    await cni.check(cid, netns, POD)

    # A restarted kubelet, and the config is gone meanwhile: DEL still works from the cache.
    (env.conf / plugin.CONFLIST_NAME).unlink()
    again = env.cni()
    assert again.not_ready_reason() == NOT_READY
    assert again.cached_ip(cid) == pod_ip
    await again.delete(cid, netns, POD)
    assert env.held() == []
    assert not Path(f"/sys/class/net/{plugin.host_veth_name(cid, 'eth0')}").exists()
    assert again.cached_ip(cid) is None
    await again.delete(cid, netns, POD)  # idempotent, even with no config at all
    await again.delete(cid, None, POD)


async def test_plugin_errors_surface(env: Env) -> None:
    env.install()
    cni = env.cni()
    with pytest.raises(CNIError, match=r'plugin type="tinykube" name="tinykube" failed '
                                       r"\(add\): no pod subnet") as e:
        await cni.add("b" * 64, env.netns(), POD, None)
    assert e.value.code == 7
    assert env.held() == []
    (env.bin / "tinykube").unlink()
    with pytest.raises(CNIError, match='failed to find plugin "tinykube" in path'):
        await cni.add("b" * 64, env.netns(), POD, env.subnet)


RECORDER = """#!/bin/sh
# A second plugin in the chain: records what it was given, returns its prevResult.
cat > "$(dirname "$0")/recorded-$CNI_COMMAND.json"
env | grep '^CNI_' | sort > "$(dirname "$0")/env-$CNI_COMMAND.txt"
if [ "$CNI_COMMAND" = ADD ]; then
  python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["prevResult"]))' \
    "$(dirname "$0")/recorded-ADD.json"
fi
"""


async def test_chaining_and_runtime_config(env: Env) -> None:
    env.install()
    recorder = env.bin / "recorder"
    recorder.write_text(RECORDER)
    recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    doc: dict[str, Any] = json.loads((env.conf / plugin.CONFLIST_NAME).read_text())
    doc["plugins"].append({"type": "recorder", "someSetting": 1})
    # a lexicographically earlier file wins; a broken one is skipped
    (env.conf / "00-broken.conf").write_text("{not json")
    (env.conf / "05-chain.conflist").write_text(json.dumps(doc))
    cni = env.cni()
    netns = env.netns()
    cid = "d" * 64
    pod_ip = await cni.add(cid, netns, POD, env.subnet)
    got = json.loads((env.bin / "recorded-ADD.json").read_text())
    assert got["name"] == "tinykube" and got["cniVersion"] == "1.0.0"
    assert got["someSetting"] == 1
    assert "runtimeConfig" not in got  # the recorder declares no capabilities
    assert got["prevResult"]["ips"][0]["address"].split("/")[0] == pod_ip
    env_lines = (env.bin / "env-ADD.txt").read_text().splitlines()
    assert f"CNI_CONTAINERID={cid}" in env_lines and f"CNI_NETNS={netns}" in env_lines
    assert "CNI_IFNAME=eth0" in env_lines
    assert ("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=p;"
            f"K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID=u-1") in env_lines
    await cni.delete(cid, netns, POD)
    deleted = json.loads((env.bin / "recorded-DEL.json").read_text())
    assert deleted["prevResult"]["ips"][0]["address"].split("/")[0] == pod_ip
    assert env.held() == []
