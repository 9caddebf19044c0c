"""tk-kubelet: flags → runtime, CNI, volumes, node manager, logs/exec server → the Kubelet.

Wiring only; the work is in kubelet/kubelet.py. SIGTERM stops the process and leaves the
containers running, as a real kubelet does: the next kubelet adopts them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from client.flags import Parser, add_client_flags, duration, make_client, run_main, setup_logging
from kubelet import labels
from kubelet.backoff import Backoff
from kubelet.cni import CNI
from kubelet.health import (
    PLEG_RELIST_THRESHOLD,
    RUNTIME_DOWN_THRESHOLD,
    RUNTIME_REQUEST_TIMEOUT,
    HealthThresholds,
    RuntimeHealth,
)
from kubelet.kubelet import Kubelet
from kubelet.node import NodeManager
from kubelet.runtime import DockerRuntime
from kubelet.server import DEFAULT_PORT, KubeletServer, SARAuthorizer
from kubelet.volumes import VolumeManager

PROG = "tk-kubelet"


def _labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise argparse.ArgumentTypeError(f"invalid label {item!r} (want key=value)")
        out[k] = v
    return out


def parse(argv: list[str]) -> tuple[argparse.Namespace, Parser]:
    p = Parser(prog=PROG, description="Runs the pods bound to this node as Docker containers.")
    add_client_flags(p)
    p.add_argument("--node-name", required=True)
    p.add_argument("--root-dir", default="/var/lib/tinykube/kubelet")
    p.add_argument("--pod-infra-container-image", default="tinykube/pause:1")
    p.add_argument("--cni-bin-dir", default="/opt/cni/bin")
    p.add_argument("--cni-conf-dir", default="/etc/cni/net.d")
    p.add_argument("--cni-cache-dir", default=None, help="default ROOT-DIR/cni-cache")
    p.add_argument("--node-ip", default=None, help="the Node's InternalIP (default: the address "
                   "of the default route)")
    p.add_argument("--address", default="0.0.0.0", help="where the logs/exec server listens")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 = any free port")
    p.add_argument("--tls-cert-file", default=None)
    p.add_argument("--tls-private-key-file", default=None)
    p.add_argument("--client-ca-file", default=None)
    p.add_argument("--lease-interval", type=duration, default=10.0, metavar="DURATION")
    p.add_argument("--node-status-update-frequency", type=duration, default=10.0,
                   metavar="DURATION")
    p.add_argument("--sync-frequency", type=duration, default=60.0, metavar="DURATION")
    p.add_argument("--node-labels", type=_labels, default={}, metavar="K=V,...")
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument("--docker-endpoint", default="unix:///var/run/docker.sock")
    p.add_argument("--crash-loop-backoff-initial", type=duration, default=10.0,
                   metavar="DURATION")
    p.add_argument("--crash-loop-backoff-max", type=duration, default=300.0, metavar="DURATION")
    p.add_argument("--crash-loop-backoff-reset", type=duration, default=600.0,
                   metavar="DURATION")
    g = p.add_argument_group("runtime health (upstream's values; kubelet/health.py)")
    g.add_argument("--runtime-request-timeout", type=duration, default=RUNTIME_REQUEST_TIMEOUT,
                   metavar="DURATION", help="every runtime request but long-running ones")
    g.add_argument("--runtime-down-threshold", type=duration, default=RUNTIME_DOWN_THRESHOLD,
                   metavar="DURATION", help="NotReady once no runtime check has succeeded for "
                   "this long (upstream's maxWaitForContainerRuntime)")
    g.add_argument("--pleg-relist-threshold", type=duration, default=PLEG_RELIST_THRESHOLD,
                   metavar="DURATION", help="NotReady once the PLEG has not relisted for this "
                   "long (upstream's genericPlegRelistThreshold)")
    a = p.parse_args(argv)
    if not 0 <= a.port <= 65535:
        p.error(f"--port: {a.port} is not a port number")
    if a.max_pods < 1:
        p.error("--max-pods: must be at least 1")
    for flag in ("lease_interval", "node_status_update_frequency", "sync_frequency",
                 "crash_loop_backoff_initial", "runtime_request_timeout",
                 "runtime_down_threshold", "pleg_relist_threshold"):
        if not getattr(a, flag) > 0:
            p.error(f"--{flag.replace('_', '-')}: must be positive")
    if a.crash_loop_backoff_max < a.crash_loop_backoff_initial:
        p.error("--crash-loop-backoff-max: must not be less than --crash-loop-backoff-initial")
    tls = (a.tls_cert_file, a.tls_private_key_file, a.client_ca_file)
    if any(tls) and not all(tls):
        p.error("--tls-cert-file, --tls-private-key-file and --client-ca-file go together")
    return a, p


def _read(p: Parser, flag: str, path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        p.error(f"{flag}: {e.strerror}: {path}")


async def _run(a: argparse.Namespace, p: Parser) -> None:
    tls = (_read(p, "--tls-cert-file", a.tls_cert_file),
           _read(p, "--tls-private-key-file", a.tls_private_key_file),
           _read(p, "--client-ca-file", a.client_ca_file))
    client = make_client(p, a, PROG)
    root = Path(a.root_dir)  # absolute (main): the kubelet's instance id is derived from it
    runtime = DockerRuntime(a.docker_endpoint, kubelet_id=labels.kubelet_id(str(root)),
                            request_timeout=a.runtime_request_timeout)
    cni = CNI(a.cni_conf_dir, [a.cni_bin_dir], a.cni_cache_dir or str(root / "cni-cache"))
    kubelet: Kubelet | None = None

    def resolve(ns: str, name: str, container: str | None, previous: bool) -> str:
        assert kubelet is not None
        return kubelet.resolve(ns, name, container, previous)

    server = KubeletServer(docker_client=runtime.docker_client, resolve=resolve,
                           authorizer=SARAuthorizer(client, a.node_name), address=a.address,
                           port=a.port, tls_cert=tls[0], tls_key=tls[1], client_ca=tls[2])
    try:
        await client.wait_ready()
        port = await server.start()
        node = NodeManager(client, a.node_name, runtime, cni, node_ip=a.node_ip,
                           kubelet_port=port, lease_interval=a.lease_interval,
                           status_interval=a.node_status_update_frequency,
                           labels=a.node_labels, max_pods=a.max_pods, root_dir=str(root),
                           health=RuntimeHealth(HealthThresholds(
                               runtime_request_timeout=a.runtime_request_timeout,
                               runtime_down_after=a.runtime_down_threshold,
                               pleg_relist_threshold=a.pleg_relist_threshold)))
        backoff = Backoff(a.crash_loop_backoff_initial, a.crash_loop_backoff_max,
                          a.crash_loop_backoff_reset)
        kubelet = Kubelet(client, a.node_name, runtime, cni, node,
                          VolumeManager(client, root, a.node_name),
                          pod_infra_image=a.pod_infra_container_image, crash_backoff=backoff,
                          sync_frequency=a.sync_frequency)
        await kubelet.run()
    finally:
        await asyncio.shield(server.stop())
        await client.close()
        await runtime.close()


def main() -> None:
    a, p = parse(sys.argv[1:])
    a.root_dir = os.path.abspath(a.root_dir)
    setup_logging(a.verbose)
    run_main(_run(a, p), PROG)


if __name__ == "__main__":
    main()
