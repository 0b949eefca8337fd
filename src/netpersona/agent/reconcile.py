"""The reconciler: the service's answers -> a plan -> the applier, and what came of it.

One pass takes the latest answers the watchers took (already checked against their documented
shapes), gathers the host's facts, compiles a plan and converges the kernel to it: apply,
update the peer sets in place, remove, or nothing. A persona that fails validation is never
applied; one that fails to apply is rolled back by the applier, and the same plan is not tried
again before a capped exponential wait (:class:`~netpersona.agent.backoff.RetryGate`), so a
plan that cannot apply does not flap the VM's uplinks; a new plan is tried at once. Each
outcome goes to the status record and, once, to the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger as Log

from netpersona.agent.answers import InstanceAnswer, PersonaAnswer
from netpersona.agent.backoff import RetryGate
from netpersona.agent.client import MetadataClient
from netpersona.agent.config import AgentConfig, metadata_endpoint
from netpersona.agent.status import StatusRecord
from netpersona.agent.view import compose_facts
from netpersona.compiler.incremental import PeerChange, PlanCompiler
from netpersona.compiler.plan import Plan
from netpersona.dataplane.apply import Applier
from netpersona.dataplane.drift import detect_drift, drop_counters
from netpersona.dataplane.host_probe import gather_facts
from netpersona.dataplane.kernel import Kernel
from netpersona.dataplane.state import AppliedState, StateStore
from netpersona.errors import ApplyRolledBack, InvalidDocument, MetadataUnavailable, NetpersonaError
from netpersona.facts import HostFacts
from netpersona.model import parse_persona
from netpersona.records import Peer

__all__ = ["REPORT_LATEST", "REPORT_QUIET", "Inputs", "Reconciler"]

# A status report waits until no pass has run for REPORT_QUIET seconds, and at most
# REPORT_LATEST after it is due: a run of quick changes is reported once, when it is over,
# instead of once a change (each report reads the drop counters with nft, and the service
# writes it down), and no report competes for the CPU with the pass of the next change.
REPORT_QUIET = 0.2
REPORT_LATEST = 2.0

# (persona, version, plan digest)
Done = tuple[str | None, int | None, str | None]


@dataclass(frozen=True, slots=True)
class Inputs:
    """What one pass compiles from."""

    instance: InstanceAnswer
    persona: PersonaAnswer
    persona_etag: str | None
    peers: tuple[Peer, ...]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A pass's plan, or why there is none, and the host facts it was compiled from."""

    plan: Plan | InvalidDocument
    live: HostFacts | None  # None: the document was refused before the facts were read
    peer_change: PeerChange | None = None  # from the compiler's last plan, when incremental


class Reconciler:
    def __init__(
        self,
        config: AgentConfig,
        kernel: Kernel,
        status: StatusRecord,
        client: MetadataClient,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.kernel = kernel
        self.status = status
        self.client = client
        self.clock = clock
        self.store = StateStore(config.state_dir)
        self.applier = Applier(kernel, self.store)
        # Compiles a change of the peer view alone from the peers that changed; the change
        # of the last compile goes to the in-place update (compiler/incremental.py).
        self.compiler = PlanCompiler()
        self.endpoint = metadata_endpoint(config.metadata_url)
        self.fallbacks = tuple(metadata_endpoint(u) for u in config.metadata_fallbacks)
        self.drift_due = False
        self.retry = RetryGate()
        self.persona_etag: str | None = None  # of the answer the pass in progress is for
        # What this process last applied or updated in place, and the last outcome.
        self._done_here: Done | None = None
        self.last_result: str | None = None
        self.pending_report: dict[str, Any] | None = None
        self.reported_key: tuple[Any, ...] | None = None
        self.pending_key: tuple[Any, ...] | None = None
        self._reporting: asyncio.Task[None] | None = None
        # Told of a report that raised (it runs apart from the pass that made it).
        self.on_report_failed: Callable[[Exception], None] | None = None
        # Whether newer answers than the pass's own have come (asked before the kernel is
        # touched).
        self.superseded: Callable[[], bool] = lambda: False
        # Passes run one at a time. The pass (task) that has begun to change the kernel, which
        # must not be cancelled: None while the one running only reads and compiles.
        self._one_pass = asyncio.Lock()
        self.kernel_owner: asyncio.Task[Any] | None = None
        self._kernel_phases = 0  # how many passes have begun to change the kernel
        self._pass_ended = float("-inf")  # the loop's clock when the last pass ended
        self._report_now = asyncio.Event()
        # The digest of the applied state the store last gave (it keeps one object while the
        # files are unchanged): a plan of 100k peers takes a while to hash.
        self._state_digest: tuple[AppliedState, str] | None = None
        self.log = structlog.get_logger("netpersona.agent")

    @property
    def retry_in(self) -> float | None:
        """Seconds until a plan that failed may be tried again; None when none waits (or its
        time has come and a pass since did something else: it then waits for news)."""
        if self.retry.retry_at is None:
            return None
        left = self.retry.retry_at - self.clock()
        return left if left > 0 else None

    async def reconcile(self, inputs: Inputs, superseded: Callable[[], bool] | None = None) -> None:
        """Bring the kernel to what ``inputs`` say; never raises for outside failures.

        A pass reads the host's facts and compiles its plan while the pass before may still be
        changing the kernel (reading the facts again once that has ended, and compiling again
        if they changed); it then waits for the pass before to end. ``superseded`` (else
        :attr:`superseded`) says whether newer answers than ``inputs`` have come; a pass that
        finds it so before it touches the kernel ends there, as the pass for those answers
        follows. Until then (:attr:`kernel_owner` is not its task) it only reads, and may
        be cancelled. The outcome is reported to the service in the background
        (:meth:`reported` waits for it): a newer answer does not wait behind a status report
        of the last one.
        """
        newer = superseded or self.superseded
        answer = inputs.persona
        log = self.log.bind(vm=inputs.instance.id, persona=answer.name, version=answer.version)
        # Read and compiled while the pass before may still be changing the kernel.
        phases = self._kernel_phases
        prepared = None if answer.document is None else await self._prepare(inputs)
        async with self._one_pass:
            if prepared is not None and prepared.live is not None and self._kernel_phases != phases:
                # The kernel changed since the facts were read: read them again (the plan
                # compiled stands when they are the same).
                prepared = await self._prepare(inputs, known=prepared)
            if newer():
                # Nothing has touched the kernel yet; the next pass (already due) compiles the
                # newer answers.
                log.debug("superseded by a newer answer before applying")
                return
            self.kernel_owner = asyncio.current_task()
            try:
                self.status.record.instance = inputs.instance.id
                self.persona_etag = inputs.persona_etag
                if prepared is None:
                    await self._remove(log)
                elif isinstance(prepared.plan, InvalidDocument):
                    self._reject(answer, prepared.plan, log)
                else:
                    await self._converge(prepared.plan, answer, log, prepared.peer_change)
            finally:
                self._kernel_phases += 1
                self.kernel_owner = None
                self._pass_ended = asyncio.get_running_loop().time()
        self._report_in_background(log)

    def report_again(self) -> None:
        """Send the outcome the service has not taken yet (it was away), unless a report is
        under way; a pass is not needed for that."""
        self._report_in_background(self.log)

    def _report_in_background(self, log: Log) -> None:
        if self.pending_report is None:
            return
        if self._reporting is not None and not self._reporting.done():
            return  # the report under way sends the newest outcome when it is done
        self._reporting = asyncio.create_task(self._report_all(log), name="report")

    async def _report_all(self, log: Log) -> None:
        try:
            while self.pending_report is not None:
                await self._quiet()
                key = self.pending_key
                await self.flush_report(log)
                if self.pending_key == key and self.pending_report is not None:
                    return  # the service is unavailable: tried again after the next pass
        except Exception as exc:  # a defect, or a kernel that cannot be read: said, not lost
            if self.on_report_failed is None:
                raise
            self.on_report_failed(exc)

    async def _quiet(self) -> None:
        """Until passes have been quiet for :data:`REPORT_QUIET` (at most :data:`REPORT_LATEST`),
        or :meth:`reported` asks for the report now."""
        loop = asyncio.get_running_loop()
        latest = loop.time() + REPORT_LATEST
        while not self._report_now.is_set():
            now = loop.time()
            if self._one_pass.locked():
                wait = REPORT_QUIET
            elif now - self._pass_ended >= REPORT_QUIET:
                return
            else:
                wait = self._pass_ended + REPORT_QUIET - now
            wait = min(wait, latest - now)
            if wait <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._report_now.wait(), wait)

    async def reported(self) -> None:
        """Until the report under way (if any) is done; it goes now."""
        if self._reporting is not None and not self._reporting.done():
            self._report_now.set()
            try:
                await asyncio.gather(self._reporting, return_exceptions=True)
            finally:
                self._report_now.clear()

    async def close(self) -> None:
        if self._reporting is not None and not self._reporting.done():
            self._reporting.cancel()
            await asyncio.gather(self._reporting, return_exceptions=True)

    async def _remove(self, log: Log) -> None:
        if self.store.load() is None:
            return
        if not self._may_try(("remove",), log):
            return
        try:
            report = await asyncio.to_thread(self.applier.remove)
        except ApplyRolledBack as exc:
            self._failed(("remove",), None, exc, log)
            return
        self.retry.succeeded()
        log.info("persona removed", steps=len(report.steps))
        self._set_result(None, None, None, "removed", None)

    def _reject(self, answer: PersonaAnswer, exc: InvalidDocument, log: Log) -> None:
        """Report a persona that is not valid (as a document, or for this VM's uplinks) once
        per version, and keep the one in force."""
        record = self.status.record
        if (
            self.last_result != "rejected"
            or record.version != answer.version
            or record.persona != answer.name
        ):
            log.error(
                "persona refused: it is not valid; keeping the previous one",
                errors=[str(e) for e in exc.errors],
            )
        self._set_result(answer.name, answer.version, record.digest, "rejected", str(exc))

    async def _prepare(self, inputs: Inputs, known: Prepared | None = None) -> Prepared:
        """The plan of ``inputs`` (reads the host's facts, touches nothing), or why the persona
        is not valid (as a document, or for this VM: e.g. an MTU that IPv6 does not survive);
        ``known`` when the facts it was compiled from are still the host's."""
        assert inputs.persona.document is not None
        try:
            persona = parse_persona(dict(inputs.persona.document))
        except InvalidDocument as exc:
            return Prepared(exc, None)
        live = await asyncio.to_thread(
            gather_facts,
            self.kernel,
            metadata=self.endpoint,
            control_port=self.config.control_port,
            tiers=dict(inputs.instance.tiers),
        )
        if known is not None and known.live == live:
            return known
        facts = replace(compose_facts(live, inputs.peers), metadata_fallbacks=self.fallbacks)
        try:
            # Incremental for a change of the peer view (compiler/incremental.py). Its change
            # travels with this pass's plan: a newer pass may compile while this one applies.
            compiled = self.compiler.compile(persona, facts)
        except InvalidDocument as exc:
            return Prepared(exc, live)
        self.log.debug("plan compiled", version=inputs.persona.version)
        return Prepared(compiled.plan, live, compiled.peer_change)

    async def _converge(
        self, plan: Plan, answer: PersonaAnswer, log: Log, peer_change: PeerChange | None = None
    ) -> None:
        assert answer.name is not None
        state = self.store.load()
        drift_check, self.drift_due = self.drift_due, False
        digest = plan.digest
        key = (answer.name, digest)
        try:
            if state is not None and state.persona == answer.name:
                if self._digest_of(state) == digest:
                    await self._keep(state, plan, digest, answer, log, drift_check=drift_check)
                    return
                if state.plan.ruleset_digest == plan.ruleset_digest:
                    await self._update_peers(plan, digest, answer, log, peer_change)
                    return
            if self._may_try(key, log):
                await self._apply(plan, digest, answer, log, why="persona")
        except NetpersonaError as exc:
            self._failed(key, answer, exc, log)

    def _digest_of(self, state: AppliedState) -> str:
        if self._state_digest is None or self._state_digest[0] is not state:
            self._state_digest = (state, state.plan.digest)
        return self._state_digest[1]

    def _applied(self, digest: str) -> None:
        """Remember the digest of the state just written (the plan's, ``digest``)."""
        state = self.store.load()
        self._state_digest = (state, digest) if state is not None else None

    async def _keep(
        self,
        state: AppliedState,
        plan: Plan,
        digest: str,
        answer: PersonaAnswer,
        log: Log,
        *,
        drift_check: bool,
    ) -> None:
        """The plan in force is the one compiled: check for drift when due, repair it."""
        assert answer.name is not None
        problems = []
        if drift_check:
            problems = await asyncio.to_thread(
                detect_drift, self.kernel, state, self.store.load_originals()
            )
        if not problems:
            self._unchanged(answer.name, answer.version, digest)
            return
        log.warning("owned state changed behind the agent's back; re-applying", drift=problems)
        if self._may_try((answer.name, digest), log):
            await self._apply(plan, digest, answer, log, why="drift")

    async def _update_peers(
        self,
        plan: Plan,
        digest: str,
        answer: PersonaAnswer,
        log: Log,
        change: PeerChange | None,
    ) -> None:
        # ``change`` is used only if it starts from the sets the state holds.
        update = await asyncio.to_thread(self.applier.update_peers, plan.peer_sets, change)
        self._applied(digest)
        log.info("peer sets updated in place", added=update.added, deleted=update.deleted)
        self._set_result(answer.name, answer.version, digest, "peers-updated", None)

    async def _apply(
        self, plan: Plan, digest: str, answer: PersonaAnswer, log: Log, *, why: str
    ) -> None:
        assert answer.name is not None
        report = await asyncio.to_thread(self.applier.apply, plan, answer.name)
        self._applied(digest)
        self.retry.succeeded()
        log.info(
            "persona applied",
            why=why,
            steps=len(report.steps),
            seconds=round(report.seconds, 3),
            digest=digest[:12],
        )
        self._set_result(answer.name, answer.version, digest, "applied", None)

    # --- failures and their retries
    def _may_try(self, key: tuple[str, ...], log: Log) -> bool:
        if self.retry.allows(key, self.clock()):
            return True
        log.debug("the same plan failed a moment ago; waiting", retry_in=self.retry_in)
        return False

    def _failed(
        self, key: tuple[str, ...], answer: PersonaAnswer | None, exc: NetpersonaError, log: Log
    ) -> None:
        delay = self.retry.failed(key, self.clock())
        held = exc.report.rollback_held if isinstance(exc, ApplyRolledBack) else None
        log.error(
            "apply failed and was rolled back" if held is not None else "apply failed",
            error=str(exc),
            rollback_held=held,
            retry_in=delay,
        )
        self.status.record.retry_at = time.time() + delay
        name, version = (answer.name, answer.version) if answer else (None, None)
        digest = self.status.record.digest if answer else None
        self._set_result(name, version, digest, "failed", str(exc))

    # --- reporting
    def _unchanged(self, persona: str, version: int | None, digest: str) -> None:
        """A pass that found the kernel as it should be. Right after this agent applied that
        very plan (a second wake for the same change), the record keeps saying "applied", as
        the operator expects; otherwise (e.g. a restarted agent) it says "unchanged"."""
        kept = self.last_result if self._done_here == (persona, version, digest) else None
        # Recorded either way: the record also says which answer (ETag) it is in force for.
        self._set_result(persona, version, digest, kept or "unchanged", None)

    def _set_result(
        self,
        persona: str | None,
        version: int | None,
        digest: str | None,
        result: str,
        error: str | None,
    ) -> None:
        r = self.status.record
        r.persona, r.version, r.digest = persona, version, digest
        if result != "failed":
            r.retry_at = None
        changed_here = result in ("applied", "peers-updated") and digest is not None
        self._done_here = (persona, version, digest) if changed_here else None
        self.last_result = result
        r.persona_etag = self.persona_etag
        self.status.outcome(result, error)
        # The service hears of each outcome once: "applied" covers unchanged and peer updates,
        # "failed" covers a refused document and a rolled-back apply (the message says which).
        status = {"unchanged": "applied", "peers-updated": "applied", "rejected": "failed"}.get(
            result, result
        )
        key = (persona, version, status, error)
        if key != self.reported_key:
            self.pending_report = {
                "persona": persona,
                "version": version,
                "result": status,
                "message": error or "",
                "drops": {},
            }
            self.pending_key = key

    async def flush_report(self, log: Log) -> None:
        if self.pending_report is None:
            return
        report, key = dict(self.pending_report), self.pending_key
        with contextlib.suppress(NetpersonaError):
            counters = await asyncio.to_thread(drop_counters, self.kernel)
            report["drops"] = {
                name.removeprefix("drop_"): packets for name, (packets, _) in counters.items()
            }
        try:
            await self.client.report(report)
        except MetadataUnavailable as exc:
            log.debug("status not reported; will try again", error=str(exc))
            return
        self.reported_key = key
        if self.pending_key == key:  # else a newer outcome came while this one was sent
            self.pending_report = None
        log.debug("status reported", result=report["result"])
