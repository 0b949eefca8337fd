"""Long-poll watches: hold a request until its view changes, and wake only those that changed.

GCE metadata semantics: a watcher sends the ETag it has; if the current view differs it gets
the view at once, else it waits until the view changes or its timeout passes, and then gets
the (possibly unchanged) current view. One :class:`asyncio.Event` per watched key is shared by
every waiter on that key; :meth:`ChangeNotifier.publish` sets the events of exactly the keys
whose content changed (see :func:`~netpersona.service.views.affected_keys`).

Everything here runs on the event loop; nothing blocks.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from netpersona.service.views import FleetView, View, ViewKind, WatchKey, affected_keys

__all__ = ["ChangeNotifier"]


class ChangeNotifier:
    def __init__(
        self, view: FleetView, on_wake: Callable[[set[WatchKey]], None] | None = None
    ) -> None:
        self._view = view
        self._events: dict[WatchKey, asyncio.Event] = {}
        self._waiting: Counter[WatchKey] = Counter()
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

    def publish(self, view: FleetView) -> set[WatchKey]:
        """Make ``view`` current and wake the watchers whose view it changed.

        A view built before the current one (two writes finishing out of order, or a
        certificate renewal racing a write) is ignored.
        """
        if (view.revision, view.generation) < (self._view.revision, self._view.generation):
            return set()
        old, self._view = self._view, view
        affected = affected_keys(old, view, list(self._events)) if self._events else set()
        for key in affected:
            self._events.pop(key).set()
        if affected and self.on_wake is not None:
            self.on_wake(affected)
        return affected

    def drain(self) -> None:
        """The service is stopping: every held watch, and every later one, answers now with
        the current view (the agent then asks another replica, or this one once it is back).
        """
        self.draining = True
        for event in self._events.values():
            event.set()
        self._events.clear()

    async def wait(self, key: WatchKey, etag: str, timeout: float) -> View | None:
        """The view once it differs from ``etag``, or the current one after ``timeout`` seconds.

        None when the instance no longer exists.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            current = self._view.view(key)
            remaining = deadline - loop.time()
            if current is None or current.etag != etag or remaining <= 0 or self.draining:
                return current
            event = self._events.get(key)
            if event is None:
                event = self._events[key] = asyncio.Event()
            self._waiting[key] += 1
            self._waiting_by_kind[key[0]] += 1
            try:
                async with asyncio.timeout(remaining):
                    await event.wait()
            except TimeoutError:
                pass
            finally:
                self._waiting_by_kind[key[0]] -= 1
                self._waiting[key] -= 1
                if not self._waiting[key]:
                    del self._waiting[key]
                    if self._events.get(key) is event and not event.is_set():
                        del self._events[key]
