"""tkctl's security plumbing without a cluster: `pki init`/`add-node`, the global
`--kubeconfig`/`--as`/`--as-group` flags, kubeconfig errors, and the one actionable line a
failed TLS handshake becomes."""

from __future__ import annotations

import io
import socket
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from api.proto import tinykube_pb2_grpc as pb_grpc
from client import pki
from tkctl import cli
from tkctl.commands import COMMANDS, execute


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("TINYKUBE_CONFIG", "TINYKUBE_SERVER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


async def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await execute(list(argv), stdin=io.StringIO(""), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# --- pki ------------------------------------------------------------------------------------


async def test_pki_init_reports_each_file_once_and_is_idempotent(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    code, out, err = await run("pki", "init", "--dir", str(d), "--node", "n1=10.0.0.1,10.0.0.2",
                               "--apiserver-san", "api.lab", "--etcd-san", "10.0.0.9")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert f"{d}/ca.crt created" in lines and f"{d}/nodes/n1/kubelet.conf created" in lines
    assert all(line.endswith(" created") for line in lines)
    assert len(lines) == len({line.split()[0] for line in lines})
    assert "PRIVATE" not in out and "BEGIN" not in out
    assert {"api.lab", "127.0.0.1"} <= pki.cert_sans((d / "apiserver.crt").read_bytes())
    assert {"10.0.0.1", "10.0.0.2", "n1"} == pki.cert_sans(
        (d / "nodes/n1/kubelet.crt").read_bytes())
    assert "10.0.0.9" in pki.cert_sans((d / "etcd/server.crt").read_bytes())

    code, again, _ = await run("pki", "init", "--dir", str(d), "--node", "n1=10.0.0.1,10.0.0.2")
    assert code == 0 and all(line.endswith(" exists") for line in again.splitlines())
    code, forced, _ = await run("pki", "init", "--dir", str(d), "--force")
    assert code == 0 and all(line.endswith(" created") for line in forced.splitlines())


async def test_pki_init_server_url_and_validity(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    code, _, err = await run("pki", "init", "--dir", str(d), "--server", "10.1.1.1:7443",
                             "--validity", "48h")
    assert (code, err) == (0, "")
    doc = yaml.safe_load((d / "admin.conf").read_text())
    assert doc["clusters"][0]["cluster"]["server"] == "https://10.1.1.1:7443"
    # tkctl's gRPC addresses beside it, on the apiserver's default ports.
    assert doc["clusters"][0]["cluster"]["extensions"] == [{"name": "tinykube.io/grpc",
        "extension": {"server": "10.1.1.1:6442", "token-server": "10.1.1.1:6444"}}]
    assert "10.1.1.1" in pki.cert_sans((d / "apiserver.crt").read_bytes())
    cert = pki.CertKey.load(d / "apiserver.crt", d / "apiserver.key").cert
    assert cert.not_valid_after_utc < datetime.now(UTC) + timedelta(hours=49)


async def test_pki_grpc_addresses(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    code, _, err = await run("pki", "init", "--dir", str(d), "--grpc-server", "grpc.lab:7442",
                             "--token-server", "[fd00::1]:7444")
    assert (code, err) == (0, "")
    ext = yaml.safe_load((d / "admin.conf").read_text())["clusters"][0]["cluster"]["extensions"]
    assert ext[0]["extension"] == {"server": "grpc.lab:7442", "token-server": "[fd00::1]:7444"}
    assert {"grpc.lab", "fd00::1"} <= pki.cert_sans((d / "apiserver.crt").read_bytes())
    # add-node and user take admin.conf's, or what they are told.
    code, _, err = await run("pki", "add-node", "w1", "--dir", str(d))
    assert (code, err) == (0, "")
    assert yaml.safe_load((d / "nodes/w1/kubelet.conf").read_text())["clusters"][0]["cluster"][
        "extensions"] == ext
    code, _, err = await run("pki", "user", "jo", "--dir", str(d), "--grpc-server", "o:1")
    assert (code, err) == (0, "")
    assert yaml.safe_load((d / "jo.conf").read_text())["clusters"][0]["cluster"]["extensions"][
        0]["extension"] == {"server": "o:1", "token-server": "[fd00::1]:7444"}


async def test_pki_add_node(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    await run("pki", "init", "--dir", str(d))
    code, out, err = await run("pki", "add-node", "w1", "--ip", "10.0.0.5", "--dir", str(d))
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"{d}/nodes/w1/kubelet.conf created",
                                f"{d}/nodes/w1/kubelet.crt created",
                                f"{d}/nodes/w1/kubelet.key created",
                                f"{d}/nodes/w1/netagent.conf created"]
    assert pki.cert_sans((d / "nodes/w1/kubelet.crt").read_bytes()) == {"w1", "10.0.0.5"}


async def test_pki_needs_no_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINYKUBE_CONFIG", str(tmp_path / "missing.conf"))
    code, _, err = await run("pki", "init", "--dir", str(tmp_path / "pki"))
    assert (code, err) == (0, "")


@pytest.mark.parametrize(("argv", "message"), [
    (["pki", "init", "--validity", "1d"], 'error: invalid argument "1d" for "--validity" flag'),
    (["pki", "init", "--validity", "0s"], "must be positive"),
    (["pki", "init", "--node", "=10.0.0.1"], 'invalid argument "=10.0.0.1" for "--node" flag'),
    (["pki", "init", "--node", "n1=ten"], 'invalid argument "ten" for "--node" flag: not an IP'),
    (["pki", "init", "--apiserver-san", "a b"], 'for "--apiserver-san" flag'),
    (["pki", "add-node"], "error: NAME is required"),
    (["pki", "add-node", "w1", "--ip", "x"], 'invalid argument "x" for "--ip" flag'),
    (["pki", "add-node", "w1", "--dir", "/nonexistent/pki"], "run `tkctl pki init` first"),
    (["pki", "init", "--grpc-server", "https://h:1"],
     'invalid argument "https://h:1" for "--grpc-server" flag: expected HOST:PORT'),
    (["pki", "init", "--token-server", "h"], 'invalid argument "h" for "--token-server" flag'),
    (["pki", "user", "x", "--grpc-server", "h:0"], 'invalid argument "h:0" for "--grpc-server"'),
    (["pki", "frob"], 'error: unknown command "frob" for "tkctl pki"'),
    (["auth", "frob"], 'error: unknown command "frob" for "tkctl auth"'),
])
async def test_pki_mistakes_are_one_line(tmp_path: Path, argv: list[str], message: str) -> None:
    if "--dir" not in argv:
        argv = [*argv, "--dir", str(tmp_path / "pki")]
    code, out, err = await run(*argv)
    assert code == 1 and out == ""
    assert message in err and err.count("\n") == 1, err


async def test_parent_commands_print_their_subcommands() -> None:
    code, out, _ = await run("pki")
    assert code == 0 and "init" in out and "add-node" in out
    code, out, _ = await run("auth")
    assert code == 0 and "can-i" in out and "whoami" in out
    code, out, _ = await run()
    assert "auth " in out and "pki " in out and "auth can-i" not in out


# --- global flags ---------------------------------------------------------------------------


def parse(*argv: str) -> tuple[str, Any]:
    command, args = cli.parse(list(argv), COMMANDS)
    assert command is not None
    return command.name, args


def test_global_security_flags_anywhere() -> None:
    name, a = parse("--kubeconfig", "k.conf", "--as", "bob", "auth", "can-i", "get", "pods",
                    "--as-group", "g1", "--as-group=g2")
    assert name == "auth can-i"
    assert (a.kubeconfig, a.as_user, a.as_group) == ("k.conf", "bob", ["g1", "g2"])
    assert (a.verb, a.target) == ("get", "pods")
    name, a = parse("-n", "x", "create", "token", "sa1", "--duration=10m")
    assert (name, a.serviceaccount, a.duration, a.namespace) == ("create token", "sa1", "10m",
                                                                 "x")
    name, a = parse("create", "-f", "token")  # a file named token, not the subcommand
    assert (name, a.filename) == ("create", ["token"])
    name, a = parse("--kubeconfig=k", "auth", "whoami")
    assert (name, a.kubeconfig) == ("auth whoami", "k")


async def test_as_group_needs_as() -> None:
    code, _, err = await run("get", "pods", "--as-group", "g")
    assert code == 1 and "--as-group needs --as" in err


async def test_bad_kubeconfig_is_one_line_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.conf"
    path.write_text(yaml.safe_dump({"clusters": [{"name": "c", "cluster": {}}],
                                    "contexts": [{"name": "x", "context": {"cluster": "c"}}],
                                    "current-context": "x"}))
    code, out, err = await run("--kubeconfig", str(path), "get", "pods")
    assert code == 1 and out == ""
    assert err == f'error: {path}: clusters["c"].cluster.server: required ' \
                  "(e.g. https://127.0.0.1:6443)\n"
    code, _, err = await run("get", "pods", "--kubeconfig", str(tmp_path / "none.conf"))
    assert code == 1 and "none.conf: cannot read the kubeconfig" in err


# --- connection failures --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pkidir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.init_pki(d)
    return d


@pytest.fixture
async def tls_server(pkidir: Path) -> AsyncIterator[str]:
    """A server that demands a client certificate from the cluster CA (no verbs needed: every
    test here fails in the handshake)."""
    server = grpc.aio.server()
    pb_grpc.add_ApiServicer_to_server(pb_grpc.ApiServicer(), server)
    creds = grpc.ssl_server_credentials(
        [((pkidir / "apiserver.key").read_bytes(), (pkidir / "apiserver.crt").read_bytes())],
        root_certificates=(pkidir / "ca.crt").read_bytes(), require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


@pytest.fixture
async def plain_server() -> AsyncIterator[str]:
    server = grpc.aio.server()
    pb_grpc.add_ApiServicer_to_server(pb_grpc.ApiServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


async def test_expired_client_certificate_says_so(pkidir: Path, tls_server: str,
                                                  tmp_path: Path) -> None:
    conf = pki.kubeconfig_for(pkidir, "old", server_url=f"https://{tls_server}",
                              grpc_server=tls_server, path=tmp_path / "old.conf",
                              not_after=datetime.now(UTC) - timedelta(hours=1))
    code, _, err = await run("--kubeconfig", str(conf), "get", "pods", "--request-timeout", "20s")
    assert code == 1 and err.count("\n") == 1, err
    assert f"cannot talk to the server at {tls_server}" in err
    assert "did not accept the client certificate" in err and str(conf) in err
    assert "tkctl pki init" in err


async def test_kubeconfig_without_a_certificate_says_so(pkidir: Path, tls_server: str,
                                                        tmp_path: Path) -> None:
    conf = pki.kubeconfig_for(pkidir, "jane", server_url=f"https://{tls_server}",
                              grpc_server=tls_server, path=tmp_path / "jane.conf")
    stripped = tmp_path / "no-cert.conf"
    stripped.write_text("".join(line for line in conf.read_text().splitlines(keepends=True)
                                if "client-" not in line))
    code, _, err = await run("--kubeconfig", str(stripped), "get", "pods")
    assert code == 1 and err.count("\n") == 1, err
    assert "requires a client certificate, and the kubeconfig" in err and "has none" in err


async def test_foreign_ca_says_so(pkidir: Path, tls_server: str, tmp_path: Path) -> None:
    other = tmp_path / "other"
    pki.init_pki(other, server_url=f"https://{tls_server}", grpc_server=tls_server)
    code, _, err = await run("--kubeconfig", str(other / "admin.conf"), "get", "pods")
    assert code == 1 and err.count("\n") == 1, err
    assert "not signed by the certificate authority in the kubeconfig" in err


@pytest.fixture
async def https_server(pkidir: Path) -> AsyncIterator[str]:
    """An HTTPS server (no HTTP/2), as the apiserver's Kubernetes HTTP API is to gRPC."""
    from aiohttp import web

    app = web.Application()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pkidir / "apiserver.crt", pkidir / "apiserver.key")
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx)
    await site.start()
    yield f"127.0.0.1:{port}"
    await runner.cleanup()


async def test_kubeconfig_without_grpc_extension_at_the_https_port_says_so(
        pkidir: Path, https_server: str, tmp_path: Path) -> None:
    """A kubeconfig whose only address is Kubernetes' HTTP API (written by hand, or by another
    tool): tkctl's gRPC gets TLS but no HTTP/2, and says where gRPC is."""
    doc = yaml.safe_load((pkidir / "admin.conf").read_text())
    doc["clusters"][0]["cluster"]["server"] = f"https://{https_server}"
    del doc["clusters"][0]["cluster"]["extensions"]
    conf = tmp_path / "kubectl-only.conf"
    conf.write_text(yaml.safe_dump(doc))
    code, _, err = await run("--kubeconfig", str(conf), "get", "pods", "--request-timeout", "20s")
    assert code == 1 and err.count("\n") == 1, err
    assert f"cannot talk to the server at {https_server}: the server speaks TLS but not gRPC" \
        in err, err
    assert "tinykube.io/grpc" in err and "--server HOST:PORT" in err and str(conf) in err


async def test_tls_to_plaintext_server_says_so(pkidir: Path, plain_server: str) -> None:
    code, _, err = await run("--kubeconfig", str(pkidir / "admin.conf"), "--server",
                             plain_server, "get", "pods")
    assert code == 1 and "does not speak TLS" in err, err


async def test_plaintext_to_tls_server_suggests_a_kubeconfig(tls_server: str) -> None:
    code, _, err = await run("--server", tls_server, "get", "pods")
    assert code == 1 and err.count("\n") == 1, err
    assert "--kubeconfig" in err and "TINYKUBE_CONFIG" in err and "tkctl pki init" in err


async def test_refused_keeps_kubectls_line(pkidir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    code, _, err = await run("--kubeconfig", str(pkidir / "admin.conf"), "--server", closed,
                             "get", "pods")
    assert code == 1
    assert err == (f"The connection to the server {closed} was refused - did you specify the "
                   "right host or port?\n")


async def test_pki_user_never_clobbers_the_clusters_files(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    await run("pki", "init", "--dir", str(d))
    admin = (d / "admin.conf").read_bytes()
    code, _, err = await run("pki", "user", "admin", "--dir", str(d))
    assert code == 1 and "cluster's own kubeconfig: pass --out" in err
    code, _, err = await run("pki", "user", "admin", "--dir", str(d), "--force")
    assert code == 1 and (d / "admin.conf").read_bytes() == admin
    code, out, err = await run("pki", "user", "jane", "--group", "dev", "--dir", str(d))
    assert (code, err) == (0, "") and out == f"{d}/jane.conf created\n"
    first = (d / "jane.conf").read_bytes()
    code, _, err = await run("pki", "user", "jane", "--dir", str(d))
    assert code == 1 and "exists: pass --force" in err and (d / "jane.conf").read_bytes() == first
    code, _, _ = await run("pki", "user", "jane", "--dir", str(d), "--force")
    assert code == 0 and (d / "jane.conf").read_bytes() != first
    code, _, err = await run("pki", "user", "../escape", "--dir", str(d))
    assert code == 1 and "pass --out FILE" in err and not (tmp_path / "escape.conf").exists()


@pytest.mark.parametrize("argv", [["pki", "add-node", "../../etc"],
                                  ["pki", "add-node", "Node_1"],
                                  ["pki", "init", "--node", "a/b=10.0.0.1"]])
async def test_node_names_are_dns_subdomains(tmp_path: Path, argv: list[str]) -> None:
    d = tmp_path / "pki"
    await run("pki", "init", "--dir", str(d))
    code, _, err = await run(*argv, "--dir", str(d))
    assert code == 1 and "RFC 1123 subdomain" in err and err.count("\n") == 1
    assert not (tmp_path / "etc").exists() and not (d / "nodes").exists()
