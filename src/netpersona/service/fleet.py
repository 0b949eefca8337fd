"""The running service's state: the store, the current :class:`FleetView`, and its watchers.

Every write goes through :meth:`Fleet.write`: the store call and the new view's build run in a
worker thread (SQLite blocks, and ``synchronous=FULL`` waits for the disk), then the new view is
published on the event loop, which wakes the affected watchers. A write never re-reads the
fleet: the store hands over what changed since the last view
(:meth:`~netpersona.store.base.Store.fleet_delta`, from its change sequence: the instances,
personas, context keys and policy written), the policy engine recomputes the instances those
concern, the view copies its mappings with them (:meth:`FleetView.apply`) and only their
certificates are issued; an instance's write costs the same at 100 instances and at 100,000,
a persona's what its holders cost. A replica follows another's write the same way
(:meth:`Fleet.follow`). Only many changes at once (or one of a kind the delta does not carry)
are read and resolved whole, as :meth:`Fleet.refresh` always does. Building the view
runs the resolver (the policy engine, :mod:`netpersona.service.assignment`) under one lock, so the
engine sees every write's result in order; :meth:`Fleet.with_engine` hands it out under that
lock for explain and what-if. Writes whose checks read the stored policy (a policy save, a
context value, deleting a persona) run check and write under :attr:`Fleet.policy_lock`
(:meth:`Fleet.guarded_write`), so no policy change slips in between.
:meth:`Fleet.refresh` rebuilds the view without a write. With a certificate authority
(:mod:`netpersona.service.certificates`) every view built carries each instance's persona
certificate and the key set: a write publishes the new view first (with the certificates held
so far), then :meth:`Fleet.renew` issues the certificates it changed and publishes again (the
write waits for that when it changed a few instances, and leaves it to run in the background
when it changed many, see :meth:`Fleet.write`); the
app also runs :meth:`Fleet.renew` on a timer for the certificates that time or a new signing
key made due.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import anyio.to_thread
import structlog

from netpersona.errors import NotFound, UsageError
from netpersona.policy import Policy, PolicyEngine
from netpersona.service.assignment import PolicyPersonas, policy_of
from netpersona.service.certificates import CertificateAuthority
from netpersona.service.notifier import ChangeNotifier
from netpersona.service.views import FleetView, PersonaResolver, WatchKey
from netpersona.store.base import FleetDelta, PolicyVersion, Store

__all__ = ["CERTIFICATE_BATCH", "INLINE_CERTIFICATES", "Fleet"]

T = TypeVar("T")

log = structlog.get_logger("netpersona.service")

# A write that changes at most this many instances waits for their certificates.
INLINE_CERTIFICATES = 64
# Certificates issued under the build lock at a time (~0.1 ms each to sign, and one store write).
CERTIFICATE_BATCH = 512
# Changes since the last view a build applies one by one; more (or one of a kind the store's
# delta does not carry) and the whole fleet is read again.
INCREMENTAL_CHANGES = 256


def _changed(old: FleetView | None, new: FleetView) -> int:
    """How many instances of ``new`` differ from ``old`` in what a certificate binds (by
    identity: the store and the resolver hand out the same objects for what did not change)."""
    if old is None:
        return len(new.instances)
    if old.instances is new.instances and old.effective is new.effective:
        return 0
    count = 0
    for instance_id, instance in new.instances.items():
        if old.instances.get(instance_id) is not instance or old.effective.get(
            instance_id
        ) is not new.effective.get(instance_id):
            count += 1
    return count


class Fleet:
    def __init__(
        self,
        store: Store,
        resolver: PersonaResolver | None = None,
        on_wake: Callable[[set[WatchKey]], None] | None = None,
        authority: CertificateAuthority | None = None,
    ) -> None:
        self.store = store
        self.resolver: PersonaResolver = resolver or PolicyPersonas()
        self.authority = authority
        self._build_lock = threading.Lock()
        self.policy_lock = threading.Lock()
        self._policy_cache: tuple[int | None, Policy] | None = None
        self._generation = 0
        self._latest: FleetView | None = None
        # Instances whose certificate may be due since the last issue (None: any of them).
        self._uncertified: set[str] | None = None
        self._renew_lock = asyncio.Lock()
        self._renewals_wanted = 0
        self._renewals_done = 0
        self._background: set[asyncio.Task[None]] = set()
        view = self._build()
        if self.authority is not None and isinstance(self.resolver, PolicyPersonas):
            # Past the changes of the certificates just issued (a whole fleet's at a first
            # start), so that the first write does not scan them.
            view = self._build_counted()[0]
        self.notifier = ChangeNotifier(view, on_wake)

    @property
    def view(self) -> FleetView:
        return self.notifier.view

    def _stamp(self, view: FleetView, issue: bool) -> tuple[FleetView, bool]:
        """(Under the build lock.) Attach certificates, number the view, remember it.

        Without ``issue`` the certificates are those of the previous view: signing every
        certificate a change concerns takes ~0.1 ms each, and the persona watchers should not
        wait for it. :meth:`renew` issues them right after the view is published.
        """
        changed = True
        if self.authority is not None:
            if issue or self._latest is None:
                # At start-up all at once; later in batches, so that a write waits for the
                # build lock one batch at most.
                budget = None if self._latest is None else CERTIFICATE_BATCH
                candidates = self._uncertified
                view, changed = self.authority.attach(view, budget, candidates)
                self._uncertified = None if self.authority.behind else set()
            elif view.certificates is self._latest.certificates:
                pass  # built from the last view (an instance write): its certificates held
            else:
                held = self._latest.certificates
                view = replace(
                    view,
                    certificates={i: c for i, c in held.items() if i in view.instances},
                    keys=self._latest.keys,
                )
        self._generation += 1
        view.generation = self._generation
        self._latest = view
        return view, changed

    def _build(self) -> FleetView:
        return self._build_counted(full=True)[0]

    def _build_counted(self, full: bool = False) -> tuple[FleetView, int]:
        """The new view, and how many instances it changed (whose certificates are due);
        ``full``: from a read of the whole fleet, whatever changed."""
        with self._build_lock:  # builds from two writer threads feed one resolver in order
            previous = self._latest
            found = None if full else self._build_incremental(previous)
            if found is not None:
                return found
            built = FleetView.build(self.store.fleet(), self.resolver)
            self._uncertified = None
            view = self._stamp(built, issue=False)[0]
            return view, _changed(previous, view)

    def _build_incremental(self, previous: FleetView | None) -> tuple[FleetView, int] | None:
        """(Under the build lock.) The new view from the last one, when the changes since are
        few and of a kind the store's delta carries (instances, personas, the context, the
        policy): the store reads what they wrote, the engine recomputes the instances they
        concern, the view copies its mappings with those, and only their certificates fall
        due. None: read the whole fleet."""
        resolver = self.resolver
        if previous is None or not isinstance(resolver, PolicyPersonas):
            return None
        delta = self.store.fleet_delta(previous.changes, INCREMENTAL_CHANGES)
        if delta is None:
            return None
        return self._apply(previous, resolver, delta)

    def _apply(
        self, previous: FleetView, resolver: PolicyPersonas, delta: FleetDelta
    ) -> tuple[FleetView, int]:
        if delta.empty:  # a token, say: no view changes
            same = replace(
                previous,
                revision=delta.revision,
                changes=delta.changes,
                delta_from=(previous.generation, frozenset()),
            )
            return self._stamp(same, issue=False)[0], 0
        effective, touched = resolver.update(delta)
        built = previous.apply(delta, effective, touched)
        changed = touched | {i.id for i in delta.upserted} | set(delta.removed)
        if self._uncertified is not None:
            self._uncertified |= changed
        view = self._stamp(built, issue=False)[0]
        return view, len(changed)

    def _renew(self) -> FleetView | None:
        with self._build_lock:
            assert self._latest is not None
            view, changed = self._stamp(self._latest, issue=True)
            return view if changed else None

    def _write_then_build(self, op: Callable[[], T]) -> tuple[T, FleetView, int]:
        result = op()
        return result, *self._build_counted()

    async def write(self, op: Callable[[], T]) -> T:
        """Run the store write ``op``, then publish the fleet as it is after it.

        The certificates the write changed are issued right after (:meth:`renew`); the write
        waits for them when they are few (at most :data:`INLINE_CERTIFICATES`: one instance's
        change), so a VM reading its certificate after an operator's write sees the new one.
        A change of many (a persona held by thousands) is acknowledged at once and its
        certificates are issued in the background, in one batch, and published as one view.
        """
        result, view, uncertified = await anyio.to_thread.run_sync(self._write_then_build, op)
        self.notifier.publish(view)
        await self._certify(uncertified)
        return result

    async def _certify(self, uncertified: int) -> None:
        """Issue the certificates a change made due: awaited when few (at most
        :data:`INLINE_CERTIFICATES`), in the background when many."""
        self._renewals_wanted += 1
        task = asyncio.create_task(self._renew_through(self._renewals_wanted))
        if uncertified <= INLINE_CERTIFICATES:
            await task
        else:
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _renew_through(self, wanted: int) -> None:
        """Renew once for every write up to number ``wanted``: writes that arrive while a
        renewal runs share the next one."""
        async with self._renew_lock:
            if self._renewals_done >= wanted:
                return
            target = self._renewals_wanted
            try:
                await self.renew()
            except Exception:  # a bad key file or a busy disk: the timer's renewal retries
                log.exception("certificate renewal after a write failed")
            self._renewals_done = target

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

    async def renew(self) -> set[WatchKey]:
        """Re-issue the certificates that are due (near expiry, or a new signing key), take
        up a changed key set, and wake whoever that changed; nothing is re-read from the store.
        """
        if self.authority is None:
            return set()
        woken: set[WatchKey] = set()
        while True:  # one batch at a time, each published as it is issued
            view = await anyio.to_thread.run_sync(self._renew)
            if view is not None:
                woken |= self.notifier.publish(view)
            if not self.authority.behind:
                return woken

    def _build_if_behind(self) -> tuple[FleetView, int] | None:
        with self._build_lock:
            previous, resolver = self._latest, self.resolver
            if previous is not None and isinstance(resolver, PolicyPersonas):
                # As a write made here would (nothing: this process's own write, already
                # published).
                delta = self.store.fleet_delta(previous.changes, INCREMENTAL_CHANGES)
                if delta is not None:
                    if delta.empty:
                        return None
                    return self._apply(previous, resolver, delta)
            if previous is not None:
                # The newest audit entry first (one row): a change this process made was
                # published by its write, and re-reading the whole fleet to find that out
                # costs the loop (and the woken watchers) tens of milliseconds at 10,000.
                head = self.store.list_audit(1).items
                if head and head[0].seq <= previous.revision:
                    return None
            data = self.store.fleet()
            if self._latest is not None and data.revision <= self._latest.revision:
                return None  # this process made (and published) that write itself
            self._uncertified = None
            view = self._stamp(FleetView.build(data, self.resolver), issue=False)[0]
            return view, _changed(previous, view)

    async def follow(self) -> set[WatchKey]:
        """:meth:`refresh`, if the store holds a newer revision than the view (a write made
        through another replica: :mod:`netpersona.service.replication`); else nothing.

        Certificates the change made due are issued as after a write here: awaited when few,
        in the background when many, so the follower goes on hearing changes meanwhile."""
        built = await anyio.to_thread.run_sync(self._build_if_behind)
        if built is None:
            return set()
        view, uncertified = built
        woken = self.notifier.publish(view)
        await self._certify(uncertified)
        return woken

    async def refresh(self) -> set[WatchKey]:
        """Re-read the fleet and re-resolve effective personas; wake whoever that changed."""
        view = await anyio.to_thread.run_sync(self._build)
        return self.notifier.publish(view) | await self.renew()
