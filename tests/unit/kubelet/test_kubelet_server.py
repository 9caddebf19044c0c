"""The kubelet server's pure parts: Docker's multiplexed stream, the caller's identity, and the
SubjectAccessReview cache (with a stand-in for the apiserver that only counts questions)."""

from __future__ import annotations

import io
import struct
from typing import Any

import pytest

from client.pki import issue, new_ca
from kubelet import server
from kubelet.server import Caller, SARAuthorizer, caller_from_certificate, demux_frames


def frame(kind: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", kind, len(data)) + data


def test_demux_frames_splits_stdout_and_stderr() -> None:
    raw = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"x" * 70_000)
    buf = io.BytesIO(raw)
    # Reads return less than asked (a socket does): frames are still reassembled.
    got = list(demux_frames(lambda n: buf.read(min(n, 1000))))
    assert got == [(1, b"out\n"), (2, b"err\n"), (1, b"x" * 70_000)]


def test_demux_frames_stops_at_a_truncated_frame() -> None:
    buf = io.BytesIO(frame(1, b"whole") + frame(2, b"cut off")[:10])
    assert list(demux_frames(buf.read)) == [(1, b"whole"), (2, b"cu")]


def test_caller_from_certificate() -> None:
    cert = issue(new_ca("ca"), "kube-apiserver-kubelet-client",
                 organizations=("system:masters",), client=True)
    assert caller_from_certificate(cert.cert_pem) == Caller(
        "kube-apiserver-kubelet-client", ("system:masters", "system:authenticated"))


class Answers:
    """Answers SubjectAccessReviews from a table and counts them."""

    def __init__(self) -> None:
        self.allowed: set[str] = set()
        self.asked: list[dict[str, Any]] = []

    async def create(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        assert resource == "subjectaccessreviews"
        self.asked.append(obj["spec"])
        return {**obj, "status": {"allowed": obj["spec"]["user"] in self.allowed}}


async def test_sar_answers_are_cached_allowed_5m_denied_30s(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(server.time, "monotonic", lambda: now[0])
    api = Answers()
    api.allowed.add("apiserver")
    authz = SARAuthorizer(api, "node-1")  # type: ignore[arg-type]
    good, bad = Caller("apiserver", ("g",)), Caller("mallory", ())
    assert await authz.allowed(good, "get", "proxy")
    assert not await authz.allowed(bad, "get", "proxy")
    assert api.asked[0]["resourceAttributes"] == {
        "verb": "get", "resource": "nodes", "subresource": "proxy", "name": "node-1"}
    assert api.asked[0]["groups"] == ["g"]
    api.allowed = {"mallory"}  # the policy changes; the cache has not expired yet
    now[0] += 29
    assert await authz.allowed(good, "get", "proxy")
    assert not await authz.allowed(bad, "get", "proxy")
    assert len(api.asked) == 2
    now[0] += 2  # the denial expired (30 s), the allowance (300 s) has not
    assert await authz.allowed(bad, "get", "proxy")
    assert await authz.allowed(good, "get", "proxy")
    assert len(api.asked) == 3
    now[0] += 300
    assert not await authz.allowed(good, "get", "proxy")
    assert len(api.asked) == 4
    # Another verb is another question.
    assert await authz.allowed(bad, "create", "proxy")
    assert len(api.asked) == 5
