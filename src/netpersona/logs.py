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
CHATTY = ("httpx", "httpcore")


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


def _logger_name(logger: WrappedLogger, _: str, event: EventDict) -> EventDict:
    """The stdlib logger's name (structlog's events) or the record's (the library's)."""
    name = getattr(logger, "name", None)
    if name is not None:
        event["logger"] = name
    return event


class _OneFormat(logging.Formatter):
    """Renders every record in the one format: structlog's events (their dict travels in
    ``record.msg``, see ``wrap_for_formatter``) and the standard library's records alike.

    Written here rather than structlog's ``ProcessorFormatter``, which copies each record
    first: on the access log's path that copy was most of the cost of a line.
    """

    def __init__(self, shared: list[Processor], tail: list[Processor]) -> None:
        super().__init__()
        self.shared = shared
        self.tail = tail

    def format(self, record: logging.LogRecord) -> str:
        method = record.levelname.lower()
        event: EventDict
        if isinstance(record.msg, dict) and hasattr(record, "_name"):
            event = dict(record.msg)  # already through the shared processors
        else:
            event = _foreign(record)
            for processor in self.shared:
                event = processor(record, method, event)  # type: ignore[assignment]
            if record.exc_info:
                event["exc_info"] = record.exc_info
        rendered: object = event
        for processor in self.tail:
            rendered = processor(record, method, rendered)  # type: ignore[arg-type]
        return str(rendered)


def _foreign(record: logging.LogRecord) -> EventDict:
    """A standard-library record as an event; uvicorn's access record (``'%s - "%s %s
    HTTP/%s" %d'`` with its five arguments) as fields a log query can filter on."""
    args = record.args
    if record.name == ACCESS_LOGGER and isinstance(args, tuple) and len(args) == 5:
        client, method, path, http_version, status = args
        return {
            "event": "http request",
            "client": client,
            "method": method,
            "path": path,
            "http_version": http_version,
            "status": status,
        }
    return {"event": record.getMessage()}


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
        structlog.processors.add_log_level,
        _logger_name,
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
    handler.setFormatter(_OneFormat(shared, tail))
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
    # httpx says every request it makes at info level: the agent's long polls would fill the
    # log with lines that say nothing the agent's own events do not. Shown at debug.
    for name in CHATTY:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    return chosen
