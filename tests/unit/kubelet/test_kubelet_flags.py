"""tk-kubelet's flags: upstream names and defaults, one-line errors with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kubelet.__main__ import parse


def test_defaults() -> None:
    a, _ = parse(["--node-name", "n1"])
    assert a.port == 10250 and a.lease_interval == 10 and a.node_status_update_frequency == 10
    assert (a.crash_loop_backoff_initial, a.crash_loop_backoff_max,
            a.crash_loop_backoff_reset) == (10, 300, 600)
    assert a.pod_infra_container_image == "tinykube/pause:1"
    assert a.root_dir == "/var/lib/tinykube/kubelet" and a.max_pods == 110


def test_durations_and_labels() -> None:
    a, _ = parse(["--node-name", "n1", "--crash-loop-backoff-initial", "1s",
                  "--crash-loop-backoff-max", "8s", "--crash-loop-backoff-reset", "2m",
                  "--node-labels", "a=b,c=d", "--port", "0"])
    assert (a.crash_loop_backoff_initial, a.crash_loop_backoff_max,
            a.crash_loop_backoff_reset) == (1, 8, 120)
    assert a.node_labels == {"a": "b", "c": "d"} and a.port == 0


@pytest.mark.parametrize(("argv", "flag"), [
    ([], "--node-name"),
    (["--node-name", "n", "--lease-interval", "soon"], "--lease-interval"),
    (["--node-name", "n", "--port", "70000"], "--port"),
    (["--node-name", "n", "--node-labels", "novalue"], "--node-labels"),
    (["--node-name", "n", "--crash-loop-backoff-max", "1s"], "--crash-loop-backoff-max"),
    (["--node-name", "n", "--tls-cert-file", "x"], "--tls-cert-file"),
])
def test_bad_flags_one_line_exit_2(argv: list[str], flag: str) -> None:
    r = subprocess.run([sys.executable, "-m", "kubelet", *argv], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("tk-kubelet: error: ") and flag in lines[-1], r.stderr
    assert "Traceback" not in r.stderr
