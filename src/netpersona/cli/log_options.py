"""The log options every long-running command takes (``serve``, ``agent``): one spelling, one
environment variable each, one help text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from netpersona.cli.params import EnumChoice, option
from netpersona.logs import LogFormat

__all__ = ["log_options"]

F = TypeVar("F", bound=Callable[..., Any])

_log_level = option(
    "--log-level",
    envvar="NETPERSONA_LOG_LEVEL",
    default="info",
    help="debug, info, warning, error.",
)
_log_format = option(
    "--log-format",
    envvar="NETPERSONA_LOG_FORMAT",
    type=EnumChoice(LogFormat),
    default=None,
    help="json (one object per line) or console (human text). Default: console when"
    " stderr is a terminal, json otherwise.",
    show_default=False,
)


def log_options(command: F) -> F:
    """``--log-level`` and ``--log-format``: the command gets ``log_level: str`` and
    ``log_format: LogFormat | None``."""
    return _log_level(_log_format(command))
