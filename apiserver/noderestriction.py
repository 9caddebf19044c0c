"""NodeRestriction: the admission plugin that limits what a kubelet may write.

The Node authorizer lets every node update nodes, pods/status and leases, because at
authorization time the apiserver does not know *which* node or pod a write touches in a way it
can check cheaply (a create names no object, an update's effect is in its body). This plugin runs
on the decoded write and finishes the job, as upstream's plugin of the same name:
- a node may create and update only its own Node, without changing its taints on update and
  without setting labels a kubelet may not choose (`node-restriction.kubernetes.io/` ones, which
  exist so that workloads can trust them, and unknown `kubernetes.io`/`k8s.io` labels);
- a node may update the status only of pods bound to it, delete only pods bound to it, and
  create only mirror pods bound to itself that reference no secret, configmap, volume claim or
  service account;
- a node may touch only its own Lease in `kube-node-lease`;
- a node may request ServiceAccount tokens only bound to a pod that runs on it.
Users that are not nodes, and the apiserver's own writes, pass untouched.

`NetAgentRestriction`, beside it, does the same for each node's network agent
(`system:netagent:NAME`): the Node authorizer lets it patch only its own Node, and this plugin
lets the patch change only flannel's annotations on it, which is all the agent writes (its VTEP
MAC and public IP). Not its taints, `spec.unschedulable`, labels, status or other annotations:
a stolen agent credential cannot cordon its node or steer workloads, only break its own overlay
entries (issue 20).
"""

from __future__ import annotations

from typing import Any

from api import errors
from apiserver.auth import AdmissionRequest
from apiserver.authz import NODE_LEASE_NAMESPACE, netagent_node, node_name, pod_references
from apiserver.watchcache import WatchCache

Obj = dict[str, Any]
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
NODE_RESTRICTION_LABEL_DOMAIN = "node-restriction.kubernetes.io"
# Labels a kubelet may set on its own Node (upstream kubeletapis.IsKubeletLabel).
_KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os",
    "beta.kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type", "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
})
_KUBELET_LABEL_DOMAINS = ("kubelet.kubernetes.io", "node.kubernetes.io")
# The annotations a network agent publishes on its Node (netagent/vxlan.py: flannel's names).
FLANNEL_ANNOTATION_PREFIX = "flannel.alpha.coreos.com/"
# Metadata the registry itself rewrites on every update: never the writer's change.
_BOOKKEEPING_METADATA = frozenset({"resourceVersion", "managedFields"})


def _md(obj: Obj | None) -> Obj:
    return (obj or {}).get("metadata") or {}


def _spec(obj: Obj | None) -> Obj:
    return (obj or {}).get("spec") or {}


def _in_domain(namespace: str, domain: str) -> bool:
    return namespace == domain or namespace.endswith("." + domain)


def forbidden_labels(modified: set[str]) -> list[str]:
    """The labels in `modified` a kubelet may not set (upstream getForbiddenLabels)."""
    out = []
    for label in sorted(modified):
        namespace = label.split("/", 1)[0] if "/" in label else ""
        if _in_domain(namespace, NODE_RESTRICTION_LABEL_DOMAIN):
            out.append(label)
        elif (_in_domain(namespace, "kubernetes.io") or _in_domain(namespace, "k8s.io")) and not (
                label in _KUBELET_LABELS
                or any(_in_domain(namespace, d) for d in _KUBELET_LABEL_DOMAINS)):
            out.append(label)
    return out


def _modified_labels(new: dict[str, str], old: dict[str, str]) -> set[str]:
    return {k for k in new.keys() | old.keys() if new.get(k) != old.get(k)}


class NodeRestriction:
    """The admission plugin; `cache` answers the lookups (pods, nodes) it needs."""

    def __init__(self, cache: WatchCache) -> None:
        self.cache = cache

    async def admit(self, req: AdmissionRequest) -> None:
        node = node_name(req.user)
        if node is None:
            return  # not a node: not ours to restrict
        if not node:
            raise req.forbidden(f'could not determine node from user "{req.user.name}"'
                                  if req.user else "could not determine node")
        resource = (req.info.group, req.info.name)
        if resource == ("", "pods"):
            await self._pod(node, req)
        elif resource == ("", "nodes"):
            self._node(node, req)
        elif resource == ("", "serviceaccounts"):
            await self._service_account(node, req)
        elif resource == ("coordination.k8s.io", "leases"):
            self._lease(node, req)

    # --- pods ------------------------------------------------------------------------------

    async def _pod(self, node: str, req: AdmissionRequest) -> None:
        if req.subresource == "status":
            self._pod_status(node, req)
            return
        if req.subresource:
            raise req.forbidden(f'unexpected pod subresource "{req.subresource}", only '
                                  "'status' and 'eviction' are allowed")
        if req.operation == "CREATE":
            await self._mirror_pod(node, req)
        elif req.operation == "DELETE":
            if _spec(req.old).get("nodeName") != node:
                raise req.forbidden(f'node "{node}" can only delete pods with '
                                      "spec.nodeName set to itself")
        else:
            raise req.forbidden(f'unexpected operation "{req.operation}", node "{node}" '
                                  "can only create and delete mirror pods")

    def _pod_status(self, node: str, req: AdmissionRequest) -> None:
        if req.operation != "UPDATE":
            raise req.forbidden(f'unexpected operation "{req.operation}"')
        if _spec(req.old).get("nodeName") != node:
            raise req.forbidden(f'node "{node}" can only update pod status for pods with '
                                  "spec.nodeName set to itself")
        if (_md(req.old).get("labels") or {}) != (_md(req.obj).get("labels") or {}):
            raise req.forbidden(f'node "{node}" cannot update labels through pod status')

    async def _mirror_pod(self, node: str, req: AdmissionRequest) -> None:
        pod = req.obj or {}
        md, spec = _md(pod), _spec(pod)
        no = req.forbidden

        if MIRROR_POD_ANNOTATION not in (md.get("annotations") or {}):
            raise no(f'pod does not have "{MIRROR_POD_ANNOTATION}" annotation, node "{node}" can '
                     "only create mirror pods")
        if spec.get("nodeName") != node:
            raise no(f'node "{node}" can only create pods with spec.nodeName set to itself')
        owners = md.get("ownerReferences") or []
        if len(owners) > 1:
            raise no(f'node "{node}" can only create pods with a single owner reference set to '
                     "itself")
        if not owners:
            raise no(f'node "{node}" can only create pods with an owner reference set to itself')
        owner = owners[0]
        if (owner.get("apiVersion"), owner.get("kind"), owner.get("name")) != ("v1", "Node", node):
            raise no(f'node "{node}" can only create pods with an owner reference set to itself')
        if not owner.get("controller"):
            raise no(f'node "{node}" can only create pods with a controller owner reference set '
                     "to itself")
        if owner.get("blockOwnerDeletion"):
            raise no(f'node "{node}" must not set blockOwnerDeletion on an owner reference')
        node_obj = await self.cache.lookup("nodes", "", node)
        if node_obj is None:
            raise errors.NotFound(message=f'nodes "{node}" not found', kind="nodes", name=node)
        if owner.get("uid") != _md(node_obj).get("uid"):
            raise no(f"node {node} UID mismatch: expected {_md(node_obj).get('uid')} got "
                     f"{owner.get('uid')}")
        if spec.get("serviceAccountName") or spec.get("serviceAccount"):
            raise no(f'node "{node}" can not create pods that reference a service account')
        for resource in ("secrets", "configmaps", "persistentvolumeclaims"):
            if pod_references(pod, resource):
                raise no(f'node "{node}" can not create pods that reference {resource}')

    # --- nodes -----------------------------------------------------------------------------

    def _node(self, node: str, req: AdmissionRequest) -> None:
        requested = req.name or _md(req.obj).get("name", "")
        if requested != node:
            raise req.forbidden(f'node "{node}" is not allowed to modify node '
                                  f'"{requested}"')
        new_labels = _md(req.obj).get("labels") or {}
        if req.operation == "CREATE":
            bad = forbidden_labels(set(new_labels))
            if bad:
                raise req.forbidden(f'node "{node}" is not allowed to set the following '
                                      f"labels: {', '.join(bad)}")
        elif req.operation == "UPDATE":
            if (_spec(req.obj).get("taints") or []) != (_spec(req.old).get("taints") or []):
                raise req.forbidden(f'node "{node}" is not allowed to modify taints')
            bad = forbidden_labels(_modified_labels(new_labels,
                                                    _md(req.old).get("labels") or {}))
            if bad:
                raise req.forbidden(f"is not allowed to modify labels: {', '.join(bad)}")

    # --- leases and tokens -----------------------------------------------------------------

    def _lease(self, node: str, req: AdmissionRequest) -> None:
        if req.namespace != NODE_LEASE_NAMESPACE:
            raise req.forbidden(f'can only access leases in the "{NODE_LEASE_NAMESPACE}" '
                                  "system namespace")
        name = _md(req.obj).get("name") if req.operation == "CREATE" else req.name
        if name != node:
            raise req.forbidden("can only access node lease with the same name as the "
                                  "requesting node")

    async def _service_account(self, node: str, req: AdmissionRequest) -> None:
        if req.operation != "CREATE" or req.subresource != "token":
            return
        ref = _spec(req.obj).get("boundObjectRef") or {}
        # apiVersion defaults to v1, as the TokenRequest handler reads it.
        kind = (ref.get("apiVersion") or "v1", ref.get("kind"))
        if kind != ("v1", "Pod") or not ref.get("name"):
            raise req.forbidden("node requested token not bound to a pod")
        if not ref.get("uid"):
            raise req.forbidden("node requested token with a pod binding without a uid")
        pod = await self.cache.lookup("pods", req.namespace, ref["name"])
        if pod is None:
            raise errors.NotFound(message=f'pods "{ref["name"]}" not found', kind="pods",
                                  name=ref["name"])
        if ref["uid"] != _md(pod).get("uid"):
            raise req.forbidden(f"the UID in the bound object reference ({ref['uid']}) "
                                  "does not match the UID in record. The object might have "
                                  "been deleted and then recreated")
        if _spec(pod).get("nodeName") != node:
            raise req.forbidden("node requested token bound to a pod scheduled on a "
                                  "different node")


# --- network agents ---------------------------------------------------------------------------


def changes_beyond_flannel(new: Obj | None, old: Obj | None) -> list[str]:
    """The fields (as paths) in which `new` differs from `old` other than flannel's annotations
    and the registry's bookkeeping: what a network agent may not change."""
    new, old = new or {}, old or {}
    out = [k for k in sorted(new.keys() | old.keys())
           if k != "metadata" and new.get(k) != old.get(k)]
    new_md, old_md = _md(new), _md(old)
    out += [f"metadata.{k}" for k in sorted(new_md.keys() | old_md.keys())
            if k not in _BOOKKEEPING_METADATA and k != "annotations"
            and new_md.get(k) != old_md.get(k)]
    new_ann, old_ann = new_md.get("annotations") or {}, old_md.get("annotations") or {}
    out += [f"metadata.annotations[{k}]" for k in sorted(new_ann.keys() | old_ann.keys())
            if not k.startswith(FLANNEL_ANNOTATION_PREFIX) and new_ann.get(k) != old_ann.get(k)]
    return out


class NetAgentRestriction:
    """A node's network agent may update its own Node's flannel annotations and nothing else."""

    async def admit(self, req: AdmissionRequest) -> None:
        node = netagent_node(req.user)
        if node is None:
            return  # not a network agent
        if not node:
            raise req.forbidden(f'could not determine node from user "{req.user.name}"'
                                if req.user else "could not determine node")
        who = f'node network agent "{node}"'
        # The authorizer already keeps the agent to patching Nodes; refusing everything else
        # here too keeps that true if someone binds it a role.
        if (req.info.group, req.info.name) != ("", "nodes") or req.subresource:
            raise req.forbidden(f"{who} may only modify Node objects")
        requested = req.name or _md(req.obj).get("name", "")
        if requested != node:
            raise req.forbidden(f'{who} is not allowed to modify node "{requested}"')
        if req.operation != "UPDATE":
            raise req.forbidden(f'unexpected operation "{req.operation}", {who} may only '
                                "update its Node's annotations")
        changed = changes_beyond_flannel(req.obj, req.old)
        if changed:
            raise req.forbidden(f"{who} may only change {FLANNEL_ANNOTATION_PREFIX}* "
                                f"annotations on its Node, not {', '.join(changed)}")
