"""The admin API client the ``netpersona admin ...`` commands of one invocation share."""

from __future__ import annotations

import typer

from netpersona.admin_client import AdminClient
from netpersona.errors import UsageError

__all__ = ["admin_client"]


def admin_client(ctx: typer.Context) -> AdminClient:
    """The client for this invocation, made on first use (so --help needs no URL)."""
    settings = ctx.obj
    if not isinstance(settings, dict):
        raise UsageError("run as netpersona admin ... (with --url and --token)")
    if "client" not in settings:
        settings["client"] = AdminClient(settings["url"], settings["token"])
        ctx.call_on_close(settings["client"].close)
    client = settings["client"]
    assert isinstance(client, AdminClient)
    return client
