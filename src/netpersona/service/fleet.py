"""The running service's state: the store, the current :class:`FleetView`, and its watchers.

Every write goes through :meth:`Fleet.write`: the store call runs in a worker thread (SQLite
blocks, and ``synchronous=FULL`` waits for the disk) and the write is answered once it is
committed. The new view is built in a worker thread too, before the answer in a fleet of at
most :data:`INLINE_BUILD` instances, after it in a larger one (:meth:`Fleet._build_behind`,
one build at a time), and published on the event loop, which wakes the affected watchers;
admin reads wait for the view to include every write answered here (:meth:`Fleet.settled`).
A build never re-reads the fleet: the store hands over what changed since the last view
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
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import TypeVar

import anyio.to_thread
import structlog

from netpersona.errors import NotFound, UsageError
from netpersona.policy import Policy, PolicyEngine
from netpersona.service.assignment import PolicyPersonas, policy_of
from netpersona.service.certificates import CertificateAuthority
from netpersona.service.notifier import ChangeNotifier
from netpersona.service.views import FleetView, PersonaResolver, ViewKind, WatchKey
from netpersona.service.write_timing import WRITE_TIMING, WriteTiming
from netpersona.store.base import FleetDelta, PolicyVersion, Store

__all__ = ["CERTIFICATE_BATCH", "INLINE_BUILD", "INLINE_CERTIFICATES", "Fleet"]

T = TypeVar("T")

log = structlog.get_logger("netpersona.service")

# A write that changes at most this many instances waits for their certificates.
INLINE_CERTIFICATES = 64
# Certificates issued under the build lock at a time (~0.1 ms each to sign, and one store write).
CERTIFICATE_BATCH = 512
# Changes since the last view a build applies one by one; more (or one of a kind the store's
# delta does not carry) and the whole fleet is read again.
INCREMENTAL_CHANGES = 256
# Up to this many instances a write builds the view after it before it answers (a pass over
# the fleet costs ~0.1 ms an instance); above, it answers once committed and the view is built
# after (even one instance's change copies the fleet's mappings: ~10 ms at 100,000).
INLINE_BUILD = 200
# Seconds before a view build that failed (the store unreachable) is tried again.
BUILD_RETRY = 1.0
# How often an admin read looks again for a view a write's thread stamped but has not published.
SETTLE_POLL = 0.002
# Longest a VM's request waits for a view this process built to be published (published).
PUBLISH_WAIT = 1.0


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
        # The store's change sequence after the newest write acknowledged here (admin reads
        # wait for a view past it), and the task building the view after such writes.
        self._acknowledged = 0
        self._builder: asyncio.Task[None] | None = None
        # Certificates asked for before they were issued, issued together in one round.
        self._on_demand: set[str] = set()
        self._next_round: asyncio.Future[None] | None = None
        self._rounds: asyncio.Task[None] | None = None
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

    def _write_then_build(
        self, op: Callable[[], T], timing: WriteTiming
    ) -> tuple[T, int, tuple[FleetView, int] | None]:
        """(In a worker thread.) Commit ``op``; then, in a fleet of at most
        :data:`INLINE_BUILD` instances, the view after it with its certificates. (result, the
        store's change sequence after the commit, the view and how many certificates are
        still due); None for the view: it is built after the answer (:meth:`_build_behind`)."""
        timing.mark("queue")
        result = op()
        timing.mark("commit")
        built = None
        latest = self._latest
        if latest is None or len(latest.instances) <= INLINE_BUILD:
            built = self._build_issuing()  # a few milliseconds, whatever changed
        timing.mark("build")
        changes = built[0].changes if built is not None else self.store.last_change()
        return result, changes, built

    def _issue_few(self, view: FleetView, uncertified: int) -> tuple[FleetView, int]:
        """(Under the build lock, ``view`` just stamped.) ``view`` with the certificates it
        made due when they are few (at most :data:`INLINE_CERTIFICATES`), so they are
        published with it; and how many are still due."""
        if self.authority is None or uncertified == 0 or uncertified > INLINE_CERTIFICATES:
            return view, uncertified
        assert self._latest is view
        certified = self._stamp(view, issue=True)[0]
        return certified, CERTIFICATE_BATCH if self.authority.behind else 0

    async def write(self, op: Callable[[], T]) -> T:
        """Run the store write ``op``, and answer once it is committed.

        In a fleet of at most :data:`INLINE_BUILD` instances the view after the write is
        built and published before the answer, with the certificates it made due when they
        are few (:meth:`_issue_few`). In a larger one the answer follows the commit, and the
        view is built after it, in order (:meth:`_build_behind`: one instance's change costs
        a copy of the fleet's mappings, a persona, policy or context change a pass over the
        fleet, ~1 s at 100,000), and published when done. Refusals come from ``op`` itself,
        before it commits: a build only reads what was committed. Admin reads wait for the
        view to include every write acknowledged here (:meth:`settled`). The certificates of
        a change of many are issued in the background, the watched ones before the view is
        published, and any a VM asks for first on demand (:meth:`fresh_certificate`).
        """
        timing = WRITE_TIMING.get() or WriteTiming()
        timing.mark("request")
        result, changes, built = await anyio.to_thread.run_sync(self._write_then_build, op, timing)
        self._acknowledged = max(self._acknowledged, changes)
        if built is None:
            timing.deferred = True
            self._build_soon()
        else:
            await self._publish(*built)
        timing.mark("publish")
        return result

    async def _publish(self, view: FleetView, uncertified: int) -> set[WatchKey]:
        """Publish a view just built: first the certificates its watched instances need
        (when it made many due), then the view, then the rest of them in the background."""
        if uncertified > INLINE_CERTIFICATES and self.authority is not None:
            watched = self.notifier.watched(ViewKind.CERTIFICATE)
            if watched:
                certified = await anyio.to_thread.run_sync(self._certify_latest, watched)
                view = certified or view
        woken = self.notifier.publish(view)
        if uncertified and self.authority is not None:
            await self._certify(uncertified)
        return woken

    def _build_soon(self) -> None:
        if self._builder is None or self._builder.done():
            self._builder = asyncio.create_task(self._build_behind())

    async def _build_behind(self) -> None:
        """Build and publish the view until it includes every acknowledged write (one build
        at a time; writes acknowledged meanwhile share the next)."""
        while self._latest is None or self._latest.changes < self._acknowledged:
            try:
                view, uncertified = await anyio.to_thread.run_sync(self._build_issuing)
            except Exception:  # the store unreachable for a moment: the write is committed
                log.exception("building the fleet view after a write failed; retrying")
                await asyncio.sleep(BUILD_RETRY)
                continue
            await self._publish(view, uncertified)

    def _build_issuing(self) -> tuple[FleetView, int]:
        view, uncertified = self._build_counted()
        with self._build_lock:
            if self._latest is not view:  # a newer one was stamped meanwhile: it is published
                return view, uncertified
            return self._issue_few(view, uncertified)

    async def settled(self) -> FleetView:
        """The view once it includes every write acknowledged here (what an admin read
        answers from: an operator reads what they wrote)."""
        while self.view.changes < self._acknowledged:
            self._build_soon()
            assert self._builder is not None
            await asyncio.shield(self._builder)
            if self.view.changes < self._acknowledged:
                # Built by a write's thread, published when it is back on the loop.
                await asyncio.sleep(SETTLE_POLL)
        return self.view

    async def published(self, revision: int) -> None:
        """Once the view is at ``revision``, when this process has built a view at it: a
        write's view is built in its thread and published when that is back on the loop, and
        another replica may have served the write to a VM in between (it hears it within
        milliseconds). At once when no such view was built; at most :data:`PUBLISH_WAIT`."""
        deadline = time.monotonic() + PUBLISH_WAIT
        while self.view.revision < revision:
            latest = self._latest
            if latest is None or latest.revision < revision or time.monotonic() > deadline:
                return
            await asyncio.sleep(SETTLE_POLL)

    def _certify_latest(self, instance_ids: Collection[str]) -> FleetView | None:
        """(In a worker thread.) The newest view with the certificates of ``instance_ids``
        that it serves stale issued; None when none was."""
        assert self.authority is not None
        with self._build_lock:
            latest = self._latest
            assert latest is not None
            stale = [i for i in instance_ids if self.authority.stale(latest, i)]
            if not stale:
                return None
            view = self.authority.certify(latest, stale)
            self._generation += 1
            view.generation = self._generation
            self._latest = view
            return view

    async def fresh_certificate(self, instance_id: str) -> None:
        """Make the current view serve ``instance_id`` a certificate of its current answer,
        issuing it now if the view was published before it (~0.1 ms to sign). Requests that
        arrive together share one round (one store write)."""
        if self.authority is None or not self.authority.stale(self.view, instance_id):
            return
        self._on_demand.add(instance_id)
        if self._next_round is None:
            self._next_round = asyncio.get_running_loop().create_future()
        round_done = self._next_round
        if self._rounds is None or self._rounds.done():
            self._rounds = asyncio.create_task(self._certify_on_demand())
        await asyncio.shield(round_done)

    async def _certify_on_demand(self) -> None:
        while self._on_demand:
            wanted, self._on_demand = self._on_demand, set()
            done, self._next_round = self._next_round, None
            try:
                view = await anyio.to_thread.run_sync(self._certify_latest, wanted)
                if view is not None:
                    self.notifier.publish(view)
            except Exception:  # a busy disk: the old certificate is served meanwhile
                log.exception("issuing certificates on demand failed")
            finally:
                if done is not None:
                    done.set_result(None)

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
        """``use(engine)`` in a worker thread, under the lock the engine is fed under, once
        the engine has seen every write acknowledged here (:meth:`settled`)."""

        await self.settled()

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
