"""The serviceaccount controller against a real etcd + apiserver + tk-controller-manager:
"ServiceAccounts should ensure a single API token exists" minus the token, i.e. every
namespace gets a `default` ServiceAccount, and gets it back when it is deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from api import errors
from client.apiclient import ApiClient
from harness.cluster import Cluster
from harness.wait import until

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sa_cluster() -> AsyncIterator[Cluster]:
    async with Cluster() as c:
        c.start_controller_manager("--controllers", "serviceaccount", "--no-leader-elect")
        yield c


async def default_sa_uid(c: ApiClient, ns: str) -> str:
    try:
        sa = await c.get("serviceaccounts", "default", ns)
    except errors.NotFound:
        return ""
    uid: str = sa["metadata"]["uid"]
    return uid


async def test_every_namespace_gets_a_default_service_account(sa_cluster: Cluster) -> None:
    c = sa_cluster.client
    for ns in ("default", "kube-system", await sa_cluster.new_namespace("sa-")):
        await until(lambda ns=ns: default_sa_uid(c, ns), what=f"default SA in {ns}")


async def test_default_service_account_is_recreated_when_deleted(sa_cluster: Cluster) -> None:
    c = sa_cluster.client
    ns = await sa_cluster.new_namespace("sa-")
    first = await until(lambda: default_sa_uid(c, ns), what="default SA")
    await c.delete("serviceaccounts", "default", ns)

    async def recreated() -> bool:
        uid = await default_sa_uid(c, ns)
        return bool(uid) and uid != first
    await until(recreated, what="default SA recreated")


async def test_other_service_accounts_are_left_alone(sa_cluster: Cluster) -> None:
    c = sa_cluster.client
    ns = await sa_cluster.new_namespace("sa-")
    await c.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                       "metadata": {"name": "builder"}}, ns)
    await until(lambda: default_sa_uid(c, ns), what="default SA")
    await c.delete("serviceaccounts", "builder", ns)
    # A fence: a namespace created after the delete gets its SA, so the delete was seen.
    later = await sa_cluster.new_namespace("sa-")
    await until(lambda: default_sa_uid(c, later), what="default SA in a later namespace")
    with pytest.raises(errors.NotFound):
        await c.get("serviceaccounts", "builder", ns)
