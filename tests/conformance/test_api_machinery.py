"""API machinery: CRUD, resourceVersion and Conflict, watches from a resourceVersion and with
selectors, label and field selectors, namespaces taking their content with them,
ServiceAccounts, ConfigMaps and Secrets. Tier api: an apiserver and the controllers suffice.

Upstream: test/e2e/apimachinery/{watch,namespace}.go, test/e2e/auth/service_accounts.go,
test/e2e/common/node/{configmap,secrets}.go.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest

from api import errors
from client.apiclient import WatchEvent
from tests.conformance.framework import (
    Conformance,
    Obj,
    close,
    configmap,
    exists,
    gone,
    rv,
    service,
    until,
)

# xdist_group: every test using the lab runs in one pytest-xdist worker (tests/conftest.py).
pytestmark = [pytest.mark.conformance_api, pytest.mark.xdist_group("lab")]

EVENT_TIMEOUT = 20.0


async def next_events(stream: AsyncIterator[WatchEvent], count: int,
                      timeout: float = EVENT_TIMEOUT) -> list[WatchEvent]:
    """The next `count` events of a watch (bookmarks left out)."""
    out: list[WatchEvent] = []
    while len(out) < count:
        try:
            ev = await asyncio.wait_for(anext(stream), timeout)
        except TimeoutError:
            raise AssertionError(f"watch: got {[(e.type, name_of(e)) for e in out]}, "
                                 f"still waiting for {count - len(out)} more after "
                                 f"{timeout:.0f}s") from None
        if ev.type != "BOOKMARK":
            out.append(ev)
    return out


async def no_event(stream: AsyncIterator[WatchEvent], window: float = 2.0) -> None:
    """Assert that the watch delivers nothing but bookmarks during `window` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + window
    while (left := end - loop.time()) > 0:
        try:
            ev = await asyncio.wait_for(anext(stream), left)
        except TimeoutError:
            return
        assert ev.type == "BOOKMARK", f"unexpected watch event {ev.type} {name_of(ev)}"


def name_of(ev: WatchEvent) -> str:
    return str((ev.object.get("metadata") or {}).get("name"))


def summary(events: list[WatchEvent]) -> list[tuple[str, str, str]]:
    return [(e.type, name_of(e), str((e.object.get("data") or {}).get("mutation", "")))
            for e in events]


async def mutate(c: Conformance, ns: str, name: str, value: str, **labels: str) -> Obj:
    patch: Obj = {"data": {"mutation": value}}
    if labels:
        patch["metadata"] = {"labels": labels}
    return await c.api.patch("configmaps", name, patch, ns)


@pytest.mark.upstream("[sig-api-machinery] Watchers should be able to start watching from a "
                      "specific resource version [Conformance]")
async def test_watch_from_a_resource_version(conformance: Conformance, ns: str) -> None:
    c = conformance
    await c.create("configmaps", configmap("cm", {"mutation": "0"}), ns)
    first = await mutate(c, ns, "cm", "1")
    await mutate(c, ns, "cm", "2")
    await c.api.delete("configmaps", "cm", ns)
    # From the first modification's resourceVersion: exactly what came after it.
    stream = c.api.watch("configmaps", ns, resource_version=rv(first),
                         field_selector="metadata.name=cm")
    try:
        events = await next_events(stream, 2)
        assert summary(events) == [("MODIFIED", "cm", "2"), ("DELETED", "cm", "2")]
        await no_event(stream)
    finally:
        await close(stream)


@pytest.mark.upstream("[sig-api-machinery] Watchers should be able to restart watching from the "
                      "last resource version observed by the previous watch [Conformance]")
async def test_watch_restart_from_last_seen(conformance: Conformance, ns: str) -> None:
    c = conformance
    listed = await c.api.list("configmaps", ns)
    stream = c.api.watch("configmaps", ns, resource_version=listed["metadata"]["resourceVersion"],
                         label_selector="watch-this=restart")
    await c.create("configmaps", configmap("cm", {"mutation": "0"}, {"watch-this": "restart"}), ns)
    await mutate(c, ns, "cm", "1")
    events = await next_events(stream, 2)
    await close(stream)
    assert summary(events) == [("ADDED", "cm", "0"), ("MODIFIED", "cm", "1")]
    last = rv(events[-1].object)
    # Changes while nobody watches, then a new watch from the last version the old one saw.
    await mutate(c, ns, "cm", "2")
    await c.api.delete("configmaps", "cm", ns)
    stream = c.api.watch("configmaps", ns, resource_version=last,
                         label_selector="watch-this=restart")
    try:
        assert summary(await next_events(stream, 2)) == [("MODIFIED", "cm", "2"),
                                                         ("DELETED", "cm", "2")]
    finally:
        await close(stream)


@pytest.mark.upstream("[sig-api-machinery] Watchers should observe add, update, and delete watch "
                      "notifications on configmaps [Conformance]")
async def test_watchers_with_label_selectors(conformance: Conformance, ns: str) -> None:
    c = conformance
    rv0 = (await c.api.list("configmaps", ns))["metadata"]["resourceVersion"]
    watch_a = c.api.watch("configmaps", ns, resource_version=rv0, label_selector="watch=a")
    watch_b = c.api.watch("configmaps", ns, resource_version=rv0, label_selector="watch=b")
    watch_ab = c.api.watch("configmaps", ns, resource_version=rv0,
                           label_selector="watch in (a,b)")
    try:
        await c.create("configmaps", configmap("cm-a", {"mutation": "0"}, {"watch": "a"}), ns)
        await mutate(c, ns, "cm-a", "1")
        await c.create("configmaps", configmap("cm-other", {"mutation": "0"}, {"watch": "c"}),
                       ns)
        await c.api.delete("configmaps", "cm-a", ns)
        await c.create("configmaps", configmap("cm-b", {"mutation": "0"}, {"watch": "b"}), ns)
        await c.api.delete("configmaps", "cm-b", ns)
        a = [("ADDED", "cm-a", "0"), ("MODIFIED", "cm-a", "1"), ("DELETED", "cm-a", "1")]
        b = [("ADDED", "cm-b", "0"), ("DELETED", "cm-b", "0")]
        assert summary(await next_events(watch_a, 3)) == a
        assert summary(await next_events(watch_b, 2)) == b
        assert summary(await next_events(watch_ab, 5)) == a + b
        # cm-other matches none of the selectors: no watcher hears of it.
        await asyncio.gather(no_event(watch_a, 1), no_event(watch_b, 1), no_event(watch_ab, 1))
    finally:
        for w in (watch_a, watch_b, watch_ab):
            await close(w)


@pytest.mark.upstream("[sig-api-machinery] Watchers should observe an object deletion if it stops "
                      "meeting the requirements of the selector [Conformance]")
async def test_watch_object_leaving_the_selector(conformance: Conformance, ns: str) -> None:
    c = conformance
    rv0 = (await c.api.list("configmaps", ns))["metadata"]["resourceVersion"]
    stream = c.api.watch("configmaps", ns, resource_version=rv0, label_selector="watch-this=yes")
    try:
        await c.create("configmaps", configmap("cm", {"mutation": "0"}, {"watch-this": "yes"}),
                       ns)
        await mutate(c, ns, "cm", "1")
        await mutate(c, ns, "cm", "1", **{"watch-this": "no"})   # leaves the selector
        await mutate(c, ns, "cm", "2")                            # unseen
        await mutate(c, ns, "cm", "2", **{"watch-this": "yes"})  # back in
        await c.api.delete("configmaps", "cm", ns)
        assert summary(await next_events(stream, 5)) == [
            ("ADDED", "cm", "0"), ("MODIFIED", "cm", "1"), ("DELETED", "cm", "1"),
            ("ADDED", "cm", "2"), ("DELETED", "cm", "2")]
    finally:
        await close(stream)


@pytest.mark.upstream("[sig-node] ConfigMap should run through a ConfigMap lifecycle [Conformance]")
async def test_configmap_lifecycle(conformance: Conformance, ns: str) -> None:
    """Create, get, patch, list by label and field selector, a stale update refused with
    Conflict, delete by collection."""
    c = conformance
    created = await c.create("configmaps", configmap("cm-life", {"valueName": "value"},
                                                     {"test-configmap-static": "true"}), ns)
    await c.create("configmaps", configmap("cm-bystander", {"k": "v"}), ns)
    assert created["metadata"]["uid"] and rv(created)
    patched = await c.api.patch("configmaps", "cm-life",
                                {"metadata": {"labels": {"test-configmap": "patched"}},
                                 "data": {"valueName": "value1"}}, ns)
    assert int(rv(patched)) > int(rv(created))
    got = await c.api.get("configmaps", "cm-life", ns)
    assert got["data"] == {"valueName": "value1"}
    assert got["metadata"]["labels"] == {"test-configmap-static": "true",
                                         "test-configmap": "patched"}
    # An update carrying the old resourceVersion lost the race: Conflict, nothing written.
    stale = {**created, "data": {"valueName": "stale"}}
    with pytest.raises(errors.Conflict):
        await c.api.update("configmaps", stale, ns)
    assert (await c.api.get("configmaps", "cm-life", ns))["data"] == {"valueName": "value1"}
    by_label = await c.api.list("configmaps", ns, label_selector="test-configmap-static=true")
    assert [i["metadata"]["name"] for i in by_label["items"]] == ["cm-life"]
    by_field = await c.api.list("configmaps", ns, field_selector="metadata.name=cm-life")
    assert [i["metadata"]["name"] for i in by_field["items"]] == ["cm-life"]
    everywhere = await c.api.list("configmaps", label_selector="test-configmap=patched")
    assert ("cm-life", ns) in {(i["metadata"]["name"], i["metadata"]["namespace"])
                               for i in everywhere["items"]}
    await c.api.delete_collection("configmaps", ns, label_selector="test-configmap-static=true")
    await until(lambda: gone(c.api, "configmaps", "cm-life", ns), what="cm-life deleted")
    assert await exists(c.api, "configmaps", "cm-bystander", ns)


@pytest.mark.upstream("[sig-node] ConfigMap should fail to create ConfigMap with empty key "
                      "[Conformance]")
async def test_configmap_empty_key(conformance: Conformance, ns: str) -> None:
    with pytest.raises(errors.Invalid):
        await conformance.create("configmaps", configmap("cm-empty-key", {"": "value"}), ns)
    assert not await exists(conformance.api, "configmaps", "cm-empty-key", ns)


@pytest.mark.upstream("[sig-node] Secrets should patch a secret [Conformance]")
async def test_secret_patch(conformance: Conformance, ns: str) -> None:
    c = conformance
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    await c.create("secrets", {"apiVersion": "v1", "kind": "Secret",
                               "metadata": {"name": "s", "labels": {"testsecret-constant": "true"}},
                               "data": {"key": b64("value")}, "type": "Opaque"}, ns)
    listed = await c.api.list("secrets", ns, label_selector="testsecret-constant=true")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["s"]
    await c.api.patch("secrets", "s", {"metadata": {"labels": {"testsecret": "true"}},
                                       "data": {"key": b64("value1")}}, ns)
    got = await c.api.get("secrets", "s", ns)
    assert base64.b64decode(got["data"]["key"]) == b"value1"
    assert got["metadata"]["labels"]["testsecret"] == "true"
    await c.api.delete_collection("secrets", ns, label_selector="testsecret-constant=true")
    await until(lambda: gone(c.api, "secrets", "s", ns), what="secret s deleted")
    listed = await c.api.list("secrets", ns, label_selector="testsecret-constant=true")
    assert listed["items"] == []


@pytest.mark.upstream("[sig-api-machinery] Namespaces [Serial] should ensure that all services are "
                      "removed when a namespace is deleted [Conformance]")
async def test_namespace_deletion_removes_services(conformance: Conformance) -> None:
    c = conformance
    victim = await c.new_namespace()
    try:
        await c.create("services", service("test-service", {"foo": "bar"}), victim)
        await c.create("configmaps", configmap("cm", {"k": "v"}), victim)
        await c.api.delete("namespaces", victim)
        await until(lambda: gone(c.api, "namespaces", victim), 90,
                    what=f"namespace {victim} gone")
        assert (await c.api.list("services", victim))["items"] == []
        assert (await c.api.list("configmaps", victim))["items"] == []
        # A namespace of the same name starts empty.
        await c.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": victim}}, None)
        assert (await c.api.list("services", victim))["items"] == []
    finally:
        try:
            await c.api.delete("namespaces", victim)
        except errors.ApiError:
            pass


@pytest.mark.upstream("[sig-auth] ServiceAccounts should run through the lifecycle of a "
                      "ServiceAccount [Conformance]")
async def test_serviceaccount_lifecycle(conformance: Conformance, ns: str) -> None:
    """The default ServiceAccount appears in a new namespace (the ServiceAccount controller);
    a ServiceAccount's create, patch, list and delete are seen by a watch."""
    c = conformance
    assert await exists(c.api, "serviceaccounts", "default", ns)
    rv0 = (await c.api.list("serviceaccounts", ns))["metadata"]["resourceVersion"]
    stream = c.api.watch("serviceaccounts", ns, resource_version=rv0,
                         label_selector="test-serviceaccount-static=true")
    try:
        await c.create("serviceaccounts", {
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "testserviceaccount",
                         "labels": {"test-serviceaccount-static": "true"}}}, ns)
        (added,) = await next_events(stream, 1)
        assert added.type == "ADDED" and name_of(added) == "testserviceaccount"
        await c.api.patch("serviceaccounts", "testserviceaccount",
                          {"metadata": {"labels": {"test-serviceaccount": "patched"}},
                           "automountServiceAccountToken": False}, ns)
        (modified,) = await next_events(stream, 1)
        assert modified.type == "MODIFIED"
        assert modified.object["automountServiceAccountToken"] is False
        listed = await c.api.list("serviceaccounts", ns,
                                  label_selector="test-serviceaccount-static=true")
        (item,) = listed["items"]
        assert item["metadata"]["labels"]["test-serviceaccount"] == "patched"
        await c.api.delete_collection("serviceaccounts", ns,
                                      label_selector="test-serviceaccount-static=true")
        (deleted,) = await next_events(stream, 1)
        assert deleted.type == "DELETED" and name_of(deleted) == "testserviceaccount"
    finally:
        await close(stream)


@pytest.mark.upstream("[sig-network] Services should find a service from listing all namespaces "
                      "[Conformance]")
async def test_find_service_listing_all_namespaces(conformance: Conformance) -> None:
    listed = await conformance.api.list("services")
    assert ("kubernetes", "default") in {(i["metadata"]["name"], i["metadata"]["namespace"])
                                         for i in listed["items"]}


@pytest.mark.upstream("[sig-network] Services should provide secure master service "
                      "[Conformance]")
async def test_secure_master_service(conformance: Conformance) -> None:
    svc = await conformance.api.get("services", "kubernetes", "default")
    ports = [(p.get("name"), p["port"]) for p in svc["spec"]["ports"]]
    # Upstream's one port, first; tinykube adds its gRPC token port after it (deviations.md).
    assert ports[0] == ("https", 443) and ports[1:] in ([], [("grpc", 6444)])
    ep = await conformance.api.get("endpoints", "kubernetes", "default")
    assert ep.get("subsets"), "default/kubernetes has no endpoints: pods cannot reach the API"
