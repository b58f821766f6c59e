"""Who is on the other end of a stream.

The house identity never comes from message fields.  With mTLS (a later
step) it comes from the client certificate's URI SAN; in ``--insecure`` demo
mode it comes from the ``x-vpp-house-id`` call header, which anyone can set:
never use that mode outside a laptop.
"""

from __future__ import annotations

import re
from typing import Protocol

import grpc

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
