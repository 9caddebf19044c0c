"""Pods on nodes: lifecycle, environment (composed variables, ConfigMap and Secret sources),
ConfigMap volumes, logs and exec, restartPolicy and terminated reasons, liveness and readiness
probes, Endpoints that follow the pods behind a Service and their readiness, and a namespace
taking its pods with it. Tier node: at least one Ready, schedulable node runs the pods.

Upstream: test/e2e/common/node/{pods,expansion,configmap,secrets,kubelet,runtime,
container_probe}.go, test/e2e/common/storage/configmap_volume.go,
test/e2e/apimachinery/namespace.go, test/e2e/network/service.go.
"""

from __future__ import annotations

import asyncio
import base64
import functools
from datetime import datetime

import pytest

from tests.conformance.framework import (
    BUSYBOX,
    SERVE_PORT,
    Conformance,
    Obj,
    busybox_pod,
    close,
    condition,
    configmap,
    container,
    container_status,
    endpoint_ips,
    gone,
    pod,
    serve_hostname_pod,
    service,
    until,
)

# xdist_group: every test using the lab runs in one pytest-xdist worker (tests/conftest.py).
pytestmark = [pytest.mark.conformance_node, pytest.mark.xdist_group("lab")]


def phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase", ""))


def env_pod(name: str) -> Obj:
    """A pod that prints its environment: `env` itself as the command, not `sh -c env` as
    upstream's, because Debian's busybox sh drops variables whose names are not shell
    identifiers (`data-1`), which the kubelet does set."""
    return pod(name, container("c", BUSYBOX, ["env"]))


def restarts(pod: Obj) -> int:
    return int(container_status(pod).get("restartCount") or 0)


async def run_to_completion(c: Conformance, ns: str, pod: Obj) -> str:
    """Create a restartPolicy Never pod, wait until it Succeeded, return its log."""
    pod["spec"]["restartPolicy"] = "Never"
    await c.create("pods", pod, ns)
    name = pod["metadata"]["name"]
    done = await c.wait_phase(ns, name, "Succeeded", "Failed")
    assert phase(done) == "Succeeded", f"{name} {phase(done)}: {container_status(done)}"
    return await c.wait_logs(ns, name, bool, "some output")


@pytest.mark.upstream("[sig-node] Pods should be submitted and removed [NodeConformance] "
                      "[Conformance]")
async def test_pod_submitted_and_removed(conformance: Conformance, ns: str) -> None:
    c = conformance
    selector = "name=pod-submit-remove"
    listed = await c.api.list("pods", ns, label_selector=selector)
    assert listed["items"] == []
    stream = c.api.watch("pods", ns, resource_version=listed["metadata"]["resourceVersion"],
                         label_selector=selector)
    try:
        await c.create("pods", busybox_pod("pod-submit-remove", "sleep 3600",
                                           labels={"name": "pod-submit-remove"}), ns)
        first = await asyncio.wait_for(anext(stream), 20)
        assert first.type == "ADDED"
        assert [p["metadata"]["name"] for p in await c.pods(ns, selector)] == \
            ["pod-submit-remove"]
        await c.wait_running(ns, "pod-submit-remove")
        await c.api.delete("pods", "pod-submit-remove", ns)
        # Graceful: first marked (deletionTimestamp), removed once the kubelet stopped it.
        saw_marked = False
        while True:
            ev = await asyncio.wait_for(anext(stream), 60)
            if ev.type == "BOOKMARK":
                continue
            if ev.type == "DELETED":
                break
            saw_marked = saw_marked or bool(ev.object["metadata"].get("deletionTimestamp"))
        assert saw_marked, "the pod was removed without a graceful deletionTimestamp first"
    finally:
        await close(stream)
    assert (await c.api.list("pods", ns, label_selector=selector))["items"] == []


@pytest.mark.upstream("[sig-node] Variable Expansion should allow composing env vars into new env "
                      "vars [NodeConformance] [Conformance]")
async def test_env_var_composition(conformance: Conformance, ns: str) -> None:
    pod = env_pod("var-expansion")
    pod["spec"]["containers"][0]["env"] = [
        {"name": "FOO", "value": "foo-value"}, {"name": "BAR", "value": "bar-value"},
        {"name": "FOOBAR", "value": "$(FOO);;$(BAR)"},
        {"name": "ESCAPED", "value": "$$(FOO)"}, {"name": "UNKNOWN", "value": "$(NOPE)"}]
    lines = set((await run_to_completion(conformance, ns, pod)).splitlines())
    assert {"FOO=foo-value", "BAR=bar-value", "FOOBAR=foo-value;;bar-value",
            "ESCAPED=$(FOO)", "UNKNOWN=$(NOPE)"} <= lines


@pytest.mark.upstream("[sig-node] Pods should contain environment variables for services "
                      "[NodeConformance] [Conformance]")
async def test_pod_env_has_service_variables(conformance: Conformance, ns: str) -> None:
    c = conformance
    await c.create("pods", serve_hostname_pod("server-envvars", labels={"name": "server"}), ns)
    svc = await c.create("services", service("fooservice", {"name": "server"}, port=8765), ns)
    await c.wait_running(ns, "server-envvars")
    ip = svc["spec"]["clusterIP"]
    lines = set((await run_to_completion(c, ns, env_pod("client-envvars"))).splitlines())
    expected = {"FOOSERVICE_SERVICE_HOST=" + ip, "FOOSERVICE_SERVICE_PORT=8765",
                f"FOOSERVICE_PORT=tcp://{ip}:8765", "FOOSERVICE_PORT_8765_TCP_PORT=8765",
                "FOOSERVICE_PORT_8765_TCP_PROTO=tcp", f"FOOSERVICE_PORT_8765_TCP=tcp://{ip}:8765",
                "FOOSERVICE_PORT_8765_TCP_ADDR=" + ip}
    assert expected <= lines, f"missing: {sorted(expected - lines)}"
    assert any(line.startswith("KUBERNETES_SERVICE_HOST=") for line in lines)


@pytest.mark.upstream("[sig-node] ConfigMap should be consumable via environment variable "
                      "[NodeConformance] [Conformance]")
async def test_configmap_env_var(conformance: Conformance, ns: str) -> None:
    c = conformance
    await c.create("configmaps", configmap("configmap-test", {"data-1": "value-1"}), ns)
    pod = env_pod("pod-configmaps")
    pod["spec"]["containers"][0]["env"] = [{"name": "CONFIG_DATA_1", "valueFrom": {
        "configMapKeyRef": {"name": "configmap-test", "key": "data-1"}}}]
    assert "CONFIG_DATA_1=value-1" in (await run_to_completion(c, ns, pod)).splitlines()


@pytest.mark.upstream("[sig-node] Secrets should be consumable via the environment "
                      "[NodeConformance] [Conformance]")
async def test_secret_env_from(conformance: Conformance, ns: str) -> None:
    c = conformance
    await c.create("secrets", {"apiVersion": "v1", "kind": "Secret",
                               "metadata": {"name": "secret-test"},
                               "data": {"data-1": base64.b64encode(b"value-1").decode()}}, ns)
    pod = env_pod("pod-secrets")
    pod["spec"]["containers"][0]["envFrom"] = [{"secretRef": {"name": "secret-test"}},
                                               {"prefix": "p-",
                                                "secretRef": {"name": "secret-test"}}]
    lines = (await run_to_completion(c, ns, pod)).splitlines()
    assert "data-1=value-1" in lines and "p-data-1=value-1" in lines


@pytest.mark.upstream("[sig-storage] ConfigMap should be consumable from pods in volume "
                      "[NodeConformance] [Conformance]")
async def test_configmap_volume(conformance: Conformance, ns: str) -> None:
    c = conformance
    await c.create("configmaps", configmap("configmap-test-volume",
                                           {"data-1": "value-1", "data-2": "value-2"}), ns)
    pod = busybox_pod("pod-configmaps",
                      "cat /etc/configmap-volume/data-1; echo; "
                      "stat -L -c '%a' /etc/configmap-volume/data-2")
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "configmap-volume", "mountPath": "/etc/configmap-volume"}]
    pod["spec"]["volumes"] = [{"name": "configmap-volume",
                               "configMap": {"name": "configmap-test-volume"}}]
    out = await run_to_completion(c, ns, pod)
    assert out.splitlines() == ["value-1", "644"], out


@pytest.mark.upstream("[sig-node] Kubelet when scheduling a busybox command in a pod should print "
                      "the output to logs [NodeConformance] [Conformance]")
async def test_logs(conformance: Conformance, ns: str) -> None:
    c = conformance
    await c.create("pods", busybox_pod("busybox-scheduling",
                                       "echo 'Hello World'; echo to-stderr >&2; sleep 3600"), ns)
    await c.wait_running(ns, "busybox-scheduling")
    out = await c.wait_logs(ns, "busybox-scheduling", lambda s: "to-stderr" in s,
                            "stdout and stderr")
    # Both streams, each in order (their interleaving is the runtime's, as upstream's).
    assert sorted(out.splitlines()) == ["Hello World", "to-stderr"]
    assert len((await c.logs(ns, "busybox-scheduling", "--tail", "1")).splitlines()) == 1


@pytest.mark.upstream("[sig-node] Pods should support remote command execution over websockets "
                      "[NodeConformance] [Conformance]")
async def test_exec(conformance: Conformance, ns: str) -> None:
    """Remote command execution, over tinykube's Exec stream (gRPC, not websockets): output,
    stderr and the exit code come back."""
    c = conformance
    await c.create("pods", busybox_pod("pod-exec-websocket", "sleep 3600"), ns)
    await c.wait_running(ns, "pod-exec-websocket")
    code, out, _ = await c.exec(ns, "pod-exec-websocket", "echo", "remote execution test")
    assert (code, out) == (0, "remote execution test\n")
    code, out, err = await c.exec(ns, "pod-exec-websocket", "sh", "-c",
                                  "hostname; echo oops >&2; exit 3")
    assert code == 3 and out == "pod-exec-websocket\n" and "oops" in err


@pytest.mark.upstream("[sig-node] Container Runtime blackbox test when starting a container that "
                      "exits should run with the expected status [NodeConformance] [Conformance]")
async def test_restart_policies(conformance: Conformance, ns: str) -> None:
    """Always restarts whatever the exit code; OnFailure restarts a failure and completes a
    success; Never restarts nothing (a failure leaves the pod Failed)."""
    c = conformance
    cases = {  # name: (restartPolicy, exit code, check)
        "terminate-cmd-rpa": ("Always", 0, lambda p: restarts(p) >= 1 and phase(p) == "Running"),
        "terminate-cmd-rpof": ("OnFailure", 1,
                               lambda p: restarts(p) >= 1 and phase(p) == "Running"),
        "terminate-cmd-rpof-ok": ("OnFailure", 0,
                                  lambda p: restarts(p) == 0 and phase(p) == "Succeeded"),
        "terminate-cmd-rpn": ("Never", 1, lambda p: restarts(p) == 0 and phase(p) == "Failed"),
    }
    for name, (policy, code, _) in cases.items():
        pod = busybox_pod(name, f"sleep 1; exit {code}", restartPolicy=policy)
        await c.create("pods", pod, ns)
    results = await asyncio.gather(*(
        c.wait_pod(ns, name, check, f"restartPolicy {policy}, exit {code}")
        for name, (policy, code, check) in cases.items()))
    by_name = {p["metadata"]["name"]: p for p in results}
    failed = container_status(by_name["terminate-cmd-rpn"])["state"]["terminated"]
    assert failed["exitCode"] == 1 and failed.get("reason") == "Error"
    ok = container_status(by_name["terminate-cmd-rpof-ok"])["state"]["terminated"]
    assert ok["exitCode"] == 0 and ok.get("reason") == "Completed"


@pytest.mark.upstream('[sig-node] Probing container should be restarted with a exec "cat '
                      '/tmp/health" liveness probe [NodeConformance] [Conformance]')
async def test_liveness_exec_restarts(conformance: Conformance, ns: str) -> None:
    c = conformance
    pod = busybox_pod("busybox-liveness", "touch /tmp/health; sleep 4; rm -f /tmp/health; "
                                          "sleep 600")
    pod["spec"]["containers"][0]["livenessProbe"] = {
        "exec": {"command": ["cat", "/tmp/health"]}, "initialDelaySeconds": 1,
        "periodSeconds": 1, "failureThreshold": 1}
    await c.create("pods", pod, ns)
    await c.wait_running(ns, "busybox-liveness")
    restarted = await c.wait_pod(ns, "busybox-liveness", lambda p: restarts(p) >= 1,
                                 "restarted by its liveness probe", timeout=90)
    last = (container_status(restarted).get("lastState") or {}).get("terminated") or {}
    assert last, "no lastState.terminated after the restart"
    events = (await c.api.list("events", ns,
                               field_selector="involvedObject.name=busybox-liveness"))["items"]
    assert any(e.get("reason") == "Unhealthy" for e in events), \
        f"no Unhealthy event: {[e.get('reason') for e in events]}"


@pytest.mark.upstream("[sig-node] Probing container with readiness probe that fails should never "
                      "be ready and never restart [NodeConformance] [Conformance]")
async def test_failing_readiness(conformance: Conformance, ns: str) -> None:
    """Running, never Ready, never restarted; a Service selecting it lists it only among the
    Endpoints' notReadyAddresses."""
    c = conformance
    labels = {"app": "never-ready"}
    pod = serve_hostname_pod("test-webserver", labels=labels)
    pod["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["/bin/false"]},
                                                      "periodSeconds": 1}
    await c.create("services", service("never-ready", labels), ns)
    await c.create("pods", pod, ns)
    running = await c.wait_running(ns, "test-webserver", ready=False)
    ip = running["status"]["podIP"]

    async def listed_not_ready() -> bool:
        ep = await c.api.get("endpoints", "never-ready", ns)
        return ip in endpoint_ips(ep, "notReadyAddresses")
    await until(listed_not_ready, 30, what=f"{ip} in notReadyAddresses")
    # "Never": watched for a while (as upstream, which watches a minute), every second.
    for _ in range(8):
        p = await c.api.get("pods", "test-webserver", ns)
        assert condition(p, "Ready").get("status") != "True", "the pod became Ready"
        assert restarts(p) == 0 and phase(p) == "Running"
        ep = await c.api.get("endpoints", "never-ready", ns)
        assert ip not in endpoint_ips(ep), "an unready pod is among the ready addresses"
        await asyncio.sleep(1)


@pytest.mark.upstream("[sig-node] Probing container with readiness probe should not be ready "
                      "before initial delay and never restart [NodeConformance] [Conformance]")
async def test_readiness_initial_delay_and_endpoints(conformance: Conformance, ns: str) -> None:
    """Ready no sooner than initialDelaySeconds after the container started, never restarted;
    the Endpoints of a Service selecting it follow its readiness both ways (ready: addresses;
    its probe failing again: back to notReadyAddresses)."""
    c = conformance
    labels = {"app": "readiness"}
    pod = busybox_pod("test-webserver", "touch /tmp/ready; sleep 3600", labels=labels)
    pod["spec"]["containers"][0]["readinessProbe"] = {
        "exec": {"command": ["cat", "/tmp/ready"]}, "initialDelaySeconds": 5,
        "periodSeconds": 1, "failureThreshold": 1}
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    await c.create("services", service("readiness", labels, target_port=80), ns)
    await c.create("pods", pod, ns)
    ready = await c.wait_running(ns, "test-webserver")
    started = container_status(ready)["state"]["running"]["startedAt"]
    became_ready = condition(ready, "Ready")["lastTransitionTime"]
    delay = (datetime.fromisoformat(became_ready.replace("Z", "+00:00")) -
             datetime.fromisoformat(started.replace("Z", "+00:00"))).total_seconds()
    assert delay >= 4, f"Ready {delay:.0f}s after the start, before the 5s initial delay"
    assert restarts(ready) == 0
    ip = ready["status"]["podIP"]

    async def endpoints(field: str) -> bool:
        ep = await c.api.get("endpoints", "readiness", ns)
        return ip in endpoint_ips(ep, field)
    await until(lambda: endpoints("addresses"), 30, what=f"{ip} among the ready addresses")
    code, _, err = await c.exec(ns, "test-webserver", "rm", "/tmp/ready")
    assert code == 0, err
    await c.wait_pod(ns, "test-webserver",
                     lambda p: condition(p, "Ready").get("status") == "False", "not Ready")
    await until(lambda: endpoints("notReadyAddresses"), 30,
                what=f"{ip} moved to notReadyAddresses")
    assert not await endpoints("addresses")
    assert restarts(await c.api.get("pods", "test-webserver", ns)) == 0


@pytest.mark.upstream("[sig-network] Services should serve a basic endpoint from pods "
                      "[Conformance]")
async def test_service_endpoints_follow_pods(conformance: Conformance, ns: str) -> None:
    c = conformance
    labels = {"name": "endpoint-test2"}
    await c.create("services", service("endpoint-test2", labels), ns)

    async def endpoints_are(want: set[tuple[str, int]]) -> bool:
        ep = await c.api.get("endpoints", "endpoint-test2", ns)
        got = {(a["ip"], p["port"]) for s in ep.get("subsets") or []
               for a in s.get("addresses") or [] for p in s.get("ports") or []}
        return got == want
    await until(lambda: endpoints_are(set()), 30, what="no endpoints without pods")
    ips = {}
    for name in ("pod1", "pod2"):
        await c.create("pods", serve_hostname_pod(name, labels=labels), ns)
        ips[name] = (await c.wait_running(ns, name))["status"]["podIP"]
        want = {(ips[n], SERVE_PORT) for n in ips}
        await until(functools.partial(endpoints_are, want), 30,
                    what=f"endpoints {sorted(want)}")
    await c.api.delete("pods", "pod1", ns)
    await until(lambda: endpoints_are({(ips["pod2"], SERVE_PORT)}), 60,
                what="pod1 gone from the endpoints")
    await c.api.delete("pods", "pod2", ns)
    await until(lambda: endpoints_are(set()), 60, what="no endpoints once both pods went")


@pytest.mark.upstream("[sig-api-machinery] Namespaces [Serial] should ensure that all pods are "
                      "removed when a namespace is deleted [Conformance]")
async def test_namespace_deletion_removes_pods(conformance: Conformance) -> None:
    c = conformance
    victim = await c.new_namespace()
    try:
        await c.create("pods", busybox_pod("test-pod", "sleep 3600"), victim)
        await c.wait_running(victim, "test-pod")
        await c.api.delete("namespaces", victim)
        await until(lambda: gone(c.api, "namespaces", victim), 120,
                    what=f"namespace {victim} gone (its running pod stopped first)")
        assert (await c.api.list("pods", victim))["items"] == []
    finally:
        if not await gone(c.api, "namespaces", victim):
            await c.api.delete("namespaces", victim)
