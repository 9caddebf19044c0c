"""The real Docker engine and tinykube's images, ready for tests and benchmarks.

The kubelet's tests and `bench/pod_startup.py` run real containers. `ensure_docker()` makes sure a
Docker engine answers (running `scripts/dockerd`, which starts Debian's dockerd if nothing answers)
and `ensure_images()` builds `tinykube/pause:1`, `tinykube/busybox:1` and
`tinykube/serve-hostname:1` (running `lab/images/build`, a no-op when they are up to date).

Both are idempotent but not free (a second of subprocesses), and pytest-xdist runs several
test processes at once against one engine: each runs under an exclusive `fcntl` lock on a file
shared by all processes, and at most once per process.
"""

from __future__ import annotations

import fcntl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
SOCKET = "unix:///var/run/docker.sock"
IMAGES = ("tinykube/pause:1", "tinykube/busybox:1", "tinykube/serve-hostname:1")
LOCK_FILE = Path("/tmp/tinykube-harness-docker.lock")

_done: set[str] = set()
_thread_lock = threading.Lock()  # the fcntl lock is per process: threads take turns here first


@contextmanager
def _machine_lock() -> Iterator[None]:
    with _thread_lock, open(LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run_once(key: str, argv: list[str], timeout: float) -> None:
    if key in _done:
        return
    with _machine_lock():
        if key in _done:
            return
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n"
                               f"{proc.stdout}{proc.stderr}")
        _done.add(key)


def ensure_docker() -> None:
    """A Docker engine answers on /var/run/docker.sock (started by scripts/dockerd if needed)."""
    _run_once("docker", [str(ROOT / "scripts" / "dockerd")], timeout=120)


def ensure_images() -> None:
    """tinykube's images are built and current in the engine (lab/images/build)."""
    ensure_docker()
    _run_once("images", [str(ROOT / "lab" / "images" / "build")], timeout=600)


def docker_client(timeout: int = 60, max_pool_size: int = 10) -> docker.DockerClient:
    """A client of the local engine (the caller closes it). The SDK is blocking: callers that
    run it from N threads at once want `max_pool_size` >= N (else threads queue for a
    connection)."""
    return docker.DockerClient(base_url=SOCKET, version="auto", timeout=timeout,
                               max_pool_size=max_pool_size)
