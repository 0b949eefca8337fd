"""netpersona.logs: structlog's events and the standard library's records in one format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
import structlog

from netpersona.errors import UsageError
from netpersona.logs import LogFormat, configure_logging, resolve_format


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _events(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_events_and_library_records_share_the_json_format() -> None:
    out = io.StringIO()
    assert configure_logging("info", "json", stream=out) is LogFormat.JSON
    structlog.get_logger("netpersona.agent").bind(vm="vm1").info("persona applied", version=3)
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "10.0.0.1:40000", "PUT", "/v1/token", "1.1", 201
    )
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    structlog.get_logger("netpersona.agent").debug("not shown at info")
    events = _events(out.getvalue())
    assert [e["logger"] for e in events] == [
        "netpersona.agent",
        "uvicorn.error",
        "uvicorn.access",
        "uvicorn.error",
    ]
    assert events[0]["vm"] == "vm1"
    assert events[0]["version"] == 3
    assert events[1]["level"] == "warning"
    access = events[2]
    assert (access["event"], access["method"], access["path"], access["status"]) == (
        "http request",
        "PUT",
        "/v1/token",
        201,
    )
    assert "RuntimeError: boom" in str(events[3]["exception"])
    assert all(str(e["timestamp"]).endswith("Z") for e in events)


def test_console_is_text_and_httpx_is_quiet_unless_debugging() -> None:
    out = io.StringIO()
    configure_logging("info", "console", stream=out)
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=transport) as client:
        client.get("http://192.0.2.1/v1/instance")
    structlog.get_logger("netpersona.agent").info("persona applied", version=3)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert "persona applied" in lines[0]
    assert "version=3" in lines[0]
    assert not lines[0].startswith("{")

    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    with httpx.Client(transport=transport) as client:
        client.get("http://192.0.2.1/v1/instance")
    assert any(e["logger"] == "httpx" for e in _events(out.getvalue()))


def test_the_default_follows_the_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_format(None, Terminal()) is LogFormat.CONSOLE
    assert resolve_format(None, io.StringIO()) is LogFormat.JSON
    assert resolve_format("json", Terminal()) is LogFormat.JSON


@pytest.mark.parametrize(("level", "fmt"), [("loud", "json"), ("info", "xml")])
def test_bad_values_are_refused_naming_the_option(level: str, fmt: str) -> None:
    with pytest.raises(UsageError, match=r"--log-level 'loud'|--log-format 'xml'"):
        configure_logging(level, fmt, stream=io.StringIO())
