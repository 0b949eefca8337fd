"""The uvicorn server ``netpersona serve`` runs: it tells systemd when it is of use.

``READY=1`` goes out once uvicorn has started (the application's start-up done, the listening
sockets serving) — the database was opened before, so a client that connects after READY is
answered. ``WATCHDOG=1`` keep-alives come from the same event loop that answers requests, so a
loop that hangs stops them and systemd restarts the service (``WatchdogSec=`` in the unit).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import uvicorn

from netpersona.system.sdnotify import Notifier

__all__ = ["NotifyingServer"]


class NotifyingServer(uvicorn.Server):
    """``on_stop`` runs on the event loop when stopping begins (SIGTERM), before uvicorn waits
    for the open requests: the service answers its held long-polls there, so they need not
    be cut off when uvicorn's wait (``timeout_graceful_shutdown``) ends."""

    def __init__(
        self,
        config: uvicorn.Config,
        notifier: Notifier | None = None,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.notifier = notifier or Notifier()
        self.on_stop = on_stop
        self.keep_alive: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self.notifier.ready()
            self.keep_alive = asyncio.create_task(self.notifier.keep_alive(), name="watchdog")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.notifier.send("STOPPING=1")
        if self.keep_alive is not None:
            self.keep_alive.cancel()
        if self.on_stop is not None:
            self.on_stop()
            await asyncio.sleep(0)  # let the woken requests write their answers
        await super().shutdown(sockets)
