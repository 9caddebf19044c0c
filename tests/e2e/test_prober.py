"""kubelet/prober.py against real containers: exec, httpGet and tcpSocket probes, lifecycle hooks.

The pod IP comes from a Docker network of the test's own (CNI is not part of this test): the
sandbox is created on it with the SDK directly, the app containers join it through the runtime.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from harness.wait import until
from kubelet import labels as L
from kubelet.prober import ProbeManager
from kubelet.runtime import DockerRuntime, container_config

pytestmark = pytest.mark.docker

PAUSE = "tinykube/pause:1"
BUSYBOX = "tinykube/busybox:1"
SERVE_HOSTNAME = "tinykube/serve-hostname:1"


@dataclass
class Env:
    rt: DockerRuntime
    node: str
    network: str
    events: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    pm: ProbeManager | None = None

    def record(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append(f"{type_} {reason} {message}")

    @property
    def prober(self) -> ProbeManager:
        assert self.pm is not None
        return self.pm

    async def pod(self, *containers: dict[str, Any]) -> tuple[dict[str, Any], str, dict[str,
                                                                                        str]]:
        """Run a pod: its sandbox on the test network, then `containers`; (pod, ip, ids)."""
        pod = {"metadata": {"name": f"p-{uuid.uuid4().hex[:6]}", "namespace": "h3",
                            "uid": str(uuid.uuid4())},
               "spec": {"containers": list(containers)}}
        api = self.rt.docker_client.api

        def sandbox() -> tuple[str, str]:
            hc = api.create_host_config(network_mode=self.network, ipc_mode="shareable")
            sid = api.create_container(PAUSE, labels=L.sandbox_labels(pod, self.node),
                                       host_config=hc)["Id"]
            api.start(sid)
            ip = api.inspect_container(sid)["NetworkSettings"]["Networks"][self.network][
                "IPAddress"]
            return sid, ip

        sid, ip = await asyncio.to_thread(sandbox)
        ids = {}
        for c in containers:
            cfg = container_config(pod, c, sandbox_id=sid, restart_count=0, env=[], mounts=[],
                                   node_name=self.node)
            ids[c["name"]] = await self.rt.create_container(cfg)
            await self.rt.start(ids[c["name"]])
        return pod, ip, ids

    def probe(self, pod: dict[str, Any], ip: str, ids: dict[str, str]) -> None:
        now = time.monotonic()
        self.prober.update_pod(pod, ip, {name: (cid, now) for name, cid in ids.items()})


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def network(docker_ready: None) -> AsyncIterator[str]:
    rt = DockerRuntime()
    name = f"tk-h3-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(rt.docker_client.api.create_network, name, driver="bridge")
    try:
        yield name
    finally:
        await asyncio.to_thread(rt.docker_client.api.remove_network, name)
        await rt.close()


@pytest_asyncio.fixture
async def env(network: str) -> AsyncIterator[Env]:
    rt = DockerRuntime()
    e = Env(rt, f"test-{uuid.uuid4().hex[:10]}", network)
    e.pm = ProbeManager(rt, e.record, e.changes.append)
    try:
        yield e
    finally:
        await e.prober.close()
        for c in await rt.list_containers(e.node):
            await rt.remove(c.id)
        await rt.close()


def fast(probe: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {**probe, "periodSeconds": 1, **kw}


async def test_exec_readiness_flips_both_ways(env: Env) -> None:
    c = {"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
         "readinessProbe": fast({"exec": {"command": ["cat", "/ready"]}}, failureThreshold=1)}
    pod, ip, ids = await env.pod(c)
    uid, cid = pod["metadata"]["uid"], ids["app"]
    env.probe(pod, ip, ids)
    await until(lambda: env.events, what="a first readiness failure")
    assert not env.prober.ready(uid, "app", cid)
    assert env.events[0] == ("Warning Unhealthy Readiness probe failed: cat: can't open "
                             "'/ready': No such file or directory\n")
    assert (await env.rt.exec_sync(cid, ["touch", "/ready"], 5))[0] == 0
    await until(lambda: env.prober.ready(uid, "app", cid), what="ready")
    assert uid in env.changes
    assert (await env.rt.exec_sync(cid, ["rm", "/ready"], 5))[0] == 0
    await until(lambda: not env.prober.ready(uid, "app", cid), what="unready")


async def test_http_and_tcp_probes_against_the_pod_ip(env: Env) -> None:
    c = {"name": "web", "image": SERVE_HOSTNAME,
         "ports": [{"name": "http", "containerPort": 9376}],
         "readinessProbe": fast({"httpGet": {"port": "http", "path": "/"}}),
         "startupProbe": fast({"tcpSocket": {"port": 9376}}),
         "livenessProbe": fast({"httpGet": {"port": 9999, "path": "/healthz"}},
                               failureThreshold=2)}
    pod, ip, ids = await env.pod(c)
    uid, cid = pod["metadata"]["uid"], ids["web"]
    env.probe(pod, ip, ids)
    await until(lambda: env.prober.ready(uid, "web", cid), what="http readiness")
    assert env.prober.started(uid, "web", cid)
    msg = await until(lambda: env.prober.liveness_failed(uid, "web", cid), what="liveness")
    assert msg == "Container web failed liveness probe"
    prefix = f'Warning Unhealthy Liveness probe failed: Get "http://{ip}:9999/healthz": '
    refused = f"{prefix}dial tcp {ip}:9999: connect: connection refused"
    # Two liveness failures (failureThreshold), each in upstream's words; on a loaded machine
    # one may time out (1s) instead of being refused, which upstream reports as a deadline.
    # (A startup probe that ran before the server listened may have failed once too.)
    liveness = [e for e in env.events if "Liveness" in e]
    assert len(liveness) == 2 and all(e.startswith(prefix) for e in liveness), env.events
    assert refused in liveness or all("deadline exceeded" in e for e in liveness), env.events
    assert all(e.startswith("Warning Unhealthy Startup probe failed: dial tcp ")
               for e in env.events if "Liveness" not in e), env.events


async def test_http_status_failure_and_tcp_refused(env: Env) -> None:
    c = {"name": "httpd", "image": BUSYBOX, "command": ["httpd", "-f", "-p", "8080", "-h", "/"],
         "readinessProbe": fast({"httpGet": {"port": 8080, "path": "/missing"}}),
         "livenessProbe": fast({"tcpSocket": {"port": 8081}}, failureThreshold=1)}
    pod, ip, ids = await env.pod(c)
    env.probe(pod, ip, ids)
    uid, cid = pod["metadata"]["uid"], ids["httpd"]
    await until(lambda: env.prober.liveness_failed(uid, "httpd", cid), what="tcp liveness")
    await until(lambda: any("statuscode" in e for e in env.events), what="http failure")
    assert "Warning Unhealthy Readiness probe failed: HTTP probe failed with statuscode: 404" \
        in env.events
    assert (f"Warning Unhealthy Liveness probe failed: dial tcp {ip}:8081: connect: "
            "connection refused") in env.events
    assert not env.prober.ready(uid, "httpd", cid)


async def test_exec_liveness_timeout_and_restart(env: Env) -> None:
    probe = fast({"exec": {"command": ["sleep", "10"]}}, timeoutSeconds=1, failureThreshold=2)
    c = {"name": "slow", "image": BUSYBOX, "command": ["sleep", "3600"], "livenessProbe": probe}
    pod, ip, ids = await env.pod(c)
    uid, cid = pod["metadata"]["uid"], ids["slow"]
    env.probe(pod, ip, ids)
    assert await until(lambda: env.prober.liveness_failed(uid, "slow", cid), timeout=30) == \
        "Container slow failed liveness probe"
    assert env.events == ['Warning Unhealthy Liveness probe failed: command "sleep 10" timed '
                          "out"] * 2
    # the kubelet restarts it: a new container id is alive again until it fails on its own
    _, _, again = await env.pod(c)
    env.probe(pod, ip, again)
    assert env.prober.liveness_failed(uid, "slow", again["slow"]) is None


async def test_startup_gates_until_it_succeeds(env: Env) -> None:
    c = {"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
         "startupProbe": fast({"exec": {"command": ["cat", "/started"]}}, failureThreshold=60),
         # would fail at once if it ran before the startup probe passed
         "livenessProbe": fast({"exec": {"command": ["cat", "/started"]}}, failureThreshold=1),
         "readinessProbe": fast({"exec": {"command": ["true"]}})}
    pod, ip, ids = await env.pod(c)
    uid, cid = pod["metadata"]["uid"], ids["app"]
    env.probe(pod, ip, ids)
    await until(lambda: len(env.events) >= 2, what="startup probe failing")
    assert all("Startup probe failed" in e for e in env.events)
    assert not env.prober.started(uid, "app", cid) and not env.prober.ready(uid, "app", cid)
    assert env.prober.liveness_failed(uid, "app", cid) is None
    await env.rt.exec_sync(cid, ["touch", "/started"], 5)
    await until(lambda: env.prober.ready(uid, "app", cid), what="ready after startup")
    assert env.prober.started(uid, "app", cid)
    assert env.prober.liveness_failed(uid, "app", cid) is None


async def test_lifecycle_handlers(env: Env) -> None:
    c = {"name": "app", "image": SERVE_HOSTNAME}
    shell = {"name": "sh", "image": BUSYBOX, "command": ["sleep", "3600"]}
    pod, ip, ids = await env.pod(c, shell)
    run = env.prober.run_handler
    ok = {"exec": {"command": ["sh", "-c", "echo hook > /hook"]}}
    assert await run(pod, shell, ids["sh"], ip, ok, 5) is None
    assert (await env.rt.exec_sync(ids["sh"], ["cat", "/hook"], 5)) == (0, b"hook\n")
    bad = {"exec": {"command": ["sh", "-c", "echo oops; exit 3"]}}
    md = pod["metadata"]
    assert await run(pod, shell, ids["sh"], ip, bad, 5) == (
        "Exec lifecycle hook ([sh -c echo oops; exit 3]) for Container \"sh\" in Pod "
        f"\"{md['name']}_h3({md['uid']})\" failed - error: command 'sh -c echo oops; exit 3' "
        'exited with 3: oops\n, message: "oops\\n"')
    assert await run(pod, c, ids["app"], ip, {"httpGet": {"port": 9376, "path": "/"}}, 5) \
        is None
    msg = await run(pod, c, ids["app"], ip, {"httpGet": {"port": 9999, "path": "/x"}}, 5)
    assert msg is not None and msg.startswith('HTTP lifecycle hook (/x) for Container "app"')
    assert msg.endswith("connect: connection refused")
    hang = {"exec": {"command": ["sleep", "30"]}}
    msg = await run(pod, shell, ids["sh"], ip, hang, 0.5)
    assert msg is not None and 'command "sleep 30" timed out' in msg
