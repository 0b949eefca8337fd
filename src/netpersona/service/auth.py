"""Who is calling: VMs by source address plus a session token, operators by bearer token.

VM identity follows OpenStack and GCE: the instance is the one that owns the request's source
address. Proxies would make that address a lie, so any request carrying a forwarding header
is refused outright rather than trusted or ignored (AWS IMDSv2 refuses ``X-Forwarded-For`` on
token requests for the same reason).

Session tokens follow IMDSv2: ``PUT /v1/token`` with a TTL header returns a token that is valid
only from the same address, for the same instance, until it expires. The token is an HMAC over
(address, instance, expiry) under a key kept in the store, so it needs no server-side table and
stays valid across a restart of the service.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from ipaddress import ip_address

from netpersona.errors import Forbidden, Unauthorized, UsageError
from netpersona.service.strict_json import ascii_int

__all__ = [
    "FORWARDING_HEADERS",
    "MAX_TOKEN_TTL",
    "TOKEN_HEADER",
    "TOKEN_TTL_HEADER",
    "SessionTokens",
    "canonical_address",
    "refuse_forwarded",
]

TOKEN_HEADER = "X-Netpersona-Token"  # noqa: S105 (a header name, not a secret)
TOKEN_TTL_HEADER = "X-Netpersona-Token-TTL-Seconds"  # noqa: S105
MAX_TOKEN_TTL = 21600  # six hours, IMDSv2's maximum
MAX_TOKEN_LENGTH = 128  # an expiry, a dot and a base64url SHA-256 MAC are 55
FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host")


def refuse_forwarded(headers: dict[str, str] | object) -> None:
    get = getattr(headers, "get", None)
    assert get is not None
    for name in FORWARDING_HEADERS:
        if get(name) is not None:
            raise Forbidden(
                f"{name}: requests relayed by a proxy are refused; the metadata service "
                "identifies an instance by the address it connects from"
            )


def canonical_address(address: str) -> str:
    """``::ffff:10.0.0.5`` (a dual-stack socket's view of IPv4) is ``10.0.0.5``."""
    try:
        parsed = ip_address(address)
    except ValueError:
        return address
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped or parsed)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class SessionTokens:
    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._clock = clock

    def _mac(self, address: str, instance_id: str, expiry: int) -> str:
        message = f"{address}|{instance_id}|{expiry}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    @staticmethod
    def parse_ttl(value: str | None) -> int:
        if value is None:
            raise UsageError(f"{TOKEN_TTL_HEADER} is required (seconds, 1..{MAX_TOKEN_TTL})")
        return ascii_int(value, TOKEN_TTL_HEADER, 1, MAX_TOKEN_TTL, UsageError, "a TTL in seconds")

    def issue(self, address: str, instance_id: str, ttl: int) -> str:
        expiry = int(self._clock()) + ttl
        return f"{expiry}.{self._mac(address, instance_id, expiry)}"

    def check(self, token: str | None, address: str, instance_id: str) -> None:
        if not token:
            raise Unauthorized(
                f"{TOKEN_HEADER} is required: get one with PUT /v1/token and a {TOKEN_TTL_HEADER} "
                "header"
            )
        expiry_text, _, mac = token.partition(".")
        # Printable ASCII of bounded length only: compare_digest refuses other text, and int()
        # other digits or too many of them.
        well_formed = (
            len(token) <= MAX_TOKEN_LENGTH
            and token.isascii()
            and token.isprintable()
            and expiry_text.isdigit()
            and len(expiry_text) <= 12
        )
        if not well_formed or not hmac.compare_digest(
            mac, self._mac(address, instance_id, int(expiry_text))
        ):
            raise Unauthorized(
                f"{TOKEN_HEADER}: not a token issued to {address} (tokens are bound to the "
                "address and instance that asked for them)"
            )
        if int(expiry_text) <= self._clock():
            raise Unauthorized(f"{TOKEN_HEADER}: the token has expired; get a new one")
