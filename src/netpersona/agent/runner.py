"""The agent loop: watch the metadata service, converge the kernel, report.

    watchers (one per view: instance, network_persona, peers)  ---------+
    drift timer (every drift_interval seconds)                        ---+--> dirty -> reconcile
    control channel (wakes only when the merged peer view changes)    ---+
    retry timer (a plan that failed to apply, when its wait is over)  ---+

The parts: :mod:`~netpersona.agent.watch` (one loop per view; an answer is taken only when it
has its documented shape), :mod:`~netpersona.agent.reconcile` (answers -> plan -> applier, and
the spacing of retries of a plan that failed), :mod:`~netpersona.agent.control` (the gossip
node and its transport) and :mod:`~netpersona.agent.status` (``agent.json``). This module wires
them together.

Everything that can fail outside the VM (service down, slow, answering garbage, tokens
expiring) only delays news: the kernel keeps the last persona that applied, and a watcher
retries with capped exponential backoff and jitter. No failure ends a loop: each one is
recorded in ``agent.json``, which ``netpersona status`` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from netpersona.agent.answers import (
    parse_certificate,
    parse_instance,
    parse_key_set,
    parse_peer_view,
    parse_persona_answer,
)
from netpersona.agent.client import MetadataClient, Watched
from netpersona.agent.config import AgentConfig
from netpersona.agent.control import ControlChannel
from netpersona.agent.reconcile import Inputs, Reconciler
from netpersona.agent.status import AgentRecord, StatusRecord, error_code, error_text
from netpersona.agent.view import merge_peer_views
from netpersona.agent.watch import GOSSIP_VIEWS, VIEWS, Watcher, fetch
from netpersona.dataplane.kernel import Kernel
from netpersona.errors import MalformedAnswer, NetpersonaError
from netpersona.records import Peer
from netpersona.system.sdnotify import Notifier

__all__ = ["Agent", "AgentConfig", "AgentRecord"]

# How often the gossip counters are copied into agent.json (when they changed).
COUNTERS_INTERVAL = 5.0
# After a pass that failed for a reason of its own (a defect), the next waits this long.
PASS_PAUSE = 1.0

Sleep = Callable[[float], Awaitable[Any]]


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        kernel: Kernel,
        client: MetadataClient | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self.kernel = kernel
        self.client = client or MetadataClient(config.metadata_urls)
        self.sleep = sleep
        self.status = StatusRecord(config.state_dir, url=",".join(config.metadata_urls))
        self.latest: dict[str, Watched] = {}
        self.dirty = asyncio.Event()
        self.control = ControlChannel(config, self.status, self._wake_if_view_changed)
        self.reconciler = Reconciler(config, kernel, self.status, self.client)
        self.compiled_view: tuple[Peer, ...] | None = None
        self.log = structlog.get_logger("netpersona.agent")
        self.systemd = Notifier()

    @property
    def record(self) -> AgentRecord:
        return self.status.record

    # --- the peer view
    def peer_view(self, served: tuple[Peer, ...] | None = None) -> tuple[Peer, ...]:
        """The view to compile with: the service's merged with what gossip learned."""
        answer = self.latest["peers"]
        if served is None:
            served = parse_peer_view(answer.body)
        if self.control.node is None:
            return served
        return merge_peer_views(served, answer.served_at, self.control.learned(time.time()))

    def _wake_if_view_changed(self) -> None:
        """Wake the reconciler only when the view it would compile with differs."""
        if "peers" not in self.latest:
            return
        try:
            view = self.peer_view()
        except MalformedAnswer:
            return
        if view != self.compiled_view:
            self.dirty.set()

    # --- answers
    async def _on_answer(self, name: str, answer: Watched, changed: bool) -> None:
        if name in GOSSIP_VIEWS:
            if changed:
                self.latest[name] = answer
                await self._control_update()
            return
        if name == "peers" and not changed:
            # The same view, said later: it may now be newer than what gossip learned.
            self.latest[name] = answer
            self._wake_if_view_changed()
        elif changed:
            self.latest[name] = answer
            self.dirty.set()
        if self.reconciler.pending_report is not None:
            self.dirty.set()

    async def _control_update(self) -> None:
        """Take a new key set or own certificate; the channel starts once both are here."""
        keys, certificate = self.latest.get("keys"), self.latest.get("certificate")
        if keys is not None:
            self.control.set_keys(parse_key_set(keys.body))
        token = parse_certificate(certificate.body) if certificate is not None else None
        seeds = parse_peer_view(self.latest["peers"].body) if "peers" in self.latest else ()
        await self.control.set_own_certificate(token, seeds)

    def inputs(self) -> Inputs | None:
        """What a pass compiles from, once every view has answered."""
        if not VIEWS.keys() <= self.latest.keys():
            return None
        persona = self.latest["persona"]
        served = parse_peer_view(self.latest["peers"].body)
        return Inputs(
            instance=parse_instance(self.latest["instance"].body),
            persona=parse_persona_answer(persona.body),
            persona_etag=persona.etag,
            peers=self.peer_view(served),
        )

    async def reconcile(self) -> None:
        """One pass over the latest answers."""
        inputs = self.inputs()
        if inputs is None:
            return
        self.compiled_view = inputs.peers
        self.control.set_seeds(parse_peer_view(self.latest["peers"].body))
        await self.reconciler.reconcile(inputs)

    # --- running
    async def fetch_all(self) -> None:
        for name, view in VIEWS.items():
            try:
                self.latest[name] = await fetch(self.client, view, self.latest.get(name), None)
            except NetpersonaError as exc:
                self.status.watch_failed(name, exc)
                raise
            self.status.watch_ok(name)

    async def run_once(self) -> bool:
        """One pass: fetch, converge, report. True when the kernel holds the service's persona."""
        try:
            await self.fetch_all()
            await self.reconcile()
        except NetpersonaError as exc:
            self.log.error("pass failed; keeping the persona in force", error=str(exc))
            return False
        finally:
            await self.client.aclose()
        return self.converged

    @property
    def converged(self) -> bool:
        """The kernel holds what the service says (after the last pass)."""
        return self.record.result in ("applied", "unchanged", "peers-updated", "removed")

    def _watcher(self, name: str) -> Watcher:
        view = VIEWS.get(name) or GOSSIP_VIEWS[name]
        return Watcher(
            view,
            self.client,
            self.status,
            self._on_answer,
            wait=self.config.watch_timeout,
            backoff_cap=self.config.backoff_cap,
            last=self.latest.get(name),
            sleep=self.sleep,
        )

    async def _forever(self, what: str, interval: float, body: Callable[[], None]) -> None:
        while True:
            await self.sleep(interval)
            try:
                body()
            except Exception as exc:  # a timer must outlive every failure
                self.log.error("timer failed", timer=what, error=error_text(exc))

    def _drift_due(self) -> None:
        self.reconciler.drift_due = True
        self.dirty.set()

    def _tasks(self) -> list[asyncio.Task[None]]:
        names = list(VIEWS)
        if self.config.gossip:
            self.record.gossip = "waiting"
            names += list(GOSSIP_VIEWS)
        tasks = [asyncio.create_task(self._watcher(n).run(), name=f"watch-{n}") for n in names]
        drift = self._forever("drift", self.config.drift_interval, self._drift_due)
        tasks.append(asyncio.create_task(drift, name="drift"))
        if self.config.gossip:
            counters = self._forever("counters", COUNTERS_INTERVAL, self.control.copy_counters)
            tasks.append(asyncio.create_task(counters, name="gossip-counters"))
        return tasks

    def _pass_failed(self, exc: Exception) -> None:
        """A pass that raised (the kernel could not be read, a defect): said, not fatal."""
        self.log.error(
            "pass failed; keeping the persona in force",
            error_type=type(exc).__name__,
            error=error_text(exc),
        )
        self.status.outcome("failed", f"{error_code(exc)}: {error_text(exc)}"[:500])

    async def _next_wake(self) -> None:
        """Until something is news, or a plan that failed may be tried again."""
        retry_in = self.reconciler.retry_in
        if retry_in is None:
            await self.dirty.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.dirty.wait(), timeout=retry_in + 0.01)

    async def run(self) -> None:
        tasks = [*self._tasks(), asyncio.create_task(self.systemd.keep_alive(), name="watchdog")]
        try:
            while True:
                await self._next_wake()
                self.dirty.clear()
                try:
                    await self.reconcile()
                    if self.converged:  # systemd: the persona is in force (Type=notify)
                        self.systemd.ready()
                except Exception as exc:  # the agent must outlive every failure
                    self._pass_failed(exc)
                    await self.sleep(PASS_PAUSE)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.control.close()
            await self.client.aclose()
