"""Start real cluster parts on free ports, for tests, benchmarks and anyone testing a controller.

`Etcd` runs Debian's `etcd` binary in a temporary directory; `ApiServer` runs `python -m apiserver`
as its own OS process (components never import each other, tests neither), so a test can SIGKILL
and restart it like any real component. `Cluster` is both, plus a connected admin client:

    async with Cluster() as c:
        pods = await c.client.list("pods", "default")
        async with c.client_as("jane", groups=["dev"]) as jane:   # a fresh client certificate
            ...

A Cluster is secure like a real one (issue 7): it makes its own PKI (`tkctl pki init`'s layout, in
its temporary directory), etcd requires client certificates, the apiserver serves Kubernetes' HTTP
API at `https_url` (client certificates or bearer tokens: kubectl and the `kubernetes` Python
client, with the admin kubeconfig `kubeconfig`), gRPC with client certificates at `server` (what
`client` and the components use) and gRPC with bearer tokens at `token_address`, writes an audit
log and encrypts Secrets at rest. `Cluster(insecure=True)` is the plaintext `--insecure` setup
instead (`https_url` is then http://).

Nothing here is an in-memory stand-in: it is the same etcd and apiserver the lab runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict

import grpc

from client.apiclient import ApiClient, open_channel
from client.config import ClientConfig, load_config
from client.pki import add_node, init_pki, kubeconfig_for
from harness.netns import Host, bridge_gone, delete_forward_rules
from harness.objects import condition
from harness.wait import until


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path,
                     timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {port} within {timeout}s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Etcd:
    """A real single-member etcd on free loopback ports, data in a temporary directory.

    With `tls_dir` (a PKI directory of `tkctl pki init`'s layout) it serves https and requires a
    client certificate signed by `tls_dir/etcd/ca.crt`, as in a real cluster: the apiserver's
    `apiserver-etcd-client` certificate, which `etcdctl()` uses too.
    """

    def __init__(self, binary: str | None = None, tls_dir: Path | None = None) -> None:
        self.tls_dir = Path(tls_dir) if tls_dir is not None else None
        found = binary or shutil.which("etcd") or "/usr/bin/etcd"
        if not os.path.exists(found):
            raise RuntimeError(
                "etcd not found: install Debian's etcd-server (apt-get install etcd-server)")
        self.binary = found
        self.dir = Path(tempfile.mkdtemp(prefix="tk-etcd-"))
        self.port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_dir is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def client_cert_files(self) -> tuple[Path, Path, Path] | None:
        """(CA, client certificate, client key) for talking to this etcd, None without TLS."""
        if self.tls_dir is None:
            return None
        d = self.tls_dir
        return (d / "etcd" / "ca.crt", d / "apiserver-etcd-client.crt",
                d / "apiserver-etcd-client.key")

    def _tls_flags(self) -> list[str]:
        if self.tls_dir is None:
            return []
        d = self.tls_dir / "etcd"
        return ["--client-cert-auth", "--trusted-ca-file", str(d / "ca.crt"),
                "--cert-file", str(d / "server.crt"), "--key-file", str(d / "server.key")]

    async def start(self) -> None:
        log = self.dir / "etcd.log"
        self.proc = subprocess.Popen(
            [
                self.binary, "--name", "tk", "--data-dir", str(self.dir / "data"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
                "--initial-cluster", f"tk=http://127.0.0.1:{self.peer_port}",
                "--unsafe-no-fsync",  # test data: durability across power loss is not the point
                *self._tls_flags(),
            ],
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )
        await _wait_port(self.port, self.proc, "etcd", log)

    async def stop(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def etcdctl_env(self, client_cert: bool = True) -> dict[str, str]:
        """The ETCDCTL_* variables that point `etcdctl` at this etcd (with its certificates)."""
        env = {"ETCDCTL_API": "3", "ETCDCTL_ENDPOINTS": self.url}
        files = self.client_cert_files
        if files is not None:
            env["ETCDCTL_CACERT"] = str(files[0])
            if client_cert:
                env["ETCDCTL_CERT"], env["ETCDCTL_KEY"] = str(files[1]), str(files[2])
        return env

    def etcdctl(self, *args: str, client_cert: bool = True) -> str:
        """Run `etcdctl` against this etcd (v3 API) and return its stdout (bytes that are not
        UTF-8, like ciphertext, become U+FFFD). `client_cert=False` leaves out the client
        certificate, which this etcd refuses: CalledProcessError."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        out = subprocess.run(
            ["etcdctl", "--dial-timeout=3s", "--command-timeout=5s", *args], check=True,
            capture_output=True, env={**env, **self.etcdctl_env(client_cert)}, timeout=30,
        )
        return out.stdout.decode(errors="replace")


class ApiServer:
    """`python -m apiserver` as a child process; killable and restartable on the same ports.

    Three free ports: `secure_port` (Kubernetes' HTTP API, `https_url`), `grpc_port` (gRPC,
    `address`) and `token_port` (gRPC with bearer tokens, `token_address`; 0 when insecure).
    With `pki` (a `tkctl pki init` directory) it runs secure with every flag a real one has:
    serving certificate, client CA, token port, etcd client certificate (for an https etcd URL),
    ServiceAccount keys, audit log (`audit_log`) and encryption at rest (`encryption_config`,
    which a test may rewrite before a restart). Without `pki` it runs `--insecure`. `args` come
    last, so a test can override any of these flags.
    """

    def __init__(self, etcd_url: str, *args: str, pki: Path | None = None,
                 parent: Path | None = None) -> None:
        self.etcd_url = etcd_url
        self.args = list(args)
        self.pki = Path(pki) if pki is not None else None
        self.secure_port = free_port()
        self.grpc_port = free_port()
        self.token_port = free_port() if pki is not None else 0
        self.metrics_port = free_port()
        # Its log and audit log outlive stop() (a test restarts it, or reads them after): a
        # Cluster passes its own directory as `parent`, which it deletes at the end.
        self.dir = Path(tempfile.mkdtemp(prefix="tk-apiserver-", dir=parent))
        self.log = self.dir / "apiserver.log"
        self.audit_log = self.dir / "audit.log"
        self.encryption_config = (self.pki / "encryption-config.yaml"
                                  if self.pki is not None else None)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The gRPC address (client certificates; plaintext when insecure)."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def token_address(self) -> str:
        """The gRPC address for bearer tokens."""
        return f"127.0.0.1:{self.token_port}"

    @property
    def https_url(self) -> str:
        """Kubernetes' HTTP API: `https://127.0.0.1:PORT` (http:// when insecure)."""
        return f"{'https' if self.pki is not None else 'http'}://127.0.0.1:{self.secure_port}"

    def security_args(self) -> list[str]:
        if self.pki is None:
            return ["--insecure"]
        d = self.pki
        out = [
            "--tls-cert-file", str(d / "apiserver.crt"),
            "--tls-private-key-file", str(d / "apiserver.key"),
            "--client-ca-file", str(d / "ca.crt"), "--token-port", str(self.token_port),
            "--service-account-key-file", str(d / "sa.pub"),
            "--service-account-signing-key-file", str(d / "sa.key"),
            "--audit-log-path", str(self.audit_log),
            "--encryption-provider-config", str(self.encryption_config),
            "--kubelet-client-certificate", str(d / "apiserver-kubelet-client.crt"),
            "--kubelet-client-key", str(d / "apiserver-kubelet-client.key"),
            "--kubelet-certificate-authority", str(d / "ca.crt"),
        ]
        if self.etcd_url.startswith("https://"):
            out += ["--etcd-cafile", str(d / "etcd" / "ca.crt"),
                    "--etcd-certfile", str(d / "apiserver-etcd-client.crt"),
                    "--etcd-keyfile", str(d / "apiserver-etcd-client.key")]
        return out

    async def start(self) -> None:
        cmd = [
            sys.executable, "-m", "apiserver", "--etcd-servers", self.etcd_url,
            "--bind-address", "127.0.0.1", "--secure-port", str(self.secure_port),
            "--grpc-port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port), *self.security_args(), *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
        # gRPC first: the HTTP front starts after it, so both answer once the second does.
        await _wait_port(self.grpc_port, self.proc, "apiserver", self.log)
        await _wait_port(self.secure_port, self.proc, "apiserver", self.log)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait()

    async def stop(self) -> None:
        _stop(self.proc)

    def logs(self) -> str:
        return _tail(self.log, 200)


class Component:
    """A control-plane or node component (`python -m MODULE ARGS`) as a child process.

    Like ApiServer it can be SIGKILLed and started again with the same arguments; its output
    goes to `log` (which outlives it, for the test's failure message).
    """

    def __init__(self, module: str, *args: str, parent: Path | None = None,
                 name: str | None = None, prefix: Sequence[str] = ()) -> None:
        self.module = module
        self.args = list(args)
        self.prefix = list(prefix)  # e.g. `ip netns exec HOST`: where the process runs
        self.name = name or module
        self.dir = Path(tempfile.mkdtemp(prefix=f"tk-{self.name}-", dir=parent))
        self.log = self.dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Component:
        if self.running:
            # A second process would orphan the first (never stopped, still acting).
            raise RuntimeError(f"{self.name} is already running (pid {self.proc.pid})"
                               if self.proc else f"{self.name} is already running")
        with self.log.open("ab") as out:  # the child has its own copy of the descriptor
            self.proc = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", self.module, *self.args], stdout=out,
                stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent,
            )
        return self

    def wait(self, timeout: float) -> int:
        """The exit status, waiting up to `timeout` seconds (TimeoutExpired if still alive)."""
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.wait(timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait()

    def stop(self) -> None:
        _stop(self.proc)

    def logs(self, lines: int = 200) -> str:
        return _tail(self.log, lines)


class KubeconfigServers(TypedDict):
    """Keyword arguments of client.pki's kubeconfig writers (`Cluster.kubeconfig_servers`)."""

    server_url: str
    grpc_server: str
    token_server: str | None


class Cluster:
    """etcd + apiserver + an admin client: the fixture integration tests and benchmarks share.

    `client` is the admin (`kubernetes-admin`, group system:masters, from `kubeconfig`), over
    gRPC at `server`; `client_as(user, groups)` a client with a fresh certificate for any
    identity; `kubeconfig` (and `kubeconfig_as`) also work with kubectl and the `kubernetes`
    Python client, which go to `https_url`; `pki` the certificate directory; `token_address`
    the apiserver's bearer-token gRPC port; `audit_log` its audit log. All but `https_url` and
    `server` are None/absent with `insecure=True`.
    """

    def __init__(self, *apiserver_args: str, insecure: bool = False,
                 listen_on: str | None = None) -> None:
        self.insecure = insecure
        # An address of this machine that nodes in other network namespaces (harness.netns
        # hosts) reach the apiserver at: it then listens on every address, and its serving
        # certificate names this one too.
        self.listen_on = listen_on
        self.dir = Path(tempfile.mkdtemp(prefix="tk-cluster-"))
        self.pki: Path | None = None if insecure else self.dir / "pki"
        self.etcd = Etcd(tls_dir=self.pki)
        self.apiserver_args = apiserver_args
        self.apiserver: ApiServer | None = None
        self._client: ApiClient | None = None
        self._clients: list[ApiClient] = []
        self.components: list[Component] = []
        # node name → its CNI bridge, and its host (None: this machine's own namespace)
        self._kubelets: dict[str, tuple[str, Host | None]] = {}
        self._tag = uuid.uuid4().hex[:6]

    @property
    def client(self) -> ApiClient:
        assert self._client is not None, "Cluster not started"
        return self._client

    @property
    def server(self) -> str:
        assert self.apiserver is not None, "Cluster not started"
        return self.apiserver.address

    @property
    def https_url(self) -> str:
        """Kubernetes' HTTP API (kubectl, the `kubernetes` client): `https://127.0.0.1:PORT`,
        http:// when insecure."""
        assert self.apiserver is not None, "Cluster not started"
        return self.apiserver.https_url

    @property
    def kubeconfig_servers(self) -> KubeconfigServers:
        """Where this cluster's kubeconfigs point, as keyword arguments of client.pki's
        writers (`init_pki(dir, **c.kubeconfig_servers)`): `server_url` (the HTTPS API),
        `grpc_server` (gRPC, client certificates), `token_server` (gRPC, bearer tokens)."""
        assert self.apiserver is not None, "Cluster not started"
        return KubeconfigServers(
            server_url=self.https_url, grpc_server=self.server,
            token_server=self.apiserver.token_address if self.apiserver.token_port else None)

    @property
    def host_server(self) -> str:
        """The apiserver's gRPC address as nodes inside harness.netns hosts reach it."""
        assert self.apiserver is not None and self.listen_on, "Cluster(listen_on=...) only"
        return f"{self.listen_on}:{self.apiserver.grpc_port}"

    @property
    def token_address(self) -> str:
        assert self.apiserver is not None and not self.insecure, "no token port"
        return self.apiserver.token_address

    @property
    def audit_log(self) -> Path:
        assert self.apiserver is not None, "Cluster not started"
        return self.apiserver.audit_log

    @property
    def kubeconfig(self) -> str:
        """The admin kubeconfig (for tkctl's --kubeconfig or TINYKUBE_CONFIG)."""
        assert self.pki is not None, "an insecure Cluster has no kubeconfig"
        return str(self.pki / "admin.conf")

    @property
    def ca_pem(self) -> bytes:
        assert self.pki is not None, "an insecure Cluster has no CA"
        return (self.pki / "ca.crt").read_bytes()

    def config(self, server: str | None = None) -> ClientConfig:
        """The admin ClientConfig, optionally for another apiserver address of this cluster."""
        if self.insecure:
            return ClientConfig(server=server or self.server)
        return load_config(self.kubeconfig, server=server)

    def new_client(self, server: str | None = None, **kwargs: Any) -> ApiClient:
        """Another admin client (its own channel), optionally to another apiserver address."""
        return self._track(ApiClient(config=self.config(server), **kwargs))

    def kubeconfig_as(self, user: str, groups: Sequence[str] = (), **kwargs: Any) -> str:
        """Write a kubeconfig with a fresh client certificate for `user` in `groups`
        (kwargs go to client.pki.kubeconfig_for: validity, not_after)."""
        assert self.pki is not None, "an insecure Cluster has no CA"
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", user)
        path = self.dir / "users" / f"{safe}-{len(list(self.dir.glob('users/*')))}.conf"
        kubeconfig_for(self.pki, user, tuple(groups), path=path,
                       **{**self.kubeconfig_servers, **kwargs})
        return str(path)

    def client_as(self, user: str, groups: Sequence[str] = (), **kwargs: Any) -> ApiClient:
        """A client authenticated as `user` (certificate CN) in `groups` (O)."""
        return self._track(ApiClient(config=load_config(self.kubeconfig_as(user, groups)),
                                     **kwargs))

    def channel(self, *, sync: bool = False,
                options: Sequence[tuple[str, Any]] = ()) -> Any:
        """A raw gRPC channel with the admin's credentials (grpc.aio unless `sync`), for tests
        that speak the protocol directly."""
        cfg = self.config()
        if not sync:
            return open_channel(cfg, options)
        if not cfg.secure:
            return grpc.insecure_channel(cfg.server, options=list(options))
        creds = grpc.ssl_channel_credentials(root_certificates=cfg.ca_pem,
                                             private_key=cfg.key_pem,
                                             certificate_chain=cfg.cert_pem)
        return grpc.secure_channel(cfg.server, creds, options=list(options))

    async def new_namespace(self, prefix: str = "t-") -> str:
        """Create a namespace with a fresh name (`prefix` + random hex) and return the name."""
        name = f"{prefix}{uuid.uuid4().hex[:10]}"
        await self.client.create(
            "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
        return name

    async def ready_nodes(self) -> set[str]:
        """Names of the Nodes whose Ready condition is True."""
        items, _ = await self.client.list_all("nodes")
        return {n["metadata"]["name"] for n in items
                if condition(n, "Ready").get("status") == "True"}

    async def wait_nodes_ready(self, count: int, timeout: float = 60.0) -> set[str]:
        """Wait for `count` Ready Nodes: hollow nodes register first and post their status
        after, and a test that starts in between meets a node that is not there yet."""
        async def enough() -> set[str] | None:
            ready = await self.ready_nodes()
            return ready if len(ready) >= count else None
        return await until(enough, timeout=timeout, what=f"{count} nodes Ready")

    def component_args(self, kubeconfig: str = "admin.conf") -> list[str]:
        """How a component of this cluster reaches the apiserver: `--kubeconfig` with the
        named kubeconfig of the PKI (scheduler.conf, controller-manager.conf, …), or
        `--server` when insecure."""
        if self.pki is None:
            return ["--server", self.server]
        return ["--kubeconfig", str(self.pki / kubeconfig)]

    def start_component(self, module: str, *args: str, kubeconfig: str = "admin.conf",
                        name: str | None = None) -> Component:
        """Start `python -m module` against this cluster; stopped with the cluster."""
        comp = Component(module, *self.component_args(kubeconfig), *args, parent=self.dir,
                         name=name)
        self.components.append(comp.start())
        return comp

    def start_scheduler(self, *args: str) -> Component:
        return self.start_component("scheduler", *args, kubeconfig="scheduler.conf",
                                    name="scheduler")

    def start_controller_manager(self, *args: str) -> Component:
        if self.pki is not None and "--root-ca-file" not in args:
            args = ("--root-ca-file", str(self.pki / "ca.crt"), *args)
        return self.start_component("controllers", *args,
                                    kubeconfig="controller-manager.conf",
                                    name="controller-manager")

    def start_hollow_nodes(self, count: int, *args: str) -> Component:
        """`tk-hollow-nodes --count N`: N fake nodes with heartbeats that run bound pods."""
        return self.start_component("harness.hollow_nodes", "--count", str(count), *args,
                                    name="hollow-nodes")

    def start_kubelet(self, node_name: str, *args: str, host: Host | None = None) -> Component:
        """A real kubelet for `node_name` on this machine's Docker engine; stopped (and its
        containers, bridge and CNI state removed) with the cluster.

        The node gets its kubeconfig and serving certificate in the PKI (`tkctl pki add-node`),
        a root dir and CNI bin/conf/cache dirs in the cluster's directory, and a CNI config
        (`tk-cni install`) with a bridge name unique to this cluster, so that parallel test
        processes sharing one Docker engine and one host never touch each other's pods.
        The kubelet serves logs/exec on a free port of 127.0.0.1, its InternalIP. `args` come
        last (short back-offs and intervals for tests).

        With `host` (a harness.netns host; the Cluster needs `listen_on`) the kubelet runs
        inside that host: its InternalIP and serving address are the host's underlay address,
        it reaches the apiserver at `host_server`, and its pods hang off a bridge `cni0` of
        the host's own.
        """
        assert self.pki is not None, "a kubelet needs the cluster's PKI (not insecure=True)"
        node_ip = host.ip if host is not None else "127.0.0.1"
        server = ["--server", self.host_server] if host is not None else []
        add_node(self.pki, node_name, ips=[node_ip], **self.kubeconfig_servers)
        base = self.dir / "nodes" / node_name
        root, bin_dir, conf_dir = base / "root", base / "cni-bin", base / "cni-conf"
        cache_dir, ipam_dir = base / "cni-cache", base / "cni-ipam"
        for d in (root, bin_dir, conf_dir, cache_dir, ipam_dir):
            d.mkdir(parents=True, exist_ok=True)
        if host is None:
            claim_bridges(self._tag)
        bridge = self.bridge_name(len(self._kubelets)) if host is None else "cni0"
        tk_cni = Path(sys.executable).parent / "tk-cni"
        subprocess.run([str(tk_cni), "install", "--bin-dir", str(bin_dir), "--conf-dir",
                        str(conf_dir), "--bridge", bridge, "--subnet-file",
                        str(base / "subnet.env"), "--data-dir", str(ipam_dir)],
                       check=True, capture_output=True, timeout=60)
        self._kubelets[node_name] = (bridge, host)
        node_dir = self.pki / "nodes" / node_name
        comp = Component(
            "kubelet", "--kubeconfig", str(node_dir / "kubelet.conf"), *server,
            "--node-name", node_name, "--root-dir", str(root),
            "--cni-bin-dir", str(bin_dir), "--cni-conf-dir", str(conf_dir),
            "--cni-cache-dir", str(cache_dir), "--node-ip", node_ip,
            "--address", node_ip, "--port", "0",
            "--tls-cert-file", str(node_dir / "kubelet.crt"),
            "--tls-private-key-file", str(node_dir / "kubelet.key"),
            "--client-ca-file", str(self.pki / "ca.crt"), *args,
            parent=self.dir, name=f"kubelet-{node_name}",
            prefix=host.prefix if host is not None else ())
        self.components.append(comp.start())
        return comp

    def subnet_file(self, node_name: str) -> Path:
        """Where the node's netagent writes, and its CNI plugin reads, `subnet.env`."""
        return self.dir / "nodes" / node_name / "subnet.env"

    def start_netagent(self, node_name: str, host: Host, *args: str) -> Component:
        """`tk-netagent` for `node_name` inside `host`, writing the subnet file its kubelet's
        CNI plugin reads, as that node's own agent (`nodes/NAME/netagent.conf`, user
        system:netagent:NAME, which may patch only that Node); stopped with the cluster."""
        assert self.pki is not None, "netagent needs the cluster's PKI (not insecure=True)"
        # The node's kubeconfigs (idempotent; the same addresses as start_kubelet's).
        add_node(self.pki, node_name, ips=[host.ip], **self.kubeconfig_servers)
        return self._start_in_host("netagent", f"nodes/{node_name}/netagent.conf", host,
                                   f"netagent-{node_name}", "--node-name", node_name,
                                   "--iface", "eth0",
                                   "--subnet-file", str(self.subnet_file(node_name)), *args)

    def start_proxy(self, node_name: str, host: Host, *args: str) -> Component:
        """`tk-proxy` for `node_name` inside `host` (`proxy.conf`, system:kube-proxy)."""
        return self._start_in_host("proxy", "proxy.conf", host, f"proxy-{node_name}",
                                   "--hostname-override", node_name, *args)

    def _start_in_host(self, module: str, kubeconfig: str, host: Host, name: str,
                       *args: str) -> Component:
        assert self.pki is not None, f"{module} needs the cluster's PKI (not insecure=True)"
        comp = Component(module, "--kubeconfig", str(self.pki / kubeconfig), "--server",
                         self.host_server, *args, parent=self.dir, name=name,
                         prefix=host.prefix)
        self.components.append(comp.start())
        return comp

    def bridge_of(self, node_name: str) -> str:
        """The CNI bridge of a kubelet this cluster started (`cni0` inside a netns host)."""
        return self._kubelets[node_name][0]

    def bridge_name(self, index: int) -> str:
        """`tkbr<cluster tag><n>`: at most 15 characters, unique per cluster and kubelet."""
        return f"tkbr{self._tag}{index}"[:15]

    def _cleanup_kubelets(self) -> None:
        """Remove every container of this cluster's kubelets, their bridges and CNI state."""
        if not self._kubelets:
            return
        try:
            import docker

            client = docker.DockerClient(base_url="unix:///var/run/docker.sock",
                                         version="auto", timeout=60)
        except Exception:
            return
        try:
            for node in self._kubelets:
                # Only this cluster's kubelet's containers: its instance id is a hash of its
                # root dir (kubelet/labels.kubelet_id; harness may not import the kubelet), so
                # a `node-1` that scripts/up started beside the tests is left alone.
                root = str(self.dir / "nodes" / node / "root")
                owner = hashlib.sha256(root.encode()).hexdigest()[:12]
                for c in client.api.containers(
                        all=True, filters={"label": [f"io.tinykube.node.name={node}",
                                                     f"io.tinykube.kubelet.id={owner}"]}):
                    with contextlib.suppress(Exception):
                        client.api.remove_container(c["Id"], v=True, force=True)
        finally:
            client.close()
        # Bridges inside harness.netns hosts go with their namespace (the test deletes it).
        own = {bridge for bridge, host in self._kubelets.values() if host is None}
        for bridge in own:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        remove_forward_rules(own)
        with contextlib.suppress(OSError):
            (_BRIDGE_OWNERS / self._tag).unlink()

    def _track(self, client: ApiClient) -> ApiClient:
        self._clients.append(client)
        return client

    async def start(self) -> None:
        # The `kubernetes` Endpoints must name the address the nodes reach us at.
        listen = (("--bind-address", "0.0.0.0", "--advertise-address", self.listen_on)
                  if self.listen_on else ())
        self.apiserver = ApiServer(self.etcd.url, *listen, *self.apiserver_args, pki=self.pki,
                                   parent=self.dir)
        if self.pki is not None:
            sans = [self.listen_on] if self.listen_on else []
            await asyncio.to_thread(init_pki, self.pki, **self.kubeconfig_servers,
                                    apiserver_sans=sans)
        await self.etcd.start()
        await self.apiserver.start()
        self._client = ApiClient(config=self.config())
        await wait_for_namespace(self._client, "default")

    async def stop(self) -> None:
        for comp in self.components:
            comp.stop()
        await asyncio.to_thread(self._cleanup_kubelets)
        for c in [*self._clients, self._client]:
            if c is not None:
                await c.close()
        if self.apiserver is not None:
            await self.apiserver.stop()
        await self.etcd.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def __aenter__(self) -> Cluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


# The comment the CNI plugin (netagent/cni.py forward_rules) puts on its FORWARD ACCEPTs.
_FORWARD_COMMENT = re.compile(r'--comment "?tinykube: pods on (tkbr[0-9a-z]+)"?')


def remove_forward_rules(bridges: set[str]) -> None:
    """Delete the CNI plugin's FORWARD rules for `bridges`, and those left behind by earlier
    test sessions (killed before their cleanup) for harness bridges (`tkbr...`) that no longer
    exist: the plugin adds two rules per bridge and nothing else ever removes them."""
    delete_forward_rules(_FORWARD_COMMENT,
                         lambda bridge: bridge in bridges or bridge_gone(bridge))


# Which process owns each cluster's `tkbr<tag>*` bridges: one file per tag holding
# "<pid> <process start time>" (the start time tells a reused pid apart).
_BRIDGE_OWNERS = Path("/run/tinykube/harness-bridges")
_HARNESS_BRIDGE = re.compile(r"^tkbr([0-9a-f]{6})\d+$")


def _process_identity(pid: int) -> str | None:
    """`"<pid> <start time>"` of a live process, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (start time); the command name (field 2) may hold spaces, so split after it.
    start_time = stat.rsplit(")", 1)[1].split()[19]
    return f"{pid} {start_time}"


def _owner_alive(tag: str) -> bool:
    try:
        recorded = (_BRIDGE_OWNERS / tag).read_text().strip()
        pid = int(recorded.split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return _process_identity(pid) == recorded


def claim_bridges(tag: str) -> None:
    """Record this process as the owner of `tkbr<tag>*`, then delete the harness bridges of
    processes that died without cleaning up (a session killed with SIGKILL): a dead kubelet's
    bridge keeps its pod-subnet route while its link is down, and the kernel still routes to
    it, so a later cluster's kubelet given the same subnet (10.100.0.0/24, say) would be
    unreachable from this machine."""
    _BRIDGE_OWNERS.mkdir(parents=True, exist_ok=True)
    me = _process_identity(os.getpid())
    (_BRIDGE_OWNERS / tag).write_text(f"{me}\n")
    doomed = set()
    for name in os.listdir("/sys/class/net"):
        m = _HARNESS_BRIDGE.match(name)
        if m and m.group(1) != tag and not _owner_alive(m.group(1)):
            doomed.add(name)
    for bridge in doomed:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
    for stale in os.listdir(_BRIDGE_OWNERS):
        if stale != tag and not _owner_alive(stale):
            with contextlib.suppress(OSError):
                (_BRIDGE_OWNERS / stale).unlink()
    if doomed:
        remove_forward_rules(doomed)


async def wait_for_namespace(client: ApiClient, name: str, timeout: float = 20.0) -> None:
    """Wait until the apiserver answers and has created its bootstrap namespaces."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            await client.get("namespaces", name)
            return
        except Exception as e:  # not up yet: any failure means "try again"
            last = e
        await asyncio.sleep(0.1)
    raise TimeoutError(f"namespace {name} not ready: {last}")
