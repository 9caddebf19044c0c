"""Pods in tests that run the controllers but no scheduler or nodes.

Such a test plays the missing parts itself: it waits for the controller's pods to appear and
then binds them and reports them Running, as a scheduler and a kubelet would, so that the
controller sees readiness and availability change.
"""

from __future__ import annotations

from typing import Any

from api.meta import now_rfc3339
from client.apiclient import ApiClient
from harness.wait import until

Obj = dict[str, Any]


async def live_pods(client: ApiClient, ns: str, selector: str) -> list[Obj]:
    """The pods matching `selector` that are not terminating."""
    items, _ = await client.list_all("pods", ns, label_selector=selector)
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


async def wait_pods(client: ApiClient, ns: str, selector: str, n: int) -> list[Obj]:
    """Wait until exactly `n` live pods match `selector`, and return them."""
    async def check() -> list[Obj] | None:
        pods = await live_pods(client, ns, selector)
        return pods if len(pods) == n else None
    return await until(check, timeout=30, what=f"{n} pods {selector}")


async def run_ready(client: ApiClient, ns: str, pod: Obj, node: str = "node-a",
                    ready: bool = True) -> None:
    """Bind the pod (unless it is bound) and report it Running, Ready or not."""
    name = pod["metadata"]["name"]
    if not (pod.get("spec") or {}).get("nodeName"):
        await client.bind(ns, name, node)
    now = now_rfc3339()
    cur = await client.get("pods", name, ns)
    cur["status"].update({
        "phase": "Running", "podIP": "10.1.0.1", "startTime": now,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                        "lastTransitionTime": now}]})
    await client.update_status("pods", cur, ns)
