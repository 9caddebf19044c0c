"""Real kubectl binaries against a real apiserver: what a person types on kind, here.

The newest kubectl on the machine and the oldest we support (1.27, beside it as
`kubectl.1.27` where the Google Cloud SDK installs several) each run the same commands. A machine
without kubectl skips these with that reason; the official Python client's tests
(test_rest_api.py) cover the same API and always run. Commands that need running pods (logs,
exec, port-forward, rollout status) are in tests/lab, against the lab.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cluster import Cluster

pytestmark = pytest.mark.integration


def _binaries() -> list[str]:
    found = shutil.which("kubectl")
    if found is None:
        return []
    out = [found]
    oldest = Path(os.path.realpath(found)).parent / "kubectl.1.27"
    if oldest.is_file():
        out.append(str(oldest))
    return out


BINARIES = _binaries()
needs_kubectl = pytest.mark.skipif(not BINARIES, reason="no kubectl binary on this machine "
                                   "(the Python client's tests cover the API)")


@pytest.fixture(params=BINARIES or ["kubectl"], ids=lambda b: Path(b).name)
def kubectl(request: pytest.FixtureRequest, cluster: Cluster, namespace: str):  # type: ignore[no-untyped-def]
    if not BINARIES:
        pytest.skip("no kubectl binary on this machine (the Python client's tests cover the API)")
    binary = request.param
    home = cluster.dir / "kubectl-home"
    home.mkdir(exist_ok=True)

    def run(*args: str, input: str | None = None, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "KUBECONFIG": cluster.kubeconfig, "HOME": str(home),
                    **(env or {})}
        p = subprocess.run([binary, "-n", namespace, *args], input=input, text=True,
                           capture_output=True, env=full_env, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n"
                                 f"{p.stdout}\n{p.stderr}")
        return p

    return run


NGINX = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports:
        - containerPort: 80
"""


@needs_kubectl
def test_get_tables(kubectl) -> None:  # type: ignore[no-untyped-def]
    out = kubectl("get", "namespaces").stdout
    assert out.splitlines()[0].split() == ["NAME", "STATUS", "AGE"]
    assert any(line.split()[:2] == ["kube-system", "Active"] for line in out.splitlines())
    kubectl("create", "configmap", "tbl", "--from-literal=a=1", "--from-literal=b=2")
    out = kubectl("get", "cm", "tbl").stdout.splitlines()
    assert out[0].split() == ["NAME", "DATA", "AGE"] and out[1].split()[:2] == ["tbl", "2"]
    assert kubectl("get", "cm", "tbl", "-o", "jsonpath={.data.b}").stdout == "2"
    missing = kubectl("get", "cm", "nope", check=False)
    assert missing.returncode == 1
    assert 'configmaps "nope" not found' in missing.stderr


@needs_kubectl
def test_apply_client_side_diff_and_edit(kubectl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "nginx.yaml"
    f.write_text(NGINX)
    assert "deployment.apps/nginx-deployment created" in kubectl("apply", "-f", str(f)).stdout
    assert "unchanged" in kubectl("apply", "-f", str(f)).stdout
    f.write_text(NGINX.replace("1.14.2", "1.16.1"))
    diff = kubectl("diff", "-f", str(f), check=False)
    assert diff.returncode == 1
    lines = diff.stdout.splitlines()
    assert any(ln.startswith("-") and "image: nginx:1.14.2" in ln for ln in lines)
    assert any(ln.startswith("+") and "image: nginx:1.16.1" in ln for ln in lines)
    assert "configured" in kubectl("apply", "-f", str(f)).stdout
    image = kubectl("get", "deploy", "nginx-deployment", "-o",
                    "jsonpath={.spec.template.spec.containers[0].image}").stdout
    assert image == "nginx:1.16.1"
    # edit with an editor that rewrites the replicas, as a person would in vi.
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/replicas: 3/replicas: 5/' \"$1\"\n")
    editor.chmod(0o755)
    out = kubectl("edit", "deploy/nginx-deployment", env={"KUBE_EDITOR": str(editor)}).stdout
    assert "edited" in out
    assert kubectl("get", "deploy", "nginx-deployment", "-o",
                   "jsonpath={.spec.replicas}").stdout == "5"
    out = kubectl("scale", "deploy/nginx-deployment", "--replicas=2").stdout
    assert "scaled" in out
    kubectl("wait", "--for=jsonpath={.spec.replicas}=2", "deploy/nginx-deployment",
            "--timeout=10s")
    out = kubectl("delete", "-f", str(f), "--cascade=background").stdout
    assert 'deployment.apps "nginx-deployment" deleted' in out


@needs_kubectl
def test_apply_server_side(kubectl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "cm.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '1'\n")
    out = kubectl("apply", "--server-side", "-f", str(f)).stdout
    assert "configmap/ssa serverside-applied" in out
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '2'\n")
    kubectl("apply", "--server-side", "-f", str(f))
    got = json.loads(kubectl("get", "cm", "ssa", "-o", "json", "--show-managed-fields").stdout)
    assert got["data"] == {"a": "2"}
    managers = {(m["manager"], m["operation"]) for m in got["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers
    # Another manager's change to a field kubectl applied is a conflict, until forced.
    kubectl("patch", "cm", "ssa", "-p", '{"data":{"a":"3"}}', "--field-manager=other")
    clash = kubectl("apply", "--server-side", "-f", str(f), check=False)
    assert clash.returncode == 1
    assert 'conflict with "other"' in clash.stderr and ".data.a" in clash.stderr
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
    assert kubectl("get", "cm", "ssa", "-o", "jsonpath={.data.a}").stdout == "2"


@needs_kubectl
def test_discovery_explain_and_auth(kubectl) -> None:  # type: ignore[no-untyped-def]
    out = kubectl("api-resources").stdout
    rows = {line.split()[0] for line in out.splitlines()[1:]}
    assert {"pods", "deployments", "namespaces", "leases", "clusterroles"} <= rows
    explain = kubectl("explain", "deployment.spec.replicas").stdout
    assert "replicas" in explain and "integer" in explain
    assert kubectl("auth", "can-i", "create", "pods").stdout.strip() == "yes"
    denied = kubectl("auth", "can-i", "create", "pods", "--as", "nobody", check=False)
    assert denied.stdout.strip() == "no" and denied.returncode == 1
    whoami = kubectl("auth", "whoami", "-o", "json", check=False)
    if whoami.returncode == 0:  # kubectl 1.27 still had it behind an alpha gate
        assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == "kubernetes-admin"


@needs_kubectl
def test_errors_are_kubectls(kubectl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "bad.yaml"
    f.write_text(NGINX.replace("replicas: 3", "replicas: -1"))
    p = kubectl("apply", "-f", str(f), check=False)
    assert p.returncode == 1
    assert "spec.replicas" in p.stderr and "Traceback" not in p.stderr
    f.write_text(NGINX.replace("  replicas: 3", "  replicaz: 3"))
    p = kubectl("apply", "-f", str(f), check=False)
    assert p.returncode == 1 and 'unknown field "spec.replicaz"' in p.stderr


def _older_binaries() -> list[str]:
    """kubectl 1.27 and 1.28 beside the default one: the last that read `/openapi/v2` (as
    gnostic protobuf, asked for with that type alone) for explain, validation and apply."""
    found = shutil.which("kubectl")
    if found is None:
        return []
    here = Path(os.path.realpath(found)).parent
    return [str(here / name) for name in ("kubectl.1.27", "kubectl.1.28")
            if (here / name).is_file()]


@pytest.mark.parametrize("binary", _older_binaries() or ["kubectl.1.27"],
                         ids=lambda b: Path(b).name)
def test_openapi_v2_protobuf_for_kubectl_before_1_29(binary: str, cluster: Cluster,
                                                     namespace: str, tmp_path: Path) -> None:
    if not Path(binary).is_file():
        pytest.skip("no kubectl.1.27 / kubectl.1.28 beside kubectl on this machine")
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig, "HOME": str(tmp_path)}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([binary, "-n", namespace, *args], text=True, capture_output=True,
                           env=env, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"{Path(binary).name} {' '.join(args)} failed "
                                 f"({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    # Their default explain reads v3; plaintext-openapiv2 reads the protobuf definitions and
    # finds the kind by its x-kubernetes-group-version-kind extension.
    for output in ("plaintext", "plaintext-openapiv2"):
        explain = run("explain", "deployment.spec.replicas", f"--output={output}").stdout
        assert "Deployment" in explain and "replicas <integer>" in explain, explain
    fields = run("explain", "pods.spec", "--output=plaintext-openapiv2").stdout
    assert "containers\t<[]Object> -required-" in fields, fields
    f = tmp_path / "nginx.yaml"
    f.write_text(NGINX)
    # Every create/apply/diff first fetches /openapi/v2 (protobuf only) and fails if it cannot
    # decode it: `proto: cannot parse invalid wire-format data` before.
    p = run("create", "--dry-run=client", "-f", str(f), "-o", "yaml", "-v=6")
    assert "kind: Deployment" in p.stdout and "nginx:1.14.2" in p.stdout
    assert any("/openapi/v2" in line and "200 OK" in line for line in p.stderr.splitlines())
    # Client-side validation (from the v2 document) or the server's, whichever kubectl picks.
    bad = tmp_path / "bad.yaml"
    bad.write_text(NGINX.replace("  replicas: 3", "  replicaz: 3"))
    p = run("create", "-f", str(bad), check=False)
    assert p.returncode == 1 and "replicaz" in p.stderr and "proto:" not in p.stderr
    # apply and diff: a strategic merge patch from the v2 patch extensions (containers by name).
    assert "created" in run("apply", "-f", str(f)).stdout
    f.write_text(NGINX.replace("1.14.2", "1.16.1"))
    diff = run("diff", "-f", str(f), check=False)
    assert diff.returncode == 1, diff.stderr
    assert "+        image: nginx:1.16.1" in diff.stdout or "image: nginx:1.16.1" in diff.stdout
    assert "configured" in run("apply", "-f", str(f)).stdout
    got = json.loads(run("get", "deploy", "nginx-deployment", "-o", "json").stdout)
    (container,) = got["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "nginx:1.16.1" and container["ports"] == [
        {"containerPort": 80, "protocol": "TCP"}]
