"""Pods on the real kubelet: real Docker containers, real CNI network, real status and events.

Every test runs on the shared `kubelet_cluster` (etcd, apiserver, scheduler, controller-manager
and one real kubelet per test process) in its own namespace; pods are bound by the scheduler.
What the kubelet did is checked where it happened: the pod's status and events in the API, the
containers in Docker (found by their pod-uid label), the network on the host (the pod's IP
answers, the IPAM store and the bridge's ports after a delete), files the containers wrote.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from harness.cluster import Cluster, Component
from harness.docker import docker_client
from harness.objects import condition
from harness.wait import gone, until
from kubelet.sync import parse_time

pytestmark = [pytest.mark.docker]

BUSYBOX = "tinykube/busybox:1"
SERVE_HOSTNAME = "tinykube/serve-hostname:1"
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def dk() -> Iterator[docker.DockerClient]:
    c = docker_client()
    yield c
    c.close()


def busybox(name: str, script: str, **extra: Any) -> Obj:
    return {"name": name, "image": BUSYBOX, "command": ["sh", "-c", script], **extra}


def pod_manifest(name: str, containers: list[Obj], **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": containers, "terminationGracePeriodSeconds": 2, **spec}}


async def create(c: Cluster, ns: str, pod: Obj) -> Obj:
    return await c.client.create("pods", pod, ns)


async def get(c: Cluster, ns: str, name: str) -> Obj:
    return await c.client.get("pods", name, ns)


async def wait_pod(c: Cluster, ns: str, name: str, check: Any, timeout: float = 60.0,
                   what: str = "") -> Obj:
    """Poll the pod until `check(pod)` is truthy; returns the pod."""
    async def probe() -> Obj | None:
        p = await get(c, ns, name)
        return p if check(p) else None
    return await until(probe, timeout=timeout, interval=0.2, what=what or f"pod {name}")


def running_ready(p: Obj) -> bool:
    return (p.get("status") or {}).get("phase") == "Running" and \
        condition(p, "Ready").get("status") == "True"


def cstatus(p: Obj, name: str) -> Obj:
    for s in (p.get("status") or {}).get("containerStatuses") or []:
        if s["name"] == name:
            return dict(s)
    return {}


def cid(p: Obj, name: str) -> str:
    return str(cstatus(p, name).get("containerID", "")).removeprefix("docker://")


async def events(c: Cluster, ns: str, name: str, reason: str | None = None,
                 want: Callable[[list[Obj]], bool] = bool) -> list[Obj]:
    """The pod's events (of a reason), once `want` holds for them (by default: there are
    some): the kubelet's recorder writes an event after the action it reports."""
    async def matching() -> list[Obj] | None:
        items, _ = await c.client.list_all("events", ns)
        evs = [e for e in items if e["involvedObject"].get("name") == name
               and (reason is None or e.get("reason") == reason)]
        return evs if want(evs) else None
    return await until(matching, timeout=30, what=f"events {reason or ''} of {name}")


def pod_containers(dk: docker.DockerClient, uid: str) -> list[Obj]:
    return list(dk.api.containers(all=True, filters={"label": f"io.kubernetes.pod.uid={uid}"}))


def logs(dk: docker.DockerClient, container_id: str) -> str:
    return bytes(dk.api.logs(container_id)).decode(errors="replace")


def docker_exec(dk: docker.DockerClient, container_id: str, *cmd: str) -> int:
    ex = dk.api.exec_create(container_id, list(cmd))
    dk.api.exec_start(ex["Id"])
    return int(dk.api.exec_inspect(ex["Id"])["ExitCode"])


def node_name(c: Cluster) -> str:
    return next(iter(c._kubelets))


def kubelet_component(c: Cluster) -> Component:
    return next(comp for comp in c.components if comp.name.startswith("kubelet-"))


# --- running ------------------------------------------------------------------------------

async def test_pod_runs_with_ip_in_pod_cidr_and_ready(kubelet_cluster: Cluster,
                                                      kl_namespace: str,
                                                      dk: docker.DockerClient) -> None:
    c, ns = kubelet_cluster, kl_namespace
    await create(c, ns, pod_manifest("web", [{"name": "web", "image": SERVE_HOSTNAME}]))
    p = await wait_pod(c, ns, "web", running_ready, what="web Running and Ready")
    node = await c.client.get("nodes", p["spec"]["nodeName"])
    cidr = ipaddress.ip_network(node["spec"]["podCIDR"])
    st = p["status"]
    assert ipaddress.ip_address(st["podIP"]) in cidr
    assert st["podIPs"] == [{"ip": st["podIP"]}]
    assert st["hostIP"] == "127.0.0.1" and st["startTime"]
    assert [cond["type"] for cond in st["conditions"]][:5] == [
        "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    s = cstatus(p, "web")
    assert s["ready"] and s["started"] and s["restartCount"] == 0
    assert s["state"]["running"]["startedAt"]
    assert s["imageID"].startswith("docker://sha256:")
    assert s["containerID"].startswith("docker://") and s["image"] == SERVE_HOSTNAME
    # The container is in Docker with the pod's labels, joined to a pause sandbox.
    cs = pod_containers(dk, p["metadata"]["uid"])
    kinds = sorted(x["Labels"]["io.kubernetes.docker.type"] for x in cs)
    assert kinds == ["container", "podsandbox"]
    # The pod's IP answers from the host through the bridge.
    def fetch() -> str:
        with socket.create_connection((st["podIP"], 9376), timeout=2) as s_:
            s_.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s_.recv(4096):
                data += chunk
            return data.decode(errors="replace")
    assert "web" in await asyncio.to_thread(fetch)
    reasons = {e["reason"] for e in await events(
        c, ns, "web", want=lambda evs: {"Scheduled", "Created", "Started"} <= {
            e["reason"] for e in evs})}
    assert {"Scheduled", "Created", "Started"} <= reasons
    started = await events(c, ns, "web", "Started")
    assert started[0]["message"] == "Started container web"
    assert started[0]["involvedObject"]["fieldPath"] == "spec.containers{web}"
    assert started[0]["source"] == {"component": "kubelet", "host": node_name(c)}


async def test_containers_of_a_pod_share_localhost(kubelet_cluster: Cluster, kl_namespace: str,
                                                   dk: docker.DockerClient) -> None:
    c, ns = kubelet_cluster, kl_namespace
    await create(c, ns, pod_manifest("duo", [
        {"name": "server", "image": SERVE_HOSTNAME},
        busybox("client", "while true; do wget -q -O - http://127.0.0.1:9376 && echo; "
                          "sleep 0.3; done"),
    ]))
    p = await wait_pod(c, ns, "duo", running_ready)
    client_id = cid(p, "client")
    # serve-hostname answers the pod's hostname: the pod name.
    await until(lambda: "duo" in logs(dk, client_id), timeout=20, what="client reached server")


# --- restart policies -----------------------------------------------------------------------

async def test_never_exit_3_fails(kubelet_cluster: Cluster, kl_namespace: str) -> None:
    c, ns = kubelet_cluster, kl_namespace
    await create(c, ns, pod_manifest("once", [busybox("c", "exit 3")], restartPolicy="Never"))
    p = await wait_pod(c, ns, "once", lambda p: p["status"].get("phase") == "Failed")
    term = cstatus(p, "c")["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert term["containerID"].startswith("docker://") and term["finishedAt"]
    assert cstatus(p, "c")["restartCount"] == 0
    assert condition(p, "Ready")["reason"] == "PodFailed"


async def test_onfailure_exit_0_succeeds(kubelet_cluster: Cluster, kl_namespace: str) -> None:
    c, ns = kubelet_cluster, kl_namespace
    await create(c, ns, pod_manifest("job", [busybox("c", "echo hi")], restartPolicy="OnFailure"))
    p = await wait_pod(c, ns, "job", lambda p: p["status"].get("phase") == "Succeeded")
    term = cstatus(p, "c")["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert condition(p, "Ready")["reason"] == "PodCompleted"


async def test_onfailure_restarts_until_success(kubelet_cluster: Cluster, kl_namespace: str,
                                                tmp_path: Path) -> None:
    c, ns = kubelet_cluster, kl_namespace
    # Fails the first time, succeeds the second (a counter on a hostPath survives restarts).
    script = "n=$(cat /d/n 2>/dev/null || echo 0); echo $((n+1)) > /d/n; [ $n -ge 1 ]"
    await create(c, ns, pod_manifest(
        "retry", [busybox("c", script, volumeMounts=[{"name": "d", "mountPath": "/d"}])],
        restartPolicy="OnFailure",
        volumes=[{"name": "d", "hostPath": {"path": str(tmp_path)}}]))
    p = await wait_pod(c, ns, "retry", lambda p: p["status"].get("phase") == "Succeeded")
    s = cstatus(p, "c")
    assert s["restartCount"] == 1
    assert s["lastState"]["terminated"]["exitCode"] == 1


async def test_always_restarts_with_growing_count_and_crash_loop_backoff(
        kubelet_cluster: Cluster, kl_namespace: str, dk: docker.DockerClient) -> None:
    c, ns = kubelet_cluster, kl_namespace
    await create(c, ns, pod_manifest("crash", [busybox("c", "exit 1")]))
    p = await wait_pod(c, ns, "crash", lambda p: p.get("status", {}).get("startTime"))
    uid = p["metadata"]["uid"]
    # Watch Docker: every container of the pod with its start and finish times (the kubelet
    # keeps only the newest dead one, so record them as they come).
    seen: dict[str, tuple[int, str, str]] = {}

    def record() -> int:
        for x in pod_containers(dk, uid):
            if x["Labels"].get("io.kubernetes.docker.type") != "container":
                continue
            try:
                info = dk.api.inspect_container(x["Id"])
            except docker.errors.NotFound:
                continue  # garbage-collected between the list and the inspect
            if info["State"]["FinishedAt"].startswith("0001"):
                continue
            seen[x["Id"]] = (int(x["Labels"]["io.kubernetes.container.restartCount"]),
                             info["State"]["StartedAt"], info["State"]["FinishedAt"])
        return len(seen)

    waiting: list[str] = []

    async def enough() -> bool:
        await asyncio.to_thread(record)
        cur = await get(c, ns, "crash")
        w = (cstatus(cur, "c").get("state") or {}).get("waiting") or {}
        if w.get("reason") == "CrashLoopBackOff":
            waiting.append(w.get("message", ""))
        return len(seen) >= 5
    try:
        await until(enough, timeout=40, interval=0.1, what="5 runs of the crashing container")
    except TimeoutError:
        print(seen, waiting[-3:], await get(c, ns, "crash"))
        print(kubelet_component(c).logs(400))
        raise
    cur = await wait_pod(c, ns, "crash", lambda p: cstatus(p, "c").get("restartCount", 0) >= 4)
    assert cur["status"]["phase"] == "Running"
    assert cstatus(cur, "c")["lastState"]["terminated"]["exitCode"] == 1
    assert any(m.startswith("back-off ") and f"restarting failed container=c pod=crash_{ns}("
               f"{uid})" in m for m in waiting), waiting
    runs = sorted(seen.values())
    gaps = [parse_time(runs[i][1]) - parse_time(runs[i - 1][2]) for i in range(1, len(runs))]
    # 1s, 2s, 4s (doubling) between the restarts after the first, immediate one.
    assert gaps[3] > gaps[1] + 1.0, gaps
    assert gaps[2] > gaps[1], gaps
    backoffs = await events(c, ns, "crash", "BackOff")
    assert backoffs and backoffs[0]["type"] == "Warning"
    assert backoffs[0]["message"] == \
        f"Back-off restarting failed container c in pod crash_{ns}({uid})"


# --- probes ---------------------------------------------------------------------------------

async def test_liveness_failure_restarts_the_container(kubelet_cluster: Cluster,
                                                       kl_namespace: str,
                                                       dk: docker.DockerClient) -> None:
    c, ns = kubelet_cluster, kl_namespace
    probe = {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1,
             "failureThreshold": 1}
    await create(c, ns, pod_manifest("live", [busybox(
        "c", "touch /tmp/alive; sleep 3600", livenessProbe=probe)]))
    p = await wait_pod(c, ns, "live", running_ready)
    first = cid(p, "c")
    await asyncio.to_thread(docker_exec, dk, first, "rm", "/tmp/alive")
    p = await wait_pod(c, ns, "live", lambda p: cstatus(p, "c").get("restartCount") == 1
                       and running_ready(p), what="restarted after the liveness failure")
    assert cid(p, "c") != first
    assert cstatus(p, "c")["lastState"]["terminated"]["containerID"] == f"docker://{first}"
    killing = await events(c, ns, "live", "Killing", want=lambda evs: any(
        e["message"] == "Container c failed liveness probe, will be restarted" for e in evs))
    assert any(e["message"] == "Container c failed liveness probe, will be restarted"
               for e in killing), killing


async def test_readiness_flips_ready_both_ways(kubelet_cluster: Cluster, kl_namespace: str,
                                               dk: docker.DockerClient) -> None:
    c, ns = kubelet_cluster, kl_namespace
    probe = {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1,
             "failureThreshold": 1}
    await create(c, ns, pod_manifest("rd", [busybox("c", "sleep 3600",
                                                    readinessProbe=probe)]))
    p = await wait_pod(c, ns, "rd", lambda p: p["status"].get("phase") == "Running")
    p = await get(c, ns, "rd")
    assert condition(p, "Ready")["status"] == "False"
    container = cid(p, "c")
    await asyncio.to_thread(docker_exec, dk, container, "touch", "/tmp/ready")
    p = await wait_pod(c, ns, "rd", running_ready, what="Ready after the file appears")
    assert cstatus(p, "c")["ready"] is True
    await asyncio.to_thread(docker_exec, dk, container, "rm", "/tmp/ready")
    p = await wait_pod(c, ns, "rd", lambda p: condition(p, "Ready").get("status") == "False",
                       what="not Ready after the file goes")
    assert condition(p, "Ready")["message"] == "containers with unready status: [c]"
    assert cstatus(p, "c")["restartCount"] == 0


# --- graceful termination -------------------------------------------------------------------

async def test_prestop_runs_before_sigterm_and_grace_is_honoured(
        kubelet_cluster: Cluster, kl_namespace: str, dk: docker.DockerClient,
        tmp_path: Path) -> None:
    c, ns = kubelet_cluster, kl_namespace
    # The process notes SIGTERM and goes on ticking: only SIGKILL at the end of the grace
    # period stops it.
    script = ("trap 'echo TERM >> /d/log' TERM; "
              "while true; do echo tick >> /d/log; sleep 0.2; done")
    pre_stop = {"exec": {"command": ["sh", "-c", "echo prestop >> /d/log"]}}
    await create(c, ns, pod_manifest(
        "grace", [busybox("c", script, lifecycle={"preStop": pre_stop},
                          volumeMounts=[{"name": "d", "mountPath": "/d"}])],
        terminationGracePeriodSeconds=3,
        volumes=[{"name": "d", "hostPath": {"path": str(tmp_path)}}]))
    p = await wait_pod(c, ns, "grace", running_ready)
    uid = p["metadata"]["uid"]
    await c.client.delete("pods", "grace", ns)
    await until(lambda: gone(c.client, "pods", "grace", ns), timeout=30, what="pod deleted")
    lines = (tmp_path / "log").read_text().split()
    assert "prestop" in lines and "TERM" in lines
    assert lines.index("prestop") < lines.index("TERM")
    # It ticked on after SIGTERM (about 5 ticks a second for the rest of the 3s grace period)
    # and then stopped: killed, not left running.
    after = lines[lines.index("TERM"):].count("tick")
    assert after >= 3, lines
    assert pod_containers(dk, uid) == []
    killing = await events(c, ns, "grace", "Killing")
    assert killing and killing[0]["message"] == "Stopping container c"


# --- configuration --------------------------------------------------------------------------

async def test_configmap_secret_and_env_visible_inside(kubelet_cluster: Cluster,
                                                       kl_namespace: str,
                                                       dk: docker.DockerClient) -> None:
    c, ns = kubelet_cluster, kl_namespace
    await c.client.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "cfg"},
                                         "data": {"color": "blue", "file.txt": "from-cm"}}, ns)
    await c.client.create("secrets", {"apiVersion": "v1", "kind": "Secret",
                                      "metadata": {"name": "sec"},
                                      "stringData": {"password": "s3cret"}}, ns)
    env = [{"name": "PLAIN", "value": "hello"},
           {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
           {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
           {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    script = ('echo "PLAIN=$PLAIN COLOR=$COLOR PASS=$PASS MY_NAME=$MY_NAME MY_IP=$MY_IP '
              'MY_NODE=$MY_NODE"; echo "CM=$(cat /cm/file.txt) SEC=$(cat /sec/password)"; '
              "sleep 3600")
    await create(c, ns, pod_manifest(
        "cfg", [busybox("c", script, env=env, volumeMounts=[
            {"name": "cm", "mountPath": "/cm"}, {"name": "sec", "mountPath": "/sec"}])],
        volumes=[{"name": "cm", "configMap": {"name": "cfg"}},
                 {"name": "sec", "secret": {"secretName": "sec"}}]))
    p = await wait_pod(c, ns, "cfg", running_ready)
    out = await until(lambda: (lambda t: t if "SEC=" in t else None)(logs(dk, cid(p, "c"))),
                      timeout=10, what="the container's output")
    assert (f"PLAIN=hello COLOR=blue PASS=s3cret MY_NAME=cfg MY_IP={p['status']['podIP']} "
            f"MY_NODE={p['spec']['nodeName']}") in out
    assert "CM=from-cm SEC=s3cret" in out


def env_lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


async def test_service_environment_variables(kubelet_cluster: Cluster, kl_namespace: str,
                                             dk: docker.DockerClient) -> None:
    """Upstream's "Service endpoints ... should contain environment variables for services"
    and enableServiceLinks: the kubelet writes the Docker-link and *_SERVICE_* variables of
    the namespace's Services with a cluster IP, and of default/kubernetes into every pod."""
    c, ns = kubelet_cluster, kl_namespace
    web = await c.client.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-front"},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}, ns)
    await c.client.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}}, ns)
    kubernetes = await c.client.get("services", "kubernetes", "default")
    ip, kip = web["spec"]["clusterIP"], kubernetes["spec"]["clusterIP"]
    script = "env | grep -E '^(WEB_FRONT|DB|KUBERNETES|URL)' | sort; echo done; sleep 3600"
    url = [{"name": "URL", "value": "http://$(WEB_FRONT_SERVICE_HOST):$(WEB_FRONT_SERVICE_PORT)"}]
    await create(c, ns, pod_manifest("linked", [busybox("c", script, env=url)]))
    await create(c, ns, pod_manifest("unlinked", [busybox("c", script)],
                                     enableServiceLinks=False))
    outs: dict[str, dict[str, str]] = {}
    for name in ("linked", "unlinked"):
        container = cid(await wait_pod(c, ns, name, running_ready), "c")

        def output(container: str = container) -> str | None:
            text = logs(dk, container)
            return text if "done" in text else None
        outs[name] = env_lines(await until(output, timeout=10, what=f"{name}'s output"))
    linked = await get(c, ns, "linked")
    assert linked["spec"]["enableServiceLinks"] is True  # defaulted, as upstream's pods
    assert outs["linked"] == {
        "URL": f"http://{ip}:80",
        "WEB_FRONT_SERVICE_HOST": ip, "WEB_FRONT_SERVICE_PORT": "80",
        "WEB_FRONT_SERVICE_PORT_HTTP": "80", "WEB_FRONT_PORT": f"tcp://{ip}:80",
        "WEB_FRONT_PORT_80_TCP": f"tcp://{ip}:80", "WEB_FRONT_PORT_80_TCP_PROTO": "tcp",
        "WEB_FRONT_PORT_80_TCP_PORT": "80", "WEB_FRONT_PORT_80_TCP_ADDR": ip,
        "KUBERNETES_SERVICE_HOST": kip, "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": f"tcp://{kip}:443",
        "KUBERNETES_PORT_443_TCP": f"tcp://{kip}:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": kip,
        # The `kubernetes` Service's second port, gRPC (docs/deviations.md, "Two TLS ports").
        "KUBERNETES_SERVICE_PORT_GRPC": "6444", "KUBERNETES_PORT_6444_TCP": f"tcp://{kip}:6444",
        "KUBERNETES_PORT_6444_TCP_PROTO": "tcp", "KUBERNETES_PORT_6444_TCP_PORT": "6444",
        "KUBERNETES_PORT_6444_TCP_ADDR": kip,
    }
    # enableServiceLinks: false drops the namespace's Services, never the apiserver's.
    assert outs["unlinked"] == {k: v for k, v in outs["linked"].items()
                                if k.startswith("KUBERNETES_")}


async def test_missing_configmap_key_is_create_container_config_error(
        kubelet_cluster: Cluster, kl_namespace: str) -> None:
    c, ns = kubelet_cluster, kl_namespace
    env = [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]
    await create(c, ns, pod_manifest("noconf", [busybox("c", "sleep 3600", env=env)]))
    p = await wait_pod(c, ns, "noconf", lambda p: (cstatus(p, "c").get("state") or {}).get(
        "waiting", {}).get("reason") == "CreateContainerConfigError")
    assert p["status"]["phase"] == "Pending"
    failed = await events(c, ns, "noconf", "Failed")
    assert failed and failed[0]["message"].startswith("Error: ")


async def test_image_never_pull(kubelet_cluster: Cluster, kl_namespace: str) -> None:
    c, ns = kubelet_cluster, kl_namespace
    await create(c, ns, pod_manifest("nopull", [{"name": "c", "image": "tinykube/absent:1",
                                                 "imagePullPolicy": "Never"}]))
    p = await wait_pod(c, ns, "nopull", lambda p: (cstatus(p, "c").get("state") or {}).get(
        "waiting", {}).get("reason") == "ErrImageNeverPull")
    assert p["status"]["phase"] == "Pending"


async def test_empty_dir_shared_between_containers(kubelet_cluster: Cluster,
                                                   kl_namespace: str,
                                                   dk: docker.DockerClient) -> None:
    c, ns = kubelet_cluster, kl_namespace
    mount = [{"name": "shared", "mountPath": "/shared"}]
    await create(c, ns, pod_manifest("share", [
        busybox("writer", "echo written-by-writer > /shared/x; sleep 3600", volumeMounts=mount),
        busybox("reader", "while ! cat /shared/x; do sleep 0.2; done; sleep 3600",
                volumeMounts=mount)],
        volumes=[{"name": "shared", "emptyDir": {}}]))
    p = await wait_pod(c, ns, "share", running_ready)
    reader = cid(p, "reader")
    await until(lambda: "written-by-writer" in logs(dk, reader), timeout=15,
                what="reader saw the writer's file")


async def test_init_containers_run_in_order_first(kubelet_cluster: Cluster, kl_namespace: str,
                                                  dk: docker.DockerClient) -> None:
    c, ns = kubelet_cluster, kl_namespace
    mount = [{"name": "w", "mountPath": "/w"}]
    await create(c, ns, pod_manifest(
        "inits", [busybox("app", "cat /w/log; sleep 3600", volumeMounts=mount)],
        initContainers=[busybox("one", "echo one >> /w/log", volumeMounts=mount),
                        busybox("two", "echo two >> /w/log", volumeMounts=mount)],
        volumes=[{"name": "w", "emptyDir": {}}]))
    p = await wait_pod(c, ns, "inits", running_ready)
    assert condition(p, "Initialized")["status"] == "True"
    inits = p["status"]["initContainerStatuses"]
    assert [s["name"] for s in inits] == ["one", "two"]
    assert all(s["state"]["terminated"]["exitCode"] == 0 for s in inits)
    await until(lambda: logs(dk, cid(p, "app")).split() == ["one", "two"], timeout=10,
                what="init containers' output in order")


# --- deletion and restarts ------------------------------------------------------------------

def bridge_ports(bridge: str) -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True,
                         text=True, check=False).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def ipam_files(c: Cluster) -> set[str]:
    base = c.dir / "nodes" / node_name(c) / "cni-ipam"
    return {p.name for p in base.rglob("*") if p.is_file()}


async def test_delete_leaves_no_container_ip_or_veth(kubelet_cluster: Cluster,
                                                     kl_namespace: str,
                                                     dk: docker.DockerClient) -> None:
    c, ns = kubelet_cluster, kl_namespace
    bridge = c.bridge_of(node_name(c))
    before = bridge_ports(bridge)
    await create(c, ns, pod_manifest("bye", [busybox("c", "sleep 3600")]))
    p = await wait_pod(c, ns, "bye", running_ready)
    uid, ip = p["metadata"]["uid"], p["status"]["podIP"]
    ports = bridge_ports(bridge) - before
    assert len(ports) == 1, ports  # the pod's veth
    assert ip in ipam_files(c)
    await c.client.delete("pods", "bye", ns)
    await until(lambda: gone(c.client, "pods", "bye", ns), timeout=30, what="pod deleted")
    assert pod_containers(dk, uid) == []
    assert ip not in ipam_files(c)
    assert not (ports & bridge_ports(bridge))


async def test_force_deleted_pod_is_torn_down(kubelet_cluster: Cluster, kl_namespace: str,
                                              dk: docker.DockerClient) -> None:
    c, ns = kubelet_cluster, kl_namespace
    await create(c, ns, pod_manifest("forced", [busybox("c", "sleep 3600")]))
    p = await wait_pod(c, ns, "forced", running_ready)
    uid, ip = p["metadata"]["uid"], p["status"]["podIP"]
    await c.client.delete("pods", "forced", ns, grace_period_seconds=0)
    await until(lambda: pod_containers(dk, uid) == [], timeout=30, what="containers removed")
    await until(lambda: ip not in ipam_files(c), timeout=10, what="address released")


async def test_kubelet_sigkill_restart_keeps_containers(kubelet_cluster: Cluster,
                                                        kl_namespace: str,
                                                        dk: docker.DockerClient) -> None:
    c, ns = kubelet_cluster, kl_namespace
    await create(c, ns, pod_manifest("survivor", [busybox("c", "exit 1")]))
    await create(c, ns, pod_manifest("steady", [{"name": "web", "image": SERVE_HOSTNAME},
                                                busybox("side", "sleep 3600")]))
    p = await wait_pod(c, ns, "steady", running_ready)
    await wait_pod(c, ns, "survivor",
                   lambda p: cstatus(p, "c").get("restartCount", 0) >= 1)
    ids = {n: cid(p, n) for n in ("web", "side")}
    kubelet = kubelet_component(c)
    # SIGTERM: the kubelet exits 0 and leaves its containers running, as upstream's does.
    kubelet.kill(signal.SIGTERM)
    assert kubelet.proc is not None and kubelet.proc.returncode == 0, kubelet.logs(30)
    for n, i in ids.items():
        assert dk.api.inspect_container(i)["State"]["Running"], n
    kubelet.start()
    await wait_pod(c, ns, "steady", running_ready)
    kubelet.kill()  # SIGKILL
    # A pod created while the kubelet is down: the new kubelet must run it.
    await create(c, ns, pod_manifest("while-down", [busybox("c", "sleep 3600")]))
    kubelet.start()
    p2 = await wait_pod(c, ns, "while-down", running_ready, what="a pod created while down")
    assert p2["status"]["podIP"]
    cur = await wait_pod(c, ns, "steady", running_ready)
    assert {n: cid(cur, n) for n in ids} == ids
    assert all(cstatus(cur, n)["restartCount"] == 0 for n in ids)
    assert cur["status"]["podIP"] == p["status"]["podIP"]
    for n, i in ids.items():
        assert dk.api.inspect_container(i)["State"]["Running"], n
    # The restart counts of the crashing pod go on from the labels, not from 0.
    before = cstatus(await get(c, ns, "survivor"), "c")["restartCount"]
    await wait_pod(c, ns, "survivor",
                   lambda p: cstatus(p, "c").get("restartCount", 0) > before)
    await kubelet_cluster.wait_nodes_ready(1)


async def test_deployment_runs_three_replicas(kubelet_cluster: Cluster,
                                              kl_namespace: str) -> None:
    c, ns = kubelet_cluster, kl_namespace
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                                     {"name": "web", "image": SERVE_HOSTNAME}]}}}}
    await c.client.create("deployments", dep, ns)

    async def three() -> list[Obj] | None:
        items, _ = await c.client.list_all("pods", ns, label_selector="app=web")
        ok = [p for p in items if running_ready(p)]
        return ok if len(ok) == 3 else None
    pods = await until(three, timeout=60, what="3 replicas Running and Ready")
    assert len({p["status"]["podIP"] for p in pods}) == 3
    d = await until(lambda: _available(c, ns), timeout=30, what="deployment available")
    assert d["status"]["readyReplicas"] == 3


async def _available(c: Cluster, ns: str) -> Obj | None:
    d = await c.client.get("deployments", "web", ns)
    return d if (d.get("status") or {}).get("availableReplicas") == 3 else None


# --- termination races (review R1) ------------------------------------------------------------

# `sleep` as PID 1 has no SIGTERM handler, so the kernel ignores SIGTERM: only the SIGKILL at the
# end of the grace period stops it. With a grace period of 120s, a pod torn down within the 30s
# these tests wait was killed with a shorter grace than its spec's.
STUBBORN = busybox("c", "sleep 3600")
LONG_GRACE = 120


async def test_force_delete_kills_with_minimum_grace(kubelet_cluster: Cluster,
                                                     kl_namespace: str,
                                                     dk: docker.DockerClient) -> None:
    """A force delete (grace 0) removes the pod at once; upstream's kubelet then kills its
    containers with a 1s grace (2s minimum SIGTERM), not the spec's terminationGracePeriod."""
    c, ns = kubelet_cluster, kl_namespace
    await create(c, ns, pod_manifest("stubborn", [STUBBORN],
                                     terminationGracePeriodSeconds=LONG_GRACE))
    p = await wait_pod(c, ns, "stubborn", running_ready)
    uid = p["metadata"]["uid"]
    await c.client.delete("pods", "stubborn", ns, grace_period_seconds=0)
    await until(lambda: pod_containers(dk, uid) == [], timeout=30,
                what="containers of the force-deleted pod removed")


@pytest.mark.parametrize("second_grace", [0, 1])
async def test_shortened_grace_period_cuts_a_termination_short(
        kubelet_cluster: Cluster, kl_namespace: str, dk: docker.DockerClient,
        second_grace: int) -> None:
    """A pod terminating with a long grace period, deleted again with a shorter one (a force
    delete, or `--grace-period=1`): the kubelet kills with the shorter grace (upstream's pod
    workers: the grace period of a termination can only decrease)."""
    c, ns = kubelet_cluster, kl_namespace
    name = f"shrink-{second_grace}"
    await create(c, ns, pod_manifest(name, [STUBBORN],
                                     terminationGracePeriodSeconds=LONG_GRACE))
    p = await wait_pod(c, ns, name, running_ready)
    uid = p["metadata"]["uid"]
    await c.client.delete("pods", name, ns)
    # The kubelet is in the middle of the kill (SIGTERM sent, ignored).
    await until(lambda: events(c, ns, name, "Killing"), timeout=20, what="Killing event")
    assert pod_containers(dk, uid)
    await c.client.delete("pods", name, ns, grace_period_seconds=second_grace)
    await until(lambda: pod_containers(dk, uid) == [], timeout=30,
                what="containers removed after the shorter grace period")
    await until(lambda: gone(c.client, "pods", name, ns), timeout=10, what="pod deleted")


# --- what upstream's e2e checks that the tests above did not --------------------------------

async def test_host_network_pod_has_the_node_ip(kubelet_cluster: Cluster, kl_namespace: str,
                                                dk: docker.DockerClient) -> None:
    c, ns = kubelet_cluster, kl_namespace
    before = ipam_files(c)
    await create(c, ns, pod_manifest("hostnet", [busybox("c", "sleep 3600")],
                                     hostNetwork=True))
    p = await wait_pod(c, ns, "hostnet", running_ready)
    st = p["status"]
    assert st["podIP"] == st["hostIP"] == "127.0.0.1"
    assert st["podIPs"] == [{"ip": "127.0.0.1"}]
    # The container is in the host's network namespace, and no pod address was allocated.
    inside = dk.api.exec_create(cid(p, "c"), ["readlink", "/proc/1/ns/net"])
    ns_inside = bytes(dk.api.exec_start(inside["Id"])).decode().strip()
    assert ns_inside == os.readlink("/proc/self/ns/net")
    assert ipam_files(c) == before
    await c.client.delete("pods", "hostnet", ns)
    await until(lambda: gone(c.client, "pods", "hostnet", ns), timeout=30, what="pod deleted")
    assert pod_containers(dk, p["metadata"]["uid"]) == []


async def test_post_start_hook_failure_kills_and_restarts(kubelet_cluster: Cluster,
                                                          kl_namespace: str) -> None:
    c, ns = kubelet_cluster, kl_namespace
    hook = {"exec": {"command": ["sh", "-c", "echo nope; exit 7"]}}
    await create(c, ns, pod_manifest("hook", [busybox("c", "sleep 3600",
                                                      lifecycle={"postStart": hook})]))
    p = await wait_pod(c, ns, "hook", lambda p: cstatus(p, "c").get("restartCount", 0) >= 1,
                       what="restarted after the failed postStart hook")
    assert p["status"]["phase"] == "Running"
    assert cstatus(p, "c")["lastState"]["terminated"]["containerID"].startswith("docker://")
    failed = await events(c, ns, "hook", "FailedPostStartHook")
    assert failed and failed[0]["type"] == "Warning"
    assert "exited with 7" in failed[0]["message"], failed[0]["message"]
    assert failed[0]["involvedObject"]["fieldPath"] == "spec.containers{c}"
    killing = await events(c, ns, "hook", "Killing", want=lambda evs: any(
        e["message"] == "FailedPostStartHook" for e in evs))
    assert any(e["message"] == "FailedPostStartHook" for e in killing), killing


async def test_missing_image_err_image_pull_then_back_off(kubelet_cluster: Cluster,
                                                          kl_namespace: str) -> None:
    """An image that is not on the node (and no registry to pull it from): ErrImagePull, then
    ImagePullBackOff, as the container's waiting reason and as events."""
    c, ns = kubelet_cluster, kl_namespace
    image = "tinykube/absent:1"
    await create(c, ns, pod_manifest("pull", [{"name": "c", "image": image}]))
    seen: list[str] = []

    async def both() -> bool:
        w = (cstatus(await get(c, ns, "pull"), "c").get("state") or {}).get("waiting") or {}
        if w.get("reason") and (not seen or seen[-1] != w["reason"]):
            seen.append(w["reason"])
        return "ErrImagePull" in seen and "ImagePullBackOff" in seen
    # (The very first ErrImagePull may flash by: the sandbox's start event syncs the pod again
    # at once, within the back-off. Every retry after a back-off shows it again.)
    await until(both, timeout=30, interval=0.1, what="ErrImagePull and ImagePullBackOff")
    p = await get(c, ns, "pull")
    assert p["status"]["phase"] == "Pending"
    assert condition(p, "Ready")["reason"] == "ContainersNotReady"
    evs = await events(c, ns, "pull", want=lambda evs: {"Pulling", "Failed", "BackOff"} <= {
        e["reason"] for e in evs} and {"Error: ErrImagePull", "Error: ImagePullBackOff"} <= {
        e["message"] for e in evs})
    by_reason: dict[str, list[Obj]] = {}
    for e in evs:
        by_reason.setdefault(e["reason"], []).append(e)
    assert by_reason["Pulling"][0]["message"] == f'Pulling image "{image}"'
    assert by_reason["Pulling"][0]["involvedObject"]["fieldPath"] == "spec.containers{c}"
    failed = {e["message"] for e in by_reason["Failed"]}
    assert any(m.startswith(f'Failed to pull image "{image}": ') for m in failed), failed
    assert {"Error: ErrImagePull", "Error: ImagePullBackOff"} <= failed, failed
    assert any(e["message"] == f'Back-off pulling image "{image}"'
               for e in by_reason["BackOff"]), by_reason["BackOff"]


async def test_create_container_config_error_recovers(kubelet_cluster: Cluster,
                                                      kl_namespace: str,
                                                      dk: docker.DockerClient) -> None:
    c, ns = kubelet_cluster, kl_namespace
    env = [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "late", "key": "k"}}}]
    await create(c, ns, pod_manifest("late", [busybox("c", "echo X=$X; sleep 3600", env=env)]))
    await wait_pod(c, ns, "late", lambda p: (cstatus(p, "c").get("state") or {}).get(
        "waiting", {}).get("reason") == "CreateContainerConfigError")
    await c.client.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "late"}, "data": {"k": "v1"}}, ns)
    p = await wait_pod(c, ns, "late", running_ready, what="Running once the ConfigMap exists")
    assert cstatus(p, "c")["restartCount"] == 0
    await until(lambda: "X=v1" in logs(dk, cid(p, "c")), timeout=10, what="the env value")


async def test_cluster_stop_leaves_nothing_behind(docker_ready: None,
                                                  dk: docker.DockerClient) -> None:
    """A cluster with a kubelet and a running pod, stopped: no container, bridge or FORWARD
    rule of it stays on the host."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int("".join(ch for ch in worker if ch.isdigit()) or 0)
    node = f"leak-{index}"
    async with Cluster("--watch-bookmark-interval", "1") as c:
        c.start_scheduler()
        c.start_controller_manager("--cluster-cidr", f"10.{120 + index}.0.0/16",
                                   "--node-cidr-mask-size", "24")
        c.start_kubelet(node, "--lease-interval", "2s", "--node-status-update-frequency", "2s")
        await c.wait_nodes_ready(1, timeout=60)
        ns = await c.new_namespace()
        await create(c, ns, pod_manifest("p", [busybox("c", "sleep 3600")]))
        await wait_pod(c, ns, "p", running_ready)
        bridge = c.bridge_of(node)
        assert Path(f"/sys/class/net/{bridge}").exists()
        assert bridge in subprocess.run(["iptables", "-w", "-S", "FORWARD"], text=True,
                                        capture_output=True, check=True).stdout
    assert dk.api.containers(all=True, filters={"label": f"io.tinykube.node.name={node}"}) == []
    assert not Path(f"/sys/class/net/{bridge}").exists()
    rules = subprocess.run(["iptables", "-w", "-S", "FORWARD"], text=True, capture_output=True,
                           check=True).stdout
    assert bridge not in rules, rules


async def test_kubelet_down_container_death_and_force_delete(kubelet_cluster: Cluster,
                                                             kl_namespace: str,
                                                             dk: docker.DockerClient) -> None:
    """While the kubelet is down (SIGKILL): a container dies and a pod is force-deleted. The
    new kubelet restarts the dead container once (restartCount 1, one new container, not two)
    and tears the deleted pod down completely: containers, IP allocation, volume directory."""
    c, ns = kubelet_cluster, kl_namespace
    mount = [{"name": "scratch", "mountPath": "/scratch"}]
    await create(c, ns, pod_manifest("dies", [busybox("c", "sleep 3600")]))
    await create(c, ns, pod_manifest("orphan", [busybox("c", "sleep 3600", volumeMounts=mount)],
                                     volumes=[{"name": "scratch", "emptyDir": {}}]))
    dies = await wait_pod(c, ns, "dies", running_ready)
    orphan = await wait_pod(c, ns, "orphan", running_ready)
    first, ouid, oip = cid(dies, "c"), orphan["metadata"]["uid"], orphan["status"]["podIP"]
    pod_dir = c.dir / "nodes" / node_name(c) / "root" / "pods" / ouid
    assert pod_dir.is_dir() and oip in ipam_files(c)
    kubelet = kubelet_component(c)
    kubelet.kill()  # SIGKILL
    try:
        await asyncio.to_thread(dk.api.kill, first)
        await c.client.delete("pods", "orphan", ns, grace_period_seconds=0)
    finally:
        kubelet.start()
    p = await wait_pod(c, ns, "dies", lambda p: running_ready(p) and cid(p, "c") != first,
                       what="the dead container restarted")
    assert cstatus(p, "c")["restartCount"] == 1
    assert cstatus(p, "c")["lastState"]["terminated"]["containerID"] == f"docker://{first}"
    counts = sorted(int(x["Labels"]["io.kubernetes.container.restartCount"])
                    for x in pod_containers(dk, p["metadata"]["uid"])
                    if x["Labels"]["io.kubernetes.docker.type"] == "container")
    assert counts == [0, 1], counts
    await until(lambda: pod_containers(dk, ouid) == [], timeout=30, what="orphan removed")
    await until(lambda: oip not in ipam_files(c), timeout=10, what="orphan's address released")
    await until(lambda: not pod_dir.exists(), timeout=10, what="orphan's volumes removed")
    await kubelet_cluster.wait_nodes_ready(1)
