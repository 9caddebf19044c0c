"""`lab/lab` as a user meets it: mistakes are one clear line naming the flag or verb (exit 2 for
a bad flag, 1 for anything else, never a traceback); `status`, `kubeconfig` and `reset` of the
session's lab do what they say."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from lab.cluster import REPO, STATE_ROOT, Lab

# Every test using the lab runs in one pytest-xdist worker (tests/conftest.py).
pytestmark = pytest.mark.xdist_group("lab")

LAB = str(REPO / "lab" / "lab")


def lab_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TK_LAB_NAME"}
    return subprocess.run([LAB, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def one_line_error(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The error line, checked: exit `code`, no traceback, every word in its last line."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    line = proc.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in line, (word, proc.stderr)
    return line


@pytest.fixture
def missing_lab() -> str:
    name = f"nosuch{uuid.uuid4().hex[:6]}"
    assert not (STATE_ROOT / name).exists()
    return name


# --- mistakes (no lab needed) ------------------------------------------------------------------


def test_workers_must_be_positive() -> None:
    started = time.monotonic()
    proc = lab_cli("up", "--workers", "0")
    one_line_error(proc, 2, "--workers", "'0'")
    # Said before lab/lab installs and builds anything.
    assert time.monotonic() - started < 20


def test_unknown_verb() -> None:
    one_line_error(lab_cli("frobnicate"), 2, "frobnicate", "invalid choice")


def test_bad_lab_name() -> None:
    one_line_error(lab_cli("--name", "BAD_NAME", "status"), 1, "--name", "'BAD_NAME'")


@pytest.mark.parametrize("verb", ["status", "kubeconfig", "reset", "logs"])
def test_verbs_on_a_lab_that_does_not_exist(verb: str, missing_lab: str) -> None:
    args = [verb, "worker-1"] if verb == "logs" else [verb]
    one_line_error(lab_cli("--name", missing_lab, *args), 1, f"no lab named '{missing_lab}'",
                   "lab/lab up")


def test_down_of_a_lab_that_does_not_exist_is_a_no_op(missing_lab: str) -> None:
    # Idempotent like `kind delete cluster`: scripts run `down; up` without checking first.
    proc = lab_cli("--name", missing_lab, "down")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"no lab named '{missing_lab}': nothing to do"
    assert not (STATE_ROOT / missing_lab).exists()


# --- against the session's lab -------------------------------------------------------------------


def test_load_image_of_an_image_that_is_not_here(lab: Lab) -> None:
    one_line_error(lab_cli("--name", lab.name, "load-image", "tinykube/no-such-image:9"), 1,
                   "load-image", "tinykube/no-such-image:9", "no such image")


def test_up_with_another_number_of_workers_on_a_running_lab(lab: Lab) -> None:
    started = time.monotonic()
    proc = lab_cli("--name", lab.name, "up", "--workers", "3")
    one_line_error(proc, 1, "--workers 3", f"lab '{lab.name}' runs with 2 worker(s)",
                   "lab/lab down")
    assert time.monotonic() - started < 20
    assert lab.require_settings().workers == 2


def test_logs_of_a_node_the_lab_does_not_have(lab: Lab) -> None:
    one_line_error(lab_cli("--name", lab.name, "logs", "worker-9"), 1, "worker-9",
                   "etcd, control-plane, worker-1, worker-2")


def test_status_lists_containers_components_nodes_and_timings(lab: Lab) -> None:
    proc = lab_cli("--name", lab.name, "status")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith(f"lab '{lab.name}': 2 worker(s)")
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()
            if line.startswith(f"{lab.name}-") and not line.endswith(":")}
    assert rows == {lab.container(s): "running"
                    for s in ("etcd", "control-plane", "worker-1", "worker-2")}
    for container, components in (("etcd", ["etcd"]),
                                  ("control-plane", ["apiserver", "scheduler",
                                                     "controller-manager"]),
                                  ("worker-1", ["dockerd", "netagent", "kubelet", "proxy"])):
        block = out.split(f"\n{lab.container(container)}:\n", 1)[1].split("\n\n", 1)[0]
        for component in components:
            assert any(line.split()[:2] == [component, "running"]
                       for line in block.splitlines()), (component, block)
    assert "tkctl get nodes -o wide" in out
    assert sum(1 for line in out.splitlines()
               if line.split()[:2] in (["worker-1", "Ready"], ["worker-2", "Ready"])) == 2
    assert "node-monitor-grace-period" in out


def test_kubeconfig_prints_export_lines_that_work(lab: Lab) -> None:
    """`eval "$(lab/lab kubeconfig)"` points kubectl (KUBECONFIG) and tkctl (TINYKUBE_CONFIG)
    at the lab: both list its nodes (kubectl where this machine has one)."""
    proc = lab_cli("--name", lab.name, "kubeconfig")
    assert proc.returncode == 0, proc.stderr
    exports = [line for line in proc.stdout.splitlines() if line.startswith("export ")]
    assert exports == [f"export KUBECONFIG={lab.kubeconfig}",
                       f"export TINYKUBE_CONFIG={lab.kubeconfig}"]
    tkctl = REPO / ".venv" / "bin" / "tkctl"
    env = {k: v for k, v in os.environ.items()
           if k not in ("TINYKUBE_CONFIG", "TINYKUBE_SERVER", "KUBECONFIG")}
    clients = [str(tkctl)]
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        clients.append(kubectl)
    for client in clients:
        shell = subprocess.run(
            ["bash", "-c", f'eval "$({LAB} --name {lab.name} kubeconfig)" && {client} get '
                           "nodes -o json"], capture_output=True, text=True, env=env,
            timeout=60, check=False)
        assert shell.returncode == 0, (client, shell.stderr)
        names = sorted(n["metadata"]["name"] for n in json.loads(shell.stdout)["items"])
        assert names == ["worker-1", "worker-2"], client


def test_reset_leaves_an_empty_cluster_with_ready_nodes(lab: Lab) -> None:
    ns = f"before-reset-{uuid.uuid4().hex[:6]}"
    lab.tkctl("create", "namespace", ns)
    proc = lab_cli("--name", lab.name, "reset", timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lab.tkctl("get", "namespace", ns, check=False).returncode != 0
    namespaces = json.loads(lab.tkctl("get", "namespaces", "-o", "json").stdout)["items"]
    assert not [n["metadata"]["name"] for n in namespaces
                if n["metadata"]["name"] not in ("default", "kube-system", "kube-public",
                                                 "kube-node-lease")]
    nodes = json.loads(lab.tkctl("get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["worker-1", "worker-2"]
    for n in nodes:
        assert any(c["type"] == "Ready" and c["status"] == "True"
                   for c in n["status"]["conditions"]), n["status"]
    pods = json.loads(lab.tkctl("get", "pods", "-A", "-o", "json").stdout)["items"]
    assert pods == []
