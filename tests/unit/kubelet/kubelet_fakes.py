"""Containers as the runtime lists them, for the pure sync/status tests (no Docker here)."""

from __future__ import annotations

from typing import Any

from kubelet import labels as L
from kubelet.runtime import ContainerInfo


def info(cid: str, name: str, labels: dict[str, str], *, state: str = "running",
         exit_code: int | None = None, reason: str = "", finished_at: str = "",
         created: float = 0.0) -> ContainerInfo:
    """A real ContainerInfo (its label properties are the runtime's own) with test defaults."""
    return ContainerInfo(id=cid, name=name, labels=labels, state=state, exit_code=exit_code,
                         reason=reason, message="", created_at="2024-01-01T00:00:00Z",
                         started_at="2024-01-01T00:00:01Z", finished_at=finished_at,
                         image="img", image_id="docker://sha256:abc", pid=0, created=created)


def pod(*names: str, policy: str = "Always", inits: tuple[str, ...] = (),
        **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": n, "image": f"img-{n}"} for n in names],
                            "restartPolicy": policy, "nodeName": "n1", **extra}
    if inits:
        spec["initContainers"] = [{"name": n, "image": f"img-{n}"} for n in inits]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "5"},
            "spec": spec, "status": {"phase": "Pending", "qosClass": "BestEffort",
                                     "conditions": [{"type": "PodScheduled", "status": "True",
                                                     "lastTransitionTime": "T0"}]}}


_n = 0


def sandbox(state: str = "running", attempt: int = 0) -> ContainerInfo:
    global _n
    _n += 1
    return info(f"sb{_n}", f"k8s_POD_p_ns_u1_{attempt}",
                         {L.POD_UID: "u1", L.CONTAINER_NAME: "POD",
                          L.CONTAINER_TYPE: L.TYPE_SANDBOX},
                         state=state, created=float(_n),
                         exit_code=0 if state == "exited" else None)


def ctr(name: str, state: str = "running", exit_code: int | None = None, restarts: int = 0,
        finished: str = "", cid: str | None = None) -> ContainerInfo:
    global _n
    _n += 1
    if state == "exited" and exit_code is None:
        exit_code = 0
    reason = "" if state != "exited" else ("Completed" if exit_code == 0 else "Error")
    return info(cid or f"c{_n}", f"k8s_{name}_p_ns_u1_{restarts}",
                         {L.POD_UID: "u1", L.CONTAINER_NAME: name,
                          L.CONTAINER_TYPE: L.TYPE_CONTAINER, L.RESTART_COUNT: str(restarts)},
                         state=state, exit_code=exit_code, reason=reason,
                         finished_at=finished or ("2024-01-01T00:00:05Z"
                                                  if state == "exited" else ""),
                         created=float(_n))
