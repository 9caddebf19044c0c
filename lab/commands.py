"""The lab's verbs: up, status, down, reset, load-image, kubeconfig and the README's demo.

Each verb is idempotent where that makes sense (`up` on a running lab checks it and prints it
again; `down` on none says so), waits for what it started to work (not merely to run), and
prints progress for every step that takes more than a moment.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import yaml

from client.config import GRPC_EXTENSION
from lab.cluster import (
    DEFAULT_API_PORT,
    DEFAULT_GRPC_PORT,
    DEFAULT_NAME,
    NODE_IMAGE,
    POD_IMAGES,
    REPO,
    TIMINGS,
    Lab,
    LabError,
    Settings,
    copy_node_files,
    free_port,
    pick_subnet,
    run,
    say,
    used_subnets,
    wait_until,
)

DEMO_DEPLOYMENT = "docs/examples/hostnames-deployment.yaml"
DEMO_SERVICE = "docs/examples/hostnames-service.yaml"
DEMO_NODEPORT = 30376
READY_TIMEOUT = 180.0


# --- up ----------------------------------------------------------------------------------------


def up(lab: Lab, workers: int, api_port: int | None, grpc_port: int | None = None) -> Settings:
    if workers < 1:
        raise LabError(f"--workers {workers}: a lab needs at least one worker")
    _require_images(lab)
    _remove_orphaned_containers(lab)
    s = _settings_for_up(lab, workers, api_port, grpc_port)
    lab.write_settings(s)
    _write_pki(lab, s)
    _save_pod_images(lab)
    lab.write_extra_workers(s)
    services = ["etcd", "control-plane", *lab.worker_names(s.workers)]
    say(f"docker-compose -p {lab.name} up -d {' '.join(services)}")
    try:
        lab.compose(s, "up", "-d", "--remove-orphans", *services)
    except LabError as e:
        # A busy Docker engine can answer a container create after docker-compose gave up on
        # it; compose then reports the container it created itself as a name conflict. `up`
        # is idempotent: a second one starts what exists and creates what does not.
        say(f"docker-compose up failed; once more ({str(e).splitlines()[-1]})")
        lab.compose(s, "up", "-d", "--remove-orphans", *services)
    wait_ready(lab, s)
    _load_missing_images(lab, s)
    print_timings(s)
    return s


def _load_missing_images(lab: Lab, s: Settings) -> None:
    """Workers load the pod images when they start; a lab that was running already when
    lab/lab up added one (tinykube/nginx:1, say) gets what it lacks now."""
    for node in lab.worker_names(s.workers):
        missing = [image for image in POD_IMAGES if lab.exec(
            node, "docker", "image", "inspect", "--format", "{{.Id}}", image,
            check=False).returncode != 0]
        if missing:
            _load_into(lab, node, missing)


def check_up(lab: Lab, workers: int, api_port: int | None,
             grpc_port: int | None = None) -> None:
    """What `up` would refuse, said before lab/lab spends time preparing: a running lab of
    another size or apiserver ports, or the same port twice. Without an answering Docker engine
    (lab/lab starts one next) there is nothing to compare with."""
    _check_ports(api_port, grpc_port)
    try:
        rows = lab.containers()
    except LabError:
        return
    old = lab.settings()
    if old is not None and rows:
        _check_same_lab(lab, old, rows, workers, api_port, grpc_port)


def _check_ports(api_port: int | None, grpc_port: int | None) -> None:
    if api_port and api_port == grpc_port:
        raise LabError(f"--grpc-port {grpc_port}: it is --api-port too; the apiserver's HTTPS "
                       "and gRPC ports need one each")


def _check_same_lab(lab: Lab, old: Settings, rows: list[dict[str, str]], workers: int,
                    api_port: int | None, grpc_port: int | None = None) -> None:
    running = any(c["state"] == "running" for c in rows)
    if old.workers != workers:
        # Growing or shrinking a lab would renumber nothing but is not worth the surprises
        # (a worker's Node left behind): say how instead.
        state = "runs" if running else "exists (stopped)"
        raise LabError(f"--workers {workers}: lab {lab.name!r} {state} with {old.workers} "
                       f"worker(s); `lab/lab down` first to bring it up with --workers {workers}")
    if running and api_port and api_port != old.api_port:
        raise LabError(f"--api-port {api_port}: lab {lab.name!r} runs with its apiserver "
                       f"on {old.api_port}; `lab/lab down` first to change it")
    if running and grpc_port and old.grpc_port and grpc_port != old.grpc_port:
        raise LabError(f"--grpc-port {grpc_port}: lab {lab.name!r} runs with its apiserver's "
                       f"gRPC on {old.grpc_port}; `lab/lab down` first to change it")


def _require_images(lab: Lab) -> None:
    for image in (NODE_IMAGE, *POD_IMAGES):
        if run([lab.docker, "image", "inspect", image], check=False).returncode != 0:
            builder = "lab/node/build" if image == NODE_IMAGE else "lab/images/build --nginx"
            raise LabError(f"image {image} is missing: build it with {builder} "
                           "(lab/lab up does when run as root)")


def _remove_orphaned_containers(lab: Lab) -> None:
    """Containers of a lab whose state directory is gone (removed by hand) mount certificates
    that no longer exist: remove them, and the network, so that `up` starts afresh."""
    if lab.settings() is not None:
        return
    rows = lab.containers()
    if rows:
        names = [c["name"] for c in rows]
        say(f"no state for lab {lab.name!r} but containers {', '.join(names)}: removing them")
        run([lab.docker, "rm", "-f", "-v", *names])
    run([lab.docker, "network", "rm", f"{lab.name}-underlay"], check=False)


def _settings_for_up(lab: Lab, workers: int, api_port: int | None,
                     grpc_port: int | None = None) -> Settings:
    _check_ports(api_port, grpc_port)
    old = lab.settings()
    rows = lab.containers()
    if old is not None and rows:
        _check_same_lab(lab, old, rows, workers, api_port, grpc_port)
        if any(c["state"] == "running" for c in rows):
            if old.grpc_port:
                return old
            # Up from before the gRPC port was published: its control plane is re-created
            # with both (the HTTPS port stays).
            return replace(old, grpc_port=_grpc_port(grpc_port, None, old.api_port))
    port = free_port(api_port or (old.api_port if old else DEFAULT_API_PORT))
    if api_port and port != api_port:
        raise LabError(f"--api-port {api_port}: the port is taken on 127.0.0.1")
    gport = _grpc_port(grpc_port, old, port)
    # The lab's own network may be left from an interrupted run (or hold its stopped
    # containers): its subnet is ours to reuse. Otherwise create it here, before
    # docker-compose: a subnet that looked free may be taken by another lab's `up` meanwhile,
    # and Docker refuses the second network ("Pool overlaps"); then try the next one.
    subnet = lab.network_subnet()
    if subnet is None:
        taken = used_subnets()
        subnet = old.subnet if old is not None and old.subnet not in taken \
            else pick_subnet(taken)
        for _ in range(16):
            if lab.create_network(subnet):
                break
            taken |= {subnet} | used_subnets()
            subnet = pick_subnet(taken)
        else:
            raise LabError("no free /24 in 172.29.0.0/16 for the lab's network "
                           "(`docker network ls` shows who has them)")
    return Settings(lab.name, subnet, port, workers, grpc_port=gport)


def _grpc_port(asked: int | None, old: Settings | None, api_port: int) -> int:
    """The published gRPC port: `--grpc-port`, else the lab's earlier one, else 16442, else a
    free one; never the HTTPS port."""
    preferred = asked or (old.grpc_port if old and old.grpc_port else DEFAULT_GRPC_PORT)
    port = free_port(preferred)
    while port == api_port:  # the kernel's pick may be the port just chosen (and released)
        port = free_port(0)
    if asked and port != asked:
        raise LabError(f"--grpc-port {asked}: the port is taken on 127.0.0.1")
    return port


def _write_pki(lab: Lab, s: Settings) -> None:
    """The cluster's certificates (kept across runs; `tkctl pki init` is idempotent)."""
    pki = lab.state / "pki"
    server = "https://control-plane:6443"  # gRPC: control-plane:6442 and :6444 beside it
    cp_ip = f"{s.subnet}.10"
    # The certificates name the nodes' addresses: made for another subnet (the lab's network
    # was gone and its old subnet taken), they are of no use; `pki init` keeps existing files.
    stamp = pki / "lab-subnet"
    if stamp.exists() and stamp.read_text().strip() != s.subnet:
        say(f"the lab's subnet changed to {s.subnet}.0/24: new certificates")
        shutil.rmtree(pki)
        shutil.rmtree(lab.state / "nodes", ignore_errors=True)
    say(f"tkctl pki init --dir {_rel(pki)} (apiserver: control-plane, {cp_ip}, 127.0.0.1)")
    tkctl = [sys.executable, "-m", "tkctl", "--server", server]
    run([*tkctl, "pki", "init", "--dir", str(pki),
         "--apiserver-san", "control-plane", "--apiserver-san", lab.container("control-plane"),
         "--apiserver-san", cp_ip, "--etcd-san", "etcd", "--etcd-san", f"{s.subnet}.2"])
    for i, node in enumerate(lab.worker_names(s.workers), start=1):
        run([*tkctl, "pki", "add-node", node, "--ip", lab.worker_ip(s.subnet, i),
             "--dir", str(pki)])
        copy_node_files(pki, lab.state / "nodes" / node, node)
    stamp.write_text(s.subnet + "\n")
    # The admin's kubeconfig for this machine: the apiserver as published on the host, its
    # HTTPS port for kubectl and its gRPC port for tkctl (the token port is not published).
    config = yaml.safe_load((pki / "admin.conf").read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{s.api_port}"
        cluster["cluster"]["extensions"] = [{"name": GRPC_EXTENSION, "extension": {
            "server": f"127.0.0.1:{s.grpc_port}"}}]
    lab.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
    lab.kubeconfig.chmod(0o600)


def _save_pod_images(lab: Lab) -> None:
    """The pod images as one tar the workers load at start, rewritten only when they change."""
    images = lab.state / "images"
    images.mkdir(parents=True, exist_ok=True)
    ids = run([lab.docker, "image", "inspect", "--format", "{{.Id}}", *POD_IMAGES]).stdout
    stamp = images / "ids"
    tar = images / "tinykube.tar"
    if tar.exists() and stamp.exists() and stamp.read_text() == ids:
        return
    say(f"docker save {' '.join(POD_IMAGES)} (loaded into every worker at start)")
    run([lab.docker, "save", "-o", str(tar), *POD_IMAGES])
    stamp.write_text(ids)


def wait_ready(lab: Lab, s: Settings, timeout: float = READY_TIMEOUT) -> None:
    """Until the apiserver answers, every worker's Node is Ready, its netagent published its
    VTEP and its tk-proxy wrote KUBE-SERVICES: the lab works, not merely runs."""
    say(f"waiting for the apiserver on 127.0.0.1:{s.api_port} (HTTPS) and "
        f"127.0.0.1:{s.grpc_port} (gRPC)")
    wait_until("the apiserver (see `lab/lab logs control-plane apiserver`)",
               lambda: lab.tkctl("get", "namespaces", check=False).returncode == 0, timeout)
    names = lab.worker_names(s.workers)
    say(f"waiting for {len(names)} worker(s) to be Ready, on the overlay and proxied")
    for node in names:
        wait_until(f"node {node} to be Ready (see `lab/lab logs {node} kubelet`)",
                   partial(_node_ready, lab, node), timeout)
        wait_until(f"node {node}'s tk-netagent (see `lab/lab logs {node} netagent`)",
                   partial(_node_annotated, lab, node), timeout)
        wait_until(f"node {node}'s tk-proxy (see `lab/lab logs {node} proxy`)",
                   partial(_proxy_synced, lab, node), timeout)
        say(f"{node} is Ready")


def _proxy_synced(lab: Lab, node: str) -> bool:
    return lab.exec(node, "iptables", "-w", "-t", "nat", "-S", "KUBE-SERVICES",
                    check=False).returncode == 0


def _node(lab: Lab, node: str) -> dict[str, object] | None:
    proc = lab.tkctl("get", "node", node, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def _node_ready(lab: Lab, node: str) -> bool:
    obj = _node(lab, node) or {}
    conditions = (obj.get("status") or {}).get("conditions") or []  # type: ignore[attr-defined]
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _node_annotated(lab: Lab, node: str) -> bool:
    obj = _node(lab, node) or {}
    annotations = (obj.get("metadata") or {}).get("annotations") or {}  # type: ignore[attr-defined]
    return "flannel.alpha.coreos.com/backend-data" in annotations


def print_timings(s: Settings) -> None:
    print("\nThe lab's timings are shortened so node failure takes a minute, not six:")
    for key, _default, what, upstream in TIMINGS:
        print(f"  {what:<64} {s.timings[key]:>4}   (upstream {upstream})")


# --- status, kubeconfig, logs ----------------------------------------------------------------


def status(lab: Lab) -> int:
    s = lab.settings()
    rows = lab.containers()
    if s is None and not rows:
        lab.require_settings()  # raises: no lab of that name
    if s is not None:
        print(f"lab {lab.name!r}: {s.workers} worker(s), network {s.subnet}.0/24, apiserver "
              f"https://127.0.0.1:{s.api_port} (gRPC 127.0.0.1:{s.grpc_port}), "
              f"state {_rel(lab.state)}")
    print(f"\n{'CONTAINER':<28} {'STATE':<10} STATUS")
    for c in rows:
        print(f"{c['name']:<28} {c['state']:<10} {c['status']}")
    stopped = [c["name"] for c in rows if c["state"] != "running"]
    if stopped:
        print(f"\nnot running: {', '.join(stopped)} (`{_cli(lab, 'up')}` starts them, "
              f"or `docker start NAME`)")
    for c in rows:
        if c["state"] != "running":
            continue
        service = c["name"][len(lab.name) + 1:]
        out = lab.exec(service, "tk-node", "status", check=False).stdout.strip()
        print(f"\n{c['name']}:\n" + "\n".join("  " + line for line in out.splitlines()))
    if s is not None and any(c["state"] == "running" for c in rows):
        print("\ntkctl get nodes -o wide")
        if lab.container("control-plane") in stopped:
            print("(the control plane is not running: no apiserver to ask)")
        else:
            proc = lab.tkctl("get", "nodes", "-o", "wide", check=False, timeout=20)
            print((proc.stdout or proc.stderr).rstrip())
        print_timings(s)
    return 0


def kubeconfig(lab: Lab) -> None:
    s = lab.require_settings()
    print(f"# lab {lab.name!r}: the apiserver is published at https://127.0.0.1:{s.api_port} "
          f"(Kubernetes' HTTP API,\n# kubectl) and 127.0.0.1:{s.grpc_port} (gRPC, tkctl); this "
          f"admin kubeconfig (cluster-admin: keep it\n# private) is for both. Use it with: "
          f"eval \"$({_cli(lab, 'kubeconfig')})\"\n"
          f"export KUBECONFIG={lab.kubeconfig}\n"
          f"export TINYKUBE_CONFIG={lab.kubeconfig}")


def logs(lab: Lab, node: str, component: str | None, tail: int) -> None:
    s = lab.require_settings()
    nodes = ["etcd", "control-plane", *lab.worker_names(s.workers)]
    if node not in nodes:
        raise LabError(f"logs {node}: lab {lab.name!r} has no node {node!r} "
                       f"(its nodes: {', '.join(nodes)})")
    _require_running(lab, [node])
    if component is None:
        out = lab.exec(node, "tk-node", "status").stdout
        print(out.rstrip())
        print(f"\n(logs are in /var/log/tinykube/ inside {lab.container(node)}: "
              f"`lab/lab logs {node} COMPONENT`)")
        return
    proc = lab.exec(node, "tail", "-n", str(tail), f"/var/log/tinykube/{component}.log",
                    check=False)
    if proc.returncode != 0:
        raise LabError(f"no log for {component!r} on {node}: "
                       f"`lab/lab logs {node}` lists its components")
    print(proc.stdout.rstrip())


# --- down and reset ------------------------------------------------------------------------------


def ensure_node_image() -> None:
    """lab/images/build --nginx and lab/node/build (seconds when the images are up to date):
    what `lab/lab up` runs first (the pod images without nginx are the tests' own)."""
    run([str(REPO / "lab" / "images" / "build"), "--nginx"], timeout=900)
    run([str(REPO / "lab" / "node" / "build")], timeout=900)


def down(lab: Lab) -> None:
    """Remove the lab's containers, their volumes, its network and its state; a LabError if
    any of them is still there afterwards."""
    s = lab.settings()
    if s is None and not lab.containers():
        shutil.rmtree(lab.state, ignore_errors=True)
        print(f"no lab named {lab.name!r}: nothing to do")
        return
    volumes = lab.volumes()
    failed = ""
    if s is not None:
        say(f"docker-compose -p {lab.name} down -v (containers, their volumes, the network)")
        try:
            lab.compose(s, "down", "-v", "--remove-orphans", "--timeout", "5")
        except LabError as e:  # e.g. workers.yml removed by hand: remove by label below
            failed = str(e)
    # What docker-compose did not remove (no state, a compose file that no longer matches):
    # by the lab's label, whatever state its containers are in.
    ids = [c["name"] for c in lab.containers()]
    if ids:
        if s is not None:
            say(f"docker rm -f -v {' '.join(ids)}")
        run([lab.docker, "rm", "-f", "-v", *ids])
    run([lab.docker, "network", "rm", f"{lab.name}-underlay"], check=False)
    for v in volumes:
        run([lab.docker, "volume", "rm", "-f", v], check=False)
    shutil.rmtree(lab.state, ignore_errors=True)
    left = lab.leftovers(volumes)
    if left:
        raise LabError(f"lab {lab.name!r}: still there after down: {', '.join(left)}"
                       + (f" ({failed})" if failed else ""))
    say(f"lab {lab.name!r} is gone (containers, {len(volumes)} volumes, network, state)")


def reset(lab: Lab) -> None:
    """Back to a fresh cluster in the same containers: every component stopped, etcd wiped,
    every worker's pods, KUBE-* chains, flannel.1 and kubelet state removed, then started again
    in order (etcd, control plane, workers)."""
    s = lab.require_settings()
    workers = lab.worker_names(s.workers)
    order = ["etcd", "control-plane", *workers]
    _require_running(lab, order)
    say("stopping every component (tk-node stop all)")
    for service in reversed(order):
        if service.startswith("worker"):
            lab.exec(service, "tk-node", "stop", "netagent", "kubelet", "proxy")
        else:
            lab.exec(service, "tk-node", "stop", "all")
    say("wiping etcd; removing pods, KUBE-* chains, flannel.1 and kubelet state on every worker")
    for service in order:
        lab.exec(service, "tk-node", "cleanup")
    for service in order:
        lab.exec(service, "tk-node", "start", "all")
    wait_ready(lab, s)
    say(f"lab {lab.name!r} is reset: an empty cluster")


# --- load-image ------------------------------------------------------------------------------


def _stopped(lab: Lab, services: list[str]) -> list[str]:
    """Which of `services` have no running container."""
    running = {c["name"] for c in lab.containers() if c["state"] == "running"}
    return [sv for sv in services if lab.container(sv) not in running]


def _require_running(lab: Lab, services: list[str]) -> None:
    stopped = _stopped(lab, services)
    if stopped:
        names = ", ".join(lab.container(sv) for sv in stopped)
        raise LabError(f"lab {lab.name!r}: {names} not running (`{_cli(lab, 'up')}` "
                       "or `docker start` it)")


def _load_into(lab: Lab, node: str, images: list[str]) -> None:
    say(f"docker save {' '.join(images)} | docker exec -i {lab.container(node)} docker load")
    save = subprocess.Popen([lab.docker, "save", *images], stdout=subprocess.PIPE)
    load = subprocess.run([lab.docker, "exec", "-i", lab.container(node), "docker", "load",
                           "-q"], stdin=save.stdout, capture_output=True, text=True,
                          check=False)
    if save.stdout is not None:
        save.stdout.close()
    if save.wait() != 0 or load.returncode != 0:
        raise LabError(f"loading into {node} failed: {load.stderr.strip()}")
    print(load.stdout.rstrip())


def load_image(lab: Lab, images: list[str]) -> None:
    """Like `kind load docker-image`: this machine's images into every worker's dockerd.
    A stopped worker gets nothing: the others are loaded, then a LabError names it."""
    s = lab.require_settings()
    for image in images:
        if run([lab.docker, "image", "inspect", image], check=False).returncode != 0:
            raise LabError(f"load-image {image}: no such image in this machine's Docker engine "
                           "(`docker images` lists what is)")
    workers = lab.worker_names(s.workers)
    stopped = _stopped(lab, workers)
    if len(stopped) == len(workers):
        _require_running(lab, workers)
    for node in workers:
        if node in stopped:
            continue
        _load_into(lab, node, images)
    if stopped:
        names = ", ".join(f"{n} ({lab.container(n)})" for n in stopped)
        raise LabError(f"load-image: not loaded into {names}: not running; `docker start` it "
                       "and load again")


# --- the demo ------------------------------------------------------------------------------------


def demo(lab: Lab, workers: int, requests: int = 6) -> None:
    """The README's first command: the lab up, a 3-replica Deployment of the hostname server
    behind a NodePort Service, and the answers of several requests to each node's NodePort."""
    s = up(lab, workers, None)
    say(f"tkctl apply -f {DEMO_DEPLOYMENT} -f {DEMO_SERVICE}")
    print(lab.tkctl("apply", "-f", str(_repo(DEMO_DEPLOYMENT)),
                    "-f", str(_repo(DEMO_SERVICE))).stdout.rstrip())
    say("tkctl rollout status deployment/hostnames")
    print(lab.tkctl("rollout", "status", "deployment/hostnames", "--timeout", "180s",
                    timeout=200).stdout.rstrip())
    for title, args in (("tkctl get nodes -o wide", ("get", "nodes", "-o", "wide")),
                        ("tkctl get pods -o wide", ("get", "pods", "-o", "wide")),
                        ("tkctl get service hostnames", ("get", "service", "hostnames"))):
        print()
        say(title)
        print(lab.tkctl(*args).stdout.rstrip())
    nodes = [(n, lab.worker_ip(s.subnet, i)) for i, n in
             enumerate(lab.worker_names(s.workers), start=1)]
    _wait_endpoints_programmed(lab, [n for n, _ in nodes], 3)
    print()
    say(f"the NodePort {DEMO_NODEPORT} on every node, asked from this machine")
    seen: set[str] = set()
    for node, ip in nodes:
        for _ in range(requests):
            answer = http_get(ip, DEMO_NODEPORT)
            seen.add(answer)
            print(f"  {node:<10} {ip}:{DEMO_NODEPORT:<6} -> {answer}")
    print(f"\n{len(seen - {'(no answer)'})} different pods answered. The lab is yours, "
          "with kubectl (1.31 or newer; tkctl takes the same commands):")
    print(demo_epilogue(lab))


def demo_epilogue(lab: Lab) -> str:
    """The kubectl commands to try, printed at the end of `lab/lab demo`."""
    tries = (
        (f'eval "$({_cli(lab, "kubeconfig")})"', "KUBECONFIG (and tkctl's TINYKUBE_CONFIG)"),
        ("kubectl get pods -o wide", "the 3 pods, their nodes and IPs"),
        ("kubectl logs deployment/hostnames", "through the apiserver and the kubelet"),
        ("kubectl exec -it deployment/hostnames -- sh", "a shell in a pod"),
        ("kubectl port-forward deployment/hostnames 9376:9376", "then curl 127.0.0.1:9376"),
        ("kubectl scale deployment/hostnames --replicas=5", ""),
        ("kubectl get pods -w", "watch (Ctrl-C)"),
        ("kubectl apply -f docs/examples/nginx-deployment.yaml", "the Kubernetes docs' nginx"),
    )
    lines = [f"  {cmd:<53} # {what}" if what else f"  {cmd}" for cmd, what in tries]
    lines.append(f"  {_cli(lab, 'status')}   {_cli(lab, 'down')}\n"
                 "docs/lab/ walks through the lab step by step; docs/lab/11-kubectl.md runs the "
                 "Kubernetes docs' nginx.")
    return "\n".join(lines)


def _wait_endpoints_programmed(lab: Lab, nodes: list[str], n: int) -> None:
    """Until every node's tk-proxy load-balances the demo Service over its n endpoints."""
    def programmed(node: str) -> bool:
        out = lab.exec(node, "iptables", "-w", "-t", "nat", "-S", check=False).stdout
        return sum(1 for line in out.splitlines()
                   if "default/hostnames" in line and "-j KUBE-SEP-" in line) >= n
    for node in nodes:
        wait_until(f"{node}'s tk-proxy to program the hostnames Service",
                   partial(programmed, node), 60)


def http_get(ip: str, port: int, timeout: float = 5.0) -> str:
    """The body's last line of GET / (serve-hostname answers its pod's name)."""
    try:
        conn = http.client.HTTPConnection(ip, port, timeout=timeout)
        conn.request("GET", "/")
        body = conn.getresponse().read().decode(errors="replace").strip()
        conn.close()
        return body.splitlines()[-1] if body else "(empty answer)"
    except OSError:
        return "(no answer)"


def _repo(path: str) -> Path:
    return REPO / path


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def _cli(lab: Lab, verb: str) -> str:
    """`lab/lab VERB` for this lab (--name is lab/lab's own flag: before the verb)."""
    return f"lab/lab {verb}" if lab.name == DEFAULT_NAME else f"lab/lab --name {lab.name} {verb}"
