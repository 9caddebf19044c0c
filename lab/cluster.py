"""One lab: its settings, its state directory, and the docker-compose project that runs it.

A lab is named (`tk` unless `--name` or `$TK_LAB_NAME` says otherwise): its containers are
`NAME-etcd`, `NAME-control-plane`, `NAME-worker-1` ..., its docker-compose project and network
are named after it, and its state lives in `.tinykube/lab/NAME/`:

    lab.env         the settings docker-compose reads (subnet, published ports, timings, ...)
    pki/            the cluster's certificates (`tkctl pki init`), mounted into etcd and the
                    control plane
    nodes/W/        what worker W gets (its kubelet's kubeconfig and serving certificate, the
                    CA certificate, tk-proxy's and tk-netagent's kubeconfigs), mounted read-only
    images/         the pod images (`docker save`), loaded into every worker's dockerd at start
    kubeconfig      the admin's kubeconfig, pointing at the apiserver's ports published on the
                    host (HTTPS for kubectl, gRPC for tkctl in its tinykube.io/grpc extension)
    workers.yml     the extra workers' services, when there are more than two

Several labs can run side by side (tests give each their own name): each picks a free /24 in
172.29.0.0/16 and free ports for its apiserver (Kubernetes' HTTP API and gRPC).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "lab" / "docker-compose.yml"
STATE_ROOT = REPO / ".tinykube" / "lab"
NODE_IMAGE = "tinykube/node:1"
# The pod images every worker loads at start (lab/images/build --nginx makes them all): the
# nginx tags are Debian's nginx (docs/deviations.md), for the Kubernetes docs' manifests.
POD_IMAGES = ("tinykube/pause:1", "tinykube/busybox:1", "tinykube/serve-hostname:1",
              "tinykube/nginx:1", "nginx:1.14.2", "nginx:1.16.1")
DEFAULT_NAME = "tk"
DEFAULT_API_PORT = 16443  # the apiserver's HTTPS port (6443) on 127.0.0.1
DEFAULT_GRPC_PORT = 16442  # its gRPC port (6442) on 127.0.0.1
DEFAULT_WORKERS = 2
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,14}$")
CONTROL_PLANE_IP = 10  # the last octet of each container's address on the underlay
ETCD_IP = 2

# The lab's shortened timings: (setting, value, what it is, upstream's default). They go to
# every container's environment (lab/node/entrypoint turns them into flags) and are printed
# by `up` and `status`.
TIMINGS: tuple[tuple[str, str, str, str], ...] = (
    ("TK_NODE_MONITOR_PERIOD", "2s", "controller-manager --node-monitor-period", "5s"),
    ("TK_NODE_MONITOR_GRACE", "20s", "controller-manager --node-monitor-grace-period", "40s"),
    ("TK_TOLERATION_SECONDS", "30",
     "apiserver --default-{not-ready,unreachable}-toleration-seconds", "300"),
    ("TK_LEASE_INTERVAL", "4s", "kubelet --lease-interval", "10s"),
    ("TK_NODE_STATUS_FREQUENCY", "4s", "kubelet --node-status-update-frequency", "10s"),
    ("TK_BACKOFF_INITIAL", "5s", "kubelet --crash-loop-backoff-initial", "10s"),
    ("TK_BACKOFF_MAX", "60s", "kubelet --crash-loop-backoff-max", "5m"),
)


class LabError(Exception):
    """A user-facing failure: printed as one line, without a traceback."""


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def run(cmd: Sequence[str], *, check: bool = True, capture: bool = True,
        input: bytes | None = None, env: dict[str, str] | None = None,
        timeout: float | None = 300) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure a LabError naming it, with what it printed."""
    try:
        proc = subprocess.run(list(cmd), capture_output=capture, text=input is None,
                              input=input, env=env, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise LabError(f"{cmd[0]} not found: run lab/lab (it installs what is missing) "
                       "or scripts/install") from e
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{shlex.join(cmd)} did not finish within {timeout:.0f}s") from e
    if check and proc.returncode != 0:
        out = proc.stderr if capture else ""
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        raise LabError(f"{shlex.join(cmd)} failed (exit {proc.returncode})"
                       + (f":\n{out.strip()}" if out and out.strip() else ""))
    return proc


def docker_cli() -> str:
    # Debian's CLI first: /usr/local/bin may hold a newer client that this engine refuses.
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


@dataclass
class Settings:
    """What a lab was brought up with (its lab.env): the same on every later command."""

    name: str
    subnet: str  # the first three octets, "172.29.0"
    api_port: int  # the apiserver's HTTPS port, published on 127.0.0.1
    workers: int
    timings: dict[str, str] = field(default_factory=lambda: {k: v for k, v, *_ in TIMINGS})
    grpc_port: int = 0  # its gRPC port, published on 127.0.0.1 (0: a lab from before it was)

    def env(self, state: Path) -> dict[str, str]:
        return {"TK_LAB": self.name, "TK_LAB_SUBNET": self.subnet,
                "TK_LAB_API_PORT": str(self.api_port), "TK_LAB_GRPC_PORT": str(self.grpc_port),
                "TK_LAB_STATE": str(state), "TK_LAB_WORKERS": str(self.workers),
                "TK_LAB_IMAGE": NODE_IMAGE, **self.timings}

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Settings:
        timings = {k: env.get(k, v) for k, v, *_ in TIMINGS}
        return cls(env["TK_LAB"], env["TK_LAB_SUBNET"], int(env["TK_LAB_API_PORT"]),
                   int(env["TK_LAB_WORKERS"]), timings, int(env.get("TK_LAB_GRPC_PORT", "0")))


def parse_env_file(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise LabError(f"--name {name!r}: a lab name is 1-15 lowercase letters, digits and '-', "
                       "starting with a letter")
    return name


class Lab:
    """A named lab: its state directory and its docker-compose project."""

    def __init__(self, name: str = DEFAULT_NAME, state_root: Path = STATE_ROOT) -> None:
        self.name = check_name(name)
        self.state = state_root / name
        self.docker = docker_cli()

    # --- settings and state --------------------------------------------------------------

    @property
    def env_file(self) -> Path:
        return self.state / "lab.env"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    def settings(self) -> Settings | None:
        """The settings of a lab that was brought up, or None."""
        try:
            return Settings.from_env(parse_env_file(self.env_file.read_text()))
        except (OSError, KeyError, ValueError):
            return None

    def require_settings(self) -> Settings:
        s = self.settings()
        if s is None:
            raise LabError(f"no lab named {self.name!r} here (no {self.env_file}): "
                           "bring one up with `lab/lab up`")
        return s

    def write_settings(self, s: Settings) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        lines = ["# written by lab/lab up: the settings lab/docker-compose.yml reads"]
        lines += [f"{k}={v}" for k, v in s.env(self.state).items()]
        self.env_file.write_text("\n".join(lines) + "\n")

    def container(self, service: str) -> str:
        return f"{self.name}-{service}"

    @staticmethod
    def worker_names(n: int) -> list[str]:
        return [f"worker-{i}" for i in range(1, n + 1)]

    @staticmethod
    def worker_ip(subnet: str, index: int) -> str:
        return f"{subnet}.{CONTROL_PLANE_IP + index}"

    # --- docker-compose ------------------------------------------------------------------

    def compose_files(self, s: Settings) -> list[str]:
        files = ["-f", str(COMPOSE_FILE)]
        if s.workers > 2:
            files += ["-f", str(self.state / "workers.yml")]
        return files

    def compose(self, s: Settings, *args: str, check: bool = True,
                capture: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        # docker-compose's own HTTP timeout is 60 s; an engine busy with many containers (the
        # test suite beside the lab) can take longer to create one.
        env = {"COMPOSE_HTTP_TIMEOUT": "300", **os.environ, **s.env(self.state)}
        cmd = ["docker-compose", "-p", self.name, *self.compose_files(s), *args]
        return run(cmd, env=env, check=check, capture=capture, timeout=timeout)

    def write_extra_workers(self, s: Settings) -> None:
        """workers.yml: worker-3 ... as copies of worker-2 with their own names and addresses."""
        path = self.state / "workers.yml"
        if s.workers <= 2:
            path.unlink(missing_ok=True)
            return
        base = yaml.safe_load(COMPOSE_FILE.read_text())
        template = base["services"]["worker-2"]
        text = yaml.safe_dump(template)
        services: dict[str, Any] = {}
        for i in range(3, s.workers + 1):
            services[f"worker-{i}"] = yaml.safe_load(
                text.replace("worker-2", f"worker-{i}")
                    .replace("${TK_LAB_SUBNET}.12", f"${{TK_LAB_SUBNET}}.{CONTROL_PLANE_IP + i}"))
        path.write_text("# written by lab/lab up for --workers "
                        f"{s.workers}\n" + yaml.safe_dump(
                            {"version": base["version"], "services": services}, sort_keys=False))

    # --- docker ------------------------------------------------------------------------------

    def containers(self, all_: bool = True) -> list[dict[str, str]]:
        """This lab's containers (name, state, status) from `docker ps`."""
        args = [self.docker, "ps", "--format", "{{json .}}",
                "--filter", f"label=io.tinykube.lab={self.name}"]
        if all_:
            args.insert(2, "-a")
        out = run(args).stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [{"name": r["Names"], "state": r.get("State", ""), "status": r["Status"]}
                for r in rows]

    def volumes(self) -> list[str]:
        """The Docker volumes this lab's containers use (etcd's data, each worker's images)."""
        names = [c["name"] for c in self.containers()]
        if not names:
            return []
        out = run([self.docker, "inspect", "--format",
                   '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}',
                   *names], check=False).stdout
        return out.split()

    def leftovers(self, volumes: Sequence[str] = ()) -> list[str]:
        """What of this lab still exists: containers, its network, the given volumes."""
        left = [f"container {c['name']}" for c in self.containers()]
        network = f"{self.name}-underlay"
        if run([self.docker, "network", "inspect", network], check=False).returncode == 0:
            left.append(f"network {network}")
        for v in volumes:
            if run([self.docker, "volume", "inspect", v], check=False).returncode == 0:
                left.append(f"volume {v}")
        return left

    def network_subnet(self) -> str | None:
        """The /24 prefix of this lab's network if it exists (left by an earlier `up`)."""
        proc = run([self.docker, "network", "inspect", "--format",
                    "{{range .IPAM.Config}}{{.Subnet}} {{end}}", f"{self.name}-underlay"],
                   check=False)
        m = re.match(r"(\d+\.\d+\.\d+)\.0/24", proc.stdout.strip()) if proc.returncode == 0 \
            else None
        return m.group(1) if m else None

    def create_network(self, subnet: str) -> bool:
        """Create this lab's network on `subnet` (before docker-compose, which then adopts it:
        same driver and IPAM, compose's own labels). False if the subnet overlaps a network
        created since it was picked (another lab's `up` racing this one): pick another."""
        proc = run([self.docker, "network", "create", "--driver", "bridge",
                    "--subnet", f"{subnet}.0/24", "--gateway", f"{subnet}.1",
                    "--label", f"io.tinykube.lab={self.name}",
                    "--label", f"com.docker.compose.project={self.name}",
                    "--label", "com.docker.compose.network=underlay",
                    f"{self.name}-underlay"], check=False)
        if proc.returncode == 0:
            return True
        if "overlap" in proc.stderr:
            return False
        raise LabError(f"docker network create {self.name}-underlay ({subnet}.0/24) failed: "
                       f"{proc.stderr.strip()}")

    def exec(self, service: str, *cmd: str, check: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run([self.docker, "exec", self.container(service), *cmd], check=check,
                   timeout=timeout)

    def tkctl(self, *args: str, check: bool = True,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run([sys.executable, "-m", "tkctl", "--kubeconfig", str(self.kubeconfig), *args],
                   check=check, timeout=timeout)


def wait_until(what: str, check: Callable[[], bool], timeout: float,
               interval: float = 1.0) -> None:
    """Poll `check` until true; a LabError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except LabError:
            pass
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port(preferred: int) -> int:
    """`preferred` if nothing listens on it on 127.0.0.1, else a free port the kernel picks."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise LabError("no free TCP port on 127.0.0.1")


def used_subnets() -> set[str]:
    """The /24 prefixes of 172.29.0.0/16 already used by an interface, a route or a Docker
    network here (a network's bridge has no route until a container is attached in some
    setups, and another lab may be creating one right now)."""
    out = run(["ip", "-4", "route", "show"], check=False).stdout or ""
    out += run(["ip", "-4", "-o", "addr", "show"], check=False).stdout or ""
    docker = docker_cli()
    ids = (run([docker, "network", "ls", "-q"], check=False).stdout or "").split()
    if ids:
        out += run([docker, "network", "inspect", "--format",
                    "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids], check=False).stdout or ""
    return set(re.findall(r"\b(172\.29\.\d+)\.\d+", out))


def pick_subnet(taken: set[str]) -> str:
    for third in range(0, 256):
        prefix = f"172.29.{third}"
        if prefix not in taken:
            return prefix
    raise LabError("no free /24 in 172.29.0.0/16 for the lab's network")


def copy_node_files(pki: Path, node_dir: Path, node: str) -> None:
    """What worker `node` needs, and nothing else of the PKI (no CA key on a worker, and no
    other worker's credentials: its kubelet and network agent are identities of this node
    alone, which the apiserver keeps to this node's objects)."""
    node_dir.mkdir(parents=True, exist_ok=True)
    src = pki / "nodes" / node
    for name in ("kubelet.conf", "kubelet.crt", "kubelet.key", "netagent.conf"):
        shutil.copy2(src / name, node_dir / name)
    for name in ("ca.crt", "proxy.conf"):
        shutil.copy2(pki / name, node_dir / name)
