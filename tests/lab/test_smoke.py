"""Smoke tests of the multi-node lab: what a reader does in the first ten minutes works.

Against the session's lab (the `lab` fixture: two workers, the lab's shortened timings), through
`tkctl` with the lab's admin kubeconfig and `docker` on its containers, as a user would:

- a pod on worker-1 fetches a pod on worker-2 over the VXLAN overlay;
- a NodePort Service answers from this machine on every node's InternalIP;
- `lab/lab load-image` puts a locally built image on the workers (imagePullPolicy Never);
- a node's supervisor restarts a killed tk-kubelet;
- the README's main command, `lab/lab demo`, run again on the running lab, ending with the
  kubectl commands to try;
- LAST (destructive): a stopped worker's Deployment pods are evicted and rescheduled on the
  other worker, then the worker is started again and waited for, so later tests have 2 nodes.

Each test works in a namespace of its own, deleted at the end.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from lab import commands
from lab.cluster import REPO, Lab

# Every test using the lab runs in one pytest-xdist worker (tests/conftest.py).
pytestmark = pytest.mark.xdist_group("lab")

T = TypeVar("T")
POD_TIMEOUT = 120.0  # several labs share two cores: pods may take a while to start
SERVE = "tinykube/serve-hostname:1"
BUSYBOX = "tinykube/busybox:1"


def poll(what: str, check: Callable[[], T | None], timeout: float = POD_TIMEOUT,
         interval: float = 1.0) -> T:
    """`check()`'s first truthy value; fail naming `what` (and the last value) at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def get(lab: Lab, *args: str) -> dict[str, Any]:
    """`tkctl get ... -o json`, parsed; {} when it fails (not there yet)."""
    proc = lab.tkctl("get", *args, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def apply(lab: Lab, tmp: Path, ns: str, *objects: dict[str, Any]) -> None:
    path = tmp / f"manifest-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    lab.tkctl("apply", "-n", ns, "-f", str(path))


def pod(name: str, image: str, node: str, *, labels: dict[str, str] | None = None,
        command: list[str] | None = None, pull: str = "IfNotPresent") -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image, "imagePullPolicy": pull}
    if command:
        container["command"] = command
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                     "terminationGracePeriodSeconds": 1, "containers": [container]}}


def running_pod(lab: Lab, ns: str, name: str) -> dict[str, Any]:
    """The pod once Running and Ready, with its IP."""
    def ready() -> dict[str, Any] | None:
        obj = get(lab, "pod", name, "-n", ns)
        status = obj.get("status") or {}
        conditions = status.get("conditions") or []
        if status.get("phase") == "Running" and status.get("podIP") and any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            return obj
        return None
    return poll(f"pod {ns}/{name} to be Running and Ready", ready)


@pytest.fixture
def ns(lab: Lab) -> Iterator[str]:
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    lab.tkctl("create", "namespace", name)
    yield name
    lab.tkctl("delete", "namespace", name, "--wait=false", check=False)


def test_pods_on_different_workers_talk_over_the_overlay(lab: Lab, ns: str,
                                                         tmp_path: Path) -> None:
    apply(lab, tmp_path, ns,
          pod("server", SERVE, "worker-2"),
          pod("client", BUSYBOX, "worker-1", command=["sleep", "3600"]))
    server = running_pod(lab, ns, "server")
    client = running_pod(lab, ns, "client")
    assert server["spec"]["nodeName"] == "worker-2"
    assert client["spec"]["nodeName"] == "worker-1"
    # Two nodes' pod subnets: the request crosses flannel.1 between the worker containers.
    assert server["status"]["podIP"].rsplit(".", 2)[1] != client["status"]["podIP"].rsplit(
        ".", 2)[1]
    url = f"http://{server['status']['podIP']}:9376/"

    def fetch() -> str | None:
        # busybox's `wget -T` crashes; coreutils' timeout bounds it instead.
        proc = lab.tkctl("exec", "-n", ns, "client", "--", "timeout", "5", "wget", "-qO-", url,
                         check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None
    assert poll(f"client on worker-1 to fetch {url}", fetch, timeout=60) == "server"


def test_nodeport_answers_on_every_node_from_the_host(lab: Lab, ns: str,
                                                      tmp_path: Path) -> None:
    labels = {"app": "smoke-hostnames"}
    pods = [pod(f"hostnames-{i}", SERVE, node, labels=labels)
            for i, node in enumerate(("worker-1", "worker-2"), start=1)]
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hostnames"},
               "spec": {"type": "NodePort", "selector": labels,
                        "ports": [{"port": 80, "targetPort": 9376}]}}
    apply(lab, tmp_path, ns, *pods, service)
    for p in pods:
        running_pod(lab, ns, p["metadata"]["name"])
    node_port = int(get(lab, "service", "hostnames", "-n", ns)["spec"]["ports"][0]["nodePort"])
    names = {p["metadata"]["name"] for p in pods}
    nodes = get(lab, "nodes")["items"]
    assert len(nodes) >= 2
    for node in nodes:
        ip = next(a["address"] for a in node["status"]["addresses"]
                  if a["type"] == "InternalIP")
        seen: set[str] = set()

        def both_answer(ip: str = ip, seen: set[str] = seen) -> bool:
            answer = commands.http_get(ip, node_port, timeout=3)
            if answer in names:
                seen.add(answer)
            return seen == names
        # Random endpoint choice: both pods answer within a few dozen requests once the
        # node's tk-proxy has both endpoints.
        poll(f"both pods to answer on {node['metadata']['name']} {ip}:{node_port}",
             both_answer, timeout=90, interval=0.2)


def test_load_image_then_a_pod_with_pull_policy_never_runs(lab: Lab, ns: str,
                                                           tmp_path: Path) -> None:
    image = "tinykube/smoke:1"
    subprocess.run([lab.docker, "tag", BUSYBOX, image], check=True)
    try:
        proc = subprocess.run([str(REPO / "lab" / "lab"), "--name", lab.name, "load-image",
                               image], capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        for node in ("worker-1", "worker-2"):
            assert lab.exec(node, "docker", "image", "inspect", image,
                            check=False).returncode == 0, f"{image} not on {node}"
        apply(lab, tmp_path, ns,
              pod("loaded", image, "worker-2", command=["sleep", "3600"], pull="Never"))
        obj = running_pod(lab, ns, "loaded")
        assert obj["status"]["containerStatuses"][0]["image"].endswith(image)
    finally:
        subprocess.run([lab.docker, "rmi", image], capture_output=True, check=False)
        for node in ("worker-1", "worker-2"):
            # The pod may still use it: the namespace's deletion removes it, the image stays.
            lab.exec(node, "docker", "rmi", image, check=False)


def _pid(lab: Lab, node: str, component: str) -> str | None:
    out = lab.exec(node, "tk-node", "status", check=False).stdout
    for line in out.splitlines():
        words = line.split()
        if words[:2] == [component, "running"]:
            return words[-1].rstrip(")")
    return None


def test_a_killed_kubelet_is_restarted_by_the_nodes_supervisor(lab: Lab) -> None:
    before = _pid(lab, "worker-1", "kubelet")
    assert before, lab.exec("worker-1", "tk-node", "status").stdout
    lab.exec("worker-1", "pkill", "-9", "-f", "tk-kubelet")
    after = poll("the supervisor to restart tk-kubelet on worker-1",
                 lambda: (p := _pid(lab, "worker-1", "kubelet")) != before and p, timeout=15,
                 interval=0.5)
    assert after != before
    s = lab.require_settings()
    commands.wait_ready(lab, s, timeout=120)


def lab_cli(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "lab" / "lab"), "--name", lab.name, *args],
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_main_command_demo_on_a_running_lab(lab: Lab) -> None:
    """The README's first command, `lab/lab demo`, run again on a lab that is up (it must be
    idempotent): hostnames pods on both workers, and every request to the NodePort on every
    worker, from this machine, answered by one of them."""
    r = lab_cli(lab, "demo")
    try:
        assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
        answers = [line.rsplit("-> ", 1)[1] for line in r.stdout.splitlines()
                   if f":{commands.DEMO_NODEPORT}" in line and "-> " in line]
        assert len(answers) == 12, r.stdout  # 6 requests to each of the 2 workers
        assert all(a.startswith("hostnames-") for a in answers), answers
        assert len(set(answers)) >= 2, f"one pod answered everything: {answers}"
        listed = get(lab, "pods", "-l", "app=hostnames").get("items") or []
        assert {p["spec"]["nodeName"] for p in listed} == {"worker-1", "worker-2"}
        assert set(answers) <= {p["metadata"]["name"] for p in listed}
        # It ends with the kubectl commands to try.
        assert r.stdout.rstrip().endswith(commands.demo_epilogue(lab)), r.stdout[-2000:]
        assert "kubectl exec -it deployment/hostnames -- sh" in r.stdout
    finally:
        lab.tkctl("delete", "deployment,service", "hostnames", "--ignore-not-found",
                  check=False, timeout=120)


# LAST: it stops a worker. It starts it again and waits until it is Ready before it ends.
@pytest.mark.timeout(900)
def test_a_stopped_workers_pods_are_rescheduled_on_the_other(lab: Lab, ns: str,
                                                            tmp_path: Path) -> None:
    s = lab.require_settings()
    labels = {"app": "smoke-evict"}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "evict"},
        "spec": {"replicas": 4, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"terminationGracePeriodSeconds": 1,
                                       "containers": [{"name": "main", "image": SERVE}]}}}}
    apply(lab, tmp_path, ns, deployment)

    def pods() -> list[dict[str, Any]]:
        return list(get(lab, "pods", "-n", ns, "-l", "app=smoke-evict").get("items") or [])

    def running_on(p: dict[str, Any]) -> str | None:
        if (p.get("status") or {}).get("phase") != "Running" or \
                p["metadata"].get("deletionTimestamp"):
            return None
        return str(p["spec"].get("nodeName"))

    def spread() -> list[dict[str, Any]] | None:
        ps = pods()
        on = [running_on(p) for p in ps]
        return ps if len(ps) == 4 and all(on) and "worker-2" in on else None
    before = poll("4 Running replicas, some on worker-2", spread)
    on_worker_2 = {p["metadata"]["name"] for p in before if running_on(p) == "worker-2"}

    container = lab.container("worker-2")
    try:
        started = time.monotonic()
        subprocess.run([lab.docker, "stop", container], check=True, capture_output=True,
                       timeout=60)
        assert time.monotonic() - started < 15, "docker stop of a worker should take seconds"

        # What lab/lab says about a lab with a stopped worker.
        status = lab_cli(lab, "status")
        assert status.returncode == 0, status.stderr
        assert any(line.split()[:2] == [container, "exited"]
                   for line in status.stdout.splitlines()), status.stdout
        assert f"not running: {container}" in status.stdout
        loaded = lab_cli(lab, "load-image", BUSYBOX)
        assert loaded.returncode == 1 and "Traceback" not in loaded.stderr
        assert f"not loaded into worker-2 ({container})" in loaded.stderr.strip().splitlines()[-1]

        def rescheduled() -> bool:
            ps = [p for p in pods() if running_on(p)]
            return (len(ps) == 4 and all(running_on(p) == "worker-1" for p in ps)
                    and not on_worker_2 & {p["metadata"]["name"] for p in ps})
        # grace 20s (NotReady/Unknown) + toleration 30s (eviction) + new pods starting.
        poll("worker-2's pods to be evicted and all 4 replicas Running on worker-1",
             rescheduled, timeout=20 + 30 + POD_TIMEOUT, interval=2)
        node = get(lab, "node", "worker-2")
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] != "True"
        assert any(t["key"] == "node.kubernetes.io/unreachable"
                   for t in node["spec"].get("taints") or [])
    finally:
        subprocess.run([lab.docker, "start", container], check=True, capture_output=True,
                       timeout=60)
        commands.wait_ready(lab, s, timeout=180)
    # The node lifecycle controller lifts its taints once the Ready heartbeats are back.
    poll("worker-2's not-ready/unreachable taints to be lifted",
         lambda: not any(t["key"].startswith("node.kubernetes.io/")
                         for t in get(lab, "node", "worker-2")["spec"].get("taints") or []),
         timeout=60)
