"""Least privilege, checked: every credential the lab hands out, and what each may and may not do.

The lab's certificates are `tkctl pki init` plus `tkctl pki add-node` for each worker
(lab/commands.py `_write_pki`), and a worker gets its own node's files and nothing else
(lab/cluster.py `copy_node_files`). Here the same functions make the same files for a harness
cluster with two workers; then every credential among them is found by walking the directory
(a new kubeconfig or client certificate fails the test until it has an entry below), and for
each the real apiserver is asked, as that credential, what it may do (`auth can-i`'s
SelfSubjectAccessReview), and writes it must not make are made and must be refused: issue 20's
worker-1 network agent cordoning worker-2 or changing its public-ip annotation, through both
fronts. ServiceAccount tokens (what pods and add-ons hold) are checked the same way, and so is
`/metrics` (authorized on the HTTPS front, loopback-only on the plain port). The upgrade path
(the retired shared network agent binding and kubeconfig) is unit-tested
(tests/unit/apiserver/test_rbac_rules.py, tests/unit/client/test_pki.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from api import errors
from client import pki
from client.apiclient import ApiClient
from client.config import ClientConfig, load_config
from harness.cluster import Cluster
from lab.cluster import copy_node_files

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
WORKERS = ("worker-1", "worker-2")
FLANNEL_IP = "flannel.alpha.coreos.com/public-ip"

# What nobody but the admin may do, whoever they are: grant themselves more, act as someone
# else, read the control plane's secrets, scrape /metrics (system:monitoring's right).
NOBODY_BUT_ADMIN = (
    "impersonate users", "impersonate groups", "impersonate serviceaccounts -n kube-system",
    "create clusterrolebindings.rbac.authorization.k8s.io",
    "create rolebindings.rbac.authorization.k8s.io -n kube-system",
    "escalate clusterroles.rbac.authorization.k8s.io",
    "bind clusterroles.rbac.authorization.k8s.io",
    "create secrets -n kube-system", "create pods/exec -n kube-system", "get /metrics",
)

# Credential (its path in the PKI directory) → (may, may not), in `auth can-i`'s words:
# VERB RESOURCE[/SUBRESOURCE][.GROUP] [NAME] [-n NAMESPACE], or VERB /PATH.
EXPECTED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "admin.conf": (
        ("* *.*", "impersonate users", "get /metrics", "create clusterrolebindings.rbac."
         "authorization.k8s.io", "delete nodes worker-1"),
        ()),
    "scheduler.conf": (
        ("create pods/binding -n default", "list nodes", "watch pods", "delete pods -n default",
         "patch pods/status -n default", "create events -n default"),
        ("create pods -n default", "update nodes worker-1", "get secrets -n default",
         "list secrets", "patch nodes worker-1", "delete nodes worker-1")),
    # One identity for all controllers (upstream without --use-service-account-credentials):
    # wide (the garbage collector updates anything), but it creates no Secrets, and the
    # escalation check keeps it from granting what it lacks (the write tests below).
    "controller-manager.conf": (
        ("create pods -n default", "update nodes worker-1", "delete pods -n kube-system",
         "create endpoints -n default", "patch nodes/status worker-2"),
        ("create secrets -n default", "create nodes", "create clusterroles.rbac."
         "authorization.k8s.io")),
    # kube-proxy (upstream's system:node-proxier): informers on three kinds, events.
    "proxy.conf": (
        ("list services", "watch services", "list endpoints", "watch endpoints", "list nodes",
         "watch nodes", "get nodes worker-1", "create events -n default"),
        ("get services -n default", "patch nodes worker-1", "patch nodes/status worker-1",
         "create services -n default", "update endpoints -n default", "get secrets -n default",
         "list pods", "create pods -n default", "delete nodes worker-1")),
    # The apiserver's identity towards kubelets: the kubelet API, nothing in the API itself.
    "apiserver-kubelet-client.crt": (
        ("get nodes/proxy worker-1", "create nodes/proxy worker-2", "get nodes worker-1"),
        ("list pods", "get secrets -n default", "create pods -n default",
         "delete nodes worker-1", "patch nodes worker-1")),
}
for _w, _other in (WORKERS, WORKERS[::-1]):
    # The kubelet (Node authorizer): its Node, its Lease; NodeRestriction then narrows its
    # writes to its own objects (the write tests below).
    EXPECTED[f"nodes/{_w}/kubelet.conf"] = (
        (f"patch nodes/status {_w}", f"update nodes {_w}", "create nodes", "watch pods",
         f"update leases.coordination.k8s.io {_w} -n kube-node-lease",
         "create events -n default"),
        ("get secrets -n default", "list secrets", f"delete nodes {_other}",
         f"update leases.coordination.k8s.io {_other} -n kube-node-lease",
         "update deployments.apps x -n default",
         "create serviceaccounts/token default -n default"))
    # The network agent: read Nodes, patch its own and nothing else (issue 20).
    EXPECTED[f"nodes/{_w}/netagent.conf"] = (
        ("list nodes", "watch nodes", f"get nodes {_other}", f"patch nodes {_w}"),
        (f"patch nodes {_other}", f"update nodes {_w}", f"update nodes {_other}",
         f"patch nodes/status {_w}", f"patch nodes/status {_other}", "create nodes",
         f"delete nodes {_w}", "get pods -n default", "list pods", "get secrets -n default",
         "create events -n default", "list services"))

# Certificates the cluster CA did not sign: the apiserver refuses them in the TLS handshake.
OTHER_CA = ("apiserver-etcd-client.crt", "etcd/server.crt")
# Serving certificates (serverAuth only), not credentials: checked for not being usable as one.
SERVING = ("apiserver.crt", *(f"nodes/{w}/kubelet.crt" for w in WORKERS))
# What a worker holds (lab/cluster.py copy_node_files): its node's files, no key of the CA.
WORKER_FILES = {"kubelet.conf", "kubelet.crt", "kubelet.key", "netagent.conf", "ca.crt",
                "proxy.conf"}


def parse_ask(text: str) -> Obj:
    """`auth can-i`'s arguments as a SelfSubjectAccessReview spec."""
    words = text.split()
    namespace = ""
    if "-n" in words:
        i = words.index("-n")
        namespace = words[i + 1]
        del words[i:i + 2]
    verb, target, *rest = words
    if target.startswith("/"):
        return {"nonResourceAttributes": {"verb": verb, "path": target}}
    resource, _, group = target.partition(".")
    resource, _, subresource = resource.partition("/")
    attrs = {"verb": verb, "resource": resource, "subresource": subresource, "group": group,
             "namespace": namespace, "name": rest[0] if rest else ""}
    return {"resourceAttributes": {k: v for k, v in attrs.items() if v}}


async def can_i(client: ApiClient, text: str) -> bool:
    review = await client.create("selfsubjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": parse_ask(text)})
    return bool(review["status"]["allowed"])


def node(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": name, "labels": {"kubernetes.io/hostname": name},
        "annotations": {FLANNEL_IP: "172.29.0.1" + name[-1]}},
        "spec": {"podCIDR": f"10.244.{name[-1]}.0/24"}}


def local_ip() -> str | None:
    """A non-loopback IPv4 address of this machine (no packet is sent), or None."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 9))
        ip: str = s.getsockname()[0]
        return None if ip.startswith("127.") else ip
    return None


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lab_like() -> AsyncIterator[Cluster]:
    """A cluster whose PKI is the lab's (init + add-node per worker), listening on every
    address as the lab's apiserver does, with the workers' Node objects registered."""
    async with Cluster("--bind-address", "0.0.0.0") as c:
        assert c.pki is not None
        for i, w in enumerate(WORKERS, start=1):
            pki.add_node(c.pki, w, ips=[f"172.29.0.1{i}"])
            await c.client.create("nodes", node(w))
        yield c


def credential_files(d: Path) -> set[str]:
    """Every kubeconfig and every client certificate with its key in the PKI directory."""
    out = {str(p.relative_to(d)) for p in d.rglob("*.conf")}
    for crt in d.rglob("*.crt"):
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        try:
            usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue  # a CA
        if ExtendedKeyUsageOID.CLIENT_AUTH in usages and crt.with_suffix(".key").exists():
            out.add(str(crt.relative_to(d)))
    return out


def config_of(c: Cluster, name: str) -> ClientConfig:
    assert c.pki is not None
    if name.endswith(".conf"):
        return load_config(str(c.pki / name))
    crt = c.pki / name
    return ClientConfig(server=c.server, ca_pem=c.ca_pem, cert_pem=crt.read_bytes(),
                        key_pem=crt.with_suffix(".key").read_bytes(), https_server=c.https_url)


def https(c: Cluster, cfg: ClientConfig, method: str, path: str, body: Obj | None = None,
          ctype: str = "application/merge-patch+json") -> tuple[int, bytes]:
    """One request to the HTTPS front with `cfg`'s client certificate."""
    ctx = ssl.create_default_context(cadata=c.ca_pem.decode())
    assert cfg.cert_pem is not None and cfg.key_pem is not None
    with tempfile.TemporaryDirectory() as d:
        crt, key = Path(d) / "c.crt", Path(d) / "c.key"
        crt.write_bytes(cfg.cert_pem)
        key.write_bytes(cfg.key_pem)
        ctx.load_cert_chain(crt, key)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(c.https_url + path, data=data, method=method,
                                 headers={"Content-Type": ctype} if data else {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --- what there is ------------------------------------------------------------------------------


async def test_every_credential_is_accounted_for(lab_like: Cluster) -> None:
    assert lab_like.pki is not None
    found = credential_files(lab_like.pki)
    assert found == set(EXPECTED) | set(OTHER_CA), (
        "a credential without an entry in EXPECTED (or one that is gone): "
        f"{sorted(found ^ (set(EXPECTED) | set(OTHER_CA)))}")
    # No kubeconfig shared by every node's network agent any more.
    assert not (lab_like.pki / "netagent.conf").exists()


def test_a_worker_gets_only_its_own_node_files(lab_like: Cluster, tmp_path: Path) -> None:
    assert lab_like.pki is not None
    copy_node_files(lab_like.pki, tmp_path, "worker-1")
    assert {p.name for p in tmp_path.iterdir()} == WORKER_FILES
    for conf, user in (("kubelet.conf", "system:node:worker-1"),
                       ("netagent.conf", "system:netagent:worker-1"),
                       ("proxy.conf", "system:kube-proxy")):
        doc = yaml.safe_load((tmp_path / conf).read_text())
        cert = x509.load_pem_x509_certificate(
            base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]))
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == user, conf
    assert b"PRIVATE KEY" not in (tmp_path / "ca.crt").read_bytes()


# --- what each may do ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_what_each_credential_may_and_may_not_do(lab_like: Cluster, name: str) -> None:
    may, may_not = EXPECTED[name]
    if name != "admin.conf":
        may_not = (*may_not, *NOBODY_BUT_ADMIN)
    async with ApiClient(config=config_of(lab_like, name)) as client:
        answers = await asyncio.gather(*(can_i(client, a) for a in (*may, *may_not)))
    got = dict(zip((*may, *may_not), answers, strict=True))
    assert [a for a in may if not got[a]] == [], f"{name} may not do what it needs"
    assert [a for a in may_not if got[a]] == [], f"{name} may do more than it needs"


@pytest.mark.parametrize("name", OTHER_CA)
async def test_certificates_of_the_etcd_ca_are_refused(lab_like: Cluster, name: str) -> None:
    async with ApiClient(config=config_of(lab_like, name)) as client:
        with pytest.raises(errors.ApiError):
            await client.list("namespaces")


@pytest.mark.parametrize("name", SERVING)
async def test_serving_certificates_are_no_client_credentials(lab_like: Cluster,
                                                              name: str) -> None:
    """A kubelet's serving key is on its node: as a client it must be refused, or at most be a
    user without a group (its CN is not system:node:...), who may do nothing."""
    assert lab_like.pki is not None
    crt = lab_like.pki / name
    cfg = ClientConfig(server=lab_like.server, ca_pem=lab_like.ca_pem,
                       cert_pem=crt.read_bytes(), key_pem=crt.with_suffix(".key").read_bytes())
    async with ApiClient(config=cfg) as client:
        try:
            answers = [await can_i(client, a) for a in (
                "get nodes worker-1", "patch nodes worker-1", "list pods", *NOBODY_BUT_ADMIN)]
        except errors.ApiError:
            return  # refused outright
    assert not any(answers)


async def test_service_account_tokens_may_do_nothing_by_default(lab_like: Cluster) -> None:
    """What a pod (an add-on included) gets: a token of its namespace's `default` account,
    which no binding names (the lab's add-ons, when they come, get roles of their own)."""
    admin = lab_like.client
    for ns in ("default", "kube-system"):  # what the serviceaccount controller makes
        with contextlib.suppress(errors.AlreadyExists):
            await admin.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                   "metadata": {"name": "default"}}, ns)
    accounts, _ = await admin.list_all("serviceaccounts")
    assert accounts
    for sa in accounts:
        ns, name = sa["metadata"]["namespace"], sa["metadata"]["name"]
        token = (await admin.create("serviceaccounts", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}, ns,
            name=name, subresource="token"))["status"]["token"]
        cfg = ClientConfig(server=lab_like.token_address, ca_pem=lab_like.ca_pem, token=token)
        async with ApiClient(config=cfg) as client:
            assert await can_i(client, "get /api")  # discovery, as every authenticated user
            for ask in (f"list pods -n {ns}", f"get secrets -n {ns}", f"create pods -n {ns}",
                        f"get configmaps -n {ns}", "list nodes", *NOBODY_BUT_ADMIN):
                assert not await can_i(client, ask), f"{ns}/{name}: {ask}"
            with pytest.raises(errors.Forbidden):
                await client.list("pods", ns)


# --- writes that must be refused ------------------------------------------------------------------


async def test_a_workers_network_agent_cannot_touch_another_node(lab_like: Cluster) -> None:
    """Issue 20: from worker-1's file, worker-2 was cordoned and its public-ip changed."""
    admin = lab_like.client
    async with ApiClient(config=config_of(lab_like, "nodes/worker-1/netagent.conf")) as agent:
        with pytest.raises(errors.Forbidden, match='may only modify its own Node'):
            await agent.patch("nodes", "worker-2", {"metadata": {"annotations": {
                FLANNEL_IP: "6.6.6.6"}}})
        with pytest.raises(errors.Forbidden):
            await agent.patch("nodes", "worker-2", {"spec": {"unschedulable": True}})
        with pytest.raises(errors.Forbidden):
            await agent.patch("nodes", "worker-2", {"status": {"conditions": []}},
                              subresource="status")
        with pytest.raises(errors.Forbidden):
            await agent.delete("nodes", "worker-2")
        # On its own Node: its flannel annotations, and nothing else.
        await agent.patch("nodes", "worker-1", {"metadata": {"annotations": {
            FLANNEL_IP: "172.29.0.99"}}})
        for patch in ({"spec": {"unschedulable": True}},
                      {"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}},
                      {"metadata": {"labels": {"role": "db"}}},
                      {"metadata": {"annotations": {"example.com/x": "y"}}}):
            with pytest.raises(errors.Forbidden, match="may only change flannel"):
                await agent.patch("nodes", "worker-1", patch)
        with pytest.raises(errors.Forbidden):
            await agent.create("nodes", node("worker-9"))
    w1, w2 = [await admin.get("nodes", w) for w in WORKERS]
    assert w1["metadata"]["annotations"][FLANNEL_IP] == "172.29.0.99"
    assert not (w1.get("spec") or {}).get("unschedulable")
    assert w2["metadata"]["annotations"][FLANNEL_IP] == "172.29.0.12"
    assert not (w2.get("spec") or {}).get("unschedulable")
    # The HTTP front (kubectl's) says the same.
    cfg = config_of(lab_like, "nodes/worker-1/netagent.conf")
    code, body = await asyncio.to_thread(https, lab_like, cfg, "PATCH", "/api/v1/nodes/worker-2",
                                         {"spec": {"unschedulable": True}})
    assert code == 403, body
    assert json.loads(body)["reason"] == "Forbidden"


async def test_other_node_credentials_cannot_touch_another_node(lab_like: Cluster) -> None:
    async with ApiClient(config=config_of(lab_like, "nodes/worker-1/kubelet.conf")) as kubelet:
        with pytest.raises(errors.Forbidden, match='not allowed to modify node "worker-2"'):
            await kubelet.patch("nodes", "worker-2", {"spec": {"unschedulable": True}})
        with pytest.raises(errors.Forbidden, match="not allowed to modify taints"):
            await kubelet.patch("nodes", "worker-1", {"spec": {"taints": [
                {"key": "k", "effect": "NoSchedule"}]}})
    async with ApiClient(config=config_of(lab_like, "proxy.conf")) as proxy:
        with pytest.raises(errors.Forbidden):
            await proxy.patch("nodes", "worker-1", {"spec": {"unschedulable": True}})
        with pytest.raises(errors.Forbidden):
            await proxy.create("services", {"apiVersion": "v1", "kind": "Service",
                                            "metadata": {"name": "x"},
                                            "spec": {"ports": [{"port": 80}]}}, "default")
        assert (await proxy.list("services"))["items"] is not None  # what it needs
    async with ApiClient(config=config_of(lab_like, "apiserver-kubelet-client.crt")) as kc:
        with pytest.raises(errors.Forbidden):
            await kc.list("pods")
    async with ApiClient(config=config_of(lab_like, "controller-manager.conf")) as cm:
        view = await cm.get("clusterroles", "view")
        view["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]})
        with pytest.raises(errors.Forbidden, match="attempting to grant RBAC permissions"):
            await cm.update("clusterroles", view)
    async with ApiClient(config=config_of(lab_like, "scheduler.conf")) as scheduler:
        with pytest.raises(errors.Forbidden):
            await scheduler.create("secrets", {"apiVersion": "v1", "kind": "Secret",
                                               "metadata": {"name": "x"}}, "default")


# --- /metrics ---------------------------------------------------------------------------------


async def test_metrics_need_authorization_and_the_plain_port_is_loopback(
        lab_like: Cluster) -> None:
    admin = config_of(lab_like, "admin.conf")
    code, body = await asyncio.to_thread(https, lab_like, admin, "GET", "/metrics")
    assert code == 200 and b"apiserver_request_total" in body
    proxy = config_of(lab_like, "proxy.conf")
    code, body = await asyncio.to_thread(https, lab_like, proxy, "GET", "/metrics")
    assert code == 403 and b'cannot get path \\"/metrics\\"' in body, body
    monitoring = load_config(lab_like.kubeconfig_as("prometheus", ["system:monitoring"]))
    code, body = await asyncio.to_thread(https, lab_like, monitoring, "GET", "/metrics")
    assert code == 200 and b"apiserver_registered_watchers" in body
    # The apiserver listens on every address, its unauthenticated metrics port on loopback.
    assert lab_like.apiserver is not None
    port = lab_like.apiserver.metrics_port
    url = f"http://127.0.0.1:{port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    assert b"apiserver_request_total" in text
    ip = local_ip()
    if ip is not None:
        with socket.socket() as s:
            s.settimeout(5)
            assert s.connect_ex((ip, lab_like.apiserver.secure_port)) == 0  # the API: yes
        with socket.socket() as s:
            s.settimeout(5)
            assert s.connect_ex((ip, port)) != 0, f"/metrics answers on {ip}:{port}"
