"""tkctl end to end: `python -m tkctl` as a subprocess against the real apiserver and etcd."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from harness.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]

# The Kubernetes docs' nginx-deployment.yaml, verbatim (concepts/workloads/controllers).
NGINX = (ROOT / "docs" / "examples" / "nginx-deployment.yaml").read_text()


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TINYKUBE_SERVER": "", "TINYKUBE_CONFIG": ""}


async def tk(cluster: Cluster, *args: str, stdin: str = "", namespace: str = "") -> Result:
    ns = ["-n", namespace] if namespace else []
    kubeconfig = getattr(cluster, "kubeconfig", None)
    to = ["--kubeconfig", kubeconfig] if kubeconfig else ["--server", cluster.server]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tkctl", *to, *ns, *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def write(tmp_path: Path, text: str, name: str = "nginx-deployment.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}


async def test_apply_created_unchanged_configured(cluster: Cluster, namespace: str,
                                                  tmp_path: Path) -> None:
    f = write(tmp_path, NGINX)
    r = await tk(cluster, "apply", "-f", f, namespace=namespace)
    assert (r.code, r.out, r.err) == (0, "deployment.apps/nginx-deployment created\n", "")
    r = await tk(cluster, "apply", "-f", f, namespace=namespace)
    assert (r.code, r.out) == (0, "deployment.apps/nginx-deployment unchanged\n")
    write(tmp_path, NGINX.replace("replicas: 3", "replicas: 5").replace(
        "  labels:\n    app: nginx\nspec", "spec"))
    r = await tk(cluster, "apply", "-f", f, namespace=namespace)
    assert (r.code, r.out) == (0, "deployment.apps/nginx-deployment configured\n")
    live = await cluster.client.get("deployments", "nginx-deployment", namespace)
    assert live["spec"]["replicas"] == 5
    assert "labels" not in live["metadata"]  # removed from the manifest → removed live
    r = await tk(cluster, "get", "deploy", "-o", "json", namespace=namespace)
    doc = json.loads(r.out)
    assert doc["kind"] == "List"
    assert doc["items"][0]["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    r = await tk(cluster, "get", "deploy", "nginx-deployment", "-o", "json", namespace=namespace)
    assert json.loads(r.out)["kind"] == "Deployment"


async def test_apply_multi_document_from_stdin_and_directory(cluster: Cluster, namespace: str,
                                                             tmp_path: Path) -> None:
    cms = "".join(f"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n"
                  f"data:\n  k: v{i}\n" for i in range(3))
    r = await tk(cluster, "apply", "-f", "-", stdin=cms, namespace=namespace)
    assert r.out.splitlines() == [f"configmap/cm-{i} created" for i in range(3)], r
    (tmp_path / "d").mkdir()
    write(tmp_path / "d", NGINX, "a.yaml")
    write(tmp_path / "d", cms, "b.yml")
    r = await tk(cluster, "apply", "-f", str(tmp_path / "d"), namespace=namespace)
    assert r.out.splitlines() == ["deployment.apps/nginx-deployment created",
                                  *[f"configmap/cm-{i} unchanged" for i in range(3)]], r
    r = await tk(cluster, "get", "cm", "-o", "name", namespace=namespace)
    assert r.out.splitlines() == [f"configmap/cm-{i}" for i in range(3)]


async def test_get_tables_selectors_and_several_types(cluster: Cluster, namespace: str) -> None:
    for name, app in (("web-1", "web"), ("web-2", "web"), ("db-1", "db")):
        await cluster.client.create("pods", pod(name, {"app": app}), namespace)
    r = await tk(cluster, "get", "pods", "-l", "app=web", namespace=namespace)
    lines = r.out.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [line.split()[0] for line in lines[1:]] == ["web-1", "web-2"]
    assert lines[1].split()[1:3] == ["0/1", "Pending"]
    r = await tk(cluster, "get", "po", "web-1", "nope", "db-1", namespace=namespace)
    assert r.code == 1
    assert [line.split()[0] for line in r.out.splitlines()[1:]] == ["web-1", "db-1"]
    assert r.err == 'Error from server (NotFound): pods "nope" not found\n'
    await cluster.client.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                               "metadata": {"name": "db-1"}}, namespace)
    r = await tk(cluster, "get", "pods,cm", "--field-selector", "metadata.name=db-1",
                 namespace=namespace)
    tables = r.out.split("\n\n")
    assert tables[0].splitlines()[1].split()[0] == "pod/db-1"
    assert tables[1].splitlines()[1].split()[:2] == ["configmap/db-1", "0"]
    r = await tk(cluster, "get", "pods", "-A", "-l", "app=db", "--show-labels")
    header, *rows = r.out.splitlines()
    assert header.split()[0] == "NAMESPACE" and header.split()[-1] == "LABELS"
    assert any(row.split()[:2] == [namespace, "db-1"] for row in rows)
    r = await tk(cluster, "get", "deploy", namespace=namespace)
    assert (r.code, r.out, r.err) == (0, "", f"No resources found in {namespace} namespace.\n")


async def test_get_jsonpath_and_custom_columns(cluster: Cluster, namespace: str,
                                               tmp_path: Path) -> None:
    for name, app in (("web-1", "web"), ("web-2", "web"), ("db-1", "db")):
        await cluster.client.create("pods", pod(name, {"app": app}), namespace)
    r = await tk(cluster, "get", "pod", "web-1", "-o", "jsonpath={.metadata.name}",
                 namespace=namespace)
    assert (r.code, r.out, r.err) == (0, "web-1", "")  # exactly the template: no newline
    r = await tk(cluster, "get", "pods", "-l", "app=web",
                 "-o=jsonpath={range .items[*]}{.metadata.name}{\"\\t\"}"
                 "{.metadata.labels.app}{\"\\n\"}{end}", namespace=namespace)
    assert r.out == "web-1\tweb\nweb-2\tweb\n"
    r = await tk(cluster, "get", "pods", "-o", "jsonpath={.items[*].metadata.name}",
                 namespace=namespace)
    assert r.out == "db-1 web-1 web-2"
    r = await tk(cluster, "get", "pods", "-l", "app=none", "-o",
                 "jsonpath={.items[*].metadata.name}", namespace=namespace)
    assert (r.code, r.out, r.err) == (0, "", "")  # an empty List, as kubectl
    # A missing key prints nothing, unless --allow-missing-template-keys=false.
    r = await tk(cluster, "get", "pod", "web-1", "-o", "jsonpath={.spec.nope}",
                 namespace=namespace)
    assert (r.code, r.out) == (0, "")
    r = await tk(cluster, "get", "pod", "web-1", "-o", "jsonpath={.spec.nope}",
                 "--allow-missing-template-keys=false", namespace=namespace)
    assert r.code == 1 and r.err == \
        'error: error executing jsonpath "{.spec.nope}": nope is not found\n'
    template = tmp_path / "names.jsonpath"
    template.write_text('{range .items[*]}{.metadata.name}{"\\n"}{end}')
    r = await tk(cluster, "get", "pods", "-l", "app=web", "-o", f"jsonpath-file={template}",
                 namespace=namespace)
    assert r.out == "web-1\nweb-2\n"

    r = await tk(cluster, "get", "pods", "-o",
                 "custom-columns=NAME:.metadata.name,APP:metadata.labels.app,"
                 "NODE:{.spec.nodeName},LABELS:.metadata.labels", namespace=namespace)
    assert r.out.splitlines() == [
        "NAME    APP   NODE     LABELS",
        "db-1    db    <none>   map[app:db]",
        "web-1   web   <none>   map[app:web]",
        "web-2   web   <none>   map[app:web]",
    ]
    columns = tmp_path / "columns"
    columns.write_text("NAME          APP\nmetadata.name metadata.labels.app\n")
    r = await tk(cluster, "get", "pods", "-l", "app=db", "--no-headers", "-o",
                 f"custom-columns-file={columns}", namespace=namespace)
    assert r.out.splitlines() == ["db-1   db"]

    # Mistakes are refused before any request, in kubectl's words.
    for output, message in (
            ("jsonpath", "template format specified but no template given"),
            ("jsonpath={.metadata.name", "error parsing jsonpath {.metadata.name, unclosed "
                                         "action"),
            ("custom-columns", "custom-columns format specified but no custom columns given"),
            ("custom-columns=NAME", "unexpected custom-columns spec: NAME, expected "
                                    "<header>:<json-path-expr>"),
            ("jsonpath-file=/nonexistent", "error reading --output "
                                           "jsonpath-file=/nonexistent: No such file or "
                                           "directory")):
        r = await tk(cluster, "get", "pods", "-o", output, namespace=namespace)
        assert (r.code, r.out, r.err) == (1, "", f"error: {message}\n"), output


async def test_get_watch_streams_changes(cluster: Cluster, namespace: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tkctl", "--kubeconfig", cluster.kubeconfig, "-n", namespace, "get",
        "pods", "-w", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=ROOT, env=_env(),
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        first = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert first.decode() == f"No resources found in {namespace} namespace.\n"
        await cluster.client.create("pods", pod("watched"), namespace)
        header = await asyncio.wait_for(proc.stdout.readline(), 30)
        row = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert header.decode().split()[:2] == ["NAME", "READY"]
        assert row.decode().split()[:3] == ["watched", "0/1", "Pending"]
        await cluster.client.delete("pods", "watched", namespace, grace_period_seconds=0)
        row = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert row.decode().split()[0] == "watched"
        assert header.decode().index("READY") == row.decode().index("0/1")
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def test_watch_ends_quietly_at_request_timeout(cluster: Cluster, namespace: str) -> None:
    await cluster.client.create("pods", pod("early"), namespace)
    r = await tk(cluster, "get", "pods", "--watch", "--output-watch-events",
                 "--request-timeout=2s", namespace=namespace)
    assert r.code == 0, r
    assert [line.split()[:2] for line in r.out.splitlines()] == [["EVENT", "NAME"],
                                                                  ["ADDED", "early"]]


async def test_watch_with_jsonpath_and_custom_columns(cluster: Cluster,
                                                      namespace: str) -> None:
    for name in ("w-1", "w-2"):
        await cluster.client.create("pods", pod(name), namespace)
    r = await tk(cluster, "get", "pods", "--watch", "--request-timeout=2s", "-o",
                 'jsonpath={.metadata.name}{"\\n"}', namespace=namespace)
    assert (r.code, r.out) == (0, "w-1\nw-2\n")  # once per object, as kubectl
    r = await tk(cluster, "get", "pods", "--watch", "--request-timeout=2s", "-o",
                 "custom-columns=POD:.metadata.name,APP:.metadata.labels.app",
                 namespace=namespace)
    assert (r.code, r.out.splitlines()) == (0, ["POD   APP", "w-1   web", "w-2   web"])


async def test_create_conflicts_and_replace(cluster: Cluster, namespace: str,
                                            tmp_path: Path) -> None:
    f = write(tmp_path, NGINX)
    assert (await tk(cluster, "create", "-f", f, namespace=namespace)).out == (
        "deployment.apps/nginx-deployment created\n")
    r = await tk(cluster, "create", "-f", f, namespace=namespace)
    assert r.code == 1
    assert r.err == (f'Error from server (AlreadyExists): error when creating "{f}": '
                     'deployments.apps "nginx-deployment" already exists\n')
    stale = (await tk(cluster, "get", "deploy", "nginx-deployment", "-o", "yaml",
                      namespace=namespace)).out
    await cluster.client.patch("deployments", "nginx-deployment",
                               {"metadata": {"labels": {"bump": "1"}}}, namespace)
    g = write(tmp_path, stale.replace("replicas: 3", "replicas: 4"), "stale.yaml")
    r = await tk(cluster, "replace", "-f", g, namespace=namespace)
    assert r.code == 1
    assert r.err.startswith("Error from server (Conflict): "), r
    assert r.err.count("\n") == 1
    fresh = (await tk(cluster, "get", "deploy", "nginx-deployment", "-o", "yaml",
                      namespace=namespace)).out
    g = write(tmp_path, fresh.replace("replicas: 3", "replicas: 4"), "fresh.yaml")
    r = await tk(cluster, "replace", "-f", g, namespace=namespace)
    assert (r.code, r.out) == (0, "deployment.apps/nginx-deployment replaced\n")
    live = await cluster.client.get("deployments", "nginx-deployment", namespace)
    assert live["spec"]["replicas"] == 4
    r = await tk(cluster, "create", "-f", "-", namespace=namespace,
                 stdin="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\n")
    assert r.code == 0 and r.out.startswith("configmap/gen-") and r.out.endswith(" created\n")
    assert len(r.out.split()[0]) > len("configmap/gen-")


async def test_delete_forms(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    f = write(tmp_path, NGINX)
    await tk(cluster, "apply", "-f", f, namespace=namespace)
    r = await tk(cluster, "delete", "-f", f, namespace=namespace)
    assert (r.code, r.out) == (0, 'deployment.apps "nginx-deployment" deleted\n')
    r = await tk(cluster, "get", "deploy/nginx-deployment", namespace=namespace)
    assert r.code == 1
    assert r.err == 'Error from server (NotFound): deployments.apps "nginx-deployment" not found\n'
    await tk(cluster, "apply", "-f", f, namespace=namespace)
    # This cluster runs no garbage collector, so the orphan finalizer stays: without
    # --wait=false tkctl (like kubectl) would wait for the object to go.
    r = await tk(cluster, "delete", "deploy", "nginx-deployment", "--cascade=orphan",
                 "--wait=false", namespace=namespace)
    assert r.out == 'deployment.apps "nginx-deployment" deleted\n'
    live = await cluster.client.get("deployments", "nginx-deployment", namespace)
    assert "orphan" in live["metadata"]["finalizers"]  # the garbage collector finishes it
    for name, app in (("a", "x"), ("b", "x"), ("c", "y")):
        await cluster.client.create("pods", pod(name, {"app": app}), namespace)
    r = await tk(cluster, "delete", "pods", "-l", "app=x", "--grace-period=0", "--force",
                 namespace=namespace)
    assert r.out.splitlines() == ['pod "a" deleted', 'pod "b" deleted'], r
    r = await tk(cluster, "delete", "pod/c", "pod/zzz", "--now", namespace=namespace)
    assert r.code == 1
    assert r.out == 'pod "c" deleted\n'
    assert r.err == 'Error from server (NotFound): pods "zzz" not found\n'
    r = await tk(cluster, "delete", "pods", "--all", namespace=namespace)
    assert r.code == 0


async def test_delete_waits_until_the_object_is_gone(cluster: Cluster, namespace: str) -> None:
    """As kubectl, `delete` returns once the object is gone, not when it is marked: here a
    finalizer holds it, so a --timeout gives up with kubectl's message, and a delete without
    one returns as soon as the finalizer is removed."""
    held = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    await cluster.client.create("configmaps", held, namespace)
    r = await tk(cluster, "delete", "configmap", "held", "--timeout=1s", namespace=namespace)
    assert (r.code, r.out) == (1, 'configmap "held" deleted\n')
    assert r.err == "error: timed out waiting for the condition on configmaps/held\n"
    # Again without a timeout: it says "deleted" (the object is marked), then waits, and
    # returns once the finalizer is removed.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tkctl", "--kubeconfig", cluster.kubeconfig, "-n", namespace,
        "delete", "configmap", "held", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=_env())
    assert proc.stdout is not None and proc.stderr is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line == b'configmap "held" deleted\n'
    await asyncio.sleep(0.5)
    assert proc.returncode is None, "delete returned while the finalizer still held the object"
    await cluster.client.patch("configmaps", "held", {"metadata": {"finalizers": None}},
                               namespace)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert await proc.stdout.read() == b"" and await proc.stderr.read() == b""


async def test_label_annotate_patch(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    await tk(cluster, "apply", "-f", write(tmp_path, NGINX), namespace=namespace)
    d = ("deployment", "nginx-deployment")
    r = await tk(cluster, "label", *d, "env=prod", namespace=namespace)
    assert r.out == "deployment.apps/nginx-deployment labeled\n"
    r = await tk(cluster, "label", *d, "env=dev", namespace=namespace)
    assert r.code == 1
    assert r.err == "error: 'env' already has a value (prod), and --overwrite is false\n"
    r = await tk(cluster, "label", *d, "env=dev", "--overwrite", namespace=namespace)
    assert r.code == 0
    r = await tk(cluster, "label", "deploy/nginx-deployment", "app-", namespace=namespace)
    assert r.out == "deployment.apps/nginx-deployment unlabeled\n"
    r = await tk(cluster, "annotate", *d, "team=blue", namespace=namespace)
    assert r.out == "deployment.apps/nginx-deployment annotated\n"
    live = await cluster.client.get("deployments", "nginx-deployment", namespace)
    assert live["metadata"]["labels"] == {"env": "dev"}
    assert live["metadata"]["annotations"]["team"] == "blue"
    r = await tk(cluster, "patch", *d, "-p", '{"spec":{"replicas":2}}', namespace=namespace)
    assert r.out == "deployment.apps/nginx-deployment patched\n"
    r = await tk(cluster, "patch", *d, "--type", "json", "-p",
                 '[{"op":"replace","path":"/spec/replicas","value":2}]', namespace=namespace)
    assert r.out == "deployment.apps/nginx-deployment patched (no change)\n"
    r = await tk(cluster, "patch", *d, "--type=strategic", "-p", "{}", namespace=namespace)
    assert r.code == 1 and "--type merge" in r.err
    live = await cluster.client.get("deployments", "nginx-deployment", namespace)
    assert live["spec"]["replicas"] == 2
    # Removing the last finalizer of an object being deleted deletes it: a change.
    await cluster.client.create("configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}, namespace)
    await cluster.client.delete("configmaps", "held", namespace)
    r = await tk(cluster, "patch", "configmap", "held", "--type", "json", "-p",
                 '[{"op":"remove","path":"/metadata/finalizers"}]', namespace=namespace)
    assert (r.code, r.out) == (0, "configmap/held patched\n")


async def test_invalid_manifest_and_unknown_field(cluster: Cluster, namespace: str,
                                                  tmp_path: Path) -> None:
    bad = write(tmp_path, NGINX.replace("replicas: 3", "replicas: -1"))
    r = await tk(cluster, "apply", "-f", bad, namespace=namespace)
    assert r.code == 1
    assert "spec.replicas" in r.err and r.err.count("\n") == 1, r
    assert r.err.startswith('The Deployment "nginx-deployment" is invalid: ')
    typo = write(tmp_path, NGINX.replace("replicas: 3", "replcas: 3"), "typo.yaml")
    r = await tk(cluster, "apply", "-f", typo, namespace=namespace)
    assert r.code == 0
    assert 'Warning: unknown field "spec.replcas"' in r.err
    r = await tk(cluster, "apply", "-f", "-", stdin="apiVersion: v1\nkind: Pod\nmetadata:\n"
                 "  name: [x\n", namespace=namespace)
    assert r.code == 1
    assert r.err.startswith("error: error parsing STDIN: error converting YAML to JSON: yaml: "
                            "line ")


async def test_describe_shows_events(cluster: Cluster, namespace: str) -> None:
    created = await cluster.client.create("pods", pod("described"), namespace)
    md = created["metadata"]
    await cluster.client.create("events", {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "described.1", "namespace": namespace},
        "involvedObject": {"kind": "Pod", "name": "described", "namespace": namespace,
                           "uid": md["uid"], "apiVersion": "v1"},
        "reason": "Scheduled", "message": "Successfully assigned to node-1", "type": "Normal",
        "source": {"component": "default-scheduler"}, "count": 1,
        "firstTimestamp": md["creationTimestamp"], "lastTimestamp": md["creationTimestamp"],
    }, namespace)
    r = await tk(cluster, "describe", "pod", "described", namespace=namespace)
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0].split() == ["Name:", "described"]
    i = lines.index("Events:")
    assert lines[i + 1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert lines[i + 3].split()[:2] == ["Normal", "Scheduled"]
    assert "default-scheduler" in lines[i + 3]
    r = await tk(cluster, "get", "events", namespace=namespace)
    assert "pod/described" in r.out
    r = await tk(cluster, "describe", "pods", "nothing-like-this", namespace=namespace)
    assert r.code == 1 and "NotFound" in r.err


async def test_api_resources_and_version(cluster: Cluster) -> None:
    r = await tk(cluster, "api-resources")
    assert r.code == 0
    rows = [line.split() for line in r.out.splitlines()]
    assert rows[0] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert ["deployments", "deploy", "apps/v1", "true", "Deployment"] in rows
    r = await tk(cluster, "version")
    assert r.out.startswith("Client Version: v") and "Server Version: " in r.out


async def test_unreachable_server_one_line() -> None:
    class Nowhere:
        server = "127.0.0.1:9"

    r = await tk(Nowhere(), "get", "pods")  # type: ignore[arg-type]
    assert r.code == 1
    assert r.err == ("The connection to the server 127.0.0.1:9 was refused - did you specify "
                     "the right host or port?\n")
