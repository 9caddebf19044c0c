"""What tkctl and the client say when a part of the control plane is down: the part that is.

Issue 20: during an etcd outage tkctl printed "The connection to the server ... was refused -
did you specify the right host or port?" while the apiserver was answering 503 `etcd
unavailable: ... connection refused`. The client told the two apart by the words of the
message; now by where the error came from: an answer of the apiserver carries a Status in its
trailing metadata, a call that never reached it does not (`client.apiclient.Unreachable`).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from api import errors
from client.apiclient import Unreachable
from harness.cluster import Cluster
from harness.wait import until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def tkctl(c: Cluster, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TINYKUBE_SERVER": "", "TINYKUBE_CONFIG": ""}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tkctl", "--kubeconfig", c.kubeconfig, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_an_etcd_outage_is_blamed_on_etcd_not_on_the_connection() -> None:
    async with Cluster() as c:
        assert c.etcd.proc is not None and c.apiserver is not None
        c.etcd.proc.terminate()  # its data directory stays: start() brings the same etcd back
        await asyncio.to_thread(c.etcd.proc.wait, 30)

        # The client: the apiserver answered, with its own 503.
        with pytest.raises(errors.ServiceUnavailable) as caught:
            await c.client.list("pods", "default")
        assert not isinstance(caught.value, Unreachable)
        assert caught.value.message.startswith("etcd unavailable")

        # tkctl: says what is down, in kubectl's words for a server error.
        code, out, err = await tkctl(c, "get", "pods")
        assert code == 1 and out == ""
        assert err.startswith("Error from server (ServiceUnavailable): etcd unavailable"), err
        assert "connection to the server" not in err and err.count("\n") == 1, err

        await c.etcd.start()

        async def answers() -> bool:
            return (await tkctl(c, "get", "pods"))[0] == 0
        await until(answers, timeout=60, what="tkctl answered once etcd is back")

        # The apiserver itself gone: that is the connection, and tkctl says so.
        c.apiserver.kill()
        with pytest.raises(Unreachable):
            await c.client.list("pods", "default", timeout=10)
        code, _, err = await tkctl(c, "get", "pods")
        assert code == 1
        assert err.startswith("The connection to the server") and "was refused" in err, err
