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

News starts a pass for the newest answers at once: the pass still reading the host's facts
and compiling for older ones is dropped, and one already changing the kernel ends first (the
next waits for it), so the kernel always ends in the newest plan and no pass holds up news.

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
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import structlog

from netpersona.agent.answers import (
    PeersAnswerParser,
    parse_certificate,
    parse_instance,
    parse_key_set,
    parse_persona_answer,
)
from netpersona.agent.client import MetadataClient, Watched
from netpersona.agent.config import AgentConfig
from netpersona.agent.control import ControlChannel
from netpersona.agent.reconcile import Inputs, Reconciler
from netpersona.agent.status import AgentRecord, StatusRecord, error_code, error_text
from netpersona.agent.view import PeerViewMerger
from netpersona.agent.watch import GOSSIP_VIEWS, VIEWS, Watcher, fetch
from netpersona.dataplane.kernel import Kernel
from netpersona.errors import MalformedAnswer, NetpersonaError, UsageError
from netpersona.records import Peer
from netpersona.system.heap import return_free_memory
from netpersona.system.sdnotify import Notifier

if TYPE_CHECKING:
    from netpersona.agent.metrics import AgentMetrics
    from netpersona.agent.metrics_export import MetricsEndpoint

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
        self.reconciler.on_report_failed = self._pass_failed
        self.compiled_view: tuple[Peer, ...] | None = None
        # The peers answer parsed once as it comes (its watcher's check), and the view merged
        # from the last one: unchanged peers stay the same objects from view to view.
        self.parse_peers = PeersAnswerParser()
        self.merge_peers = PeerViewMerger()
        self.views = {**VIEWS, "peers": replace(VIEWS["peers"], check=self.parse_peers)}
        self.log = structlog.get_logger("netpersona.agent")
        self.systemd = Notifier()
        self.metrics: AgentMetrics | None = None
        if config.metrics:
            # Only an agent asked for metrics loads prometheus_client.
            from netpersona.agent.metrics import AgentMetrics, MeteredApplier  # noqa: PLC0415

            self.metrics = AgentMetrics(self.status, self.control, kernel)
            self.status.on_outcome = self.metrics.observe_outcome
            self.reconciler.applier = MeteredApplier(self.reconciler.applier, self.metrics)
        self.metrics_endpoint: MetricsEndpoint | None = None
        self._passes: set[asyncio.Task[None]] = set()  # running (at most one not superseded)
        self._pause = False  # the last pass failed: the next waits PASS_PAUSE

    @property
    def record(self) -> AgentRecord:
        return self.status.record

    # --- the peer view
    def peer_view(self) -> tuple[Peer, ...]:
        """The view to compile with: the service's (its peers and its priority summary) merged
        with what gossip learned."""
        answer = self.latest["peers"]
        served, network = self.parse_peers(answer.body)
        members = () if network is None else network.members
        learned = self.control.learned(time.time()) if self.control.node is not None else ()
        return self.merge_peers(served, answer.served_at, learned, members)

    def seeds(self) -> tuple[Peer, ...]:
        """Whom gossip starts from: the service's seed list (the VM's own peer view from a
        service that gives none)."""
        if "peers" not in self.latest:
            return ()
        served, network = self.parse_peers(self.latest["peers"].body)
        return served if network is None else network.seeds

    def _wake_if_view_changed(self) -> None:
        """Wake the reconciler only when the view it would compile with differs."""
        if "peers" not in self.latest:
            return
        try:
            view = self.peer_view()
        except MalformedAnswer:
            return
        if self.compiled_view is None or _differs_for_compiler(view, self.compiled_view):
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
        # The service answers again: an outcome it has not taken yet goes now (no pass needed:
        # a pass here would only hold up the next change).
        self.reconciler.report_again()

    async def _control_update(self) -> None:
        """Take a new key set or own certificate; the channel starts once both are here."""
        keys, certificate = self.latest.get("keys"), self.latest.get("certificate")
        if keys is not None:
            self.control.set_keys(parse_key_set(keys.body))
        token = parse_certificate(certificate.body) if certificate is not None else None
        await self.control.set_own_certificate(token, self.seeds())

    def inputs(self) -> Inputs | None:
        """What a pass compiles from, once every view has answered."""
        if not VIEWS.keys() <= self.latest.keys():
            return None
        persona = self.latest["persona"]
        return Inputs(
            instance=parse_instance(self.latest["instance"].body),
            persona=parse_persona_answer(persona.body),
            persona_etag=persona.etag,
            peers=self.peer_view(),
        )

    async def reconcile(self) -> None:
        """One pass over the latest answers, and its report to the service."""
        await self._pass()
        await self.reconciler.reported()

    async def _pass(self) -> None:
        """One pass; its report goes on in the background (a newer answer does not wait)."""
        inputs = self.inputs()
        if inputs is None:
            return
        self.compiled_view = inputs.peers
        self.control.set_seeds(self.seeds())
        answers = self._answers()
        self.log.debug("pass started", answers=answers)
        await self.reconciler.reconcile(inputs, lambda: self._answers() != answers)

    def _answers(self) -> tuple[str | None, ...]:
        """The ETags of the answers a pass compiles from: another one is news (the same view
        said again, e.g. after a long-poll's timeout, is not)."""
        return tuple(getattr(self.latest.get(name), "etag", None) for name in VIEWS)

    # --- running
    async def fetch_all(self) -> None:
        for name, view in self.views.items():
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
            await self.write_metrics()
        return self.converged

    @property
    def converged(self) -> bool:
        """The kernel holds what the service says (after the last pass)."""
        return self.record.result in ("applied", "unchanged", "peers-updated", "removed")

    def _watcher(self, name: str) -> Watcher:
        view = self.views.get(name) or GOSSIP_VIEWS[name]
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

    # --- metrics
    async def start_metrics_endpoint(self) -> None:
        """Listen on ``--metrics-listen``; a port that cannot be had is a usage error."""
        if self.metrics is None or self.config.metrics_listen is None:
            return
        from netpersona.agent.metrics_export import MetricsEndpoint  # noqa: PLC0415

        host, port = self.config.metrics_listen
        endpoint = MetricsEndpoint(self.metrics, host, port)
        try:
            await endpoint.start()
        except OSError as exc:
            raise UsageError(f"--metrics-listen {host}:{port}: {exc.strerror}") from None
        self.metrics_endpoint = endpoint
        self.log.info("metrics endpoint listening", listen=f"{host}:{endpoint.port}")

    async def write_metrics(self) -> None:
        """Rewrite ``--metrics-textfile`` (a failure is logged: metrics never stop the agent)."""
        path = self.config.metrics_textfile
        if self.metrics is None or path is None:
            return
        from netpersona.agent.metrics_export import write_textfile  # noqa: PLC0415

        await self.metrics.refresh()
        body = self.metrics.render(with_process=False)
        try:
            await asyncio.to_thread(write_textfile, path, body)
        except OSError as exc:
            self.log.warning("metrics file not written", path=str(path), error=str(exc))

    async def _write_metrics_forever(self) -> None:
        while True:
            await self.write_metrics()
            await self.sleep(self.config.metrics_interval)

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
        if self.config.metrics_textfile is not None:
            textfile = self._write_metrics_forever()
            tasks.append(asyncio.create_task(textfile, name="metrics-textfile"))
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

    async def _guarded_pass(self) -> None:
        """One pass of the loop: a failure is said, and the next pass waits a moment."""
        try:
            await self._pass()
            if self.converged:  # systemd: the persona is in force (Type=notify)
                first = not self.systemd.is_ready
                self.systemd.ready()
                if first:  # what start-up freed (imports, first plan) back to the OS
                    return_free_memory()
        except Exception as exc:  # the agent must outlive every failure
            self._pass_failed(exc)
            self._pause = True

    def _start_pass(self) -> asyncio.Task[None]:
        """A pass for the latest answers. Passes run one at a time; one that has not begun to
        change the kernel only reads (the host's facts) and compiles, so it is dropped for the
        newer one; one that has, ends first (the kernel always ends in the newest plan)."""
        for older in self._passes:
            if older is not self.reconciler.kernel_owner:
                older.cancel()
        task = asyncio.create_task(self._guarded_pass(), name="pass")
        self._passes.add(task)
        task.add_done_callback(self._passes.discard)
        return task

    async def run(self) -> None:
        await self.start_metrics_endpoint()
        tasks = [*self._tasks(), asyncio.create_task(self.systemd.keep_alive(), name="watchdog")]
        try:
            while True:
                await self._next_wake()
                self.dirty.clear()
                if self._pause:
                    self._pause = False
                    await self.sleep(PASS_PAUSE)
                current = self._start_pass()
                # Until that pass ends, or news comes (which may supersede it).
                news = asyncio.create_task(self.dirty.wait())
                try:
                    await asyncio.wait((current, news), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    news.cancel()
        finally:
            for task in (*tasks, *self._passes):
                task.cancel()
            await asyncio.gather(*tasks, *self._passes, return_exceptions=True)
            await self.reconciler.close()
            if self.metrics_endpoint is not None:
                await self.metrics_endpoint.close()
            await self.control.close()
            await self.client.aclose()


def _differs_for_compiler(view: tuple[Peer, ...], compiled: tuple[Peer, ...]) -> bool:
    """Whether the compiler would read ``view`` differently from ``compiled``: the peers'
    persona versions aside (a peer's new version says nothing to this VM's plan unless its
    persona's name, priority, DSCP, mode, profile or labels moved too; VMs that share a persona
    hear of each of its changes through the control channel, and a pass for each would only
    hold up the next change). The views share their unchanged entries (agent/view.py), so the
    first comparison is the tuples' own, item by item by identity first, in C; only when that
    finds a difference are the entries compared without their versions."""
    if view == compiled:
        return False
    if len(view) != len(compiled):
        return True
    return any(
        new is not old and replace(new, persona_version=None) != replace(old, persona_version=None)
        for new, old in zip(view, compiled, strict=True)
    )
