"""Long-poll watches: hold a request until its view changes, and wake only those that changed.

GCE metadata semantics: a watcher sends the ETag it has; if the current view differs it gets
the view at once, else it waits until the view changes or its timeout passes, and then gets
the (possibly unchanged) current view.

Waiters are grouped by the view they wait on (:data:`~netpersona.service.views.WatchKey`):
every waiter of a key holds the key's current ETag, so when :meth:`ChangeNotifier.publish`
finds the key changed (:func:`~netpersona.service.views.affected_keys`) the whole group gets
the one new :class:`View`. A waiter may bring a :data:`Deliver` callback, which publish calls
at once with the new view: the VM view fast path (:mod:`netpersona.service.fast_views`) writes
the prepared answer bytes to the waiting socket from there, without waiting for the request's
task to be scheduled. The request's future is completed either way. Python's cyclic garbage
collector is held off while the answers go out (a full collection in a process holding 10,000
connections takes up to a second); it runs after them.

:meth:`ChangeNotifier.publish` is the one entry point by which a new fleet view reaches the
watchers, whatever produced it (a write in this process, a certificate renewal, a change
another process made).

Everything here runs on the event loop; nothing blocks.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from enum import Enum

import structlog

from netpersona.model.collector import collector_paused
from netpersona.service.views import FleetView, View, ViewKind, WatchKey, affected_keys

__all__ = ["ChangeNotifier", "Deliver"]

log = structlog.get_logger("netpersona.service")

# Called by publish, on the event loop, with the view a waiter was woken for (None: the
# instance was deleted). It must not block and must not raise.
Deliver = Callable[[View | None], None]


class _Expired(Enum):
    EXPIRED = "expired"


_Waiter = tuple["asyncio.Future[View | _Expired | None]", Deliver | None]


class ChangeNotifier:
    def __init__(
        self, view: FleetView, on_wake: Callable[[set[WatchKey]], None] | None = None
    ) -> None:
        self._view = view
        self._groups: dict[WatchKey, list[_Waiter]] = {}
        self._waiting_by_kind: Counter[ViewKind] = Counter()
        self.on_wake = on_wake
        self.draining = False

    @property
    def view(self) -> FleetView:
        return self._view

    def waiting(self, kind: ViewKind | None = None) -> int:
        """How many requests are waiting now (on views of ``kind``, or on any)."""
        if kind is None:
            return sum(self._waiting_by_kind.values())
        return self._waiting_by_kind[kind]

    def watched(self, kind: ViewKind) -> list[str]:
        """The instances whose view of ``kind`` someone is waiting on now."""
        return [instance_id for k, instance_id in self._groups if k is kind]

    def publish(self, view: FleetView) -> set[WatchKey]:
        """Make ``view`` current and wake the watchers whose view it changed.

        A view built before the current one (two writes finishing out of order, or a
        certificate renewal racing a write) is ignored.
        """
        if (view.revision, view.generation) < (self._view.revision, self._view.generation):
            return set()
        old, self._view = self._view, view
        # With 10,000 watchers a collection's pass over the oldest generation took 0.1-1 s
        # (gc.callbacks in a serve process of bench/fanout.py), every answer waiting on it.
        with collector_paused():
            affected = affected_keys(old, view, self._groups) if self._groups else set()
            woken = [(view.view(key), self._groups.pop(key)) for key in affected]
            # Every answer goes out first; the requests' tasks are scheduled after.
            for answer, group in woken:
                for future, deliver in group:
                    if deliver is not None and not future.done():
                        try:
                            deliver(answer)
                        except Exception:  # one broken socket must not keep the others waiting
                            log.exception("delivering a watched view failed")
            for answer, group in woken:
                for future, _ in group:
                    if not future.done():  # else timed out or cancelled, not yet cleaned up
                        future.set_result(answer)
        if affected and self.on_wake is not None:
            self.on_wake(affected)
        return affected

    def drain(self) -> None:
        """The service is stopping: every held watch, and every later one, answers now with
        the current view (the agent then asks another replica, or this one once it is back).
        """
        self.draining = True
        for group in list(self._groups.values()):
            for future, _ in list(group):
                _expire(future)

    async def wait(
        self, key: WatchKey, etag: str, timeout: float, deliver: Deliver | None = None
    ) -> View | None:
        """The view once it differs from ``etag``, or the current one after ``timeout`` seconds.

        None when the instance no longer exists. ``deliver`` is called with the new view the
        moment a change is published (not when it was current already, nor on a timeout).
        """
        current = self._view.view(key)
        if current is None or current.etag != etag or timeout <= 0 or self.draining:
            return current
        loop = asyncio.get_running_loop()
        future: asyncio.Future[View | _Expired | None] = loop.create_future()
        waiter: _Waiter = (future, deliver)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = []
        group.append(waiter)
        kind = key[0]
        self._waiting_by_kind[kind] += 1
        timer = loop.call_later(timeout, _expire, future)
        try:
            answer = await future
        finally:
            timer.cancel()
            self._waiting_by_kind[kind] -= 1
            group = self._groups.get(key)
            if group is not None and waiter in group:
                group.remove(waiter)
                if not group:
                    del self._groups[key]
        if answer is _Expired.EXPIRED:  # the timeout: the view as it is now
            return self._view.view(key)
        return answer


def _expire(future: asyncio.Future[View | _Expired | None]) -> None:
    if not future.done():
        future.set_result(_Expired.EXPIRED)
