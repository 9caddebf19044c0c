"""Informers against a real apiserver + etcd: events, sharing, selectors, and surviving a SIGKILL.

The shared `cluster` is never stopped or restarted here; the restart test starts its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from api import errors
from api.core import ConfigMap, Pod
from api.proto import tinykube_pb2 as pb
from client.apiclient import ApiClient
from client.informer import SharedInformer, SharedInformerFactory
from client.reflector import Backoff
from harness.cluster import ApiServer, Cluster

pytestmark = pytest.mark.integration


def configmap(name: str, value: str = "v", ns: str | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if ns:
        md["namespace"] = ns
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": {"k": value}}


def pod(name: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1"}]}}


class Recorder:
    """Handler that records what it is told, and lets a test wait for a condition on it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self._changed = asyncio.Event()

    def _rec(self, kind: str, obj: Any) -> None:
        self.seen.append((kind, obj.name, obj.metadata.resource_version or ""))
        self._changed.set()

    def on_add(self, obj: Any) -> None:
        self._rec("add", obj)

    async def on_update(self, old: Any, new: Any) -> None:  # async handlers work too
        self._rec("update", new)

    def on_delete(self, obj: Any) -> None:
        self._rec("delete", obj)

    def kinds(self, name: str) -> list[str]:
        return [k for k, n, _ in self.seen if n == name]

    async def until(self, cond: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not cond():
                self._changed.clear()
                await self._changed.wait()


async def eventually(cond: Callable[[], Any], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        # Polling on purpose: the condition is the apiserver's state, nothing we can await.
        while not await _value(cond()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def _value(v: Any) -> Any:
    if asyncio.iscoroutine(v):
        return await v
    return v


async def test_informer_sees_create_update_delete(cluster: Cluster, namespace: str) -> None:
    factory = SharedInformerFactory(cluster.client)
    inf = factory.informer_for(ConfigMap, namespace)
    rec = Recorder()
    inf.add_event_handler(rec.on_add, rec.on_update, rec.on_delete)
    factory.start()
    try:
        async with asyncio.timeout(10):
            await factory.wait_for_cache_sync()
        await cluster.client.create("configmaps", configmap("a"), namespace)
        await rec.until(lambda: rec.kinds("a") == ["add"])
        await cluster.client.patch("configmaps", "a", {"data": {"k": "changed"}}, namespace)
        await rec.until(lambda: rec.kinds("a") == ["add", "update"])
        cached = inf.lister.get("a", namespace)
        assert cached is not None and cached.data == {"k": "changed"}
        await cluster.client.delete("configmaps", "a", namespace)
        await rec.until(lambda: rec.kinds("a") == ["add", "update", "delete"])
        assert inf.lister.get("a", namespace) is None
    finally:
        await factory.shutdown()


async def test_two_handlers_share_one_informer_and_late_handler_catches_up(
    cluster: Cluster, namespace: str
) -> None:
    factory = SharedInformerFactory(cluster.client)
    inf = factory.informer_for(ConfigMap, namespace)
    assert factory.informer_for(ConfigMap, namespace) is inf
    r1, r2 = Recorder(), Recorder()
    inf.add_event_handler(r1.on_add, r1.on_update, r1.on_delete)
    factory.informer_for(ConfigMap, namespace).add_event_handler(
        r2.on_add, r2.on_update, r2.on_delete)
    factory.start()
    try:
        async with asyncio.timeout(10):
            await factory.wait_for_cache_sync()
        for i in range(5):
            await cluster.client.create("configmaps", configmap(f"cm-{i}"), namespace)
        await cluster.client.delete("configmaps", "cm-0", namespace)
        await r1.until(lambda: len(r1.seen) == 6)
        await r2.until(lambda: len(r2.seen) == 6)
        assert r1.seen == r2.seen
        assert inf.reflector.list_count == 1, "handlers must share one list + watch"
        late = Recorder()
        inf.add_event_handler(late.on_add)
        await late.until(lambda: len(late.seen) == 4)
        assert sorted(n for _, n, _ in late.seen) == ["cm-1", "cm-2", "cm-3", "cm-4"]
    finally:
        await factory.shutdown()


async def test_informer_with_field_selector(cluster: Cluster, namespace: str) -> None:
    factory = SharedInformerFactory(cluster.client)
    on_a = factory.informer_for(Pod, namespace, field_selector="spec.nodeName=node-a")
    rec = Recorder()
    on_a.add_event_handler(rec.on_add, rec.on_update, rec.on_delete)
    factory.start()
    try:
        async with asyncio.timeout(10):
            await factory.wait_for_cache_sync()
        await cluster.client.create("pods", pod("p1", "node-a"), namespace)
        await cluster.client.create("pods", pod("p2", "node-b"), namespace)
        await cluster.client.create("pods", pod("p3", "node-a"), namespace)
        await rec.until(lambda: len(rec.seen) >= 2)
        await asyncio.sleep(0.3)
        assert sorted(n for _, n, _ in rec.seen) == ["p1", "p3"]
        assert sorted(p.name for p in on_a.lister.list()) == ["p1", "p3"]
    finally:
        await factory.shutdown()


async def _snapshot(client: ApiClient, ns: str) -> dict[str, str]:
    items, _ = await client.list_all("configmaps", ns)
    return {f"{ns}/{o['metadata']['name']}": o["metadata"]["resourceVersion"] for o in items}


def _cache(inf: SharedInformer[ConfigMap]) -> dict[str, str]:
    return {k: o.metadata.resource_version or "" for k, o in inf.store.items()}


async def new_namespace(client: ApiClient) -> str:
    ns = f"t-{uuid.uuid4().hex[:10]}"
    await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": ns}})
    return ns


@contextlib.asynccontextmanager
async def recorded_informer(c: Cluster, ns: str
                            ) -> AsyncIterator[tuple[SharedInformer[ConfigMap], Recorder]]:
    """A synced ConfigMap informer on its own client (so killing the apiserver cuts it off),
    with a Recorder as its handler."""
    watcher_client = c.new_client()
    inf: SharedInformer[ConfigMap] = SharedInformer(
        watcher_client, ConfigMap, namespace=ns, backoff=Backoff(initial=0.1, cap=1.0))
    rec = Recorder()
    inf.add_event_handler(rec.on_add, rec.on_update, rec.on_delete)
    inf.start()
    try:
        async with asyncio.timeout(10):
            await inf.wait_for_sync()
        yield inf, rec
    finally:
        await inf.stop()
        await watcher_client.close()


async def test_informer_converges_after_apiserver_sigkill_and_restart() -> None:
    """Kill -9 the apiserver mid-watch, change things while it is down (through a second
    apiserver on the same etcd), restart it: the informer ends equal to a fresh list and its
    handler has seen every create and delete, including those made while it was cut off."""
    async with Cluster() as c:
        ns = await new_namespace(c.client)
        for i in range(10):
            await c.client.create("configmaps", configmap(f"before-{i}"), ns)
        async with recorded_informer(c, ns) as (inf, rec):
            await c.client.create("configmaps", configmap("live"), ns)
            await rec.until(lambda: rec.kinds("live") == ["add"])

            assert c.apiserver is not None
            c.apiserver.kill()  # SIGKILL, mid-watch

            # Meanwhile, through another apiserver on the same etcd: creates, updates, deletes.
            other = ApiServer(c.etcd.url, pki=c.pki, parent=c.dir)
            await other.start()
            try:
                async with c.new_client(other.address) as oc:
                    for i in range(10):
                        await oc.create("configmaps", configmap(f"during-{i}"), ns)
                    for i in range(5):
                        await oc.patch("configmaps", f"before-{i}", {"data": {"k": "x"}}, ns)
                    for i in range(5, 10):
                        await oc.delete("configmaps", f"before-{i}", ns)
                    await oc.delete("configmaps", "live", ns)
                    await oc.delete("configmaps", "during-0", ns)
            finally:
                await other.stop()

            await c.apiserver.start()
            # And more changes right after the restart, racing with the informer's reconnect.
            await c.client.wait_ready()
            await eventually(lambda: _try_create(c.client, configmap("after"), ns))
            await c.client.delete("configmaps", "during-1", ns)

            async def converged() -> bool:
                return _cache(inf) == await _snapshot(c.client, ns)

            await eventually(converged, timeout=30)
            expected_names = {f"before-{i}" for i in range(5)} | {
                f"during-{i}" for i in range(2, 10)} | {"after"}
            assert {k.split("/")[1] for k in _cache(inf)} == expected_names
            # The handler was told about every delete, including the ones made while down.
            await rec.until(lambda: all(
                rec.kinds(n)[-1:] == ["delete"]
                for n in [*(f"before-{i}" for i in range(5, 10)), "live"]
            ), timeout=10)
            # during-1 may have been created and deleted before the informer relisted, in
            # which case it was never cached: nothing to report. If it was seen, so was its end.
            assert rec.kinds("during-1") in ([], ["add", "delete"]), rec.kinds("during-1")
            assert rec.kinds("after") == ["add"]
            assert rec.kinds("before-0")[-1] == "update"
            # during-0 came and went while we were cut off: nothing to report, no stale entry.
            assert "during-0" not in {k.split("/")[1] for k in _cache(inf)}


async def _try_create(client: ApiClient, obj: dict[str, Any], ns: str) -> bool:
    try:
        await client.create("configmaps", obj, ns)
        return True
    except Exception:
        return False


async def test_compacted_resource_version_is_gone_and_informer_relists() -> None:
    """The informer's resourceVersion is compacted away while it is cut off: the apiserver
    answers Gone, the informer relists, and it ends equal to the truth, deletes included."""
    async with Cluster() as c:
        ns = await new_namespace(c.client)
        for i in range(4):
            await c.client.create("configmaps", configmap(f"cm-{i}"), ns)
        async with recorded_informer(c, ns) as (inf, rec):
            old_rv = inf.last_sync_resource_version
            assert inf.reflector.list_count == 1
            assert c.apiserver is not None
            c.apiserver.kill()
            other = ApiServer(c.etcd.url, pki=c.pki, parent=c.dir)
            await other.start()
            try:
                async with c.new_client(other.address) as oc:
                    await oc.patch("configmaps", "cm-0", {"data": {"k": "new"}}, ns)
                    await oc.delete("configmaps", "cm-1", ns)
                    last = await oc.create("configmaps", configmap("cm-new"), ns)
            finally:
                await other.stop()
            c.etcd.etcdctl("compact", last["metadata"]["resourceVersion"])
            await c.apiserver.start()
            await c.client.wait_ready()

            # What the informer meets on reconnect: its version is gone.
            with pytest.raises(errors.Gone):
                async for _ in c.client.watch("configmaps", ns, resource_version=old_rv):
                    break

            async def converged() -> bool:
                return _cache(inf) == await _snapshot(c.client, ns)

            await eventually(converged, timeout=30)
            assert inf.reflector.list_count >= 2, "the informer must have relisted"
            assert {k.split("/")[1] for k in _cache(inf)} == {"cm-0", "cm-2", "cm-3", "cm-new"}
            await rec.until(lambda: rec.kinds("cm-1")[-1:] == ["delete"])
            assert rec.kinds("cm-new") == ["add"]
            assert rec.kinds("cm-0")[-1] == "update"


class ForgetfulProxy:
    """A gRPC front for the real apiserver's List and Watch that can "forget" a watch: the
    upstream watch is cancelled (the apiserver counts one watcher fewer) while the client's
    stream stays open and silent. That is the wedge of issue 20: the server side of the
    controller-manager's pod watch was gone, the client side waited on it forever."""

    def __init__(self, upstream: ApiClient) -> None:
        self.upstream = upstream
        self.server = grpc.aio.server()
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.forget = False  # the next watch event makes its watch forget
        self.forgotten = 0
        self.watches = 0
        handlers = {
            "List": grpc.unary_unary_rpc_method_handler(
                self._list, request_deserializer=pb.ListRequest.FromString,
                response_serializer=pb.ObjectResponse.SerializeToString),
            "Watch": grpc.unary_stream_rpc_method_handler(
                self._watch, request_deserializer=pb.ListRequest.FromString,
                response_serializer=pb.WatchEvent.SerializeToString),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("tinykube.v1.Api", handlers),))

    async def _list(self, req: pb.ListRequest, context: grpc.aio.ServicerContext
                    ) -> pb.ObjectResponse:
        return await self.upstream._stub.List(req, metadata=self.upstream.metadata())

    async def _watch(self, req: pb.ListRequest, context: grpc.aio.ServicerContext) -> None:
        self.watches += 1
        call = self.upstream._stub.Watch(req, metadata=self.upstream.metadata())
        try:
            async for ev in call:
                if self.forget:
                    self.forget = False
                    self.forgotten += 1
                    call.cancel()
                    await asyncio.Event().wait()  # silent, never ending, until cancelled
                await context.write(ev)
        except grpc.aio.AioRpcError as e:
            await context.abort(e.code(), e.details() or "")
        finally:
            call.cancel()

    async def __aenter__(self) -> ForgetfulProxy:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop(0)


async def test_informer_recovers_from_a_watch_the_server_forgot(
        cluster: Cluster, namespace: str, caplog: pytest.LogCaptureFixture) -> None:
    """Without a progress deadline this informer never saw another change (issue 20); now the
    silent watch (the shared cluster sends bookmarks every second) is abandoned within the
    deadline and restarted from its resourceVersion, and nothing in between is missed."""
    caplog.set_level(logging.INFO, "client.reflector")
    async with ForgetfulProxy(cluster.client) as proxy, \
            ApiClient(f"127.0.0.1:{proxy.port}") as via_proxy:
        inf: SharedInformer[ConfigMap] = SharedInformer(
            via_proxy, ConfigMap, namespace=namespace, watch_progress_deadline=3.0,
            backoff=Backoff(initial=0.1, cap=1.0))
        rec = Recorder()
        inf.add_event_handler(rec.on_add, rec.on_update, rec.on_delete)
        inf.start()
        try:
            async with asyncio.timeout(10):
                await inf.wait_for_sync()
            await cluster.client.create("configmaps", configmap("before"), namespace)
            await rec.until(lambda: rec.kinds("before") == ["add"])

            proxy.forget = True
            await eventually(lambda: proxy.forgotten == 1, timeout=10)
            await cluster.client.create("configmaps", configmap("after"), namespace)
            await cluster.client.patch("configmaps", "before", {"data": {"k": "x"}}, namespace)
            await rec.until(lambda: rec.kinds("after") == ["add"]
                            and rec.kinds("before") == ["add", "update"], timeout=20)
            assert inf.reflector.stalled_count >= 1 and proxy.watches >= 2
            assert inf.reflector.list_count == 1, "resumed from its resourceVersion"
            assert any("no event and no bookmark for 3s" in r.getMessage()
                       and r.levelno == logging.WARNING for r in caplog.records)
        finally:
            await inf.stop()
