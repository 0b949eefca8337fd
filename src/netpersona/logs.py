"""Structured logs: one stream on stderr, one event per line, with vm, persona and version bound
by the code that knows them (structlog's ``bind``).

Two formats: ``json`` (one object per line, for journald and log shippers) and ``console``
(aligned, human text). By default a terminal gets ``console`` and anything else (a pipe, a
file, the journal) gets ``json``.

Libraries that log through the standard library (uvicorn's error and access logs) join the same
stream: the root logger's one handler renders their records with structlog's processors, and
an access-log record is turned into fields (``method``, ``path``, ``status``, ...), not a
preformatted sentence.
"""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from netpersona.errors import UsageError

__all__ = ["LEVELS", "LogFormat", "configure_logging", "resolve_format"]

LEVELS = ("debug", "info", "warning", "error")
ACCESS_LOGGER = "uvicorn.access"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


def resolve_format(chosen: LogFormat | str | None, stream: TextIO | None = None) -> LogFormat:
    """``chosen`` as given, else console on a terminal and json otherwise."""
    if chosen is not None:
        try:
            return LogFormat(chosen)
        except ValueError:
            raise UsageError(
                f"--log-format {chosen!r}: not one of {', '.join(f.value for f in LogFormat)}"
            ) from None
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    return LogFormat.CONSOLE if isatty is not None and isatty() else LogFormat.JSON


def _level(level: str) -> int:
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None or level.lower() not in LEVELS:
        raise UsageError(f"--log-level {level!r}: not one of {', '.join(LEVELS)}")
    return numeric


def _access_fields(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """uvicorn's access record (``'%s - "%s %s HTTP/%s" %d'`` with its five arguments) as
    fields a log query can filter on."""
    args = event.pop("positional_args", None)
    record = event.get("_record")
    if record is None or record.name != ACCESS_LOGGER:
        return event
    if isinstance(args, tuple) and len(args) == 5:
        client, method, path, http_version, status = args
        event["event"] = "http request"
        event.update(
            client=client, method=method, path=path, http_version=http_version, status=status
        )
    return event


def _drop_color_message(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # uvicorn passes a second, ANSI-coloured copy of some messages in ``extra``.
    event.pop("color_message", None)
    return event


def configure_logging(
    level: str = "info", log_format: LogFormat | str | None = None, *, stream: TextIO | None = None
) -> LogFormat:
    """Send structlog's events and the standard library's records to ``stream`` (stderr) in
    one format; returns the format chosen."""
    numeric = _level(level)
    chosen = resolve_format(log_format, stream)
    out = stream or sys.stderr
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if chosen is LogFormat.JSON:
        renderer = structlog.processors.JSONRenderer(sort_keys=True)
        tail: list[Processor] = [structlog.processors.format_exc_info, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty(), sort_keys=True)
        tail = [renderer]
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            pass_foreign_args=True,
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _access_fields],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _drop_color_message,
                *tail,
            ],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # Loggers that kept their own handlers (uvicorn's, when something configured them before)
    # would print twice or in another shape: everything goes through the root's one handler.
    for name in ("uvicorn", "uvicorn.error", ACCESS_LOGGER):
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    return chosen
