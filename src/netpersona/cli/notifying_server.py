"""The uvicorn server ``netpersona serve`` runs: it tells systemd when it is of use.

``READY=1`` goes out once uvicorn has started (the application's start-up done, the listening
sockets serving) — the database was opened before, so a client that connects after READY is
answered. ``WATCHDOG=1`` keep-alives come from the same event loop that answers requests, so a
loop that hangs stops them and systemd restarts the service (``WatchdogSec=`` in the unit).
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from netpersona.system.sdnotify import Notifier

__all__ = ["NotifyingServer"]


class NotifyingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, notifier: Notifier | None = None) -> None:
        super().__init__(config)
        self.notifier = notifier or Notifier()
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
        await super().shutdown(sockets)
