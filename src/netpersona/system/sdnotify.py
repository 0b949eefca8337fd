"""Telling systemd how a ``Type=notify`` unit is doing (sd_notify(3), without libsystemd).

The protocol is one datagram per message to the ``AF_UNIX`` socket named by ``$NOTIFY_SOCKET``:
``READY=1`` once the unit is of use, ``WATCHDOG=1`` at least every ``$WATCHDOG_USEC``
microseconds when ``WatchdogSec=`` is set. A name starting with ``@`` is in the abstract
namespace (a leading NUL byte, see unix(7)). Outside systemd the variable is unset and every
call does nothing, so the same code runs under a unit, in a shell and in tests.

A notification that cannot be sent is logged, never raised: the program works without systemd,
and a failed READY shows up as the unit's start timing out, which systemd reports itself.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

import structlog

__all__ = ["Notifier"]

log = structlog.get_logger("netpersona.sdnotify")


class Notifier:
    """The unit's side of sd_notify: ``ready()`` once, ``keep_alive()`` as a task."""

    def __init__(self, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env, os.getpid() if pid is None else pid)
        self.is_ready = False

    def send(self, message: str) -> bool:
        """Send one message; True when it was handed to the socket."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
        except OSError as exc:
            log.warning("systemd notification failed", message=message, error=str(exc))
            return False
        return True

    def ready(self) -> None:
        """``READY=1``, the first time only (later passes call it too)."""
        if not self.is_ready:
            self.is_ready = True
            self.send("READY=1")

    async def keep_alive(self) -> None:
        """``WATCHDOG=1`` every half interval, from the event loop: a loop that is stuck stops
        them, and systemd restarts the unit. Returns at once when no watchdog is set."""
        if self.watchdog_interval is None or self.address is None:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval / 2)


def _socket_address(name: str) -> str | None:
    if name.startswith("@"):
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    # Unset, or a kind this client does not speak (systemd 256 adds vsock:...).
    return None


def _watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds from ``$WATCHDOG_USEC``, if the watchdog is meant for this process
    (``$WATCHDOG_PID``, when set, names the process it is for)."""
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(pid):
        return None
    return int(usec) / 1_000_000
