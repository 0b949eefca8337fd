"""The running service's state: the store, the current :class:`FleetView`, and its watchers.

Every write goes through :meth:`Fleet.write`: the store call and a fresh read of the fleet run
in a worker thread (SQLite blocks, and ``synchronous=FULL`` waits for the disk), then the new
view is published on the event loop, which wakes the affected watchers. Building the view
runs the resolver (the policy engine, :mod:`netpersona.service.policy`) under one lock, so the
engine sees every write's result in order; :meth:`Fleet.with_engine` hands it out under that
lock for explain and what-if. Writes whose checks read the stored policy (a policy save, a
context value, deleting a persona) run check and write under :attr:`Fleet.policy_lock`
(:meth:`Fleet.guarded_write`), so no policy change slips in between.
:meth:`Fleet.refresh` rebuilds the view without a write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread

from netpersona.errors import NotFound, UsageError
from netpersona.model import Persona
from netpersona.policy import Policy, PolicyEngine
from netpersona.service.notifier import ChangeNotifier
from netpersona.service.policy import PolicyPersonas, policy_of
from netpersona.service.views import EffectiveVersion, FleetView, PersonaResolver, WatchKey
from netpersona.store.base import PolicyVersion, Store

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
        self.resolver: PersonaResolver = resolver or PolicyPersonas()
        self._parsed: dict[EffectiveVersion, Persona | None] = {}
        self._build_lock = threading.Lock()
        self.policy_lock = threading.Lock()
        self._policy_cache: tuple[int | None, Policy] | None = None
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

    async def guarded_write(self, op: Callable[[], T]) -> T:
        """:meth:`write`, with ``op`` (its checks and its store write) under the policy lock."""

        def run() -> T:
            with self.policy_lock:
                return op()

        return await self.write(run)

    def stored_policy(self) -> tuple[PolicyVersion | None, Policy]:
        """The stored policy, compiled (blocking: call in a worker thread, under policy_lock)."""
        try:
            version: PolicyVersion | None = self.store.get_policy()
        except NotFound:
            version = None
        key = None if version is None else version.version
        if self._policy_cache is None or self._policy_cache[0] != key:
            self._policy_cache = (key, policy_of(version))
        return version, self._policy_cache[1]

    async def with_engine(self, use: Callable[[PolicyEngine], T]) -> T:
        """``use(engine)`` in a worker thread, under the lock the engine is fed under."""

        def run() -> T:
            with self._build_lock:
                resolver = self.resolver
                if not isinstance(resolver, PolicyPersonas):
                    raise UsageError("this service decides personas without the policy engine")
                return use(resolver.engine)

        return await anyio.to_thread.run_sync(run)

    async def refresh(self) -> set[WatchKey]:
        """Re-read the fleet and re-resolve effective personas; wake whoever that changed."""
        view = await anyio.to_thread.run_sync(self._build)
        return self.notifier.publish(view)
