"""Start real cluster parts on free ports, for tests, benchmarks and anyone testing a controller.

`Etcd` runs Debian's `etcd` binary in a temporary directory; `ApiServer` runs `python -m apiserver`
as its own OS process (components never import each other, tests neither), so a test can SIGKILL
and restart it like any real component. `Cluster` is both, plus a connected client:

    async with Cluster() as c:
        pods = await c.client.list("pods", "default")

Nothing here is an in-memory stand-in: it is the same etcd and apiserver the lab runs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from client.apiclient import ApiClient


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
    """A real single-member etcd on free loopback ports, data in a temporary directory."""

    def __init__(self, binary: str | None = None) -> None:
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
        return f"http://127.0.0.1:{self.port}"

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
            ],
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )
        await _wait_port(self.port, self.proc, "etcd", log)

    async def stop(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def etcdctl(self, *args: str) -> str:
        """Run `etcdctl` against this etcd (v3 API) and return its stdout."""
        out = subprocess.run(
            ["etcdctl", f"--endpoints={self.url}", *args], check=True, capture_output=True,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        return out.stdout.decode()


class ApiServer:
    """`python -m apiserver` as a child process; killable and restartable on the same ports."""

    def __init__(self, etcd_url: str, *args: str) -> None:
        self.etcd_url = etcd_url
        self.args = list(args)
        self.port = free_port()
        self.metrics_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tk-apiserver-"))
        self.log = self.dir / "apiserver.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        cmd = [
            sys.executable, "-m", "apiserver", "--etcd-servers", self.etcd_url,
            "--bind-address", "127.0.0.1", "--port", str(self.port),
            "--metrics-port", str(self.metrics_port), *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
        await _wait_port(self.port, self.proc, "apiserver", self.log)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait()

    async def stop(self) -> None:
        _stop(self.proc)

    def logs(self) -> str:
        return _tail(self.log, 200)


class Cluster:
    """etcd + apiserver + a client: the fixture integration tests and benchmarks share."""

    def __init__(self, *apiserver_args: str) -> None:
        self.etcd = Etcd()
        self.apiserver_args = apiserver_args
        self.apiserver: ApiServer | None = None
        self._client: ApiClient | None = None

    @property
    def client(self) -> ApiClient:
        assert self._client is not None, "Cluster not started"
        return self._client

    @property
    def server(self) -> str:
        assert self.apiserver is not None, "Cluster not started"
        return self.apiserver.address

    def new_client(self) -> ApiClient:
        return ApiClient(self.server)

    async def start(self) -> None:
        await self.etcd.start()
        self.apiserver = ApiServer(self.etcd.url, *self.apiserver_args)
        await self.apiserver.start()
        self._client = ApiClient(self.apiserver.address)
        await wait_for_namespace(self._client, "default")

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self.apiserver is not None:
            await self.apiserver.stop()
        await self.etcd.stop()

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
