"""Authentication: turn a request's credentials (either front's) into the user it acts for.

As kube-apiserver, in order:
- a verified client certificate (the TLS handshake already checked it against --client-ca-file
  and its validity): CN is the user name, each O a group;
- else a bearer token (`Authorization: Bearer <jwt>`), a ServiceAccount token checked by
  tokens.TokenVerifier (the HTTPS port asks for a certificate and takes either; gRPC's
  --token-port asks for none);
- else the request is anonymous, and refused: 401 Unauthorized (anonymous auth is off).
Every authenticated user is also in `system:authenticated`. With --insecure nothing is checked
and every request is `system:insecure` in `system:masters`.

Impersonation (`impersonate-user`, repeated `impersonate-group`, `impersonate-uid` metadata, the
Impersonate-* headers upstream) is a second step: the authenticated user must be allowed the
`impersonate` verb on each of users/groups/serviceaccounts/uids, as upstream checks it, and the
request then runs as the impersonated user (the audit log keeps both).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from api import errors
from api.authentication import IMPERSONATE_GROUP, IMPERSONATE_UID, IMPERSONATE_USER
from apiserver.auth import (
    ANONYMOUS,
    AUTHENTICATED,
    SYSTEM_MASTERS,
    UNAUTHENTICATED,
    Attributes,
    Authorizer,
    Credentials,
    UserInfo,
    service_account_groups,
)
from apiserver.auth import split_service_account as _split_sa
from apiserver.authz import require
from apiserver.tokens import InvalidToken, TokenVerifier

log = logging.getLogger(__name__)

INSECURE_USER = UserInfo("system:insecure", (SYSTEM_MASTERS, AUTHENTICATED))
_CERT_CACHE_SIZE = 1024


def unauthorized() -> errors.Unauthorized:
    # Upstream says no more than this to the client; the reason goes to the log.
    return errors.Unauthorized(message="Unauthorized")


def user_from_certificate(data: bytes) -> UserInfo:
    """CN → user name, O → groups (upstream's x509 CommonNameUserConversion); PEM or DER."""
    cert = (x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----")
            else x509.load_der_x509_certificate(data))
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    name = str(cns[0].value) if cns else ""
    groups = [str(o.value) for o in orgs]
    if AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    return UserInfo(name, tuple(groups))


def metadata_values(metadata: Iterable[Any] | None, key: str) -> list[str]:
    """Every value of one metadata key (keys are lower case on the wire)."""
    out = []
    for item in metadata or ():
        k, v = item[0], item[1]
        if k == key:
            out.append(v.decode() if isinstance(v, bytes) else str(v))
    return out


class Authenticator:
    def __init__(self, *, tokens: TokenVerifier | None, insecure: bool = False) -> None:
        self.tokens = tokens
        self.insecure = insecure
        self._certs: OrderedDict[bytes, UserInfo] = OrderedDict()

    async def authenticate(self, creds: Credentials) -> UserInfo:
        """The user the request's credentials prove; Unauthorized when there are none or they
        are not good."""
        if self.insecure:
            return INSECURE_USER
        if creds.cert:
            return self._certificate_user(creds.cert)
        if creds.token is None or self.tokens is None:
            raise unauthorized()
        try:
            user, _ = await self.tokens.verify(creds.token)
        except InvalidToken as e:
            log.info("refused a bearer token from %s: %s", creds.source_ip, e)
            raise unauthorized() from None
        return user

    def _certificate_user(self, pem: bytes) -> UserInfo:
        user = self._certs.get(pem)
        if user is None:
            try:
                user = user_from_certificate(pem)
            except ValueError as e:  # the handshake verified it; this is not expected
                log.warning("cannot parse a verified client certificate: %s", e)
                raise unauthorized() from None
            if not user.name:
                log.info("refused a client certificate without a CN")
                raise unauthorized()
            self._certs[pem] = user
            if len(self._certs) > _CERT_CACHE_SIZE:
                self._certs.popitem(last=False)
        else:
            self._certs.move_to_end(pem)
        return user

    def impersonate(self, user: UserInfo, metadata: Iterable[Any] | None,
                    authorizer: Authorizer) -> UserInfo | None:
        """The user the request asks to act as (None: no impersonation), once `user` is
        allowed to impersonate each part of it; Forbidden otherwise."""
        name_values = metadata_values(metadata, IMPERSONATE_USER)
        groups = metadata_values(metadata, IMPERSONATE_GROUP)
        uids = metadata_values(metadata, IMPERSONATE_UID)
        if not name_values and not groups and not uids:
            return None
        if not name_values or not name_values[0]:
            raise errors.BadRequest(message="requested impersonation of groups or uid without "
                                    "impersonating a user")
        name = name_values[0]
        checks = [_user_attrs(user, name)]
        checks += [Attributes(user, "impersonate", resource="groups", name=g) for g in groups]
        checks += [Attributes(user, "impersonate", resource="uids", name=u,
                              api_group="authentication.k8s.io") for u in uids[:1]]
        for attrs in checks:
            require(authorizer, attrs)
        all_groups = list(groups)
        sa = _split_sa(name)
        if sa is not None:
            all_groups = [*service_account_groups(sa[0]), *groups]
        implicit = UNAUTHENTICATED if name == ANONYMOUS else AUTHENTICATED
        if implicit not in all_groups:
            all_groups.append(implicit)
        return UserInfo(name, tuple(dict.fromkeys(all_groups)), uid=uids[0] if uids else "")


def _user_attrs(user: UserInfo, name: str) -> Attributes:
    """The impersonate check for a user name: a ServiceAccount is checked as that object."""
    sa = _split_sa(name)
    if sa is not None:
        return Attributes(user, "impersonate", resource="serviceaccounts", namespace=sa[0],
                          name=sa[1])
    return Attributes(user, "impersonate", resource="users", name=name)


def bearer(values: Iterable[str]) -> str | None:
    """The token of the first `Bearer <token>` value (the scheme is case-insensitive)."""
    for v in values:
        scheme, _, token = v.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None
