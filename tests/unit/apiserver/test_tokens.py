"""ServiceAccount tokens: what a token says, and every reason one is refused."""

from __future__ import annotations

import datetime as dt
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from apiserver.auth import split_service_account
from apiserver.tokens import (
    BoundObject,
    InvalidToken,
    TokenIssuer,
    TokenVerifier,
    load_private_key,
)
from tests.unit.apiserver.security_fakes import cache_with, pod, put, remove

ISSUER = "https://kubernetes.default.svc.cluster.local"


def keypair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


PRIVATE, PUBLIC = keypair()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def sa(name: str = "builder", ns: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": ns}}


def setup(clock: Clock | None = None):  # type: ignore[no-untyped-def]
    clock = clock or Clock()
    cache = cache_with()
    account = put(cache, "serviceaccounts", sa())
    issuer = TokenIssuer(PRIVATE, ISSUER, clock=clock)
    verifier = TokenVerifier([PUBLIC], [ISSUER], [ISSUER], cache, clock=clock)
    return cache, account, issuer, verifier, clock


def issue(issuer: TokenIssuer, account: dict, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("audiences", [ISSUER])
    kw.setdefault("expiration_seconds", 3600)
    token, _ = issuer.issue("default", "builder", account["metadata"]["uid"], **kw)
    return token


async def test_token_carries_upstream_claims_and_authenticates_as_the_service_account() -> None:
    cache, account, issuer, verifier, _clock = setup()
    p = put(cache, "pods", pod("web", "n1", serviceAccountName="builder"))
    token = issue(issuer, account, bound=BoundObject("Pod", "web", p["metadata"]["uid"]))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == ISSUER
    assert claims["sub"] == "system:serviceaccount:default:builder"
    assert claims["aud"] == [ISSUER]
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["kubernetes.io"] == {
        "namespace": "default",
        "serviceaccount": {"name": "builder", "uid": account["metadata"]["uid"]},
        "pod": {"name": "web", "uid": p["metadata"]["uid"]}}
    assert jwt.get_unverified_header(token)["alg"] == "ES256"

    user, auds = await verifier.verify(token)
    assert user.name == "system:serviceaccount:default:builder"
    assert set(user.groups) == {"system:serviceaccounts", "system:serviceaccounts:default",
                                "system:authenticated"}
    assert user.uid == account["metadata"]["uid"]
    assert user.extra["authentication.kubernetes.io/pod-name"] == ("web",)
    assert auds == [ISSUER]


async def test_expired_token_is_refused() -> None:
    _, account, issuer, verifier, clock = setup()
    token = issue(issuer, account, expiration_seconds=2)
    await verifier.verify(token)
    clock.now += 3
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(token)


async def test_token_of_a_deleted_or_recreated_service_account_is_refused() -> None:
    cache, account, issuer, verifier, _ = setup()
    token = issue(issuer, account)
    remove(cache, "serviceaccounts", "default", "builder")
    with pytest.raises(InvalidToken, match="deleted"):
        await verifier.verify(token)
    put(cache, "serviceaccounts", sa())  # same name, new uid
    with pytest.raises(InvalidToken, match="does not match"):
        await verifier.verify(token)


async def test_token_bound_to_a_pod_dies_with_the_pod() -> None:
    cache, account, issuer, verifier, clock = setup()
    p = put(cache, "pods", pod("web", "n1"))
    token = issue(issuer, account, bound=BoundObject("Pod", "web", p["metadata"]["uid"]))
    await verifier.verify(token)
    # Terminating: still good until a minute after the deletion deadline, as upstream.
    deadline = dt.datetime.fromtimestamp(clock.now, dt.UTC)
    p["metadata"]["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
    await verifier.verify(token)
    clock.now += 120
    with pytest.raises(InvalidToken, match="deleted"):
        await verifier.verify(token)
    remove(cache, "pods", "default", "web")
    clock.now -= 120
    with pytest.raises(InvalidToken, match="deleted"):
        await verifier.verify(token)


async def test_wrong_audience_issuer_or_key_is_refused() -> None:
    _cache, account, issuer, verifier, clock = setup()
    with pytest.raises(InvalidToken, match="audiences"):
        await verifier.verify(issue(issuer, account, audiences=["vault"]))
    other_issuer = TokenIssuer(PRIVATE, "https://elsewhere", clock=clock)
    with pytest.raises(InvalidToken, match="(?i)issuer"):
        await verifier.verify(other_issuer.issue("default", "builder",
                                                 account["metadata"]["uid"], audiences=[ISSUER],
                                                 expiration_seconds=600)[0])
    stranger = TokenIssuer(keypair()[0], ISSUER, clock=clock)
    with pytest.raises(InvalidToken, match="signature"):
        await verifier.verify(issue(stranger, account))
    with pytest.raises(InvalidToken, match="not a JWT"):
        await verifier.verify("not-a-token")


async def test_tampered_claims_are_refused() -> None:
    _, account, issuer, verifier, _ = setup()
    token = issue(issuer, account)
    header, _payload, sig = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["sub"] = "system:serviceaccount:kube-system:admin"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    with pytest.raises(InvalidToken, match="signature"):
        await verifier.verify(f"{header}.{forged}.{sig}")


async def test_header_naming_another_algorithm_is_an_invalid_token() -> None:
    # An RS256 header over our EC key made PyJWT raise TypeError: a 500 with a stack trace
    # for a forged header, instead of a 401.
    _, account, issuer, verifier, _ = setup()
    _header, payload, sig = issue(issuer, account).split(".")
    for alg in ("RS256", "HS256", "none"):
        header = jwt.utils.base64url_encode(json.dumps({"alg": alg}).encode()).decode()
        with pytest.raises(InvalidToken):
            await verifier.verify(f"{header}.{payload}.{sig}")


async def test_token_without_a_service_account_uid_is_refused() -> None:
    # The uid claim is always compared: a token naming none must not follow the name to
    # whichever ServiceAccount holds it now.
    _, _account, issuer, verifier, _ = setup()
    token, _ = issuer.issue("default", "builder", "", audiences=[ISSUER],
                            expiration_seconds=600)
    with pytest.raises(InvalidToken, match="does not match"):
        await verifier.verify(token)


async def test_review_audiences_are_checked_against_what_the_caller_asks() -> None:
    _, account, issuer, verifier, _ = setup()
    token = issue(issuer, account, audiences=["vault", ISSUER])
    _, auds = await verifier.verify(token, ["vault"])
    assert auds == ["vault"]
    with pytest.raises(InvalidToken):
        await verifier.verify(token, ["other"])


async def test_reason_never_quotes_the_token() -> None:
    cache, account, issuer, verifier, _clock = setup()
    token = issue(issuer, account, expiration_seconds=1)
    remove(cache, "serviceaccounts", "default", "builder")
    for t in (token, token[:-4] + "AAAA"):
        with pytest.raises(InvalidToken) as e:
            await verifier.verify(t)
        assert token not in str(e.value)
        assert token.split(".")[2] not in str(e.value)


def test_key_errors_name_the_flag() -> None:
    with pytest.raises(ValueError, match="--service-account-signing-key-file"):
        load_private_key(b"garbage")
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(ValueError, match="P-256"):
        TokenIssuer(p384, ISSUER)


def test_split_service_account() -> None:
    assert split_service_account("system:serviceaccount:ns:sa") == ("ns", "sa")
    assert split_service_account("system:serviceaccount:ns") is None
    assert split_service_account("alice") is None
