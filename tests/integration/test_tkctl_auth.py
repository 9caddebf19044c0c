"""tkctl against a secure apiserver: `auth whoami`, `auth can-i` (with and without RBAC
bindings, with `--as`/`--as-group`), `create token` and a ServiceAccount token used through a
kubeconfig, as a person would type them (`python -m tkctl` as a subprocess)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from client import pki
from harness.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


async def tk(*args: str, kubeconfig: str) -> Result:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TINYKUBE_SERVER": "", "TINYKUBE_CONFIG": ""}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tkctl", "--kubeconfig", kubeconfig, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def grant(cluster: Cluster, namespace: str, user: str, verbs: list[str],
                resources: list[str]) -> None:
    """A Role with one rule and a RoleBinding of it to `user`, in `namespace`."""
    name = f"{user}-{'-'.join(verbs)}".replace("*", "all")
    await cluster.client.create("roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": resources, "verbs": verbs}],
    })
    await cluster.client.create("rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    })


async def eventually_can(kubeconfig: str, *args: str, want: str) -> Result:
    """RBAC reads the watch cache: a fresh binding is visible within moments, not at once."""
    r = Result(-1, "", "")
    for _ in range(50):
        r = await tk("auth", "can-i", *args, kubeconfig=kubeconfig)
        if r.out.strip() == want:
            return r
        await asyncio.sleep(0.1)
    return r


async def test_whoami_admin(cluster: Cluster) -> None:
    r = await tk("auth", "whoami", kubeconfig=cluster.kubeconfig)
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0].split() == ["ATTRIBUTE", "VALUE"]
    assert lines[1].split() == ["Username", "kubernetes-admin"]
    assert lines[2].split(None, 1) == ["Groups", "[system:masters system:authenticated]"]


async def test_admin_can_do_anything(cluster: Cluster) -> None:
    r = await tk("auth", "can-i", "*", "*", "-A", kubeconfig=cluster.kubeconfig)
    assert (r.code, r.out) == (0, "yes\n"), r


async def test_can_i_follows_a_namespaced_role(cluster: Cluster, namespace: str) -> None:
    jane = cluster.kubeconfig_as("jane-" + namespace)
    user = "jane-" + namespace
    r = await tk("auth", "can-i", "get", "pods", "-n", namespace, kubeconfig=jane)
    assert (r.code, r.out) == (1, "no\n"), r
    await grant(cluster, namespace, user, ["get", "list"], ["pods"])
    r = await eventually_can(jane, "get", "pods", "-n", namespace, want="yes")
    assert (r.code, r.out) == (0, "yes\n"), r
    r = await tk("auth", "can-i", "list", "pods", "-n", namespace, "-q", kubeconfig=jane)
    assert (r.code, r.out) == (0, ""), r
    for args in (["delete", "pods", "-n", namespace], ["get", "pods", "-n", "default"],
                 ["get", "secrets", "-n", namespace], ["get", "pods", "-A"],
                 ["get", "nodes"]):
        r = await tk("auth", "can-i", *args, kubeconfig=jane)
        assert (r.code, r.out) == (1, "no\n"), (args, r)
    # The answer matches what the server then does.
    r = await tk("get", "pods", "-n", namespace, kubeconfig=jane)
    assert r.code == 0, r
    r = await tk("get", "secrets", "-n", namespace, kubeconfig=jane)
    assert r.code == 1
    assert r.err.startswith("Error from server (Forbidden): "), r
    assert f'User "{user}" cannot list resource "secrets"' in r.err, r


async def test_whoami_and_can_i_as_someone_else(cluster: Cluster, namespace: str) -> None:
    admin = cluster.kubeconfig
    user = "imp-" + namespace
    r = await tk("auth", "whoami", "--as", user, "--as-group", "dev", kubeconfig=admin)
    assert r.code == 0, r
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in r.out.splitlines()[1:]}
    assert rows["Username"] == user
    assert "dev" in rows["Groups"] and "system:masters" not in rows["Groups"]
    r = await tk("auth", "can-i", "create", "pods", "-n", namespace, "--as", user,
                 kubeconfig=admin)
    assert (r.code, r.out) == (1, "no\n"), r
    await grant(cluster, namespace, user, ["create"], ["pods"])
    r = await eventually_can(admin, "create", "pods", "-n", namespace, "--as", user, want="yes")
    assert (r.code, r.out) == (0, "yes\n"), r
    r = await tk("auth", "can-i", "delete", "nodes", "--as", user, "--as-group",
                 "system:masters", kubeconfig=admin)
    assert (r.code, r.out) == (0, "yes\n"), r


async def test_impersonation_needs_permission(cluster: Cluster, namespace: str) -> None:
    plain = cluster.kubeconfig_as("plain-" + namespace)
    r = await tk("auth", "whoami", "--as", "kubernetes-admin", kubeconfig=plain)
    assert r.code == 1
    assert r.err.startswith("Error from server (Forbidden): "), r
    assert "impersonate" in r.err, r


async def test_create_token_and_use_it(cluster: Cluster, namespace: str,
                                       tmp_path: Path) -> None:
    await cluster.client.create("serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "builder", "namespace": namespace}})
    r = await tk("create", "token", "builder", "-n", namespace, "--duration", "10m",
                 kubeconfig=cluster.kubeconfig)
    assert r.code == 0, r
    token = r.out.strip()
    assert r.out.count("\n") == 1 and token.count(".") == 2, r  # one JWT, nothing else
    conf = tmp_path / "sa.conf"
    pki.write_kubeconfig(conf, server_url=f"https://{cluster.token_address}",
                         ca_pem=cluster.ca_pem, user="builder", token=token,
                         namespace=namespace)
    r = await tk("auth", "whoami", kubeconfig=str(conf))
    assert r.code == 0, r
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in r.out.splitlines()[1:]}
    assert rows["Username"] == f"system:serviceaccount:{namespace}:builder"
    assert "system:serviceaccounts" in rows["Groups"]
    assert f"system:serviceaccounts:{namespace}" in rows["Groups"]
    r = await tk("auth", "can-i", "list", "secrets", kubeconfig=str(conf))
    assert (r.code, r.out) == (1, "no\n"), r
    r = await tk("get", "pods", kubeconfig=str(conf))  # namespace from the kubeconfig context
    assert r.code == 1 and f'in the namespace "{namespace}"' in r.err, r


async def test_create_token_for_a_missing_service_account(cluster: Cluster,
                                                          namespace: str) -> None:
    r = await tk("create", "token", "ghost", "-n", namespace, kubeconfig=cluster.kubeconfig)
    assert r.code == 1
    assert r.err == 'Error from server (NotFound): serviceaccounts "ghost" not found\n', r


async def test_certificate_of_another_cluster_is_refused(cluster: Cluster,
                                                         tmp_path: Path) -> None:
    pki.init_pki(tmp_path / "other", **cluster.kubeconfig_servers)
    r = await tk("get", "pods", kubeconfig=str(tmp_path / "other" / "admin.conf"))
    assert r.code == 1 and r.err.count("\n") == 1, r
    assert "not signed by the certificate authority" in r.err and "tkctl pki init" in r.err, r
