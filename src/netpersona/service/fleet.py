"""The running service's state: the store, the current :class:`FleetView`, and its watchers.

Every write goes through :meth:`Fleet.write`: the store call and a fresh read of the fleet run
in a worker thread (SQLite blocks, and ``synchronous=FULL`` waits for the disk), then the new
view is published on the event loop, which wakes the affected watchers. A policy engine whose
inputs change outside a write calls :meth:`Fleet.refresh`, the same path without a write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread

from netpersona.model import Persona
from netpersona.service.notifier import ChangeNotifier
from netpersona.service.views import FleetView, PersonaResolver, PinnedPersonas, WatchKey
from netpersona.store.base import Store

__all__ = ["Fleet"]

T = TypeVar("T")


class Fleet:
    def __init__(
        self,
        store: Store,
        resolver: PersonaResolver | None = None,
        on_wake: Callable[[set[WatchKey]], None] | None = None,
    ) -> None:
        self.store = store
        self.resolver: PersonaResolver = resolver or PinnedPersonas()
        self._parsed: dict[tuple[str, int], Persona | None] = {}
        self._build_lock = threading.Lock()
        self.notifier = ChangeNotifier(self._build(), on_wake)

    @property
    def view(self) -> FleetView:
        return self.notifier.view

    def _build(self) -> FleetView:
        with self._build_lock:  # builds from two writer threads share the parse cache
            return FleetView.build(self.store.fleet(), self.resolver, self._parsed)

    def _write_then_build(self, op: Callable[[], T]) -> tuple[T, FleetView]:
        result = op()
        return result, self._build()

    async def write(self, op: Callable[[], T]) -> T:
        """Run the store write ``op``, then publish the fleet as it is after it."""
        result, view = await anyio.to_thread.run_sync(self._write_then_build, op)
        self.notifier.publish(view)
        return result

    async def read(self, op: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(op)

    async def refresh(self) -> set[WatchKey]:
        """Re-read the fleet and re-resolve effective personas; wake whoever that changed."""
        view = await anyio.to_thread.run_sync(self._build)
        return self.notifier.publish(view)
