"""Builders for the scheduler's unit tests: Pods and Nodes as the informers would hand them."""

from __future__ import annotations

from typing import Any

from api.core import Node, Pod
from scheduler.framework import PodInfo


def make_node(name: str, *, cpu: str = "4", memory: str = "16Gi", pods: int = 110,
              labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None,
              unschedulable: bool = False) -> Node:
    res = {"cpu": cpu, "memory": memory, "pods": str(pods)}
    spec: dict[str, Any] = {"taints": taints or []}
    if unschedulable:
        spec["unschedulable"] = True
    return Node.model_validate({
        "metadata": {"name": name, "labels": labels or {}}, "spec": spec,
        "status": {"capacity": res, "allocatable": res}})


def make_pod(name: str, *, namespace: str = "ns", cpu: str | None = None,
             memory: str | None = None, uid: str | None = None, node: str | None = None,
             ports: list[dict[str, Any]] | None = None, owner_uid: str | None = None,
             labels: dict[str, str] | None = None, **spec: Any) -> Pod:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    container: dict[str, Any] = {"name": "c"}
    if requests:
        container["resources"] = {"requests": requests}
    if ports:
        container["ports"] = ports
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid or f"uid-{name}",
                            "labels": labels or {}}
    if owner_uid:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                    "name": "rs", "uid": owner_uid, "controller": True}]
    if node:
        spec["nodeName"] = node
    return Pod.model_validate({"metadata": meta, "spec": {"containers": [container], **spec}})


def make_podinfo(name: str = "p", **kw: Any) -> PodInfo:
    return PodInfo.of(make_pod(name, **kw))
