"""`tkctl logs` and `tkctl exec` against a pod run by the real kubelet (tk-kubelet process):
the Node address and port the kubelet reports, its serving certificate, its SubjectAccessReview
of the apiserver's kubelet client identity and its container lookup, end to end."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from harness.cluster import Cluster
from harness.wait import until

pytestmark = [pytest.mark.docker]

ROOT = Path(__file__).resolve().parents[2]


async def tk(cluster: Cluster, ns: str, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TINYKUBE_SERVER": "", "TINYKUBE_CONFIG": ""}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tkctl", "--kubeconfig", cluster.kubeconfig, "-n", ns, *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=env)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_logs_and_exec_through_the_kubelet(kubelet_cluster: Cluster,
                                                 kl_namespace: str) -> None:
    c, ns = kubelet_cluster, kl_namespace
    await c.client.create("pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talk"},
        "spec": {"containers": [
            {"name": "main", "image": "tinykube/busybox:1",
             "command": ["sh", "-c", "echo hello from main; sleep 3600"]},
            {"name": "side", "image": "tinykube/busybox:1",
             "command": ["sh", "-c", "echo side; sleep 3600"]}]}}, ns)

    async def running() -> bool:
        pod = await c.client.get("pods", "talk", ns)
        return (pod.get("status") or {}).get("phase") == "Running"
    await until(running, timeout=90, what="pod talk Running")

    async def logged() -> tuple[int, str, str] | None:
        r = await tk(c, ns, "logs", "talk", "-c", "main")
        return r if r[1] == "hello from main\n" else None
    await until(logged, timeout=30, what="the log of talk/main")
    code, out, err = await tk(c, ns, "logs", "talk")
    assert (code, out, err) == (0, "hello from main\n",
                                'Defaulted container "main" out of: main, side\n')
    code, out, err = await tk(c, ns, "exec", "talk", "-c", "side", "--", "sh", "-c",
                              "cat; echo to-err >&2; exit 7", stdin=b"")
    assert (code, out, err) == (7, "", "to-err\ncommand terminated with exit code 7\n")
    code, out, _ = await tk(c, ns, "exec", "-i", "talk", "-c", "main", "--", "cat",
                            stdin=b"round trip\n")
    assert (code, out) == (0, "round trip\n")
    # The containers share the pod's network namespace: exec sees the pod's own IP.
    pod = await c.client.get("pods", "talk", ns)
    code, out, _ = await tk(c, ns, "exec", "talk", "-c", "side", "--", "ip", "-4", "addr")
    assert code == 0 and pod["status"]["podIP"] in out
