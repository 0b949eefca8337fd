"""The agent's Prometheus metrics: what it holds, how its passes went, what its kernel dropped
and what its control channel saw (docs/observability.md lists each one).

Two kinds of source. Events the agent lives through (the outcome of each pass, the time each
change of the kernel took) are counted as they happen, through two hooks: the status record's
``on_outcome`` and :class:`MeteredApplier`. State that something else already keeps (the
status record, the gossip node's counters, the kernel's named ``drop_*`` counters) is read when
the metrics are rendered, so there is one truth and no copy to go stale. The kernel is read in
a worker thread by :meth:`AgentMetrics.refresh` before each rendering; rendering itself runs on
the event loop, where the gossip node and the status record change.

Loaded only when ``netpersona agent`` is asked for metrics (``--metrics-listen``,
``--metrics-textfile``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from netpersona.build_info import add_build_info
from netpersona.certs.verify import RejectReason
from netpersona.compiler.incremental import PeerChange
from netpersona.compiler.plan import PeerSets, Plan
from netpersona.dataplane.apply import Applier, ApplyReport
from netpersona.dataplane.drift import drop_counters
from netpersona.dataplane.kernel import Kernel
from netpersona.dataplane.peer_sets import PeerUpdate
from netpersona.errors import NetpersonaError

if TYPE_CHECKING:
    from netpersona.agent.control import ControlChannel
    from netpersona.agent.status import AgentRecord, StatusRecord

__all__ = ["RESULTS", "AgentMetrics", "MeteredApplier"]

# The outcomes of a pass (StatusRecord.outcome), each counted from zero.
RESULTS = ("applied", "unchanged", "peers-updated", "removed", "rejected", "failed")
IN_FORCE = ("applied", "unchanged", "peers-updated")
KERNEL_CHANGED = ("applied", "peers-updated", "removed")
WATCH_STATES = ("waiting", "ok", "failing")
SERVICE_STATES = ("unknown", "reachable", "unreachable", "malformed")
GOSSIP_STATES = ("off", "waiting", "listening", "failed")
# The gossip node's counters (GossipNode.counters) with a metric of their own; any other name
# it counts is still exported, as netpersona_agent_gossip_events_total{event=...}.
GOSSIP_PLAIN = {
    "accepted": (
        "netpersona_agent_gossip_certificates_accepted",
        "Peer certificates taken (new, or newer than the one held)",
    ),
    "expired": (
        "netpersona_agent_gossip_certificates_expired",
        "Peer certificates dropped from the store because they expired",
    ),
    "send_errors": (
        "netpersona_agent_gossip_send_errors",
        "Errors the kernel reported for sent datagrams (e.g. ICMP port unreachable)",
    ),
    "want_given_up": (
        "netpersona_agent_gossip_wants_given_up",
        "Certificates asked for and never received before the node stopped asking",
    ),
}
GOSSIP_DIRECTIONS = {
    "rx_datagrams": ("datagrams", "received"),
    "tx_datagrams": ("datagrams", "sent"),
    "rx_bytes": ("bytes", "received"),
    "tx_bytes": ("bytes", "sent"),
}
# Seconds a change of the kernel takes: a peer-set update is milliseconds, a whole apply
# (nft, tc, ip, sysctl) tenths of a second, one that times out and rolls back many seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

log = structlog.get_logger("netpersona.agent")


class AgentMetrics:
    """The agent's registry: events counted as they happen, state read at rendering."""

    def __init__(
        self,
        status: StatusRecord,
        control: ControlChannel,
        kernel: Kernel,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.status = status
        self.control = control
        self.kernel = kernel
        self.clock = clock
        # Without process_*: node_exporter, which reads the textfile, has its own of those.
        self.registry = CollectorRegistry()
        add_build_info(self.registry)
        self.passes = Counter(
            "netpersona_agent_passes",
            "Reconcile passes, by outcome (applied, unchanged, peers-updated, removed, rejected,"
            " failed)",
            ["result"],
            registry=self.registry,
        )
        for result in RESULTS:
            self.passes.labels(result)
        self.kernel_changes = Histogram(
            "netpersona_agent_kernel_change_duration_seconds",
            "Time to change the kernel, by operation (apply, update_peers, remove) and outcome"
            " (ok, failed: rolled back)",
            ["operation", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        for operation in ("apply", "update_peers", "remove"):
            self.kernel_changes.labels(operation, "ok")
        self.registry.register(_StateCollector(self))
        # Scraped over HTTP: the same, and the process's own.
        self.http_registry = CollectorRegistry()
        self.http_registry.register(_Forward(self.registry))
        ProcessCollector(registry=self.http_registry)
        # What the last pass left in force, and when this agent last changed the kernel.
        self.in_force: tuple[str | None, int | None, str | None] | None = None
        self.changed_at: float | None = None
        # The kernel's drop counters at the last refresh; None when they could not be read.
        self.drops: dict[str, tuple[int, int]] | None = {}

    # --- events
    def observe_outcome(self, result: str, record: AgentRecord) -> None:
        """One pass ended with ``result`` (the status record's hook)."""
        self.passes.labels(result).inc()
        if result in IN_FORCE:
            self.in_force = (record.persona, record.version, record.digest)
        elif result == "removed":
            self.in_force = None
        if result in KERNEL_CHANGED:
            self.changed_at = self.clock()

    def observe_change(self, operation: str, outcome: str, seconds: float) -> None:
        self.kernel_changes.labels(operation, outcome).observe(seconds)

    # --- rendering
    async def refresh(self) -> None:
        """Read what only the kernel knows (its drop counters), off the event loop."""
        try:
            self.drops = await asyncio.to_thread(drop_counters, self.kernel)
        except (NetpersonaError, OSError) as exc:
            log.warning("drop counters not read", error=str(exc))
            self.drops = None

    def render(self, *, with_process: bool = True) -> bytes:
        """The text exposition format (version 0.0.4); ``with_process``: and ``process_*``."""
        return generate_latest(self.http_registry if with_process else self.registry)


class _Forward(Collector):
    """Another registry's metrics, as one collector (the HTTP registry adds process_*)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


class _StateCollector(Collector):
    """What the status record, the gossip node and the kernel hold, when rendered."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._persona()
        yield from self._watches()
        yield from self._gossip()
        yield from self._drops()

    def _persona(self) -> Iterator[Metric]:
        m = self.metrics
        record = m.status.record
        converged = GaugeMetricFamily(
            "netpersona_agent_converged",
            "1 when the kernel holds the persona the service says (the last pass applied it,"
            " found it in force or removed it, and no answer it compiles from is refused)",
        )
        converged.add_metric([], 1.0 if record.result in (*IN_FORCE, "removed") else 0.0)
        yield converged
        if m.in_force is not None:
            persona, version, digest = m.in_force
            info = GaugeMetricFamily(
                "netpersona_agent_persona_info",
                "The persona in force and its plan's digest (always 1)",
                labels=["persona", "digest"],
            )
            info.add_metric([persona or "", (digest or "")[:12]], 1.0)
            yield info
            if version is not None:
                yield GaugeMetricFamily(
                    "netpersona_agent_persona_version",
                    "The version of the persona in force",
                    value=float(version),
                )
        if m.changed_at is not None:
            yield GaugeMetricFamily(
                "netpersona_agent_last_change_timestamp_seconds",
                "When this agent last changed the kernel (applied, updated peers, removed)",
                value=m.changed_at,
            )

    def _watches(self) -> Iterator[Metric]:
        record = self.metrics.status.record
        state = GaugeMetricFamily(
            "netpersona_agent_watch_state",
            "Each watched view's state: waiting (no answer yet), ok, failing (1 for the"
            " current one)",
            labels=["view", "state"],
        )
        failures = GaugeMetricFamily(
            "netpersona_agent_watch_failures",
            "Failed requests of a watched view in a row (0 once an answer is taken)",
            labels=["view"],
        )
        answered = GaugeMetricFamily(
            "netpersona_agent_watch_last_answer_timestamp_seconds",
            "When an answer of the view was last taken",
            labels=["view"],
        )
        for name, watch in sorted(record.watches.items()):
            for s in WATCH_STATES:
                state.add_metric([name, s], 1.0 if watch.state == s else 0.0)
            failures.add_metric([name], float(watch.failures))
            if watch.answered_at is not None:
                answered.add_metric([name], watch.answered_at)
        yield from (state, failures, answered)
        yield _state_set(
            "netpersona_agent_service_state",
            "The metadata service as the agent sees it (1 for the current state)",
            SERVICE_STATES,
            record.service,
        )
        yield _state_set(
            "netpersona_agent_gossip_state",
            "The control channel: off, waiting (for a certificate and keys), listening, failed"
            " (1 for the current state)",
            GOSSIP_STATES,
            record.gossip,
        )

    def _gossip(self) -> Iterator[Metric]:
        node = self.metrics.control.node
        counts = dict(node.counters) if node is not None else {}
        peers = len(node.peer_view(self.metrics.clock())) if node is not None else 0
        yield GaugeMetricFamily(
            "netpersona_agent_gossip_peers",
            "Peers the control channel holds a current certificate of",
            value=float(peers),
        )
        for key, (name, text) in GOSSIP_PLAIN.items():
            yield CounterMetricFamily(name, text, value=float(counts.pop(key, 0)))
        traffic = {
            kind: CounterMetricFamily(
                f"netpersona_agent_gossip_{kind}",
                f"Control channel {kind} (UDP payload), by direction (received, sent)",
                labels=["direction"],
            )
            for kind in ("datagrams", "bytes")
        }
        for key, (kind, direction) in GOSSIP_DIRECTIONS.items():
            traffic[kind].add_metric([direction], float(counts.pop(key, 0)))
        yield from traffic.values()
        rejected = CounterMetricFamily(
            "netpersona_agent_gossip_certificates_rejected",
            "Peer certificates refused, by reason (bad_signature: forged or tampered; stale:"
            " replayed or older; duplicate: already held; ...)",
            labels=["reason"],
        )
        reasons = {r.value: 0 for r in RejectReason}
        reasons.update(_by_prefix(counts, "reject_"))
        for reason, n in sorted(reasons.items()):
            rejected.add_metric([reason], float(n))
        yield rejected
        dropped = CounterMetricFamily(
            "netpersona_agent_gossip_drops",
            "What the control channel dropped, by reason: datagrams received (oversized,"
            " malformed, rate_limited, own_address), requests and offers (unauthenticated,"
            " state_full), messages not sent for the bandwidth cap (bandwidth)",
            labels=["reason"],
        )
        for reason, n in sorted(_by_prefix(counts, "drop_").items()):
            dropped.add_metric([reason], float(n))
        yield dropped
        other = CounterMetricFamily(
            "netpersona_agent_gossip_events",
            "Other events the control channel counts, by name",
            labels=["event"],
        )
        for event, n in sorted(counts.items()):
            other.add_metric([event], float(n))
        yield other

    def _drops(self) -> Iterator[Metric]:
        drops = self.metrics.drops
        up = GaugeMetricFamily(
            "netpersona_agent_drop_counters_readable",
            "1 when the kernel's drop counters were read for this scrape, 0 when reading failed",
        )
        up.add_metric([], 0.0 if drops is None else 1.0)
        yield up
        packets = CounterMetricFamily(
            "netpersona_agent_nft_dropped_packets",
            "Packets the persona's nftables rules dropped, by reason (the table's named drop_*"
            " counters; they restart from 0 when the table is reloaded)",
            labels=["reason"],
        )
        octets = CounterMetricFamily(
            "netpersona_agent_nft_dropped_bytes",
            "Bytes the persona's nftables rules dropped, by reason",
            labels=["reason"],
        )
        for name, (n_packets, n_bytes) in sorted((drops or {}).items()):
            reason = name.removeprefix("drop_")
            packets.add_metric([reason], float(n_packets))
            octets.add_metric([reason], float(n_bytes))
        yield from (packets, octets)


def _state_set(name: str, text: str, states: Iterable[str], current: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, labels=["state"])
    known = list(states)
    for state in [*known, *([current] if current not in known else [])]:
        family.add_metric([state], 1.0 if state == current else 0.0)
    return family


def _by_prefix(counts: dict[str, int], prefix: str) -> dict[str, int]:
    """Take the counts named ``prefix<reason>`` out of ``counts``, by reason."""
    names = [k for k in counts if k.startswith(prefix)]
    return {k.removeprefix(prefix): counts.pop(k) for k in names}


class MeteredApplier(Applier):
    """The applier, timing each change of the kernel (in the worker thread it runs in)."""

    def __init__(self, inner: Applier, metrics: AgentMetrics) -> None:
        super().__init__(inner.kernel, inner.store, inner.clock)
        self.metrics = metrics

    @contextlib.contextmanager
    def _timed(self, operation: str) -> Iterator[None]:
        started = time.monotonic()
        outcome = "failed"
        try:
            yield
            outcome = "ok"
        finally:
            self.metrics.observe_change(operation, outcome, time.monotonic() - started)

    def apply(self, plan: Plan, persona: str) -> ApplyReport:
        with self._timed("apply"):
            return super().apply(plan, persona)

    def remove(self) -> ApplyReport:
        with self._timed("remove"):
            return super().remove()

    def update_peers(self, peers: PeerSets, change: PeerChange | None = None) -> PeerUpdate:
        with self._timed("update_peers"):
            return super().update_peers(peers, change)
