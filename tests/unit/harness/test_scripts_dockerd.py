"""scripts/dockerd's decision to mount a cgroup hierarchy before it starts dockerd: only when
none is mounted (a container or a machine without an init system), never over the one systemd
mounted (cgroup v2 at /sys/fs/cgroup itself, Debian 12's default)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

DOCKERD = Path(__file__).resolve().parents[3] / "scripts" / "dockerd"


@pytest.mark.parametrize(("mounts", "mounted"), [
    ("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0", True),
    ("tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
     "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0", True),
    ("tmpfs /sys/fs/cgroup tmpfs rw 0 0\nnone /sys/fs/cgroup/unified cgroup2 rw 0 0", True),
    ("tmpfs /sys/fs/cgroup tmpfs ro 0 0", False),
    ("sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroupfoo cgroup2 rw 0 0", False),
    ("", False),
])
def test_cgroup_hierarchy_detected(tmp_path: Path, mounts: str, mounted: bool) -> None:
    f = tmp_path / "mounts"
    f.write_text(mounts + "\n")
    rc = subprocess.run([str(DOCKERD), "--cgroup-mounted", str(f)], check=False,
                        capture_output=True).returncode
    assert rc == (0 if mounted else 1)
