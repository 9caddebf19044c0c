"""The controller-manager: many controllers, one process, one set of shared informers.

Like kube-controller-manager, every controller runs in this one process and shares one
SharedInformerFactory (one watch per resource, however many controllers read it) and one event
recorder. `--controllers` picks them with upstream's syntax: `*` (every controller), `name`
(turn one on), `-name` (turn one off).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Sequence

from controllers.base import Controller, ControllerContext

log = logging.getLogger(__name__)

# name → "module:Class"; imported only when chosen, so one broken controller cannot keep the
# others from starting.
CONTROLLERS: dict[str, str] = {
    "replicationcontroller": "controllers.replicaset:ReplicationControllerController",
    "replicaset": "controllers.replicaset:ReplicaSetController",
    "deployment": "controllers.deployment:DeploymentController",
    "endpoint": "controllers.endpoints:EndpointsController",
    "garbagecollector": "controllers.garbagecollector:GarbageCollector",
    "namespace": "controllers.namespace:NamespaceController",
    "serviceaccount": "controllers.serviceaccount:ServiceAccountController",
    "root-ca-cert-publisher": "controllers.rootcacertpublisher:RootCACertPublisher",
    "nodeipam": "controllers.nodeipam:NodeIpamController",
    "nodelifecycle": "controllers.nodelifecycle:NodeLifecycleController",
}


def select(spec: Sequence[str]) -> list[str]:
    """Resolve `--controllers` (`*`, `name`, `-name`) to controller names; ValueError names an
    unknown one."""
    chosen: set[str] = set()
    star = False
    for item in spec:
        name = item[1:] if item.startswith("-") else item
        if name == "*":
            star = True
            continue
        if name not in CONTROLLERS:
            raise ValueError(f"--controllers: unknown controller {name!r} (known: "
                             f"{', '.join(sorted(CONTROLLERS))}, or * for all)")
    if star:
        chosen = set(CONTROLLERS)
    for item in spec:
        if item == "*":
            continue
        if item.startswith("-"):
            chosen.discard(item[1:])
        else:
            chosen.add(item)
    return [n for n in CONTROLLERS if n in chosen]


def load(name: str) -> type[Controller]:
    module, _, cls = CONTROLLERS[name].partition(":")
    controller: type[Controller] = getattr(importlib.import_module(module), cls)
    return controller


async def run_controllers(ctx: ControllerContext, names: Sequence[str]) -> None:
    """Build, wire and run the chosen controllers until cancelled."""
    controllers = [load(n)(ctx) for n in names]
    for c in controllers:
        c.setup()
    ctx.factory.start()
    await ctx.factory.wait_for_cache_sync()
    log.info("caches synced; starting controllers: %s", ", ".join(names))
    try:
        # A TaskGroup, not gather: one controller dying cancels the others, and the manager
        # exits (and is restarted) instead of running on with a controller missing.
        async with asyncio.TaskGroup() as tg:
            for c in controllers:
                tg.create_task(c.run(), name=f"controller {c.name}")
    finally:
        await ctx.factory.shutdown()
