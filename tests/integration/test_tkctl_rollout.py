"""`tkctl rollout ...` end to end: the verbs run in-process against the shared control plane
(real etcd + apiserver + scheduler + controllers + hollow nodes)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from harness import objects
from harness.cluster import Cluster
from harness.wait import until
from tkctl.commands import execute

pytestmark = pytest.mark.integration

REV = "deployment.kubernetes.io/revision"


async def tk(c: Cluster, ns: str, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await execute(["--kubeconfig", c.kubeconfig, "-n", ns, *args], stdout=out,
                         stderr=err)
    return code, out.getvalue(), err.getvalue()


def deployment(name: str, replicas: int = 2, image: str = "nginx:1", **spec: Any) -> Any:
    return objects.deployment(name, replicas, image,
                              annotations={"kubernetes.io/change-cause": image}, **spec)


async def set_image(c: Cluster, ns: str, name: str, image: str) -> None:
    await c.client.patch("deployments", name, {
        "metadata": {"annotations": {"kubernetes.io/change-cause": image}},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}, ns)


async def image_of(c: Cluster, ns: str, name: str) -> str:
    d = await c.client.get("deployments", name, ns)
    image: str = d["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


async def test_rollout_status_history_undo(control_plane: Cluster, cp_namespace: str) -> None:
    c, ns = control_plane, cp_namespace
    await c.client.create("deployments", deployment("web"), ns)
    code, out, err = await tk(c, ns, "rollout", "status", "deployment/web", "--timeout", "60s")
    assert (code, err) == (0, ""), err
    assert out.splitlines()[-1] == 'deployment "web" successfully rolled out'
    assert all(line.startswith(('Waiting for deployment', 'deployment "web"'))
               for line in out.splitlines())
    await set_image(c, ns, "web", "nginx:2")
    code, out, _ = await tk(c, ns, "rollout", "status", "deploy", "web", "--timeout", "60s")
    assert code == 0 and out.endswith('deployment "web" successfully rolled out\n')

    code, out, err = await tk(c, ns, "rollout", "history", "deployment/web")
    assert (code, err) == (0, "")
    assert out == ("deployment.apps/web \n"
                   "REVISION  CHANGE-CAUSE\n"
                   "1         nginx:1\n"
                   "2         nginx:2\n\n")
    code, out, _ = await tk(c, ns, "rollout", "history", "deployment/web", "--revision", "1")
    assert code == 0
    assert out.startswith("deployment.apps/web with revision #1\nPod Template:\n")
    assert "nginx:1" in out
    code, _, err = await tk(c, ns, "rollout", "history", "deployment/web", "--revision", "7")
    assert (code, err) == (1, "error: unable to find the specified revision\n")

    code, out, err = await tk(c, ns, "rollout", "undo", "deployment/web")
    assert (code, out, err) == (0, "deployment.apps/web rolled back\n", "")
    assert await image_of(c, ns, "web") == "nginx:1"
    code, out, _ = await tk(c, ns, "rollout", "status", "deployment/web", "--timeout", "60s")
    assert code == 0

    async def revision_3() -> bool:
        d = await c.client.get("deployments", "web", ns)
        return (d["metadata"].get("annotations") or {}).get(REV) == "3"
    await until(revision_3, timeout=30)
    # Revision 1 was revived as 3; its old number is kept in revision-history.
    rss, _ = await c.client.list_all("replicasets", ns)
    revived = next(rs for rs in rss if rs["metadata"]["annotations"][REV] == "3")
    assert revived["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    code, out, _ = await tk(c, ns, "rollout", "history", "deployment/web")
    assert out.splitlines()[2:4] == ["2         nginx:2", "3         nginx:1"]

    code, out, err = await tk(c, ns, "rollout", "undo", "deployment/web", "--to-revision", "3")
    assert (code, out) == (0, "deployment.apps/web skipped rollback (current template already "
                              "matches revision 3)\n")
    code, out, err = await tk(c, ns, "rollout", "undo", "deployment/web", "--to-revision", "9")
    assert (code, err) == (1, "error: unable to find specified revision 9 in history\n")
    code, out, err = await tk(c, ns, "rollout", "undo", "deployment/web", "--to-revision", "2")
    assert code == 0 and await image_of(c, ns, "web") == "nginx:2"


async def test_rollout_pause_resume_restart(control_plane: Cluster, cp_namespace: str) -> None:
    c, ns = control_plane, cp_namespace
    await c.client.create("deployments", deployment("pr", 1), ns)
    assert (await tk(c, ns, "rollout", "status", "deployment/pr", "--timeout", "60s"))[0] == 0
    assert await tk(c, ns, "rollout", "pause", "deployment/pr") == (
        0, "deployment.apps/pr paused\n", "")
    assert await tk(c, ns, "rollout", "pause", "deployment/pr") == (
        0, "deployment.apps/pr already paused\n", "")
    assert await tk(c, ns, "rollout", "restart", "deployment/pr") == (
        1, "", "error: can't restart paused deployment (run rollout resume first)\n")
    code, _, err = await tk(c, ns, "rollout", "undo", "deployment/pr")
    assert code == 1 and "you cannot rollback a paused deployment" in err
    assert await tk(c, ns, "rollout", "resume", "deployment/pr") == (
        0, "deployment.apps/pr resumed\n", "")
    assert await tk(c, ns, "rollout", "resume", "deployment/pr") == (
        0, "deployment.apps/pr already resumed\n", "")
    assert await tk(c, ns, "rollout", "restart", "deployment/pr") == (
        0, "deployment.apps/pr restarted\n", "")
    d = await c.client.get("deployments", "pr", ns)
    assert "kubectl.kubernetes.io/restartedAt" in d["spec"]["template"]["metadata"][
        "annotations"]
    code, _out, _ = await tk(c, ns, "rollout", "status", "deployment/pr", "--timeout", "60s")
    assert code == 0
    d = await c.client.get("deployments", "pr", ns)
    assert d["metadata"]["annotations"][REV] == "2"


async def test_rollout_status_failures(control_plane: Cluster, cp_namespace: str) -> None:
    c, ns = control_plane, cp_namespace
    await c.client.create("deployments", deployment(
        "slow", 1, progressDeadlineSeconds=3), ns)
    await c.client.patch("deployments", "slow", {"spec": {"template": {"metadata": {
        "annotations": {"hollow.tinykube.io/never-ready": "true"}}}}}, ns)
    code, _, err = await tk(c, ns, "rollout", "status", "deployment/slow", "--timeout", "1s")
    assert (code, err) == (1, "error: timed out waiting for the condition\n")
    code, _, err = await tk(c, ns, "rollout", "status", "deployment/slow", "--timeout", "60s")
    assert (code, err) == (1, 'error: deployment "slow" exceeded its progress deadline\n')
    code, _, err = await tk(c, ns, "rollout", "status", "deployment/slow", "--watch=false")
    assert code == 1 and "exceeded its progress deadline" in err
    code, _, err = await tk(c, ns, "rollout", "status", "replicaset/x")
    assert (code, err) == (1, "error: no status viewer has been implemented for "
                              "ReplicaSet.apps\n")
    code, _, err = await tk(c, ns, "rollout", "pause", "replicaset/x")
    assert (code, err) == (1, 'error: replicasets.apps "x" pausing is not supported\n')
    code, _, err = await tk(c, ns, "rollout", "status", "deployment/nope")
    assert code == 1 and "not found" in err
    code, _out, err = await tk(c, ns, "rollout", "status")
    assert (code, err) == (1, "error: required resource not specified\n")
