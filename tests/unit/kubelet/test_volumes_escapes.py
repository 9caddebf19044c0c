"""A container must not reach the host's files through what it writes into its volumes: a
subPath through a symlink it planted is refused before anything is created on the host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubelet.volumes import VolumeError, _sub_path


def test_sub_path_through_a_planted_symlink_creates_nothing_outside(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    host = tmp_path / "host-etc"
    volume.mkdir()
    host.mkdir()
    os.symlink(host, volume / "link")  # what a container can do in its emptyDir
    with pytest.raises(VolumeError, match="not within volume path"):
        _sub_path(str(volume), "link/created-by-kubelet", "data")
    assert not (host / "created-by-kubelet").exists()


def test_sub_path_inside_the_volume_is_created(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    os.symlink("real", volume / "alias")  # a relative link that stays inside is fine
    (volume / "real").mkdir()
    assert _sub_path(str(volume), "a/b", "data") == str(volume / "a" / "b")
    assert (volume / "a" / "b").is_dir()
    assert _sub_path(str(volume), "alias/c", "data") == str(volume / "real" / "c")
    with pytest.raises(VolumeError, match="without '..'"):
        _sub_path(str(volume), "../x", "data")
