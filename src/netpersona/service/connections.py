"""Connection limits under the HTTP layer: no client can hold the service's sockets or fds.

uvicorn closes a kept-alive connection that stays idle (``timeout_keep_alive``), but it arms
that timer only after a response: a connection that never sends a request, or sends half of
its header section and stops, is held forever, and enough of them use up the process's file
descriptors, after which every legitimate request is refused. :class:`LimitedHttpProtocol`
(uvicorn's httptools protocol, which the service runs on uvloop) adds:

- a header timeout: a new connection, and a kept-alive one once the next request's first byte
  arrives, must complete its header section within ``header_timeout`` seconds, else it is
  closed;
- a header size cap (:data:`MAX_HEADER_BYTES`): a longer header section gets 413 and a close;
- a connection cap: over ``max_connections`` open connections, a new one is closed at once,
  so the process always keeps descriptors for its database and logs
  (:func:`default_max_connections`).

Malformed requests get the API's JSON error body rather than uvicorn's plain text.

It also offers the application a way to send a whole prepared response in one write
(:class:`WholeResponse`, at ``scope["extensions"][WHOLE_RESPONSE]``): uvicorn writes the header
section and the body of every answer separately, each after its own trip through the ASGI
send chain, which was half the cost of waking a long poll.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from netpersona.errors import PayloadTooLarge, UsageError

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "FD_RESERVE",
    "KEEP_ALIVE_TIMEOUT",
    "MAX_HEADER_BYTES",
    "WHOLE_RESPONSE",
    "ConnectionLimits",
    "LimitedHttpProtocol",
    "WholeResponse",
    "default_max_connections",
    "limited_protocol",
]

DEFAULT_HEADER_TIMEOUT = 10.0
KEEP_ALIVE_TIMEOUT = 5
MAX_HEADER_BYTES = 64 * 1024
FD_RESERVE = 64  # descriptors kept for the database (WAL: three files), logs, the key file

log = structlog.get_logger("netpersona.service")

WHOLE_RESPONSE = "netpersona.whole_response"


def default_max_connections() -> int:
    """The soft ``RLIMIT_NOFILE`` less :data:`FD_RESERVE` (at least 1)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, soft - FD_RESERVE)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float
    max_connections: int

    def __post_init__(self) -> None:
        if not self.header_timeout > 0:
            raise UsageError(f"--header-timeout {self.header_timeout}: expected seconds > 0")
        most = default_max_connections()
        if not 1 <= self.max_connections <= most:
            raise UsageError(
                f"--max-connections {self.max_connections}: expected 1..{most} (the open files"
                f" limit less {FD_RESERVE} kept for the database and logs; raise it with"
                " LimitNOFILE= or ulimit -n)"
            )


def _error_bytes(status: int, phrase: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class LimitedHttpProtocol(HttpToolsProtocol):
    """See the module docstring; :func:`limited_protocol` binds the limits."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits(
        DEFAULT_HEADER_TIMEOUT, default_max_connections()
    )
    _last_refusal_logged: ClassVar[float] = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refused = True
            transport.close()
            self._log_refusal()
            return
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm_header_timer()  # the first bytes of the next request on this connection
        super().data_received(data)
        if self._header_timer is not None:  # the header section is still incomplete
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
                message = f"the request's header section is larger than {MAX_HEADER_BYTES} bytes"
                self.transport.write(
                    _error_bytes(413, "Content Too Large", PayloadTooLarge.code, message)
                )
                self.transport.close()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # not an upgrade
            extensions: dict[str, Any] = {WHOLE_RESPONSE: WholeResponse(self, cycle)}
            self.scope["extensions"] = extensions

    def send_400_response(self, msg: str) -> None:
        self.transport.write(
            _error_bytes(400, "Bad Request", UsageError.code, f"not an HTTP/1.1 request: {msg}")
        )
        self.transport.close()

    def _arm_header_timer(self) -> None:
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _log_refusal(self) -> None:
        now = time.monotonic()
        if now - LimitedHttpProtocol._last_refusal_logged >= 10:
            LimitedHttpProtocol._last_refusal_logged = now
            log.warning(
                "connection refused: at the connection limit",
                max_connections=self.limits.max_connections,
            )


def limited_protocol(limits: ConnectionLimits) -> type[LimitedHttpProtocol]:
    """The protocol class for uvicorn's ``Config(http=...)``, bound to ``limits``."""
    return type("LimitedHttpProtocol", (LimitedHttpProtocol,), {"limits": limits})


class _DefaultHead:
    """uvicorn's default headers (Date, Server) as bytes; it makes a new list each second."""

    of: object = None
    head = b""

    @classmethod
    def bytes_of(cls, defaults: list[tuple[bytes, bytes]]) -> bytes:
        if cls.of is not defaults:
            cls.head = b"".join(n + b": " + v + b"\r\n" for n, v in defaults)
            cls.of = defaults
        return cls.head


class WholeResponse:
    """Sends one request's complete response (header section and body) in one write, with
    the same bookkeeping as uvicorn's ``send``: keep-alive, ``Connection: close``, the
    server's default headers (Date, Server), the next pipelined request."""

    __slots__ = ("_cycle", "_protocol")

    def __init__(self, protocol: HttpToolsProtocol, cycle: RequestResponseCycle) -> None:
        self._protocol = protocol
        self._cycle = cycle

    def send(self, head: bytes, body: bytes) -> bool:
        """``head``: the status line and header lines (each ending in CRLF, Content-Length
        included where it belongs). False when this cannot be done now (a response was
        started, or the socket's write buffer is full): then use the ASGI ``send``. True also
        when the client has gone (uvicorn's send drops the response then, too)."""
        cycle = self._cycle
        if cycle.disconnected:
            return True
        if cycle.response_started or cycle.flow.write_paused:
            return False
        defaults = _DefaultHead.bytes_of(self._protocol.server_state.default_headers)
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        close = b"" if cycle.keep_alive else b"connection: close\r\n"
        cycle.transport.write(b"".join((head, defaults, close, b"\r\n", body)))
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            cycle.transport.close()
        cycle.on_response()
        return True
