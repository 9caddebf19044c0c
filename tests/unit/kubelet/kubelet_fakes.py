"""Containers as the runtime lists them, for the pure sync/status tests (no Docker here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubelet import labels as L


@dataclass
class FakeContainer:
    id: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    state: str = "running"
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    created_at: str = "2024-01-01T00:00:00Z"
    started_at: str = "2024-01-01T00:00:01Z"
    finished_at: str = ""
    image: str = "img"
    image_id: str = "docker://sha256:abc"
    pid: int = 0
    created: float = 0.0

    @property
    def pod_uid(self) -> str:
        return self.labels.get(L.POD_UID, "")

    @property
    def container_name(self) -> str:
        return self.labels.get(L.CONTAINER_NAME, "")

    @property
    def restart_count(self) -> int:
        return int(self.labels.get(L.RESTART_COUNT, "0"))

    @property
    def is_sandbox(self) -> bool:
        return self.labels.get(L.CONTAINER_TYPE) == L.TYPE_SANDBOX

    @property
    def sandbox_id(self) -> str:
        return self.labels.get(L.SANDBOX_ID, "")


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


def sandbox(state: str = "running", attempt: int = 0) -> FakeContainer:
    global _n
    _n += 1
    return FakeContainer(f"sb{_n}", f"k8s_POD_p_ns_u1_{attempt}",
                         {L.POD_UID: "u1", L.CONTAINER_NAME: "POD",
                          L.CONTAINER_TYPE: L.TYPE_SANDBOX},
                         state=state, created=float(_n),
                         exit_code=0 if state == "exited" else None)


def ctr(name: str, state: str = "running", exit_code: int | None = None, restarts: int = 0,
        finished: str = "", cid: str | None = None) -> FakeContainer:
    global _n
    _n += 1
    if state == "exited" and exit_code is None:
        exit_code = 0
    reason = "" if state != "exited" else ("Completed" if exit_code == 0 else "Error")
    return FakeContainer(cid or f"c{_n}", f"k8s_{name}_p_ns_u1_{restarts}",
                         {L.POD_UID: "u1", L.CONTAINER_NAME: name,
                          L.CONTAINER_TYPE: L.TYPE_CONTAINER, L.RESTART_COUNT: str(restarts)},
                         state=state, exit_code=exit_code, reason=reason,
                         finished_at=finished or ("2024-01-01T00:00:05Z"
                                                  if state == "exited" else ""),
                         created=float(_n))
