"""subnet.env as the netagent writes it (netagent/subnet.py) and as the CNI plugin reads it
(netagent/ipam.py): the two sides of the node-local hand-off must agree."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from netagent import ipam
from netagent.subnet import SubnetEnv, write_atomic

ENV = SubnetEnv(ipaddress.IPv4Network("10.244.0.0/16"), ipaddress.IPv4Network("10.244.3.0/24"),
                1450, True)


def test_render_is_flannels_format() -> None:
    assert ENV.render() == ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\n"
                            "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
    off = SubnetEnv(ENV.network, ENV.subnet, 1400, False)
    assert "FLANNEL_IPMASQ=false\n" in off.render()


def test_parse_inverts_render() -> None:
    assert SubnetEnv.parse(ENV.render()) == ENV
    assert SubnetEnv.parse("# flannel\n\n" + ENV.render()) == ENV


@pytest.mark.parametrize(("text", "match"), [
    ("FLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\n", "no FLANNEL_NETWORK"),
    ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=x\n", "x"),
    (ENV.render().replace("true", "yes"), "FLANNEL_IPMASQ"),
])
def test_parse_errors_name_the_key(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SubnetEnv.parse(text)


def test_cni_plugin_reads_what_the_agent_writes(tmp_path: Path) -> None:
    path = tmp_path / "subnet.env"
    write_atomic(str(path), ENV.render())
    chosen = ipam.choose_subnet({}, str(path))
    assert str(chosen.range.subnet) == "10.244.3.0/24"
    assert str(chosen.range.gateway) == "10.244.3.1"
    assert chosen.mtu == 1450


def test_write_atomic_creates_dirs_rewrites_only_on_change(tmp_path: Path) -> None:
    path = tmp_path / "run" / "flannel" / "subnet.env"
    assert write_atomic(str(path), "A=1\n")
    inode = os.stat(path).st_ino
    assert not write_atomic(str(path), "A=1\n")
    assert os.stat(path).st_ino == inode  # untouched
    assert write_atomic(str(path), "A=2\n")
    assert path.read_text() == "A=2\n"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == ["subnet.env"]  # no temporary left
