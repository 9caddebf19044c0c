"""The Docker labels and names by which the kubelet knows its containers again.

Everything the kubelet must remember about a container lives on the container itself, as the
dockershim did: after a `kill -9` and a restart the kubelet lists Docker, reads these labels and
knows which pod and which container each one is, how often it was restarted, and whether it is
still the spec it was created from. Nothing else is persisted. The label keys are upstream's
(`io.kubernetes.*`), so a reader who knows `docker ps` on a Kubernetes node recognises them;
two labels are ours: the node name, and the kubelet's instance id (a hash of its root
directory). Several kubelets may share one Docker engine (the tests, `KUBELETS=a,b scripts/up`),
even two with the same node name in different clusters (a test cluster's `node-1` beside the
one `scripts/up` started): each must leave the others' containers alone.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
CONTAINER_TYPE = "io.kubernetes.docker.type"
RESTART_COUNT = "io.kubernetes.container.restartCount"
CONTAINER_HASH = "io.kubernetes.container.hash"
SANDBOX_ID = "io.kubernetes.sandbox.id"
TERMINATION_GRACE = "io.kubernetes.pod.terminationGracePeriod"
TERMINATION_MESSAGE_PATH = "io.kubernetes.container.terminationMessagePath"
NODE_NAME = "io.tinykube.node.name"
KUBELET_ID = "io.tinykube.kubelet.id"

TYPE_SANDBOX = "podsandbox"
TYPE_CONTAINER = "container"
SANDBOX_CONTAINER_NAME = "POD"  # what upstream calls the pause container in names and labels

Obj = dict[str, Any]


def _meta(pod: Obj) -> tuple[str, str, str]:
    md = pod.get("metadata") or {}
    return md.get("name", ""), md.get("namespace", "default"), md.get("uid", "")


def pod_labels(pod: Obj, node_name: str) -> dict[str, str]:
    """The labels every container of `pod` carries (sandbox and app containers alike)."""
    name, namespace, uid = _meta(pod)
    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    out = {POD_NAME: name, POD_NAMESPACE: namespace, POD_UID: uid, NODE_NAME: node_name}
    if grace is not None:
        out[TERMINATION_GRACE] = str(grace)
    return out


def sandbox_labels(pod: Obj, node_name: str) -> dict[str, str]:
    return {**pod_labels(pod, node_name), CONTAINER_NAME: SANDBOX_CONTAINER_NAME,
            CONTAINER_TYPE: TYPE_SANDBOX}


def container_labels(pod: Obj, container: Obj, node_name: str, *, sandbox_id: str,
                     restart_count: int) -> dict[str, str]:
    return {**pod_labels(pod, node_name), CONTAINER_NAME: container["name"],
            CONTAINER_TYPE: TYPE_CONTAINER, SANDBOX_ID: sandbox_id,
            RESTART_COUNT: str(restart_count), CONTAINER_HASH: container_hash(container),
            TERMINATION_MESSAGE_PATH: container.get("terminationMessagePath")
            or "/dev/termination-log"}


def kubelet_id(root_dir: str) -> str:
    """The instance id of the kubelet whose `--root-dir` is `root_dir` (absolute path): stable
    across its restarts, different for every other kubelet on the machine."""
    return hashlib.sha256(root_dir.encode()).hexdigest()[:12]


def sandbox_name(pod: Obj, attempt: int) -> str:
    """`k8s_POD_<pod>_<namespace>_<uid>_<attempt>`, the dockershim's name for a pause container."""
    name, namespace, uid = _meta(pod)
    return f"k8s_{SANDBOX_CONTAINER_NAME}_{name}_{namespace}_{uid}_{attempt}"


def container_name(pod: Obj, container: str, restart_count: int) -> str:
    """`k8s_<container>_<pod>_<namespace>_<uid>_<restartCount>`."""
    name, namespace, uid = _meta(pod)
    return f"k8s_{container}_{name}_{namespace}_{uid}_{restart_count}"


def container_hash(container: Obj) -> str:
    """A hash of the container's spec: when it changes (a new image on a running pod), the
    kubelet kills the old container and starts one from the new spec, as upstream does.
    Key order is normalised so that the same spec always hashes the same after a restart."""
    text = json.dumps(container, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]
