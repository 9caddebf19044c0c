"""Secure by default, on the request path: who may connect, who they are, what they may do,
and what is written down about it (issue 7's tests).

One apiserver for the module, started with a 1 s floor on token lifetimes so that a token can
be seen to expire; everything else is the harness's secure default (PKI, client certificates,
token port, Node,RBAC, audit log).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from api import errors
from client import pki
from client.apiclient import ApiClient
from client.config import ClientConfig, in_cluster, load_config
from harness.cluster import Cluster

Obj = dict[str, Any]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def secure() -> AsyncIterator[Cluster]:
    async with Cluster("--service-account-min-token-expiration", "1s") as c:
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def ns(secure: Cluster) -> str:
    return await secure.new_namespace("sec-")


def node(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def pod(name: str, node_name: str, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "pause"}],
                     **spec}}


async def eventually(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


# --- who may connect --------------------------------------------------------------------------

async def test_request_without_a_client_certificate_is_refused(secure: Cluster) -> None:
    async with ApiClient(config=ClientConfig(server=secure.server, ca_pem=secure.ca_pem)) as c:
        with pytest.raises(errors.ApiError) as e:
            await c.list("namespaces")
        assert not isinstance(e.value, errors.NotFound)
    async with ApiClient(config=ClientConfig(server=secure.server)) as c:  # plaintext
        with pytest.raises(errors.ApiError):
            await c.list("namespaces")


async def test_certificate_from_another_ca_is_refused(secure: Cluster) -> None:
    other = pki.new_ca("another-cluster")
    leaf = pki.issue(other, "kubernetes-admin", organizations=("system:masters",), client=True)
    cfg = ClientConfig(server=secure.server, ca_pem=secure.ca_pem, cert_pem=leaf.cert_pem,
                       key_pem=leaf.key_pem)
    async with ApiClient(config=cfg) as c:
        with pytest.raises(errors.ApiError):
            await c.list("secrets", "kube-system")


async def test_expired_certificate_is_refused(secure: Cluster) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    path = secure.kubeconfig_as("kubernetes-admin", ["system:masters"], not_after=past)
    async with ApiClient(config=load_config(path)) as c:
        with pytest.raises(errors.ApiError):
            await c.list("secrets", "kube-system")


async def test_certificate_names_the_user(secure: Cluster) -> None:
    alice = secure.client_as("alice", ["dev"])
    review = await alice.create("selfsubjectreviews", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert review["status"]["userInfo"] == {
        "username": "alice", "groups": ["dev", "system:authenticated"]}


async def test_rbac_refusal_reads_like_upstream(secure: Cluster, ns: str) -> None:
    alice = secure.client_as("alice")
    with pytest.raises(errors.Forbidden) as e:
        await alice.get("secrets", "s", ns)
    assert e.value.message == (f'secrets "s" is forbidden: User "alice" cannot get resource '
                               f'"secrets" in API group "" in the namespace "{ns}"')
    with pytest.raises(errors.Forbidden, match="at the cluster scope"):
        await alice.list("nodes")
    review = await alice.create("selfsubjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "get", "resource": "secrets",
                                        "namespace": ns}}})
    assert review["status"]["allowed"] is False
    with pytest.raises(errors.MethodNotAllowed):  # reviews are answered, never stored
        await secure.client.list("selfsubjectaccessreviews")
    sar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
           "spec": {"user": "alice", "resourceAttributes": {
               "verb": "list", "resource": "pods", "namespace": ns}}}
    assert (await secure.client.create("subjectaccessreviews", sar))["status"]["allowed"] is False
    sar["spec"]["groups"] = ["system:masters"]
    assert (await secure.client.create("subjectaccessreviews", sar))["status"]["allowed"] is True
    with pytest.raises(errors.Forbidden, match='cannot create resource "subjectaccessreviews"'):
        await alice.create("subjectaccessreviews", sar)


async def test_impersonation_needs_the_impersonate_verb(secure: Cluster, ns: str) -> None:
    as_alice = secure.new_client(impersonate_user="alice")  # the admin may impersonate
    with pytest.raises(errors.Forbidden, match='User "alice" cannot list resource "secrets"'):
        await as_alice.list("secrets", ns)
    bob_as_admin = secure.client_as("bob", impersonate_user="kubernetes-admin",
                                    impersonate_groups=["system:masters"])
    with pytest.raises(errors.Forbidden, match='User "bob" cannot impersonate resource "users"'):
        await bob_as_admin.list("secrets", ns)


# --- the kubelet's certificate ----------------------------------------------------------------

async def test_kubelet_changes_only_its_own_node_and_pods(secure: Cluster, ns: str) -> None:
    admin = secure.client
    for n in ("n1", "n2"):
        try:
            await admin.create("nodes", node(n))
        except errors.AlreadyExists:
            pass
    await admin.create("pods", pod("mine", "n1"), ns)
    await admin.create("pods", pod("theirs", "n2"), ns)
    kubelet = secure.client_as("system:node:n1", ["system:nodes"])

    own = await kubelet.get("nodes", "n1")
    own["metadata"].setdefault("labels", {})["kubernetes.io/hostname"] = "n1"
    await kubelet.update("nodes", own)
    other = await admin.get("nodes", "n2")
    other["metadata"].setdefault("labels", {})["x"] = "y"
    with pytest.raises(errors.Forbidden) as e:
        await kubelet.update("nodes", other)
    assert 'node "n1" is not allowed to modify node "n2"' in e.value.message

    mine = await kubelet.get("pods", "mine", ns)
    mine["status"] = {**mine.get("status", {}), "phase": "Running"}
    await kubelet.update_status("pods", mine)
    theirs = await kubelet.get("pods", "theirs", ns)
    theirs["status"] = {**theirs.get("status", {}), "phase": "Failed"}
    with pytest.raises(errors.Forbidden, match="can only update pod status for pods with "
                       "spec.nodeName set to itself"):
        await kubelet.update_status("pods", theirs)
    with pytest.raises(errors.Forbidden, match="can only delete pods with spec.nodeName"):
        await kubelet.delete("pods", "theirs", ns, grace_period_seconds=0)
    await kubelet.delete("pods", "mine", ns, grace_period_seconds=0)

    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                      "metadata": {"labels": {"a": "b"}},
                      "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    with pytest.raises(errors.Forbidden, match='cannot create resource "deployments" in API '
                       'group "apps"'):
        await kubelet.create("deployments", deployment, ns)
    with pytest.raises(errors.Forbidden, match="no relationship found between node 'n1'"):
        await kubelet.get("secrets", "anything", ns)
    with pytest.raises(errors.Forbidden):
        await kubelet.list("secrets", ns)


# --- ServiceAccount tokens --------------------------------------------------------------------

async def make_service_account(admin: ApiClient, ns: str, name: str = "builder") -> Obj:
    sa = await admin.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                "metadata": {"name": name}}, ns)
    await admin.create("rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": f"{name}-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}, ns)
    return sa


async def request_token(admin: ApiClient, ns: str, name: str = "builder",
                        **spec: Any) -> Obj:
    return await admin.create("serviceaccounts", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}, ns,
        name=name, subresource="token")


def pod_mount(tmp: Path, secure: Cluster, token: str, ns: str,
              monkeypatch: pytest.MonkeyPatch) -> ClientConfig:
    """What the kubelet mounts into a pod, and the client a pod builds from it."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "token").write_text(token)
    (tmp / "ca.crt").write_bytes(secure.ca_pem)
    (tmp / "namespace").write_text(ns)
    host, _, port = secure.token_address.rpartition(":")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    return in_cluster(root=str(tmp))


async def test_service_account_token_works_from_a_pod_mount(
        secure: Cluster, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sa = await make_service_account(secure.client, ns)
    tr = await request_token(secure.client, ns, audiences=[])
    assert tr["kind"] == "TokenRequest" and tr["spec"]["expirationSeconds"] == 3600
    assert tr["spec"]["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    assert tr["status"]["expirationTimestamp"].endswith("Z")
    token = tr["status"]["token"]
    async with ApiClient(config=pod_mount(tmp_path, secure, token, ns, monkeypatch)) as c:
        who = await c.create("selfsubjectreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:builder"
        assert who["status"]["userInfo"]["uid"] == sa["metadata"]["uid"]
        assert "system:serviceaccounts:" + ns in who["status"]["userInfo"]["groups"]
        await c.list("pods", ns)  # the RoleBinding to `view`
        with pytest.raises(errors.Forbidden, match=f'User "system:serviceaccount:{ns}:builder"'):
            await c.list("secrets", ns)

    review = await secure.client.create("tokenreviews", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token}})
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["username"] == f"system:serviceaccount:{ns}:builder"
    assert "token" not in review["spec"]

    # The ServiceAccount goes, its tokens stop working.
    await secure.client.delete("serviceaccounts", "builder", ns)
    async with ApiClient(config=pod_mount(tmp_path, secure, token, ns, monkeypatch)) as c:
        async def refused() -> None:
            try:
                await c.list("pods", ns)
            except errors.Unauthorized:
                return
            raise AssertionError("token still accepted")
        await eventually(refused)


async def test_service_account_token_expires(
        secure: Cluster, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await make_service_account(secure.client, ns)
    tr = await request_token(secure.client, ns, expirationSeconds=2)
    expires = datetime.fromisoformat(tr["status"]["expirationTimestamp"].replace("Z", "+00:00"))
    async with ApiClient(config=pod_mount(tmp_path, secure, tr["status"]["token"], ns,
                                          monkeypatch)) as c:
        await c.list("pods", ns)
        await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)
        with pytest.raises(errors.Unauthorized):
            await c.list("pods", ns)


async def test_kubelet_gets_tokens_only_for_pods_it_runs(secure: Cluster, ns: str) -> None:
    await make_service_account(secure.client, ns, "runner")
    await make_service_account(secure.client, ns, "builder")
    for n in ("n1", "n2"):
        try:
            await secure.client.create("nodes", node(n))
        except errors.AlreadyExists:
            pass
    here = await secure.client.create("pods", pod("here", "n1", serviceAccountName="runner"), ns)
    there = await secure.client.create("pods", pod("there", "n2", serviceAccountName="runner"),
                                       ns)
    kubelet = secure.client_as("system:node:n1", ["system:nodes"])

    def bound(p: Obj) -> Obj:
        return {"apiVersion": "v1", "kind": "Pod", "name": p["metadata"]["name"],
                "uid": p["metadata"]["uid"]}

    tr = await request_token(kubelet, ns, "runner", boundObjectRef=bound(here))
    assert tr["status"]["token"]
    # The Node authorizer lets it ask (a pod on n1 runs as `runner`); NodeRestriction
    # checks which pod the token is for.
    with pytest.raises(errors.Forbidden, match="bound to a pod scheduled on a different node"):
        await request_token(kubelet, ns, "runner", boundObjectRef=bound(there))
    with pytest.raises(errors.Forbidden, match="no relationship found between node 'n1'"):
        await request_token(kubelet, ns, "builder", boundObjectRef=bound(there))
    with pytest.raises(errors.Forbidden):
        await request_token(kubelet, ns, "runner")  # unbound: NodeRestriction says no


async def test_token_request_validation(secure: Cluster, ns: str) -> None:
    await make_service_account(secure.client, ns)
    with pytest.raises(errors.NotFound, match='serviceaccounts "nobody" not found'):
        await request_token(secure.client, ns, "nobody")
    with pytest.raises(errors.Invalid, match="may not specify a duration larger than 2"):
        await request_token(secure.client, ns, expirationSeconds=(1 << 32) + 1)
    with pytest.raises(errors.NotFound, match='pods "gone" not found'):
        await request_token(secure.client, ns, boundObjectRef={
            "apiVersion": "v1", "kind": "Pod", "name": "gone"})


async def test_anonymous_request_on_the_token_port_is_refused(secure: Cluster) -> None:
    async with ApiClient(config=ClientConfig(server=secure.token_address,
                                             ca_pem=secure.ca_pem)) as c:
        with pytest.raises(errors.Unauthorized, match="Unauthorized"):
            await c.list("namespaces")
    async with ApiClient(config=ClientConfig(server=secure.token_address, ca_pem=secure.ca_pem,
                                             token="not.a.token")) as c:
        with pytest.raises(errors.Unauthorized):
            await c.list("namespaces")


# --- what is written down ---------------------------------------------------------------------

async def test_no_key_or_token_in_logs_audit_or_events(secure: Cluster, ns: str) -> None:
    await make_service_account(secure.client, ns, "leaky")
    token = (await request_token(secure.client, ns, "leaky"))["status"]["token"]
    await secure.client.create("tokenreviews", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token}})
    async with ApiClient(config=ClientConfig(server=secure.token_address, ca_pem=secure.ca_pem,
                                             token=token[:-6] + "AAAAAA")) as c:
        with pytest.raises(errors.Unauthorized):
            await c.list("pods", ns)
    await asyncio.sleep(0.5)  # the audit writer thread
    assert secure.pki is not None and secure.apiserver is not None
    secrets = [token, token.split(".")[2]]
    for key in ("sa.key", "apiserver.key", "ca.key"):
        body = (secure.pki / key).read_text()
        secrets.append("".join(body.splitlines()[1:-1])[:40])
    events = json.dumps(await secure.client.list_all("events"))
    for name, text in (("apiserver log", secure.apiserver.log.read_text(errors="replace")),
                       ("audit log", secure.audit_log.read_text()), ("events", events)):
        assert "PRIVATE KEY" not in text, name
        for s in secrets:
            assert s not in text, name


async def test_audit_log_has_who_verb_resource_result(secure: Cluster, ns: str) -> None:
    await secure.client.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {"name": "audited"}}, ns)
    alice = secure.client_as("alice")
    with pytest.raises(errors.Forbidden):
        await alice.delete("configmaps", "audited", ns)
    await secure.client.get("configmaps", "audited", ns)

    def events() -> list[Obj]:
        return [json.loads(line) for line in secure.audit_log.read_text().splitlines()]

    async def logged() -> None:
        mine = [e for e in events() if (e.get("objectRef") or {}).get("namespace") == ns
                and e["objectRef"].get("resource") == "configmaps"]
        assert [(e["verb"], e["user"]["username"], e["responseStatus"]["code"])
                for e in mine] == [("create", "kubernetes-admin", 201), ("delete", "alice", 403)]
        created = mine[0]
        assert created["objectRef"]["name"] == "audited"
        assert created["kind"] == "Event" and created["level"] == "Metadata"
        assert created["sourceIPs"] == ["127.0.0.1"]
    await eventually(logged)


# --- found in review: request-path holes --------------------------------------------------------

def role_for(user: str, ns: str, name: str, rules: list[Obj]) -> tuple[Obj, Obj]:
    group = "rbac.authorization.k8s.io"
    return ({"apiVersion": f"{group}/v1", "kind": "Role",
             "metadata": {"name": name, "namespace": ns}, "rules": rules},
            {"apiVersion": f"{group}/v1", "kind": "RoleBinding",
             "metadata": {"name": name, "namespace": ns},
             "roleRef": {"apiGroup": group, "kind": "Role", "name": name},
             "subjects": [{"kind": "User", "apiGroup": group, "name": user}]})


async def grant(secure: Cluster, user: str, ns: str, rules: list[Obj]) -> ApiClient:
    name = f"g-{uuid.uuid4().hex[:6]}"
    role, binding = role_for(user, ns, name, rules)
    await secure.client.create("roles", role, ns)
    await secure.client.create("rolebindings", binding, ns)
    await asyncio.sleep(0.3)  # the grant reaches the authorizer through the watch cache
    return secure.client_as(user)


async def test_create_is_authorized_without_the_requests_name(secure: Cluster, ns: str) -> None:
    # resourceNames never allow a create (the name is in the body): a name sent alongside
    # the create must not turn a `create` on "allowed" into a create of anything.
    carol = await grant(secure, "carol", ns, [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get"],
         "resourceNames": ["allowed"]}])
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "sneaky"}}
    with pytest.raises(errors.Forbidden, match='User "carol" cannot create resource '
                       '"configmaps"'):
        await carol.create("configmaps", cm, ns, name="allowed")
    with pytest.raises(errors.NotFound):
        await secure.client.get("configmaps", "sneaky", ns)


async def test_update_that_creates_needs_create(secure: Cluster, ns: str) -> None:
    # Services (and leases, endpoints, events) are created by an update of a missing
    # object; upstream asks the authorizer for `create` first.
    dave = await grant(secure, "dave", ns, [
        {"apiGroups": [""], "resources": ["services"], "verbs": ["update", "get"]}])
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "made", "namespace": ns},
           "spec": {"ports": [{"port": 80}]}}
    with pytest.raises(errors.Forbidden, match='User "dave" cannot create resource '
                       '"services" in API group "" in the namespace'):
        await dave.update("services", svc, ns)
    with pytest.raises(errors.NotFound):
        await secure.client.get("services", "made", ns)


async def test_a_role_binding_lets_its_subjects_read_their_namespace(
        secure: Cluster, ns: str) -> None:
    # Upstream authorizes namespaces/NAME in the namespace NAME: `view` bound in a
    # namespace reads that namespace, and no other.
    erin = await grant(secure, "erin", ns, [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}])
    assert (await erin.get("namespaces", ns))["metadata"]["name"] == ns
    with pytest.raises(errors.Forbidden) as e:
        await erin.get("namespaces", "kube-system")
    assert e.value.message == ('namespaces "kube-system" is forbidden: User "erin" cannot get '
                               'resource "namespaces" in API group "" in the namespace '
                               '"kube-system"')


async def test_forged_token_header_is_unauthorized_not_a_crash(secure: Cluster, ns: str) -> None:
    await make_service_account(secure.client, ns, "forged")
    token = (await request_token(secure.client, ns, "forged"))["status"]["token"]
    _, payload, signature = token.split(".")
    header = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"  # {"alg":"RS256","typ":"JWT"}; key is EC
    async with ApiClient(config=ClientConfig(server=secure.token_address, ca_pem=secure.ca_pem,
                                             token=f"{header}.{payload}.{signature}")) as c:
        with pytest.raises(errors.Unauthorized):
            await c.list("pods", ns)


async def test_kubelet_token_request_must_name_the_pod_uid(secure: Cluster, ns: str) -> None:
    await make_service_account(secure.client, ns, "runner")
    try:
        await secure.client.create("nodes", node("n1"))
    except errors.AlreadyExists:
        pass
    await secure.client.create("pods", pod("uidless", "n1", serviceAccountName="runner"), ns)
    kubelet = secure.client_as("system:node:n1", ["system:nodes"])
    with pytest.raises(errors.Forbidden, match="pod binding without a uid"):
        await request_token(kubelet, ns, "runner", boundObjectRef={
            "apiVersion": "v1", "kind": "Pod", "name": "uidless"})
