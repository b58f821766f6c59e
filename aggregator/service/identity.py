"""Who is on the other end of a stream.

The house identity never comes from message fields.  With mTLS it comes from
the client certificate's URI SAN ``spiffe://<trust-domain>/house/<id>``
(the TLS handshake has already refused a missing certificate, a foreign CA or
an expired certificate); in ``--insecure`` demo mode it comes from the
``x-vpp-house-id`` call header, which anyone can set: never use that mode
outside a laptop.
"""

from __future__ import annotations

import re
from typing import Protocol

import grpc

from aggregator.certs import house_id_from_uri

HOUSE_ID_HEADER = "x-vpp-house-id"
_HOUSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class IdentityError(Exception):
    """The peer has no acceptable house identity."""


def check_house_id(house_id: str) -> str:
    if not _HOUSE_ID.match(house_id):
        raise IdentityError(f"invalid house id {house_id!r}: 1-64 of letters, digits, '_', '.', '-'")
    return house_id


class IdentityResolver(Protocol):
    def house_of(self, context: grpc.aio.ServicerContext) -> str: ...


class InsecureHeaderIdentity:
    """Demo only: trust the ``x-vpp-house-id`` header."""

    def house_of(self, context: grpc.aio.ServicerContext) -> str:
        for key, value in context.invocation_metadata() or ():
            if key == HOUSE_ID_HEADER:
                return check_house_id(value if isinstance(value, str) else value.decode())
        raise IdentityError(f"no {HOUSE_ID_HEADER} header (insecure mode)")


class MtlsIdentity:
    """The house named by the client certificate's SPIFFE URI SAN in ``trust_domain``."""

    def __init__(self, trust_domain: str) -> None:
        self._trust_domain = trust_domain

    def house_of(self, context: grpc.aio.ServicerContext) -> str:
        auth = context.auth_context() or {}
        uris = [v.decode() for key in ("peer_spiffe_id", "x509_subject_alternative_name")
                for v in auth.get(key, [])]
        houses = {h for h in (house_id_from_uri(u, self._trust_domain) for u in uris) if h is not None}
        if len(houses) != 1:
            raise IdentityError(
                f"client certificate names no single house of spiffe://{self._trust_domain}/house/<id> "
                f"(found {sorted(set(uris)) or 'no URI SAN'})")
        return houses.pop()
