"""Replicas: every ``serve`` on one PostgreSQL database hears the writes made through the others.

Each replica holds a connection of its own that LISTENs on the change sequence's channel
(:class:`~netpersona.store.postgres.listener.ChangeListener`). A notification, a reconnect,
and a timer (every :data:`CATCH_UP_INTERVAL` seconds, the safety net) all lead to the same
catch-up: read ``changes_since(last_seen)`` from the store and, when any of them can change
what VMs are served, :meth:`Fleet.follow <netpersona.service.fleet.Fleet.follow>` re-reads the
fleet and publishes it through the same entry point a write made here uses, which wakes
exactly the watchers whose view changed. A replica hears its own writes as well; follow then
reads only the newest audit entry (its view holds that revision already), not the fleet.

Nothing is lost with a notification (a dropped connection, a replica that was restarting):
``seq`` only grows, in commit order, so the next catch-up reads every change committed since
the last one it read. When some of those were pruned meanwhile, the store says so with a
``pruned`` change, which (as any kind it does not know) counts as one that concerns views,
and the fleet is read whole. The listener LISTENs before it reads, so a change committed during a
catch-up is either read by it or notified after it.

A VM may also ask for it: one that saw a newer fleet revision on another replica sends it as
``min_revision``, and a replica whose view is older catches up before it answers
(:meth:`ChangeFollower.catch_up_to`), so moving between replicas never serves it an older view.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import anyio.to_thread
import structlog

from netpersona.errors import StoreError
from netpersona.service.fleet import Fleet
from netpersona.store.base import VIEWLESS_CHANGES, Change

__all__ = ["CATCH_UP_INTERVAL", "SILENT_KINDS", "Replicated", "ChangeFollower", "Listener"]

log = structlog.get_logger("netpersona.service")

CATCH_UP_INTERVAL = 5.0  # seconds between catch-ups when no notification comes
RECONNECT_CAP = 10.0  # longest wait between two attempts to reconnect the listener
PAGE = 1000  # changes read per query
# Least time between two catch-ups an unknown caller starts (see catch_up_for_unknown_caller).
UNKNOWN_CALLER_PAUSE = 1.0
# Change kinds that can alter a served view; the others (status reports, certificates each
# replica issues for itself, service secrets) change no view. An unknown kind counts.
SILENT_KINDS = VIEWLESS_CHANGES


class Listener(Protocol):
    """A connection that hears the change sequence (``async with`` it to connect)."""

    @property
    def backend_pid(self) -> int | None: ...

    async def wait(self, timeout: float) -> bool:
        """True on a notification, False after ``timeout`` seconds of none; StoreError when
        the connection is lost."""
        ...


ListenerFactory = Callable[[], AbstractAsyncContextManager[Listener]]


@runtime_checkable
class Replicated(Protocol):
    """A store several processes share, which tells them of each other's writes."""

    def listener(self) -> AbstractAsyncContextManager[Listener]: ...


def concerns_views(changes: list[Change]) -> bool:
    return any(change.kind not in SILENT_KINDS for change in changes)


class ChangeFollower:
    """Keeps one replica's fleet view up to date with the writes made through the others."""

    def __init__(
        self,
        fleet: Fleet,
        listener: ListenerFactory,
        *,
        interval: float = CATCH_UP_INTERVAL,
    ) -> None:
        self.fleet = fleet
        self.listener = listener
        self.interval = interval
        self.last_seen: int | None = None  # None: not caught up yet
        self.connected: Listener | None = None
        self.catch_ups = 0  # how many catch-ups found changes that concern views
        self._catching_up = asyncio.Lock()
        self._unknown_caller_at = -UNKNOWN_CALLER_PAUSE
        self.reads = 0  # catch-ups started (each one store read, or a page of them)
        self._read_through = 0  # a revision every change up to which a catch-up has read

    async def catch_up_to(self, revision: int) -> None:
        """Catch up now, for a caller that saw ``revision`` (a VM's ``min_revision``) while
        this replica's view is older: the write may not have been heard of yet here. A
        catch-up that starts after the caller arrived has read every change up to
        ``revision``, so one read serves every caller of a burst, and a revision already read
        through (a change that alters no view) costs no read again. The view is then whatever
        it is: after a restore of the database revisions go back, and that is no error."""
        if revision <= self.fleet.view.revision:
            return
        if revision > self._read_through:
            arrived = self.reads
            async with self._catching_up:
                # None started since this caller arrived, and none since has reached it.
                if self.reads == arrived and revision > self.fleet.view.revision:
                    await self._catch_up()
            self._read_through = max(self._read_through, revision)
        # A write made here whose view is built but not yet published (the catch-up found
        # nothing to build): the moment until it is.
        await self.fleet.published(revision)

    async def catch_up_for_unknown_caller(self) -> None:
        """Catch up now, for a request from an address no view knows (a VM created through
        another replica whose notification is late or lost). At most one such catch-up starts
        per :data:`UNKNOWN_CALLER_PAUSE`, so a flood of unknown addresses costs one small
        store read a second; a caller arriving meanwhile waits for the catch-up in flight."""
        now = time.monotonic()
        if now - self._unknown_caller_at < UNKNOWN_CALLER_PAUSE:
            async with self._catching_up:
                return
        self._unknown_caller_at = now
        await self.catch_up()

    async def catch_up(self) -> None:
        """Read what was committed since the last catch-up; publish it if a view may change."""
        async with self._catching_up:  # the listener's, the timer's and an unknown caller's
            await self._catch_up()

    async def _catch_up(self) -> None:
        self.reads += 1
        store = self.fleet.store
        if self.last_seen is None:
            # First time: the view may be older than anything (it was built before the
            # listener was up), so rebuild it if the store's revision is newer.
            self.last_seen = await anyio.to_thread.run_sync(store.last_change)
            await self.fleet.follow()
            return
        concerned = False
        while True:
            changes = await anyio.to_thread.run_sync(store.changes_since, self.last_seen, PAGE)
            if changes:
                self.last_seen = changes[-1].seq
                concerned = concerned or concerns_views(changes)
            if len(changes) < PAGE:
                break
        if concerned:
            self.catch_ups += 1
            await self.fleet.follow()

    async def run(self) -> None:
        """Listen and catch up until cancelled; a lost connection is reconnected, with a
        growing pause, and followed by a catch-up."""
        pause = 0.5
        while True:
            try:
                async with self.listener() as listener:
                    self.connected = listener
                    pause = 0.5
                    log.info("listening for changes", pid=listener.backend_pid)
                    await self.catch_up()  # after LISTEN: nothing committed from now is missed
                    while True:
                        await listener.wait(self.interval)
                        await self.catch_up()
            except StoreError as exc:
                log.warning("change listener lost; reconnecting", error=str(exc), pause=pause)
            except Exception:  # a defect must not stop this replica following the others
                log.exception("change follower failed; restarting it")
            finally:
                self.connected = None
            await asyncio.sleep(pause)
            pause = min(RECONNECT_CAP, pause * 2)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self.run(), name="change-follower")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
