"""tinykube's own images (lab/images/build) do what pods rely on, on the real Docker engine.

- `tinykube/pause:1` is every pod's sandbox: it must stop at once on SIGTERM with exit code 0
  (not be SIGKILLed after the stop timeout, exit code 137) and, as PID 1 of a shared PID
  namespace, reap the orphans reparented to it (else they stay zombies until the pod goes).
- `tinykube/serve-hostname:1` answers its hostname on port 9376 over HTTP/TCP and over UDP.
- `tinykube/busybox:1` has the applets tests exec (sh, wget, nc, sleep, ...), and users.
- `lab/images/build` is idempotent.

Containers here carry no kubelet's node label (no kubelet touches them) and are removed after
each test. Traffic goes only to the containers' addresses on Docker's own bridge.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container

from harness.docker import docker_client
from harness.wait import until

REPO = Path(__file__).resolve().parents[2]
PAUSE = "tinykube/pause:1"
BUSYBOX = "tinykube/busybox:1"
SERVE_HOSTNAME = "tinykube/serve-hostname:1"
TEST_LABEL = {"io.tinykube.test": "test_images"}

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_ready")]

Run = Callable[..., Container]


@pytest.fixture
def client() -> Iterator[docker.DockerClient]:
    c = docker_client()
    yield c
    c.close()


@pytest.fixture
def run(client: docker.DockerClient) -> Iterator[Run]:
    """Start a detached container (kwargs as docker's containers.run); removed after the test."""
    started: list[Container] = []

    def start(image: str, command: Any = None, **kwargs: Any) -> Container:
        name = f"tkimg-{uuid.uuid4().hex[:10]}"
        # create, then start: a container that fails to start is still removed afterwards
        c = client.containers.create(image, command, name=name, labels=TEST_LABEL, **kwargs)
        started.append(c)
        c.start()
        return c

    yield start
    for c in started:
        try:
            c.remove(force=True)
        except docker.errors.NotFound:
            pass


def state(c: Container) -> dict[str, Any]:
    c.reload()
    s: dict[str, Any] = c.attrs["State"]
    return s


def ip_of(c: Container) -> str:
    c.reload()
    ip: str = c.attrs["NetworkSettings"]["IPAddress"]
    assert ip, f"{c.name} has no address on Docker's bridge"
    return ip


def sh(c: Container, script: str) -> tuple[int, str]:
    code, out = c.exec_run(["sh", "-c", script])
    return code, out.decode(errors="replace")


# --- pause ---------------------------------------------------------------------------------


@pytest.mark.parametrize("image", [PAUSE, SERVE_HOSTNAME])
async def test_stops_on_sigterm_with_exit_code_0(run: Run, image: str) -> None:
    c = run(image)
    await until(lambda: state(c)["Running"], timeout=30, what=f"{image} running")
    # A PID 1 that ignored SIGTERM would be SIGKILLed after 30s: exit code 137.
    c.stop(timeout=30)
    s = state(c)
    assert not s["Running"]
    assert s["ExitCode"] == 0, s
    assert not s["OOMKilled"]


async def test_pause_exits_0_on_sigint(run: Run) -> None:
    c = run(PAUSE)
    await until(lambda: state(c)["Running"], timeout=30, what="pause running")
    c.kill(signal="SIGINT")
    s = await until(lambda: (lambda s: s if not s["Running"] else None)(state(c)),
                    timeout=30, what="pause exits on SIGINT")
    assert s["ExitCode"] == 0, s


async def orphan_state(run: Run, init: Container) -> Callable[[], str]:
    """Make an orphan in `init`'s PID namespace; return a probe of its /proc state.

    A busybox container joins the namespace (as `pod.spec.shareProcessNamespace` does) and its
    subshell starts `sleep 0.1` and exits, so the sleep is reparented to the namespace's PID 1,
    `init`. The probe says "gone" once the exited sleep has been reaped, "Z" while it is a
    zombie nobody reaps, or another /proc state while it still runs.
    """
    b = run(BUSYBOX, ["sh", "-c", "(sleep 0.1 & echo $! >/tmp/orphan.new; "
                      "mv /tmp/orphan.new /tmp/orphan); exec sleep 3600"],
            pid_mode=f"container:{init.id}")

    def orphan_pid() -> str | None:
        code, out = sh(b, "cat /tmp/orphan 2>/dev/null")
        return out.strip() if code == 0 and out.strip() else None

    pid = await until(orphan_pid, timeout=30, what="the orphan's pid")
    _, ppid = sh(b, f"cut -d')' -f2 /proc/{pid}/stat 2>/dev/null | cut -d' ' -f3")
    assert ppid.strip() in ("1", ""), f"orphan {pid} has parent {ppid}, not the namespace's init"

    def probe() -> str:
        _, out = sh(b, f"cat /proc/{pid}/stat 2>/dev/null || echo gone")
        out = out.strip()
        if out == "gone":
            return "gone"
        return out.rsplit(")", 1)[1].split()[0]  # the state: the field after "(comm)"

    return probe


async def test_pause_reaps_orphans_in_a_shared_pid_namespace(run: Run) -> None:
    pause = run(PAUSE)
    await until(lambda: state(pause)["Running"], timeout=30, what="pause running")
    probe = await orphan_state(run, pause)
    await until(lambda: probe() == "gone", timeout=30, what="pause reaps the orphan")


async def test_a_non_reaping_init_leaves_a_zombie(run: Run) -> None:
    """The control of the test above: the same orphan under an init that never waits (busybox
    sleep) stays a zombie, so the probe does tell reaped from not reaped."""
    init = run(BUSYBOX, ["sleep", "3600"])
    await until(lambda: state(init)["Running"], timeout=30, what="sleep running")
    probe = await orphan_state(run, init)
    await until(lambda: probe() == "Z", timeout=30, what="the orphan becomes a zombie")
    assert probe() == "Z"


# --- serve-hostname ------------------------------------------------------------------------


def http_get(ip: str, path: str) -> bytes:
    with socket.create_connection((ip, 9376), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {ip}\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def udp_ask(ip: str) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        s.sendto(b"hostname?", (ip, 9376))
        data, _ = s.recvfrom(2048)
        return data


async def test_serve_hostname_answers_its_hostname_over_tcp_and_udp(run: Run) -> None:
    hostname = f"sh-{uuid.uuid4().hex[:8]}"
    c = run(SERVE_HOSTNAME, hostname=hostname)
    ip = ip_of(c)

    def get(path: str) -> bytes | None:
        try:
            return http_get(ip, path)
        except OSError:
            return None

    raw = await until(lambda: get("/"), timeout=30, what="serve-hostname answers HTTP")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    assert headers["content-type"].startswith("text/plain")
    assert headers["content-length"] == str(len(hostname))
    assert body == hostname.encode()  # no trailing newline, as upstream
    other = get("/any/path?x=1")
    assert other is not None and other.partition(b"\r\n\r\n")[2] == hostname.encode()

    def ask() -> bytes | None:
        try:
            return udp_ask(ip)
        except OSError:  # a lost datagram: ask again
            return None

    assert await until(ask, timeout=30, what="serve-hostname answers UDP") == hostname.encode()


async def test_serve_hostname_image_has_busybox_to_exec(run: Run) -> None:
    c = run(SERVE_HOSTNAME, hostname="execme")
    await until(lambda: state(c)["Running"], timeout=30, what="serve-hostname running")

    def local_get() -> str | None:
        code, out = sh(c, "wget -qO- http://127.0.0.1:9376/")
        return out if code == 0 else None

    assert await until(local_get, timeout=30, what="wget inside") == "execme"
    code, out = sh(c, "cat /proc/1/cmdline | tr '\\0' ' '; command -v nc sh cat")
    assert code == 0, out
    assert out.startswith("/serve_hostname ")


# --- busybox -------------------------------------------------------------------------------


def test_busybox_has_applets_users_and_tmp(client: docker.DockerClient) -> None:
    script = (
        "set -e; for a in sh wget nc sleep cat ls ps ip nslookup timeout id hostname; do "
        "command -v $a >/dev/null || { echo missing $a; exit 1; }; done; "
        "sleep 0; wget --help >/dev/null 2>&1 || [ $? = 1 ]; "
        "stat -c %a /tmp; id -un; grep -c '^nobody:' /etc/passwd; echo $PATH"
    )
    out = client.containers.run(BUSYBOX, ["sh", "-c", script], remove=True,
                                labels=TEST_LABEL).decode()
    assert out.split() == ["1777", "root", "1", "/usr/sbin:/usr/bin:/sbin:/bin"], out
    nobody = client.containers.run(BUSYBOX, ["id", "-un"], user="65534", remove=True,
                                   labels=TEST_LABEL).decode().strip()
    assert nobody == "nobody"
    # The image's default command is a shell.
    assert client.images.get(BUSYBOX).attrs["Config"]["Cmd"] == ["sh"]


# --- the build -----------------------------------------------------------------------------


def test_build_is_idempotent() -> None:
    # docker_ready has built the images in this session: a second run builds nothing.
    proc = subprocess.run([str(REPO / "lab" / "images" / "build")], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"{image} up to date" for image in (PAUSE, BUSYBOX, SERVE_HOSTNAME)
    ], proc.stdout


def test_images_carry_their_build_hash(client: docker.DockerClient) -> None:
    for image in (PAUSE, BUSYBOX, SERVE_HOSTNAME):
        labels = client.images.get(image).attrs["Config"]["Labels"] or {}
        assert len(labels.get("io.tinykube.build-hash", "")) == 64, (image, labels)
    assert client.images.get(PAUSE).attrs["Config"]["Entrypoint"] == ["/pause"]
    assert client.images.get(SERVE_HOSTNAME).attrs["Config"]["Entrypoint"] == ["/serve_hostname"]
