"""What every tkctl verb shares: the client, the namespace, the output streams, and error wording.

A verb never raises for a user mistake or a server refusal of one object: it reports the error on
stderr in kubectl's words (`Error from server (NotFound): pods "x" not found`), marks the run
failed and moves on to the next object, so `tkctl delete pod a b c` deletes what it can and exits
1 at the end, as kubectl does.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

from api import errors
from client.apiclient import ApiClient, Unreachable
from client.config import ClientConfig

DEFAULT_NAMESPACE = "default"


class UsageError(Exception):
    """A mistake in the command line; str() is the message without the `error: ` prefix."""


@dataclass
class Context:
    """One invocation's shared state. `failed` becomes True at the first reported error."""

    client: ApiClient
    namespace: str = DEFAULT_NAMESPACE
    explicit_namespace: bool = False
    out: TextIO | None = None
    err: TextIO | None = None
    stdin: TextIO | None = None
    failed: bool = False
    # A watch ends quietly (exit 0) when --request-timeout runs out, as kubectl's does.
    watching: bool = False
    # The exit status a verb chose itself (`exec`: the remote command's), else 0 or 1.
    exit_code: int | None = None

    @property
    def server(self) -> str:
        return self.client.server

    def print(self, line: str = "") -> None:
        print(line, file=self.out, flush=True)

    def write(self, text: str) -> None:
        """`text` as it is, no newline added (`-o jsonpath` prints exactly its template)."""
        print(text, end="", file=self.out, flush=True)

    def print_err(self, line: str) -> None:
        print(line, file=self.err, flush=True)

    def error(self, message: str) -> None:
        """Report `error: message` and remember the run failed."""
        self.print_err(f"error: {_one_line(message)}")
        self.failed = True

    def api_error(self, exc: errors.ApiError, *, verb: str = "", source: str = "") -> None:
        """Report an API error in kubectl's words; `verb`/`source` for objects from `-f`."""
        self.print_err(format_api_error(exc, self.server, verb=verb, source=source,
                                        config=self.client.config))
        self.failed = True

    def warnings(self) -> None:
        """Print the server's warnings for the last call (`Warning: unknown field "..."`)."""
        for w in self.client.last_warnings:
            text = w if w.startswith("Warning:") else f"Warning: {w}"
            self.print_err(_one_line(text))
        self.client.last_warnings = []


@dataclass(frozen=True)
class Command:
    """A verb: how to configure its flags and how to run it. `commands.COMMANDS` lists them."""

    name: str
    summary: str
    usage: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Context, argparse.Namespace], Awaitable[None]]
    group: str = "Basic Commands"
    # False: the verb never talks to the apiserver (`pki init`), so no kubeconfig is read.
    needs_server: bool = True
    # Other names that run this verb (`create ns` for `create namespace`), as cobra's Aliases.
    aliases: tuple[str, ...] = ()


def _one_line(text: str) -> str:
    return " ".join(text.strip().splitlines()) if "\n" in text.strip() else text.strip()


def _is_connection_failure(exc: errors.ApiError) -> bool:
    """Whether the apiserver was not reached at all, as opposed to answering with an error
    of its own. Decided by where the error came from, never by its words: an apiserver whose
    etcd is down answers 503 "etcd unavailable: ... connection refused", and calling that a
    refused connection to the server blamed the wrong component (issue 20)."""
    return isinstance(exc, Unreachable)


def format_api_error(
    exc: errors.ApiError, server: str, *, verb: str = "", source: str = "",
    config: ClientConfig | None = None,
) -> str:
    """The one line kubectl would print for this error."""
    if _is_connection_failure(exc):
        if "refused" in exc.message.lower():
            return (f"The connection to the server {server} was refused - did you specify the "
                    "right host or port?")
        hint = _tls_hint(exc.message, config)
        if hint:
            return f"error: cannot talk to the server at {server}: {hint}"
        return f"error: the server at {server} is not reachable: {_one_line(exc.message)}"
    if isinstance(exc, errors.NotFound) and exc.kind == "resource":
        return f"error: {exc.message}"
    if isinstance(exc, errors.Invalid) and exc.causes:
        return _invalid_line(exc)
    where = f'error when {verb} "{source}": ' if verb and source else ""
    return f"Error from server ({exc.reason}): {where}{_one_line(exc.message)}"


_PKI_HINT = "`tkctl pki init` creates the cluster's certificates and the admin kubeconfig"


def _tls_hint(message: str, config: ClientConfig | None) -> str:
    """What a failed TLS handshake most likely means, for the config in use ("" if not TLS).

    gRPC reports only the client's side: when the *server* refuses our certificate (expired,
    another cluster's CA, none sent) the client sees just "Socket closed".
    """
    msg = message.lower()
    if config is None or not config.secure:
        if "socket closed" in msg or "handshake" in msg:
            return ("the connection was closed (the server requires TLS and a client "
                    "certificate?): pass --kubeconfig or set $TINYKUBE_CONFIG, e.g. to "
                    f".tinykube/pki/admin.conf; {_PKI_HINT}")
        return ""
    where = f"the kubeconfig {config.source}" if config.source else "the client configuration"
    if "alpn" in msg:
        # TLS worked, HTTP/2 was not offered: an HTTPS server, most likely the apiserver's
        # Kubernetes HTTP API, dialled instead of its gRPC port.
        return (f"the server speaks TLS but not gRPC (the apiserver's HTTPS port, for "
                f"kubectl?); tkctl dials its gRPC port (--grpc-port, default 6442), which "
                f"{where} names in its cluster extension tinykube.io/grpc, or pass "
                f"--server HOST:PORT")
    if "wrong_version_number" in msg:
        return (f"the server does not speak TLS (an apiserver started with --insecure?); "
                f"{where} expects https")
    if "hostname verification" in msg or "peer name" in msg:
        return (f"the server's certificate is not valid for the address dialled "
                f"({config.server}): use an address among its SANs, set tls-server-name in "
                f"{where}, or add it with `tkctl pki init --apiserver-san ... --force`")
    if "certificate has expired" in msg:
        return f"the server's certificate has expired; {_PKI_HINT}"
    if "certificate_verify_failed" in msg:
        return (f"the server's certificate is not signed by the certificate authority in "
                f"{where} (a kubeconfig of another cluster?); {_PKI_HINT}")
    if ("socket closed" in msg or "handshake" in msg) and config.cert_pem is None:
        return (f"the server closed the connection during the TLS handshake: it requires a "
                f"client certificate, and {where} has none (a ServiceAccount token is for the "
                f"token port, the token-server of its tinykube.io/grpc extension); {_PKI_HINT}")
    if "socket closed" in msg or "handshake" in msg:
        return (f"the server closed the connection during the TLS handshake: most likely it "
                f"did not accept the client certificate of {where} (expired, or signed by "
                f"another cluster's CA?); {_PKI_HINT}")
    return ""


def _invalid_line(exc: errors.Invalid) -> str:
    kind = exc.kind.split(".", 1)[0]  # kubectl names the kind without its group
    what = f'The {kind} "{exc.name}"' if kind or exc.name else "The request"
    causes = [_cause_text(c) for c in exc.causes]
    joined = causes[0] if len(causes) == 1 else "[" + ", ".join(causes) + "]"
    return f"{what} is invalid: {_one_line(joined)}"


def _cause_text(cause: errors.Cause) -> str:
    if cause.field and not cause.message.startswith(cause.field):
        return f"{cause.field}: {cause.message}"
    return cause.message
