"""The serviceaccount controller: every active namespace has a `default` ServiceAccount.

Pods run as `default` unless they name another (the apiserver's ServiceAccount admission fills
that in), so the account must exist in every namespace: this controller creates it when a
namespace appears and again whenever someone deletes it. Terminating namespaces are left alone
(a create there would be refused, and the namespace controller is emptying it anyway).
"""

from __future__ import annotations

from api import errors
from api.core import Namespace, ServiceAccount
from controllers.base import Controller, namespace_terminating

# Upstream's --service-account controller options: the accounts every namespace gets.
DEFAULT_ACCOUNTS = ("default",)


class ServiceAccountController(Controller):
    name = "serviceaccount"

    def setup(self) -> None:
        self.namespaces = self.factory.informer_for(Namespace)
        self.namespaces.add_event_handler(on_add=self.enqueue,
                                          on_update=lambda old, new: self.enqueue(new))
        self.accounts = self.factory.informer_for(ServiceAccount)
        self.accounts.add_event_handler(on_delete=self._account_deleted)

    def _account_deleted(self, sa: ServiceAccount) -> None:
        if sa.name in DEFAULT_ACCOUNTS:
            self.queue.add(sa.namespace)

    async def sync(self, key: str) -> None:
        ns = self.namespaces.lister.get(key)
        if ns is None or (ns.status.phase if ns.status else None) not in (None, "Active") or (
                ns.metadata.deletion_timestamp):
            return
        for name in DEFAULT_ACCOUNTS:
            if self.accounts.lister.get(name, key) is not None:
                continue
            body = {"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": name, "namespace": key}}
            try:
                await self.client.create("serviceaccounts", body, key)
            except errors.AlreadyExists:
                pass  # our cache is behind: it exists, which is all we want
            except errors.Forbidden as e:
                if not namespace_terminating(e):
                    raise
            except errors.NotFound:
                pass  # the namespace is gone
