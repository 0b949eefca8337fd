"""The agent loop: watch the metadata service, converge the kernel, report.

    watchers (one long-poll each: instance, network_persona, peers)  ---+
    drift timer (every drift_interval seconds)                        ---+--> dirty -> reconcile
    gossip (control channel; wakes only when the merged peer view changes) -+
    reconcile: parse -> gather facts -> compile -> apply | update peer sets | nothing -> report

The control channel (spec section 8, docs/propagation.md) runs beside the watchers: two more
long-polls bring this VM's own certificate and the service's key set, the gossip core
(:mod:`netpersona.gossip.node`) runs on UDP ``control_port``, seeded with the addresses of the
service's peer view, and what it learns is merged into that view (newest knowledge wins, see
:func:`~netpersona.agent.view.merge_peer_views`). When the service is away, gossip alone keeps
the view current: a peer changing persona or expiring changes the nftables peer sets in place.

Everything that can fail outside the VM (service down, slow, answering garbage, tokens
expiring) only delays news: the kernel keeps the last persona that applied, and a watcher
retries with capped exponential backoff and jitter. A persona that fails validation is never
applied; one that fails to apply is rolled back by the applier. Both are reported to the service
as soon as it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import httpx
import structlog

from netpersona.agent.backoff import Backoff
from netpersona.agent.client import MetadataClient, Watched
from netpersona.agent.view import (
    MalformedAnswer,
    PersonaAnswer,
    compose_facts,
    merge_peer_views,
    parse_peer_view,
    parse_persona_answer,
    uplink_tiers,
)
from netpersona.certs.keys import KeySet
from netpersona.certs.verify import Accepted, Rejected, Verifier
from netpersona.compiler import compile_plan
from netpersona.compiler.plan import Plan
from netpersona.dataplane.apply import Applier
from netpersona.dataplane.drift import detect_drift, drop_counters
from netpersona.dataplane.facts_live import gather_facts
from netpersona.dataplane.kernel import Kernel
from netpersona.dataplane.state import StateStore
from netpersona.errors import ApplyRolledBack, InvalidDocument, MetadataUnavailable, NetpersonaError
from netpersona.facts import DEFAULT_CONTROL_PORT, Endpoint, PeerInfo
from netpersona.gossip.config import GossipConfig
from netpersona.gossip.node import GossipNode, Step
from netpersona.gossip.transport import GossipTransport
from netpersona.model import parse_persona

__all__ = ["Agent", "AgentConfig", "AgentRecord"]

PATHS = {
    "instance": "/v1/instance",
    "persona": "/v1/instance/network_persona",
    "peers": "/v1/instance/peers",
}
# Watched for the control channel only: the agent converges without them.
GOSSIP_PATHS = {
    "certificate": "/v1/instance/certificate",
    "keys": "/v1/keys",
}
RECORD_FILE = "agent.json"
# How often the gossip counters are copied into agent.json (when they changed).
COUNTERS_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class AgentConfig:
    metadata_url: str
    state_dir: Path
    control_port: int = DEFAULT_CONTROL_PORT
    watch_timeout: float = 300.0
    drift_interval: float = 30.0
    backoff_cap: float = 30.0
    gossip: bool = True
    gossip_config: GossipConfig = field(default_factory=GossipConfig)


@dataclass
class AgentRecord:
    """What the agent holds and why: written to ``agent.json`` for ``netpersona status``."""

    instance: str | None = None
    persona: str | None = None
    version: int | None = None
    digest: str | None = None
    persona_etag: str | None = None  # the ETag of the persona answer this outcome is for
    result: str | None = None  # applied, unchanged, peers-updated, failed, rejected, removed
    error: str | None = None
    service: str = "unknown"  # reachable, unreachable
    service_since: float = field(default_factory=time.time)
    service_answered_at: float | None = None  # the last answer from the service (this clock)
    updated_at: float = field(default_factory=time.time)
    # The control channel: listening or not, peers learned, and its counters (rejects by
    # reason as reject_<reason>, drops as drop_<reason>, traffic as rx_/tx_).
    gossip: str = "off"  # off, waiting (for a certificate and keys), listening, failed
    gossip_peers: int = 0
    gossip_counters: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def metadata_endpoint(url: str) -> Endpoint:
    parsed = httpx.URL(url)
    try:
        address = ip_address(parsed.host)
    except ValueError:
        raise NetpersonaError(
            f"--metadata-url {url!r}: the host must be an IP address (the firewall keeps it open)"
        ) from None
    return Endpoint(address, parsed.port or (443 if parsed.scheme == "https" else 80))


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        kernel: Kernel,
        client: MetadataClient | None = None,
        *,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.kernel = kernel
        self.store = StateStore(config.state_dir)
        self.applier = Applier(kernel, self.store)
        self.client = client or MetadataClient(config.metadata_url)
        self.endpoint = metadata_endpoint(config.metadata_url)
        self.sleep = sleep
        self.latest: dict[str, Watched] = {}
        self.dirty = asyncio.Event()
        self.drift_due = False
        # (persona, version, plan digest) this process last applied or updated in place
        self._done_here: tuple[str | None, int | None, str | None] | None = None
        self.record = AgentRecord()
        self.pending_report: dict[str, Any] | None = None
        self.reported_key: tuple[Any, ...] | None = None
        self.pending_key: tuple[Any, ...] | None = None
        self.log = structlog.get_logger("netpersona.agent")
        self.node: GossipNode | None = None
        self.transport: GossipTransport | None = None
        self.verifier: Verifier | None = None
        self.own_token: str | None = None  # the certificate the node holds as its own
        self.compiled_view: tuple[PeerInfo, ...] | None = None

    # --- the service side
    def _service_state(self, reachable: bool, why: str = "") -> None:
        state = "reachable" if reachable else "unreachable"
        if state != self.record.service:
            # Logged once per change of state, not once per retry.
            if reachable:
                self.log.info("metadata service reachable", url=self.config.metadata_url)
            else:
                self.log.warning(
                    "metadata service unreachable; keeping the persona in force", error=why
                )
            self.record.service, self.record.service_since = state, time.time()
            self._save_record()

    async def fetch(self, name: str, *, wait: bool) -> Watched:
        last = self.latest.get(name)
        answer = await self.client.get(
            PATHS.get(name) or GOSSIP_PATHS[name],
            last_etag=last.etag if last else None,
            wait=self.config.watch_timeout if wait else None,
        )
        self.record.service_answered_at = time.time()
        self._service_state(True)
        return answer

    async def fetch_all(self) -> None:
        for name in PATHS:
            self.latest[name] = await self.fetch(name, wait=False)

    async def watch(self, name: str) -> None:
        backoff = Backoff(cap=self.config.backoff_cap)
        while True:
            try:
                # Ask without waiting the first time (a long-poll without an ETag answers only
                # at the next change) and after a failure (the agent wants to know at once that
                # the service is back, and whether anything changed while it was away).
                answer = await self.fetch(name, wait=backoff.attempt == 0 and name in self.latest)
            except MetadataUnavailable as exc:
                if name in PATHS:
                    # The control channel's paths say nothing the other watchers do not about
                    # the service's health (and an older service has no such paths).
                    self._service_state(False, str(exc))
                await self.sleep(backoff.next_delay())
                continue
            backoff.reset()
            last = self.latest.get(name)
            changed = last is None or answer.etag != last.etag or answer.body != last.body
            if name in GOSSIP_PATHS:
                if changed:
                    self.latest[name] = answer
                    await self._gossip_update()
                continue
            if name == "peers" and not changed:
                # The same view, said later: it may now be newer than what gossip learned.
                self.latest[name] = answer
                self._wake_if_view_changed()
            elif changed:
                self.latest[name] = answer
                self.dirty.set()
            if self.pending_report is not None:
                self.dirty.set()

    async def drift_timer(self) -> None:
        while True:
            await self.sleep(self.config.drift_interval)
            self.drift_due = True
            self.dirty.set()

    # --- the kernel side
    async def reconcile(self) -> None:
        """Bring the kernel to what the latest answers say; never raises for outside failures."""
        if not {"instance", "persona", "peers"} <= set(self.latest):
            return
        instance = self.latest["instance"].body
        self.record.instance = str(instance.get("id"))
        try:
            answer = parse_persona_answer(self.latest["persona"].body)
            served = parse_peer_view(self.latest["peers"].body)
            peers = self.peer_view(served)
        except MalformedAnswer as exc:
            self.log.warning(
                "ignoring a malformed answer; keeping the persona in force", error=str(exc)
            )
            return
        self.compiled_view = peers
        if self.node is not None:
            self.node.set_seeds(a for peer in served for a in peer.addresses)
        log = self.log.bind(vm=self.record.instance, persona=answer.name, version=answer.version)
        if answer.document is None:
            await self._remove(log)
        else:
            await self._converge(answer, peers, instance, log)
        await self._flush_report(log)

    async def _remove(self, log: Any) -> None:
        if self.store.load() is None:
            return
        try:
            report = await asyncio.to_thread(self.applier.remove)
        except ApplyRolledBack as exc:
            self._set_result(None, None, None, "failed", str(exc))
            log.error("remove failed and was rolled back", error=str(exc))
            return
        log.info("persona removed", steps=len(report.steps))
        self._set_result(None, None, None, "removed", None)

    async def _converge(
        self, answer: PersonaAnswer, peers: Any, instance: dict[str, Any], log: Any
    ) -> None:
        assert answer.document is not None
        try:
            persona = parse_persona(dict(answer.document))
        except InvalidDocument as exc:
            if (
                self.record.result != "rejected"
                or self.record.version != answer.version
                or self.record.persona != answer.name
            ):
                log.error(
                    "persona refused: it is not valid; keeping the previous one",
                    errors=[str(e) for e in exc.errors],
                )
            self._set_result(answer.name, answer.version, self.record.digest, "rejected", str(exc))
            return
        live = await asyncio.to_thread(
            gather_facts,
            self.kernel,
            metadata=self.endpoint,
            control_port=self.config.control_port,
            tiers=uplink_tiers(instance),
        )
        plan = compile_plan(persona, compose_facts(live, peers))
        state = self.store.load()
        drift_check, self.drift_due = self.drift_due, False
        try:
            if (
                state is not None
                and state.persona == answer.name
                and state.plan.digest == plan.digest
            ):
                if not drift_check:
                    self._unchanged(answer.name, answer.version, plan.digest)
                    return
                problems = await asyncio.to_thread(
                    detect_drift, self.kernel, state, self.store.load_originals()
                )
                if not problems:
                    self._unchanged(answer.name, answer.version, plan.digest)
                    return
                log.warning(
                    "owned state changed behind the agent's back; re-applying", drift=problems
                )
                await self._apply(plan, answer, log, why="drift")
            elif (
                state is not None
                and state.persona == answer.name
                and state.plan.ruleset_digest == plan.ruleset_digest
            ):
                update = await asyncio.to_thread(self.applier.update_peers, plan.peer_sets)
                log.info("peer sets updated in place", added=update.added, deleted=update.deleted)
                self._set_result(answer.name, answer.version, plan.digest, "peers-updated", None)
            else:
                await self._apply(plan, answer, log, why="persona")
        except ApplyRolledBack as exc:
            log.error(
                "apply failed and was rolled back",
                error=str(exc),
                rollback_held=exc.report.rollback_held,
            )
            self._set_result(answer.name, answer.version, self.record.digest, "failed", str(exc))
        except NetpersonaError as exc:
            log.error("apply failed", error=str(exc))
            self._set_result(answer.name, answer.version, self.record.digest, "failed", str(exc))

    async def _apply(self, plan: Plan, answer: PersonaAnswer, log: Any, *, why: str) -> None:
        assert answer.name is not None
        report = await asyncio.to_thread(self.applier.apply, plan, answer.name)
        log.info(
            "persona applied",
            why=why,
            steps=len(report.steps),
            seconds=round(report.seconds, 3),
            digest=plan.digest[:12],
        )
        self._set_result(answer.name, answer.version, plan.digest, "applied", None)

    # --- the control channel
    def peer_view(self, served: tuple[PeerInfo, ...] | None = None) -> tuple[PeerInfo, ...]:
        """The view to compile with: the service's merged with what gossip learned."""
        answer = self.latest["peers"]
        if served is None:
            served = parse_peer_view(answer.body)
        if self.node is None:
            return served
        now = time.time()
        own = self.node.own
        learned = [
            held.certificate
            for held in self.node.store
            if (own is None or held.key != own.key) and not held.certificate.expired(now)
        ]
        return merge_peer_views(served, answer.served_at, learned)

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

    def _on_gossip(self, step: Step) -> None:
        if self.node is not None:
            self.record.gossip_peers = len(self.node.peer_view(time.time()))
        self._wake_if_view_changed()

    async def _gossip_update(self) -> None:
        """Take a new key set or own certificate; start the channel once both are here."""
        now = time.time()
        keys = self.latest.get("keys")
        if keys is not None:
            try:
                verifier = Verifier(KeySet.from_jwks(keys.body))
            except InvalidDocument as exc:
                self.log.warning("ignoring a malformed key set", error=str(exc))
            else:
                self.verifier = verifier
                if self.node is not None:
                    self.node.set_verifier(verifier)
        certificate = self.latest.get("certificate")
        token = certificate.body.get("certificate") if certificate is not None else None
        if self.verifier is None or not isinstance(token, str) or token == self.own_token:
            return
        if self.node is None:
            checked = self.verifier.check(token, now=now)
            if isinstance(checked, Rejected):
                self.log.warning(
                    "own certificate refused", reason=checked.reason.value, detail=checked.detail
                )
                return
            if not await self._start_gossip(_node_address(checked), now):
                return
        assert self.transport is not None
        verdict = self.transport.set_own_certificate(token)
        if isinstance(verdict, Rejected):
            self.log.warning(
                "own certificate refused", reason=verdict.reason.value, detail=verdict.detail
            )
            return
        self.own_token = token
        self.log.info(
            "own certificate in force",
            seq=verdict.certificate.seq,
            persona=verdict.certificate.persona,
            expires_at=verdict.certificate.expires_at,
        )

    async def _start_gossip(self, address: IPv4Address | IPv6Address, now: float) -> bool:
        assert self.verifier is not None
        node = GossipNode(
            address=address,
            verifier=self.verifier,
            config=self.config.gossip_config,
            seed=secrets.randbits(64),
            now=now,
        )
        if "peers" in self.latest:
            with contextlib.suppress(MalformedAnswer):
                served = parse_peer_view(self.latest["peers"].body)
                node.set_seeds(a for peer in served for a in peer.addresses)
        transport = GossipTransport(
            node,
            port=self.config.control_port,
            host="::" if address.version == 6 else "0.0.0.0",  # noqa: S104 (the VM's channel)
            on_change=self._on_gossip,
        )
        try:
            await transport.start()
        except OSError as exc:
            self.record.gossip = "failed"
            self.log.error(
                "control channel failed to start", port=self.config.control_port, error=str(exc)
            )
            self._save_record()
            return False
        self.node, self.transport = node, transport
        self.record.gossip = "listening"
        self._save_record()
        self.log.info(
            "control channel listening", port=self.config.control_port, address=str(address)
        )
        return True

    async def gossip_counters(self) -> None:
        """Copy the channel's counters into agent.json (for ``netpersona status``)."""
        while True:
            await self.sleep(COUNTERS_INTERVAL)
            if self.node is None:
                continue
            counters = dict(sorted(self.node.counters.items()))
            peers = len(self.node.peer_view(time.time()))
            if counters != self.record.gossip_counters or peers != self.record.gossip_peers:
                self.record.gossip_counters, self.record.gossip_peers = counters, peers
                self._save_record()

    # --- reporting
    def _unchanged(self, persona: str, version: int | None, digest: str) -> None:
        """A pass that found the kernel as it should be. Right after this agent applied that
        very plan (a second wake for the same change), the record keeps saying "applied", as
        the operator expects; otherwise (e.g. a restarted agent) it says "unchanged"."""
        kept = self.record.result if self._done_here == (persona, version, digest) else None
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
        r = self.record
        r.persona, r.version, r.digest, r.result, r.error = persona, version, digest, result, error
        changed_here = result in ("applied", "peers-updated") and digest is not None
        self._done_here = (persona, version, digest) if changed_here else None
        answer = self.latest.get("persona")
        r.persona_etag = answer.etag if answer is not None else None
        r.updated_at = time.time()
        self._save_record()
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

    async def _flush_report(self, log: Any) -> None:
        if self.pending_report is None:
            return
        report = dict(self.pending_report)
        with contextlib.suppress(NetpersonaError):
            counters = await asyncio.to_thread(drop_counters, self.kernel)
            report["drops"] = {
                name.removeprefix("drop_"): packets for name, (packets, _) in counters.items()
            }
        try:
            await self.client.report(report)
        except MetadataUnavailable as exc:
            self._service_state(False, str(exc))
            return
        self.reported_key = self.pending_key
        self.pending_report = None
        log.debug("status reported", result=report["result"])

    def _save_record(self) -> None:
        path = self.config.state_dir / RECORD_FILE
        with contextlib.suppress(OSError):
            self.config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.record.to_json(), indent=1, sort_keys=True))
            os.replace(tmp, path)

    # --- running
    async def run_once(self) -> bool:
        """One pass: fetch, converge, report. True when the kernel holds the service's persona."""
        try:
            await self.fetch_all()
        except MetadataUnavailable as exc:
            self._service_state(False, str(exc))
            return False
        await self.reconcile()
        return self.record.result in ("applied", "unchanged", "peers-updated", "removed")

    async def run(self) -> None:
        backoff = Backoff(cap=self.config.backoff_cap)
        while True:
            try:
                await self.fetch_all()
                break
            except MetadataUnavailable as exc:
                self._service_state(False, str(exc))
                await self.sleep(backoff.next_delay())
        self.dirty.set()
        tasks = [asyncio.create_task(self.watch(name), name=f"watch-{name}") for name in PATHS]
        tasks.append(asyncio.create_task(self.drift_timer(), name="drift"))
        if self.config.gossip:
            self.record.gossip = "waiting"
            names = list(GOSSIP_PATHS)
            tasks += [asyncio.create_task(self.watch(n), name=f"watch-{n}") for n in names]
            tasks.append(asyncio.create_task(self.gossip_counters(), name="gossip-counters"))
        try:
            while True:
                await self.dirty.wait()
                self.dirty.clear()
                await self.reconcile()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.transport is not None:
                await self.transport.close()
            await self.client.aclose()


def _node_address(verdict: Accepted) -> IPv4Address | IPv6Address:
    """The address this VM gossips from: its certificate's first IPv4 one, else its first."""
    addresses = verdict.certificate.addresses
    return next((a for a in addresses if a.version == 4), addresses[0])
