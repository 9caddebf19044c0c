"""The lab's pure logic (lab/cluster.py): lab.env parsing, Settings round trip, subnet choice,
lab names, and the generated compose file for more than two workers. No Docker."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab import commands
from lab.cluster import (
    COMPOSE_FILE,
    TIMINGS,
    Lab,
    LabError,
    Settings,
    check_name,
    parse_env_file,
    pick_subnet,
)


def test_parse_env_file_skips_comments_and_blank_lines_and_keeps_equals_in_values() -> None:
    text = "# written by lab/lab up\n\nTK_LAB=h4\n  TK_LAB_SUBNET = 172.29.3 \nX=a=b\nnoequals\n"
    assert parse_env_file(text) == {"TK_LAB": "h4", "TK_LAB_SUBNET": "172.29.3", "X": "a=b"}


def test_settings_round_trip_through_lab_env(tmp_path: Path) -> None:
    lab = Lab("h4", state_root=tmp_path)
    s = Settings("h4", "172.29.7", 40123, 3, grpc_port=40122)
    s.timings["TK_NODE_MONITOR_GRACE"] = "30s"
    lab.write_settings(s)
    text = lab.env_file.read_text()
    assert text.startswith("#")
    assert f"TK_LAB_STATE={tmp_path / 'h4'}" in text
    assert "TK_LAB_API_PORT=40123\n" in text and "TK_LAB_GRPC_PORT=40122\n" in text
    assert lab.settings() == s
    # Every timing goes to docker-compose's environment.
    env = parse_env_file(text)
    assert {k for k, *_ in TIMINGS} <= env.keys()


def test_settings_of_a_missing_or_broken_lab_env(tmp_path: Path) -> None:
    lab = Lab("h4", state_root=tmp_path)
    assert lab.settings() is None
    with pytest.raises(LabError, match="no lab named 'h4'"):
        lab.require_settings()
    lab.state.mkdir()
    lab.env_file.write_text("TK_LAB=h4\nTK_LAB_API_PORT=notanumber\n")
    assert lab.settings() is None


def test_settings_from_an_older_lab_env_take_default_timings() -> None:
    s = Settings.from_env({"TK_LAB": "a", "TK_LAB_SUBNET": "172.29.0", "TK_LAB_API_PORT": "1",
                           "TK_LAB_WORKERS": "2"})
    assert s.timings == {k: v for k, v, *_ in TIMINGS}
    assert s.grpc_port == 0  # from before the gRPC port was published: `up` picks one


def test_compose_publishes_the_https_and_grpc_ports() -> None:
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    cp = doc["services"]["control-plane"]
    assert cp["ports"] == ["127.0.0.1:${TK_LAB_API_PORT}:6443",
                           "127.0.0.1:${TK_LAB_GRPC_PORT}:6442"]
    # The components speak gRPC.
    assert doc["x-node"]["environment"]["APISERVER"] == "${TK_LAB_SUBNET}.10:6442"


def test_port_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = {16442}
    monkeypatch.setattr(commands, "free_port", lambda p: 40000 if p in taken or not p else p)
    assert commands._grpc_port(None, None, 16443) == 40000  # 16442 is taken
    taken.clear()
    assert commands._grpc_port(None, None, 16443) == 16442
    assert commands._grpc_port(17000, None, 16443) == 17000
    old = Settings("h4", "172.29.7", 40123, 2, grpc_port=40122)
    assert commands._grpc_port(None, old, 40123) == 40122
    taken.add(17000)
    with pytest.raises(LabError, match="--grpc-port 17000: the port is taken"):
        commands._grpc_port(17000, None, 16443)
    with pytest.raises(LabError, match="--grpc-port 16443: it is --api-port too"):
        commands._check_ports(16443, 16443)
    commands._check_ports(None, 16443)


def test_pick_subnet_takes_the_first_free_24() -> None:
    assert pick_subnet(set()) == "172.29.0"
    assert pick_subnet({"172.29.0", "172.29.1", "172.29.3"}) == "172.29.2"
    with pytest.raises(LabError, match="no free /24"):
        pick_subnet({f"172.29.{i}" for i in range(256)})


@pytest.mark.parametrize("name", ["tk", "h4b", "a", "tktest-2", "a23456789012345"])
def test_good_lab_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "BAD_NAME", "4lab", "-x", "a_b", "a234567890123456",
                                  "Tk"])
def test_bad_lab_names_name_the_flag(name: str) -> None:
    with pytest.raises(LabError, match="--name"):
        Lab(name)


def test_extra_workers_for_four(tmp_path: Path) -> None:
    lab = Lab("h4", state_root=tmp_path)
    lab.state.mkdir()
    s = Settings("h4", "172.29.9", 40000, 4)
    lab.write_extra_workers(s)
    path = tmp_path / "h4" / "workers.yml"
    doc = yaml.safe_load(path.read_text())
    assert list(doc["services"]) == ["worker-3", "worker-4"]
    for i in (3, 4):
        w = doc["services"][f"worker-{i}"]
        name = f"worker-{i}"
        assert w["container_name"] == f"${{TK_LAB}}-{name}"
        assert w["hostname"] == name
        assert w["environment"]["NODE_NAME"] == name
        assert w["environment"]["NODE_IP"] == f"${{TK_LAB_SUBNET}}.1{i}"
        assert w["networks"]["underlay"]["ipv4_address"] == f"${{TK_LAB_SUBNET}}.1{i}"
        assert w["command"] == ["worker"]
        assert f"${{TK_LAB_STATE}}/nodes/{name}:/etc/tinykube/node:ro" in w["volumes"]
        assert "${TK_LAB_STATE}/images:/lab/images:ro" in w["volumes"]
        assert "/var/lib/docker" in w["volumes"]  # each worker its own image store
        # Nothing of worker-2 is left in the copy.
        assert "worker-2" not in yaml.safe_dump(w)
        assert ".12" not in yaml.safe_dump(w)
    assert lab.compose_files(s)[-1] == str(path)


def test_two_workers_need_no_extra_file(tmp_path: Path) -> None:
    lab = Lab("h4", state_root=tmp_path)
    lab.state.mkdir()
    (lab.state / "workers.yml").write_text("stale")
    s = Settings("h4", "172.29.9", 40000, 2)
    lab.write_extra_workers(s)
    assert not (lab.state / "workers.yml").exists()
    assert len(lab.compose_files(s)) == 2


def test_worker_addresses_and_container_names() -> None:
    lab = Lab("h4")
    assert lab.worker_names(3) == ["worker-1", "worker-2", "worker-3"]
    assert lab.worker_ip("172.29.3", 4) == "172.29.3.14"
    assert lab.container("control-plane") == "h4-control-plane"
