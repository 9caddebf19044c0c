"""The root CA publisher: every active namespace has a ConfigMap `kube-root-ca.crt`.

Pods verify the apiserver with the cluster CA, which the ServiceAccount admission mounts into
each of them from this ConfigMap (the `ca.crt` item of the projected `kube-api-access-*`
volume). The ConfigMap must therefore exist in every namespace and hold exactly the CA bundle:
this controller creates it when a namespace appears, recreates it when someone deletes it and
puts the bundle and its description back when someone edits it, as upstream's
pkg/controller/certificates/rootcacertpublisher does. Terminating namespaces are left alone.

The bundle is the file of `--root-ca-file`; without that flag it is the CA the controller-manager
itself trusts for the apiserver (its kubeconfig's), as upstream falls back to its client
config's CA data; an insecure controller-manager has neither, and the controller does not run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from api import errors
from api.core import ConfigMap, Namespace
from controllers.base import Controller, namespace_terminating

CONFIGMAP_NAME = "kube-root-ca.crt"
DATA_KEY = "ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using "
               "internal endpoints such as the internal service IP or kubernetes.default.svc. "
               "No other usage is guaranteed across distributions of Kubernetes clusters.")


class RootCACertPublisher(Controller):
    name = "root-ca-cert-publisher"
    component = "root-ca-cert-publisher"

    def setup(self) -> None:
        self.root_ca = self._load_ca()
        self.namespaces = self.factory.informer_for(Namespace)
        self.namespaces.add_event_handler(on_add=self.enqueue,
                                          on_update=lambda old, new: self.enqueue(new))
        # Only the one ConfigMap per namespace: no need to cache every ConfigMap.
        self.configmaps = self.factory.informer_for(
            ConfigMap, field_selector=f"metadata.name={CONFIGMAP_NAME}")
        self.configmaps.add_event_handler(on_update=lambda old, new: self._configmap(new),
                                          on_delete=self._configmap)

    def _load_ca(self) -> str:
        path = self.options.root_ca_file
        if path:
            try:
                data = Path(path).read_text()
            except OSError as e:
                raise RuntimeError(f"error parsing root-ca-file at {path}: {e}") from None
            if "-----BEGIN CERTIFICATE-----" not in data:
                raise RuntimeError(f"error parsing root-ca-file at {path}: no certificate")
            return data
        ca = self.client.config.ca_pem
        return ca.decode() if ca else ""

    def _configmap(self, cm: ConfigMap) -> None:
        if cm.name == CONFIGMAP_NAME:
            self.queue.add(cm.namespace)

    async def run(self) -> None:
        if not self.root_ca:
            self.log.warning("no --root-ca-file and no CA in the controller-manager's "
                             "kubeconfig: not publishing %s", CONFIGMAP_NAME)
            await asyncio.Event().wait()  # idle until the manager stops
        await super().run()

    async def sync(self, key: str) -> None:
        ns = self.namespaces.lister.get(key)
        if ns is None or (ns.status.phase if ns.status else None) not in (None, "Active") or (
                ns.metadata.deletion_timestamp):
            return
        data = {DATA_KEY: self.root_ca}
        cm = self.configmaps.lister.get(CONFIGMAP_NAME, key)
        if cm is None:
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": CONFIGMAP_NAME, "namespace": key,
                                 "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                    "data": data}
            try:
                await self.client.create("configmaps", body, key)
            except errors.AlreadyExists:
                # Our cache is behind; the update event that follows brings it here again.
                pass
            except errors.NotFound:
                pass  # the namespace is gone
            except errors.Forbidden as e:
                if not namespace_terminating(e):
                    raise
            return
        annotations = cm.metadata.annotations or {}
        if (cm.data or {}) == data and annotations.get(DESCRIPTION_ANNOTATION):
            return
        obj = cm.to_dict()
        obj["data"] = data
        obj["metadata"].setdefault("annotations", {})[DESCRIPTION_ANNOTATION] = DESCRIPTION
        try:
            await self.client.update("configmaps", obj, key)
        except errors.NotFound:
            self.queue.add(key)  # deleted meanwhile: create it again
