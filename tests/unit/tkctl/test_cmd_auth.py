"""`auth can-i`, `auth whoami` and `create token` against a fake Api server: the exact review
and TokenRequest bodies tkctl sends (the wire contract with the apiserver) and kubectl's
output and exit codes."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from api.proto import tinykube_pb2 as pb
from api.proto import tinykube_pb2_grpc as pb_grpc
from tkctl.commands import execute


class FakeApi(pb_grpc.ApiServicer):
    """Answers the three creates the way the apiserver does and remembers each request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def Create(self, request: Any, context: Any) -> pb.ObjectResponse:
        md = [(k, v) for k, v in context.invocation_metadata() if not k.startswith(":")]
        obj = json.loads(request.object)
        self.requests.append({"resource": request.resource, "namespace": request.namespace,
                              "name": request.name, "subresource": request.subresource,
                              "object": json.loads(request.object), "metadata": md})
        if request.resource == "selfsubjectaccessreviews":
            attrs = obj["spec"].get("resourceAttributes") or obj["spec"].get(
                "nonResourceAttributes")
            allowed = attrs.get("verb") == "get"
            obj["status"] = {"allowed": allowed}
            if not allowed and attrs.get("verb") == "explain":
                obj["status"]["reason"] = "no RBAC policy matched"
        elif request.resource == "selfsubjectreviews":
            user = dict(md).get("impersonate-user", "kubernetes-admin")
            groups = [v for k, v in md if k == "impersonate-group"] or ["system:masters"]
            obj["status"] = {"userInfo": {"username": user,
                                          "groups": [*groups, "system:authenticated"]}}
            if user.startswith("system:serviceaccount:"):
                obj["status"]["userInfo"]["uid"] = "u-1"
                obj["status"]["userInfo"]["extra"] = {"authentication.kubernetes.io/pod-name":
                                                      ["p1"]}
        elif request.resource == "serviceaccounts" and request.subresource == "token":
            obj["status"] = {"token": f"tok-{request.namespace}-{request.name}",
                             "expirationTimestamp": "2030-01-01T00:00:00Z"}
        return pb.ObjectResponse(object=json.dumps(obj).encode())


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeApi, str]]:
    api = FakeApi()
    server = grpc.aio.server()
    pb_grpc.add_ApiServicer_to_server(api, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield api, f"127.0.0.1:{port}"
    await server.stop(None)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for var in ("TINYKUBE_CONFIG", "TINYKUBE_SERVER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


async def run(server: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await execute([*argv, "--server", server], stdin=io.StringIO(""), stdout=out,
                         stderr=err)
    return code, out.getvalue(), err.getvalue()


def last_spec(api: FakeApi) -> dict[str, Any]:
    req = api.requests[-1]
    assert req["resource"] == "selfsubjectaccessreviews"
    assert req["object"]["apiVersion"] == "authorization.k8s.io/v1"
    assert req["object"]["kind"] == "SelfSubjectAccessReview"
    spec: dict[str, Any] = req["object"]["spec"]
    return spec


# --- can-i ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "attrs"), [
    (["get", "pods"], {"namespace": "default", "verb": "get", "resource": "pods"}),
    (["get", "po", "-n", "kube-system"],
     {"namespace": "kube-system", "verb": "get", "resource": "pods"}),
    (["get", "pods/web"], {"namespace": "default", "verb": "get", "resource": "pods",
                           "name": "web"}),
    (["get", "pods", "web", "--subresource", "log"],
     {"namespace": "default", "verb": "get", "resource": "pods", "name": "web",
      "subresource": "log"}),
    (["get", "deployments.apps", "-A"], {"verb": "get", "group": "apps",
                                         "resource": "deployments"}),
    (["get", "deploy"], {"namespace": "default", "verb": "get", "group": "apps",
                         "resource": "deployments"}),
    (["get", "nodes"], {"verb": "get", "resource": "nodes"}),  # cluster-scoped: no namespace
    (["get", "*"], {"namespace": "default", "verb": "get", "resource": "*"}),
])
async def test_can_i_resource_attributes(fake: tuple[FakeApi, str], argv: list[str],
                                         attrs: dict[str, str]) -> None:
    api, server = fake
    code, out, err = await run(server, "auth", "can-i", *argv)
    assert (code, out, err) == (0, "yes\n", "")
    assert last_spec(api) == {"resourceAttributes": attrs}


async def test_can_i_non_resource_url(fake: tuple[FakeApi, str]) -> None:
    api, server = fake
    code, out, _ = await run(server, "auth", "can-i", "get", "/healthz")
    assert (code, out) == (0, "yes\n")
    assert last_spec(api) == {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}


async def test_can_i_no_exits_1_and_quiet_prints_nothing(fake: tuple[FakeApi, str]) -> None:
    _, server = fake
    assert await run(server, "auth", "can-i", "delete", "pods") == (1, "no\n", "")
    assert await run(server, "auth", "can-i", "delete", "pods", "-q") == (1, "", "")
    assert await run(server, "auth", "can-i", "get", "pods", "--quiet") == (0, "", "")
    code, out, err = await run(server, "auth", "can-i", "explain", "pods")
    assert (code, out) == (1, "no - no RBAC policy matched\n")
    assert err == "Warning: verb 'explain' is not a known verb\n"


async def test_can_i_unknown_type_warns_and_asks(fake: tuple[FakeApi, str]) -> None:
    api, server = fake
    code, out, err = await run(server, "auth", "can-i", "get", "widgets.example.com")
    assert (code, out) == (0, "yes\n")
    assert err == "Warning: the server doesn't have a resource type 'widgets.example.com'\n"
    assert last_spec(api)["resourceAttributes"]["group"] == "example.com"


async def test_can_i_sends_impersonation(fake: tuple[FakeApi, str]) -> None:
    api, server = fake
    await run(server, "auth", "can-i", "get", "pods", "--as", "jane", "--as-group", "dev",
              "--as-group", "qa")
    md = api.requests[-1]["metadata"]
    assert ("impersonate-user", "jane") in md
    assert [v for k, v in md if k == "impersonate-group"] == ["dev", "qa"]


@pytest.mark.parametrize(("argv", "message"), [
    (["get"], "you must specify two arguments"),
    ([], "you must specify two arguments"),
    (["get", "/healthz", "--subresource", "x"], "--subresource can not be used with"),
    (["get", "pods/a", "b"], "there is no need to specify a resource name twice"),
])
async def test_can_i_mistakes(fake: tuple[FakeApi, str], argv: list[str], message: str) -> None:
    api, server = fake
    code, out, err = await run(server, "auth", "can-i", *argv)
    assert code == 1 and out == "" and message in err and err.startswith("error: ")
    assert api.requests == []


# --- whoami ---------------------------------------------------------------------------------


async def test_whoami_table(fake: tuple[FakeApi, str]) -> None:
    api, server = fake
    code, out, err = await run(server, "auth", "whoami")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "ATTRIBUTE   VALUE",
        "Username    kubernetes-admin",
        "Groups      [system:masters system:authenticated]",
    ]
    req = api.requests[-1]
    assert req["resource"] == "selfsubjectreviews"
    assert req["object"] == {"apiVersion": "authentication.k8s.io/v1",
                             "kind": "SelfSubjectReview", "metadata": {}}


async def test_whoami_uid_extra_and_json(fake: tuple[FakeApi, str]) -> None:
    _, server = fake
    code, out, _ = await run(server, "auth", "whoami", "--as", "system:serviceaccount:a:b")
    assert code == 0
    w = len("Extra: authentication.kubernetes.io/pod-name") + 3  # tabwriter padding 3
    assert out.splitlines() == [
        "ATTRIBUTE".ljust(w) + "VALUE",
        "Username".ljust(w) + "system:serviceaccount:a:b",
        "UID".ljust(w) + "u-1",
        "Groups".ljust(w) + "[system:masters system:authenticated]",
        "Extra: authentication.kubernetes.io/pod-name".ljust(w) + "[p1]",
    ]
    code, out, _ = await run(server, "auth", "whoami", "-o", "json")
    assert code == 0
    assert json.loads(out)["status"]["userInfo"]["username"] == "kubernetes-admin"


# --- create token ---------------------------------------------------------------------------


async def test_create_token(fake: tuple[FakeApi, str]) -> None:
    api, server = fake
    code, out, err = await run(server, "create", "token", "builder", "-n", "ci",
                               "--duration", "10m", "--audience", "a1", "--audience", "a2")
    assert (code, out, err) == (0, "tok-ci-builder\n", "")
    req = api.requests[-1]
    assert (req["resource"], req["namespace"], req["name"], req["subresource"]) == (
        "serviceaccounts", "ci", "builder", "token")
    assert req["object"] == {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                             "metadata": {},
                             "spec": {"audiences": ["a1", "a2"], "expirationSeconds": 600}}
    await run(server, "create", "token", "default")
    assert api.requests[-1]["object"]["spec"] == {"audiences": []}
    assert api.requests[-1]["namespace"] == "default"


@pytest.mark.parametrize(("argv", "message"), [
    ([], "SERVICE_ACCOUNT_NAME is required"),
    (["sa", "--duration", "soon"], 'invalid argument "soon" for "--duration" flag'),
    (["sa", "--duration", "1500ms"], "--duration cannot be expressed in units less than"),
    (["sa", "--audience", ""], "--audience must not be an empty string"),
])
async def test_create_token_mistakes(fake: tuple[FakeApi, str], argv: list[str],
                                     message: str) -> None:
    api, server = fake
    code, out, err = await run(server, "create", "token", *argv)
    assert code == 1 and out == "" and message in err
    assert api.requests == []
