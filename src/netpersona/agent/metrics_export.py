"""Where the agent's metrics go: a small HTTP endpoint (``--metrics-listen``, for a Prometheus
that scrapes the VM) and a file for node_exporter's textfile collector (``--metrics-textfile``,
rewritten every ``--metrics-interval`` seconds). Both are off by default.

The endpoint is a few lines of asyncio, not a web framework: it answers ``GET /metrics`` (and
``/``) with the text exposition format and closes the connection; anything else gets 404 or
405. It runs on the agent's event loop, where the state it renders lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import structlog
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from netpersona.agent.metrics import AgentMetrics

__all__ = ["MetricsEndpoint", "write_textfile"]

HEADER_TIMEOUT = 10.0
log = structlog.get_logger("netpersona.agent")


def write_textfile(path: Path, body: bytes) -> None:
    """Replace ``path`` with ``body`` at once (rename over it), so node_exporter never reads
    half a file. The temporary name does not end in ``.prom``: the collector skips it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as out:
            out.write(body)
        # node_exporter runs as its own user; the agent's umask (0077 under systemd) would
        # hide the file from it. Metrics are not secret.
        temporary.chmod(0o644)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


class MetricsEndpoint:
    """``GET /metrics`` over HTTP/1.x on ``host:port``."""

    def __init__(self, metrics: AgentMetrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._answer, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
            self.server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT)
            status, body, extra = await self._respond(head)
            kind = CONTENT_TYPE_LATEST if status.startswith("200") else "text/plain"
            headers = [
                f"HTTP/1.1 {status}",
                f"Content-Type: {kind}",
                f"Content-Length: {len(body)}",
                "Connection: close",
                *extra,
            ]
            writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("latin-1"))
            if not head.startswith(b"HEAD "):
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that sent no request (or a huge one): just close
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, head: bytes) -> tuple[str, bytes, list[str]]:
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return "400 Bad Request", b"bad request\n", []
        method, target = parts[0], parts[1].partition("?")[0]
        if target not in ("/metrics", "/"):
            return "404 Not Found", b"not found: the metrics are at /metrics\n", []
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"method not allowed\n", ["Allow: GET, HEAD"]
        try:
            await self.metrics.refresh()
            return "200 OK", self.metrics.render(), []
        except Exception as exc:  # a defect in a collector must not end the endpoint
            log.error("metrics not rendered", error=f"{type(exc).__name__}: {exc}")
            return "500 Internal Server Error", b"metrics could not be rendered\n", []
