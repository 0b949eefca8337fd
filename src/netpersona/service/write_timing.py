"""Where an admin write's time went, answered in a ``Server-Timing`` header (W3C Server Timing).

:class:`WriteTimingMiddleware` gives every admin request that may write (not GET or HEAD) a
:class:`WriteTiming`, which :meth:`Fleet.write <netpersona.service.fleet.Fleet.write>` fills
in as it goes: ``request`` (from the request's arrival: reading and checking the body, the
caller's token), ``queue`` (waiting for a worker thread), ``commit`` (the store write, its
checks and the disk's flush), ``build`` (the view after it, with its certificates, or the look
at whether it can be built before the answer), ``publish`` (waking the watchers it changed),
``answer`` (until the answer's head is sent). A write whose view is built after the answer
says so (``deferred``), and ``gc`` is the time the interpreter spent collecting garbage
meanwhile (in any thread: a collection holds the GIL, so it stalls the event loop too). The
header reads, for example, ``request;dur=0.40, queue;dur=0.12,
commit;dur=4.31, build;dur=0.87, publish;dur=0.05, answer;dur=0.20, total;dur=5.95``
(milliseconds), which is how bench/fanout.py tells what a slow write waited for.
"""

from __future__ import annotations

import gc
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["WRITE_TIMING", "WriteTiming", "WriteTimingMiddleware"]


class _Collections:
    """The time spent in garbage collections so far (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._began


_COLLECTIONS = _Collections()


@dataclass(slots=True)
class WriteTiming:
    phases: dict[str, float] = field(default_factory=dict)  # name -> seconds
    deferred: bool = False
    _began: float = 0.0
    _last: float = 0.0
    _collected: float = 0.0

    def start(self) -> None:
        self._began = self._last = time.perf_counter()
        self._collected = _COLLECTIONS.total

    def mark(self, phase: str) -> None:
        """The time since the last mark (or the start) was spent in ``phase``."""
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._last
        self._last = now

    def header(self) -> str:
        parts = [f"{name};dur={seconds * 1000:.2f}" for name, seconds in self.phases.items()]
        parts.append(f"gc;dur={(_COLLECTIONS.total - self._collected) * 1000:.2f}")
        if self.deferred:
            parts.append('deferred;desc="view built after the answer"')
        parts.append(f"total;dur={(self._last - self._began) * 1000:.2f}")
        return ", ".join(parts)


# Set for the request being answered (a worker thread sees the same object).
WRITE_TIMING: ContextVar[WriteTiming | None] = ContextVar("write_timing", default=None)


class WriteTimingMiddleware:
    """Adds the ``Server-Timing`` header to admin writes (pure ASGI: the route runs in this
    task, so it sees the context variable set here)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        if _COLLECTIONS not in gc.callbacks:
            gc.callbacks.append(_COLLECTIONS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in ("GET", "HEAD")
            or not scope["path"].startswith("/v1/admin/")
        ):
            await self.app(scope, receive, send)
            return
        timing = WriteTiming()
        token = WRITE_TIMING.set(timing)

        timing.start()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start" and timing.phases:
                timing.mark("answer")
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", timing.header().encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            WRITE_TIMING.reset(token)
