"""The log options every long-running command takes (``serve``, ``agent``): one spelling, one
environment variable each, one help text."""

from __future__ import annotations

from typing import Annotated

import typer

from netpersona.logs import LogFormat

__all__ = ["LogFormatOption", "LogLevelOption"]

LogLevelOption = Annotated[
    str,
    typer.Option("--log-level", envvar="NETPERSONA_LOG_LEVEL", help="debug, info, warning, error."),
]
LogFormatOption = Annotated[
    LogFormat | None,
    typer.Option(
        "--log-format",
        envvar="NETPERSONA_LOG_FORMAT",
        case_sensitive=False,
        help="json (one object per line) or console (human text). Default: console when"
        " stderr is a terminal, json otherwise.",
        show_default=False,
    ),
]
