"""The CNI plugin's protocol handling without touching the network: config validation, the
spec's error JSON on stdout with exit code 1, VERSION, and `tk-cni install`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from netagent import cni

PLUGIN = [sys.executable, "-m", "netagent.cni"]


def run(command: str, conf: Any, **env: str) -> tuple[int, Any]:
    data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    full = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": "c1",
            "CNI_IFNAME": "eth0", "CNI_PATH": "/nonexistent", **env}
    res = subprocess.run(PLUGIN, input=data, capture_output=True, env=full, check=False)
    return res.returncode, json.loads(res.stdout) if res.stdout.strip() else None


def conf(**kw: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "unit", "type": "tinykube", **kw}


def test_version() -> None:
    rc, out = run("VERSION", b"")
    assert rc == 0
    assert out["cniVersion"] == "1.0.0" and "1.0.0" in out["supportedVersions"]


@pytest.mark.parametrize(("netconf", "code", "msg"), [
    (b"{not json", 6, "decoding the network config from stdin"),
    (conf(cniVersion="9.9.9"), 1, "cniVersion: 9.9.9 is not supported"),
    ({"name": "x"}, 1, "cniVersion: missing"),
    (conf(name=""), 7, "name: missing network name"),
    (conf(bridge="a-bridge-name-too-long"), 7, "bridge: 'a-bridge-name-too-long' is not a valid"),
    (conf(mtu=10), 7, "mtu: 10 is not an MTU"),
    (conf(ipam=[]), 7, "ipam: want an object"),
])
def test_bad_config_gives_error_json(netconf: Any, code: int, msg: str) -> None:
    rc, out = run("ADD", netconf, CNI_NETNS="/proc/self/ns/net")
    assert rc == 1
    assert out["code"] == code and msg in out["msg"], out
    assert "cniVersion" in out


def test_no_subnet_is_an_error_naming_the_sources(tmp_path: Path) -> None:
    rc, out = run("ADD", conf(subnetFile=str(tmp_path / "none.env"),
                              ipam={"dataDir": str(tmp_path)}),
                  CNI_NETNS="/proc/self/ns/net")
    assert rc == 1 and out["code"] == 7
    assert out["msg"].startswith("no pod subnet: ") and "runtimeConfig.ipRanges" in out["msg"]


def test_bad_ipam_subnet_names_the_field(tmp_path: Path) -> None:
    rc, out = run("ADD", conf(subnetFile=str(tmp_path / "none.env"),
                              ipam={"dataDir": str(tmp_path), "subnet": "10.1.2.3"}),
                  CNI_NETNS="/proc/self/ns/net")
    assert rc == 1 and "ipam.subnet: '10.1.2.3'" in out["msg"], out


def test_missing_environment() -> None:
    rc, out = run("ADD", conf(), CNI_CONTAINERID="")
    assert rc == 1 and out["code"] == 4 and "CNI_CONTAINERID" in out["msg"]
    rc, out = run("ADD", conf(), CNI_NETNS="/nonexistent/netns")
    assert rc == 1 and out["code"] == 3 and "/nonexistent/netns does not exist" in out["msg"]
    rc, out = run("BOGUS", conf())
    assert rc == 1 and out["code"] == 4 and "unknown command 'BOGUS'" in out["msg"]


def test_check_needs_prev_result_and_version() -> None:
    rc, out = run("CHECK", conf(cniVersion="0.3.1"), CNI_NETNS="/proc/self/ns/net")
    assert rc == 1 and out["code"] == 1 and "CHECK needs 0.4.0" in out["msg"]
    rc, out = run("CHECK", conf(), CNI_NETNS="/proc/self/ns/net")
    assert rc == 1 and "prevResult: missing" in out["msg"]


def test_del_of_unknown_container_succeeds(tmp_path: Path) -> None:
    rc, out = run("DEL", conf(ipam={"dataDir": str(tmp_path)}), CNI_NETNS="")
    assert (rc, out) == (0, None)


def test_host_veth_name_is_stable_and_short() -> None:
    a = cni.host_veth_name("0123" * 16, "eth0")
    assert a == cni.host_veth_name("0123" * 16, "eth0") and len(a) <= 15
    assert a != cni.host_veth_name("0123" * 16, "eth1")


def test_install(tmp_path: Path) -> None:
    tk_cni = Path(sys.executable).parent / "tk-cni"
    res = subprocess.run([str(tk_cni), "install", "--bin-dir", str(tmp_path / "bin"),
                          "--conf-dir", str(tmp_path / "conf"), "--bridge", "tkbr9",
                          "--subnet-file", "/x/subnet.env", "--data-dir", "/x/data"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    link = tmp_path / "bin" / "tinykube"
    assert link.is_symlink() and os.path.samefile(link, tk_cni)
    doc = json.loads((tmp_path / "conf" / "10-tinykube.conflist").read_text())
    plugin = doc["plugins"][0]
    assert (doc["name"], doc["cniVersion"], plugin["type"]) == ("tinykube", "1.0.0", "tinykube")
    assert plugin["bridge"] == "tkbr9" and plugin["capabilities"] == {"ipRanges": True}
    assert plugin["subnetFile"] == "/x/subnet.env"
    assert plugin["ipam"]["dataDir"] == "/x/data"
    res = subprocess.run([str(tk_cni), "install", "--bin-dir", str(tmp_path / "bin"),
                          "--conf-dir", str(tmp_path / "conf"), "--bridge", "x" * 16],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "--bridge" in res.stderr
