"""Who is calling, for the request guard (before the body is read) and for the routes.

An operator is the holder of a valid bearer token; a VM is the instance that owns the request's
source address (see :mod:`netpersona.service.auth`). Both are looked up here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from netpersona.errors import Forbidden, Unauthorized
from netpersona.service.auth import canonical_address, refuse_forwarded
from netpersona.service.context import ServiceContext
from netpersona.store.base import ApiToken, Instance

__all__ = ["SCOPE_TOKEN", "admin_token", "identify", "source_address"]

# Where the guard leaves the token it checked, so the route does not look it up again.
SCOPE_TOKEN = "netpersona.token"  # noqa: S105 (a key in the ASGI scope)

MAX_SECRET = 256


async def admin_token(ctx: ServiceContext, authorization: str | None) -> ApiToken:
    """The token an ``Authorization: Bearer`` header names; 401 when none is valid."""
    scheme, _, secret = (authorization or "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Unauthorized("Authorization: a bearer token is required (Bearer np_...)")
    # Secrets are printable ASCII of bounded length; anything else cannot be one we issued.
    token = None
    if len(secret) <= MAX_SECRET and secret.isascii() and secret.isprintable():
        token = await ctx.fleet.read(lambda: ctx.store.token_for_secret(secret))
    if token is None:
        raise Unauthorized("Authorization: the bearer token is not valid (unknown or revoked)")
    return token


def source_address(scope: dict[str, Any] | Any, headers: Any) -> str:
    """The caller's address, IPv4-mapped IPv6 written as IPv4; 403 behind a proxy."""
    refuse_forwarded(headers)
    client = scope.get("client")
    if not client:
        raise Forbidden("the request has no source address, so no instance can be identified")
    return canonical_address(str(client[0]))


async def identify(ctx: ServiceContext, address: str) -> Instance:
    """The instance that owns ``address``; 403 when none does.

    On a replica (a store the replicas share), an address no view knows may be an instance
    written through another replica a moment ago, whose notification has not arrived (or was
    lost): the replica catches up first (:meth:`ChangeFollower.catch_up_for_unknown_caller`,
    at most one store read a second however many unknown callers there are), so a new VM is not
    refused until the next timer."""
    instance = ctx.fleet.view.instance_for_address(address)
    if instance is None and ctx.follower is not None:
        await ctx.follower.catch_up_for_unknown_caller()
        instance = ctx.fleet.view.instance_for_address(address)
    if instance is None:
        raise Forbidden(f"no instance is known by the address {address}")
    return instance
