"""How ``netpersona admin ...`` reaches the service: the options of the ``admin`` group, and the
admin API client the commands of one invocation share.

The service is at ``--url`` (TCP) or ``--admin-socket`` (its Unix socket; the service must run
with ``serve --admin-socket``). The bearer token is ``--token`` or the content of
``--token-file``; the service asks for it on both. Each option has its ``NETPERSONA_*``
environment variable; one given on the command line beats one from the environment.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from netpersona.cli.params import PATH, option
from netpersona.errors import UsageError

if TYPE_CHECKING:
    from netpersona.admin_client import AdminClient

__all__ = ["Connection", "admin_client", "connection_options", "read_token_file"]

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = (
    option(
        "--url",
        envvar="NETPERSONA_URL",
        default="",
        show_default=False,
        help="Service URL, e.g. http://host:8080",
    ),
    option(
        "--token",
        envvar="NETPERSONA_TOKEN",
        default="",
        show_default=False,
        help="Admin API bearer token.",
    ),
    option(
        "--token-file",
        envvar="NETPERSONA_TOKEN_FILE",
        type=PATH,
        help="Read the bearer token from this file (mode 0600, e.g. DATA_DIR/admin.token).",
    ),
    option(
        "--admin-socket",
        envvar="NETPERSONA_ADMIN_SOCKET",
        type=PATH,
        help="The service's admin Unix socket (serve --admin-socket), instead of --url.",
    ),
)


def connection_options(command: F) -> F:
    """``--url``, ``--token``, ``--token-file`` and ``--admin-socket``, in that order."""
    for add in reversed(_OPTIONS):
        command = add(command)
    return command


@dataclass
class Connection:
    url: str
    token: str
    admin_socket: Path | None
    client: AdminClient | None = None


def read_token_file(path: Path) -> str:
    """The token in ``path``, without its trailing newline. A file others may read or write is
    refused, as ssh refuses such a key: the token is the admin's password."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"--token-file {path}: cannot read it: {exc.strerror}") from None
    if mode & 0o077:
        raise UsageError(
            f"--token-file {path}: mode {mode:04o} lets others read or change it; chmod 600 it"
        )
    token = text.strip()
    if not token:
        raise UsageError(f"--token-file {path}: the file is empty")
    return token


def _rank(ctx: click.Context, name: str) -> int:
    """0 for an option given on the command line, 1 from the environment, 2 not given."""
    source = ctx.get_parameter_source(name)
    ranks = {click.core.ParameterSource.COMMANDLINE: 0, click.core.ParameterSource.ENVIRONMENT: 1}
    return ranks.get(source, 2) if source is not None else 2


def connect(
    ctx: click.Context, url: str, token: str, token_file: Path | None, admin_socket: Path | None
) -> Connection:
    """The admin group's options, resolved: --token and --token-file together are refused at
    the same level, and the command line's beats the environment's."""
    if token and token_file is not None:
        token_rank, file_rank = _rank(ctx, "token"), _rank(ctx, "token_file")
        if token_rank == file_rank:
            raise UsageError("give --token or --token-file, not both")
        if file_rank < token_rank:
            token = ""
    if not token and token_file is not None:
        token = read_token_file(token_file)
    if url and admin_socket is not None and _rank(ctx, "url") < _rank(ctx, "admin_socket"):
        admin_socket = None
    return Connection(url, token, admin_socket)


def admin_client(ctx: click.Context) -> AdminClient:
    """The client for this invocation, made on first use (so --help needs no URL)."""
    from netpersona.admin_client import AdminClient  # noqa: PLC0415

    settings = ctx.obj
    if not isinstance(settings, Connection):
        raise UsageError("run as netpersona admin ... (with --url and --token)")
    if settings.client is None:
        settings.client = AdminClient(settings.url, settings.token, socket=settings.admin_socket)
        ctx.call_on_close(settings.client.close)
    return settings.client
