"""ServiceAccount tokens: signed JWTs that let a pod (or anything holding one) act as its
ServiceAccount, and their verification on every request that presents one.

Kubernetes' bound service account tokens, with the same claims (`iss`, `sub`
`system:serviceaccount:NS:NAME`, `aud`, `exp`, `iat`, `nbf`, `jti`, and the private
`kubernetes.io` claim naming the namespace, the ServiceAccount and the object the token is bound
to), so the shape carries over to anyone who has decoded one. A token is only as good as what it
names: verification checks the signature, issuer, audience and expiry, and then that the
ServiceAccount (and the Pod or Secret it is bound to) still exists with the uid in the claim — a
deleted ServiceAccount's tokens stop working at once, as upstream's.

Tokens are credentials: nothing here logs or puts one in an error message.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.meta import parse_rfc3339
from apiserver.auth import (
    AUTHENTICATED,
    UserInfo,
    service_account_groups,
    service_account_user,
)
from apiserver.watchcache import WatchCache

Obj = dict[str, Any]
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

DEFAULT_EXPIRATION_SECONDS = 3600
MIN_EXPIRATION_SECONDS = 600  # upstream's floor: 10 minutes
MAX_EXPIRATION_SECONDS = 1 << 32
# Private-claim keys and the user "extra" keys upstream derives from them.
CLAIM = "kubernetes.io"
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
_ALGORITHMS = ("ES256", "RS256")
DELETION_GRACE_SECONDS = 60


class InvalidToken(Exception):
    """Why a token was refused. The message never contains the token."""


@dataclass(frozen=True)
class BoundObject:
    """What a token is bound to besides its ServiceAccount: a Pod or a Secret, by name and uid."""

    kind: str
    name: str
    uid: str


def _algorithm(key: PrivateKey | PublicKey, what: str) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"{what}: EC keys must be on curve P-256 (got {key.curve.name})")
        return "ES256"
    return "RS256"


def load_private_key(pem: bytes, what: str = "--service-account-signing-key-file") -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what}: not a PEM private key ({e})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{what}: must be an EC P-256 or RSA private key")
    _algorithm(key, what)
    return key


def load_public_keys(pem: bytes, what: str = "--service-account-key-file") -> list[PublicKey]:
    """Every public key in a PEM file; private keys count as their public half (as upstream
    accepts either in --service-account-key-file)."""
    keys: list[PublicKey] = []
    for block in _pem_blocks(pem):
        try:
            if b"PRIVATE KEY" in block.splitlines()[0]:
                key: Any = load_private_key(block, what).public_key()
            else:
                key = serialization.load_pem_public_key(block)
        except (ValueError, TypeError, IndexError) as e:
            raise ValueError(f"{what}: not a PEM key ({e})") from None
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ValueError(f"{what}: must hold EC P-256 or RSA public keys")
        _algorithm(key, what)
        keys.append(key)
    if not keys:
        raise ValueError(f"{what}: no PEM key found")
    return keys


def _pem_blocks(pem: bytes) -> list[bytes]:
    blocks, current = [], b""
    for line in pem.splitlines(keepends=True):
        if line.startswith(b"-----BEGIN"):
            current = line
        elif current:
            current += line
            if line.startswith(b"-----END"):
                blocks.append(current)
                current = b""
    return blocks


def key_id(key: PublicKey) -> str:
    """Upstream's `kid`: base64url(sha256(DER public key)), so a verifier with several keys
    can tell which one signed."""
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")


class TokenIssuer:
    """Signs TokenRequest tokens with the ServiceAccount signing key.

    `audiences` are the apiserver's own (--api-audiences, default the issuer): a TokenRequest
    that names none gets these. `min_expiration_seconds` is
    --service-account-min-token-expiration.
    """

    def __init__(self, signing_key_pem: bytes, issuer: str, *, audiences: Sequence[str] = (),
                 min_expiration_seconds: int = MIN_EXPIRATION_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = load_private_key(signing_key_pem)
        self._alg = _algorithm(self._key, "--service-account-signing-key-file")
        self._kid = key_id(self._key.public_key())
        self.issuer = issuer
        self.audiences = list(audiences) or [issuer]
        self.min_expiration_seconds = min_expiration_seconds
        self.clock = clock

    def issue(self, namespace: str, sa_name: str, sa_uid: str, *, audiences: Sequence[str],
              expiration_seconds: int, bound: BoundObject | None = None) -> tuple[str, int]:
        """A signed token and its expiry (seconds since the epoch)."""
        now = int(self.clock())
        private: Obj = {"namespace": namespace,
                        "serviceaccount": {"name": sa_name, "uid": sa_uid}}
        if bound is not None:
            private[bound.kind.lower()] = {"name": bound.name, "uid": bound.uid}
        claims = {
            "iss": self.issuer, "sub": service_account_user(namespace, sa_name),
            "aud": list(audiences), "exp": now + expiration_seconds, "iat": now, "nbf": now,
            "jti": str(uuid.uuid4()), CLAIM: private,
        }
        token = jwt.encode(claims, self._key, algorithm=self._alg, headers={"kid": self._kid})
        return token, now + expiration_seconds


class TokenVerifier:
    """Checks a bearer token and answers who it belongs to.

    `audiences` are the apiserver's (--api-audiences): a token must be meant for one of them.
    Existence checks read the watch cache and, on a miss, etcd: a token issued a moment after
    its ServiceAccount was created must not fail because the cache is a few ms behind.
    """

    def __init__(self, public_key_pems: Sequence[bytes], issuers: Sequence[str],
                 audiences: Sequence[str], cache: WatchCache, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._keys = [k for pem in public_key_pems for k in load_public_keys(pem)]
        self.issuers = list(issuers)
        self.audiences = list(audiences) or list(issuers[:1])
        self.cache = cache
        self.clock = clock

    async def verify(self, token: str, audiences: Sequence[str] | None = None
                     ) -> tuple[UserInfo, list[str]]:
        """The token's user and the audiences (of those asked for) it is valid for.

        Raises InvalidToken with the reason; the reason never quotes the token.
        """
        claims = self._decode(token)
        wanted = list(audiences) if audiences else self.audiences
        token_auds = claims.get("aud")
        token_auds = [token_auds] if isinstance(token_auds, str) else list(token_auds or [])
        matched = [a for a in wanted if a in token_auds]
        if not matched:
            raise InvalidToken(f"token audiences {token_auds} is invalid for the target "
                               f"audiences {wanted}")
        private = claims.get(CLAIM)
        if not isinstance(private, dict):
            raise InvalidToken(f"token has no {CLAIM!r} claim")
        ns, sa = private.get("namespace"), private.get("serviceaccount")
        if not isinstance(ns, str) or not isinstance(sa, dict) or not sa.get("name"):
            raise InvalidToken("token names no namespace or service account")
        if claims.get("sub") != service_account_user(ns, str(sa["name"])):
            raise InvalidToken("token subject does not match its service account claim")
        sa_obj = await self._live("serviceaccounts", ns, str(sa["name"]), sa.get("uid"))
        extra: dict[str, tuple[str, ...]] = {}
        for kind, resource in (("pod", "pods"), ("secret", "secrets")):
            ref = private.get(kind)
            if isinstance(ref, dict) and ref.get("name"):
                await self._live(resource, ns, str(ref["name"]), ref.get("uid"))
                if kind == "pod":
                    extra[EXTRA_POD_NAME] = (str(ref["name"]),)
                    extra[EXTRA_POD_UID] = (str(ref.get("uid", "")),)
        if claims.get("jti"):
            extra[EXTRA_CREDENTIAL_ID] = (f"JTI={claims['jti']}",)
        user = UserInfo(name=service_account_user(ns, str(sa["name"])),
                        groups=(*service_account_groups(ns), AUTHENTICATED),
                        uid=str((sa_obj.get("metadata") or {}).get("uid", "")), extra=extra)
        return user, matched

    def _decode(self, token: str) -> Obj:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidToken("not a JWT") from None
        alg = header.get("alg")
        if alg not in _ALGORITHMS:
            raise InvalidToken(f"unsupported signing algorithm {alg!r}")
        last: Exception | None = None
        # Only keys of the header's algorithm: PyJWT raises TypeError, not a token error, when
        # handed an EC key for RS256 (or the reverse), and a forged header must be a 401.
        for key in (k for k in self._keys if _algorithm(k, "key") == alg):
            try:
                # Times are checked below against our clock; audiences by verify().
                claims: Obj = jwt.decode(
                    token, key, algorithms=[str(alg)], issuer=self.issuers,
                    options={"verify_aud": False, "verify_exp": False, "verify_nbf": False,
                             "verify_iat": False, "require": ["exp", "iat", "iss", "sub"]},
                )
            except jwt.InvalidSignatureError as e:
                last = e
                continue  # another key may have signed it
            except jwt.InvalidTokenError as e:
                raise InvalidToken(str(e)) from None
            self._check_times(claims)
            return claims
        raise InvalidToken(f"token signature is invalid ({last or 'no keys'})")

    def _check_times(self, claims: Obj) -> None:
        now = self.clock()
        try:
            exp = float(claims["exp"])
            nbf = float(claims["nbf"] if "nbf" in claims else claims["iat"])
        except (TypeError, ValueError):
            raise InvalidToken("token exp/nbf/iat are not numbers") from None
        if now >= exp:
            raise InvalidToken("token has expired")
        if now < nbf:
            raise InvalidToken("token is not valid yet")

    async def _live(self, resource: str, ns: str, name: str, uid: Any) -> Obj:
        """The object a claim names, if it still exists with the claimed uid."""
        obj = await self.cache.lookup(resource, ns, name)
        what = f"{resource} {ns}/{name}"
        if obj is None:
            raise InvalidToken(f"{what} has been deleted")
        md = obj.get("metadata") or {}
        # Always compared, even when the claim has no uid: tokens this apiserver signs carry
        # one, and a token naming none must not follow a name to a recreated object.
        if md.get("uid") != uid:
            raise InvalidToken(f"{what}: uid {md.get('uid')} does not match the token's {uid}")
        deleted = _epoch(md.get("deletionTimestamp"))
        # As upstream: a pod in graceful termination keeps a working token (its preStop hooks
        # may need it) until a minute after its deletion deadline.
        if deleted is not None and deleted < self.clock() - DELETION_GRACE_SECONDS:
            raise InvalidToken(f"{what} has been deleted")
        return obj


def _epoch(timestamp: Any) -> float | None:
    if not isinstance(timestamp, str) or not timestamp:
        return None
    try:
        return parse_rfc3339(timestamp).timestamp()
    except ValueError:
        return None
