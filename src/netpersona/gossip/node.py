"""The control channel's protocol core: datagrams and clock ticks in, datagrams and news out.

Sans-I/O (as h11 is): no sockets and no clock. The transport hands in each datagram with its
source address and the time, and calls :meth:`GossipNode.tick` once per gossip interval; each
call returns a :class:`Step` with the datagrams to send and what changed. Randomness comes from
a seeded SplitMix64, so a node's behaviour is a function of its inputs.

The design is the dissemination half of SWIM (Das, Gupta, Motivala 2002) as memberlist and Serf
run it, plus their push-pull anti-entropy, with three changes:

- A change is pushed at once (eager push, as Plumtree's first phase): a node that learns a new
  certificate sends it straight away to ``fanout`` peers, its successor in key order and random
  others, without waiting for its next round. Without loss this alone reaches every VM.
- Rumours are digests, not certificates (lazy push, as Plumtree's IHAVE): news of a new
  certificate is its (instance key, seq), 16 bytes, sent to ``fanout`` random peers each round
  until it has gone out ``retransmit_mult * ceil(log10(n + 1))`` times (memberlist's limit). A
  node that lacks it asks the sender (WANT) and gets the certificate once (CERTS).
- Push-pull compares range summaries (count and XOR-hash of 32 key ranges, descending into the
  ranges that differ), not whole states, so it fits in 1200-byte datagrams at any fleet size.

A certificate is self-authenticating (spec section 8): it is accepted from any sender if its
signature verifies, it has not expired and it is newer than the one held, and the node uses only
the addresses it names, never the datagram's source.

No failure detector: a VM's liveness is its certificate, which the service alone can extend.
See docs/propagation.md for the parameters and why.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

from netpersona.certs.certificate import PersonaCertificate
from netpersona.certs.verify import Rejected, Verdict, Verifier
from netpersona.gossip.antientropy import DIGEST_MAX, newer_in_range, summary_replies
from netpersona.gossip.config import IP_UDP_OVERHEAD, GossipConfig
from netpersona.gossip.limits import SourceLimiter, TokenBucket, splitmix64
from netpersona.gossip.rumors import Rumors
from netpersona.gossip.step import Datagram, Round, Step
from netpersona.gossip.store import Held, HeldCertificates, StoreSnapshot
from netpersona.gossip.targets import push_targets, random_peers
from netpersona.gossip.wants import Wants
from netpersona.gossip.wire import (
    BUCKETS,
    MAX_DATAGRAM,
    ROOT,
    Certs,
    Digest,
    Flag,
    Message,
    Summary,
    Want,
    WireError,
    decode,
    encode,
    instance_key,
    pack_certs,
    pack_wants,
)
from netpersona.records import Peer

__all__ = ["Datagram", "GossipNode", "Step"]

IPAddress = IPv4Address | IPv6Address


def _remember(recent: OrderedDict[IPAddress, None], address: IPAddress, limit: int) -> None:
    """Mark ``address`` most recent in a bounded set (the least recent falls out)."""
    recent[address] = None
    recent.move_to_end(address)
    if len(recent) > limit:
        recent.popitem(last=False)


def _same_content(a: PersonaCertificate, b: PersonaCertificate) -> bool:
    """Whether two certificates say the same about a VM (they may differ in time, seq, key)."""
    return replace(a, issued_at=0, expires_at=0, seq=0, key_id="") == replace(
        b, issued_at=0, expires_at=0, seq=0, key_id=""
    )


class GossipNode:
    """One VM's end of the control channel."""

    def __init__(
        self,
        *,
        address: IPAddress,
        verifier: Verifier,
        config: GossipConfig | None = None,
        seed: int = 0,
        now: float = 0.0,
        base: StoreSnapshot | None = None,
        instance: str | None = None,
    ) -> None:
        """``base``: certificates already held (shared, read-only); ``instance``: this VM's id
        when its own certificate is among them."""
        self.address = address
        self.verifier = verifier
        self.config = config or GossipConfig()
        # One slot more than peers may fill: this VM's own certificate always fits.
        self.store = HeldCertificates(base, max_entries=self.config.max_certs + 1)
        self.counters: Counter[str] = Counter()
        self._rng = seed & 0xFFFFFFFFFFFFFFFF
        self._seeds: list[IPAddress] = []
        self._own_key = instance_key(instance) if instance is not None else None
        self._rumors = Rumors(limit=self.config.max_rumors)
        # An ask lost on the way is asked again of the next peer that offered it: every half
        # interval, so that loss costs half a round, not a whole one.
        self._wants = Wants(limit=self.config.max_certs, retry=self.config.interval / 2)
        # Peers whose last message showed they hold our certificate (no UNKNOWN_YOU); a WANT
        # to any other peer carries our certificate, or it would not answer (see _on_want).
        self._knows_me: OrderedDict[IPAddress, None] = OrderedDict()
        # Pushes made outside receive/tick (our own certificate), sent with the next step.
        self._pending: list[Datagram] = []
        self._bandwidth = TokenBucket(self.config.bandwidth, self.config.bandwidth_burst, now)
        self._sources = SourceLimiter(
            self.config.source_rate, self.config.source_burst, self.config.max_sources
        )
        self._next_push_pull = now
        self._catching_up_until = now + self.config.push_pull_interval
        self._next_expiry: float = self.store.base.next_expiry

    # -- inputs from outside --------------------------------------------------------------

    def set_seeds(self, addresses: Iterable[IPAddress]) -> None:
        """Bootstrap peers (from the metadata service); used while few members are known."""
        # One socket, one address family: seeds of the other family cannot be reached.
        usable = (a for a in dict.fromkeys(addresses) if a.version == self.address.version)
        self._seeds = [a for a in usable if a != self.address][: self.config.max_seeds]

    def set_verifier(self, verifier: Verifier) -> None:
        """A new key set (rotation): held certificates stay until they expire or are replaced."""
        self.verifier = verifier

    def set_own_certificate(self, token: str | bytes, now: float) -> Verdict:
        """This VM's own certificate, as the service issued it; verified like any other, and
        pushed to ``fanout`` peers (collect the datagrams with :meth:`flush`)."""
        raw = token.encode() if isinstance(token, str) else bytes(token)
        verdict = self._verify(raw, now)
        if isinstance(verdict, Rejected):
            self.counters[f"reject_{verdict.reason}"] += 1
            return verdict
        cert = verdict.certificate
        self._own_key = instance_key(cert.instance)
        self._hold(cert, raw, now, rumour=True)
        # Pushed at once, a renewal too: it costs us `fanout` datagrams, and the receivers
        # pass a renewal on by anti-entropy only (_accept).
        round_ = Round()
        self._push(raw, cert, None, now, round_)
        self._pending += round_.out
        return verdict

    def flush(self) -> Step:
        """What the node has to send outside :meth:`receive` and :meth:`tick`: the push of its
        own certificate after :meth:`set_own_certificate`. Send it at once; otherwise it goes
        out with the next step."""
        out, self._pending = tuple(self._pending), []
        return Step(out)

    @property
    def own(self) -> Held | None:
        return self.store.get(self._own_key) if self._own_key is not None else None

    def peer_view(self, now: float) -> tuple[Peer, ...]:
        """Every other VM with a current certificate: what resolves ``peers`` and DSCP."""
        view = [
            held.certificate.peer()
            for held in self.store
            if held.key != self._own_key and not held.certificate.expired(now)
        ]
        return tuple(sorted(view, key=lambda p: p.instance))

    @property
    def next_expiry(self) -> float:
        """When the next held certificate expires (tick then to drop it from the view)."""
        return self._next_expiry

    # -- the protocol ---------------------------------------------------------------------

    def receive(self, data: bytes, source: IPAddress, now: float) -> Step:
        """One datagram from ``source``. Never raises: bad input is dropped and counted."""
        self.counters["rx_datagrams"] += 1
        self.counters["rx_bytes"] += len(data)
        round_ = self._round()
        if len(data) > MAX_DATAGRAM:
            self.counters["drop_oversized"] += 1
            return round_.step()
        if source == self.address:
            self.counters["drop_own_address"] += 1
            return round_.step()
        if not self._sources.allow(source, now):
            self.counters["drop_rate_limited"] += 1
            return round_.step()
        try:
            message = decode(data)
        except WireError:
            self.counters["drop_malformed"] += 1
            return round_.step()
        if message.flags & Flag.UNKNOWN_YOU:
            self._knows_me.pop(source, None)
        else:
            _remember(self._knows_me, source, self.config.max_sources)
        if isinstance(message, Certs):
            for token in message.tokens:
                self._accept(token, source, now, round_)
        elif isinstance(message, Want):
            self._on_want(message, source, now, round_)
        elif isinstance(message, Digest):
            self._on_digest(message, source, now, round_)
        else:
            self._on_summary(message, source, now, round_)
        return round_.step()

    def tick(self, now: float) -> Step:
        """One gossip round: expire, spread rumours to ``fanout`` peers, maybe push-pull."""
        round_ = self._round()
        expired = self._expire(now)
        self._spread_rumors(now, round_)
        if now >= self._next_push_pull:
            targets = self._pick_targets(1)
            if targets:
                self._emit(targets[0], Summary(ROOT, self.store.summary()), now, round_)
            # Jitter of +-25% keeps a fleet started together from synchronising its exchanges.
            jitter = 0.75 + (self._random(1 << 16) / (1 << 17))
            self._next_push_pull = now + self.config.push_pull_interval * jitter
        by_target, given_up = self._wants.due(now)
        self.counters["want_given_up"] += given_up
        self._send_all_wants(by_target, now, round_)
        return round_.step(expired)

    # -- handlers -------------------------------------------------------------------------

    def _spread_rumors(self, now: float, round_: Round) -> None:
        """Digests of the rumours sent least so far, to ``fanout`` random peers."""
        if not self._rumors:
            return
        for target in self._pick_targets(self.config.fanout):
            entries = self._rumors.batch(DIGEST_MAX)
            if not self._emit(target, Digest(entries), now, round_):
                return  # over the bandwidth cap: these rumours wait for the next round
            self._rumors.sent(entries, len(self.store), self.config.retransmit_mult)
            if not self._rumors:
                return

    def _on_digest(self, message: Digest, source: IPAddress, now: float, round_: Round) -> None:
        by_target = self._wants_from(message, source, now)
        self._send_all_wants(by_target, now, round_)
        if message.range is not None:
            ours = newer_in_range(self.store, message)
            if ours is not None:
                self._emit(source, ours, now, round_)
            if by_target:
                # The exchange found a difference: keep reconciling at gossip pace until
                # it stops finding any (a joining node catches up, bounded by bandwidth).
                self._next_push_pull = min(self._next_push_pull, now + self.config.interval)

    def _wants_from(
        self, message: Digest, source: IPAddress, now: float
    ) -> dict[IPAddress, list[int]]:
        """Record what ``source`` holds newer than we do; what to ask for now, by peer."""
        by_target: dict[IPAddress, list[int]] = {}
        for key, seq in message.entries:
            held = self.store.get(key)
            if held is not None and held.seq >= seq:
                continue
            if (held is None and key not in self._wants and self._full) or not self._wants.offered(
                key, seq, source, now
            ):
                self.counters["drop_state_full"] += 1
                continue
            target = self._wants.ask(key, now)
            if target is not None:
                by_target.setdefault(target, []).append(key)
        return by_target

    def _send_all_wants(
        self, by_target: dict[IPAddress, list[int]], now: float, round_: Round
    ) -> None:
        """WANTs for everything in ``by_target``, at most ``max_replies`` datagrams (the rest
        is asked again when due)."""
        budget = self.config.max_replies
        for target, keys in by_target.items():
            budget -= self._send_wants(keys, target, budget, now, round_)
            if budget <= 0:
                return

    def _send_wants(
        self, keys: list[int], target: IPAddress, budget: int, now: float, round_: Round
    ) -> int:
        """WANTs for ``keys`` to ``target``, at most ``budget`` datagrams; how many were sent."""
        # A peer that does not know us will not answer: show it our certificate too.
        own = self.own
        token = own.token if own is not None and target not in self._knows_me else b""
        sent = 0
        for want in pack_wants(keys, token)[:budget]:
            if not self._emit(target, want, now, round_):
                break
            sent += 1
        return sent

    def _on_want(self, message: Want, source: IPAddress, now: float, round_: Round) -> None:
        if message.token and self._sender(source, now) is None:
            # A sender we do not know yet shows its certificate (a known one's repeat of the
            # certificate we hold is not verified again).
            self._accept(message.token, source, now, round_)
        if self._sender(source, now) is None:
            # Answers go only to an address a current certificate names: a spoofed source
            # must not turn a small WANT into certificates sent to someone else.
            self.counters["drop_unauthenticated"] += 1
            return
        tokens = [held.token for key in message.keys if (held := self.store.get(key))]
        for certs in pack_certs(tokens)[: self.config.max_replies]:
            self._emit(source, certs, now, round_)

    def _on_summary(self, message: Summary, source: IPAddress, now: float, round_: Round) -> None:
        # Unauthenticated senders get one branch: a summary must not buy many replies.
        branches = self.config.summary_branches if self._sender(source, now) else 1
        start = self._random(BUCKETS)
        for reply in summary_replies(self.store, message, branches=branches, start=start):
            self._emit(source, reply, now, round_)

    def _accept(self, token: bytes, source: IPAddress, now: float, round_: Round) -> None:
        """A certificate from ``source``, which may be its owner or any other VM: only the
        certificate is checked, and only the addresses it names are used."""
        verdict = self._verify(token, now)
        if isinstance(verdict, Rejected):
            self.counters[f"reject_{verdict.reason}"] += 1
            return
        cert = verdict.certificate
        held = self.store.get(instance_key(cert.instance))
        if held is None and self._full:
            self.counters["drop_state_full"] += 1
            return
        # Spread news, not renewals: a re-issue that changes only times and seq travels by
        # anti-entropy (it has until the old certificate expires), which keeps the cost of
        # periodic re-issue off the push and rumour paths.
        renewal = held is not None and _same_content(held.certificate, cert)
        news = now - cert.issued_at <= self.config.news_window and not renewal
        self._hold(cert, token, now, rumour=news)
        round_.learned.append(cert)
        if news:
            self._push(token, cert, source, now, round_)
        if held is None and now < self._catching_up_until:
            # We have just started and still learn who is there: reconcile at the next round
            # rather than a push-pull period later, in case it is not the only VM we lack (our
            # first exchanges may have gone to peers not up yet). A settled node does not: a
            # VM that joins reaches it by push, and churn must not cost every node an exchange.
            self._next_push_pull = min(self._next_push_pull, now + self.config.interval)

    def _push(
        self,
        token: bytes,
        cert: PersonaCertificate,
        source: IPAddress | None,
        now: float,
        round_: Round,
    ) -> None:
        """Hand a certificate just learned at once to ``fanout`` peers (:func:`push_targets`).

        Pushes spend only the upper half of the burst. A burst of news (a fleet starting, a
        policy changing many VMs) would otherwise go on pushes, each VM getting each certificate
        ``fanout`` times, and starve the digests and answers that bring every VM each
        certificate once; a single change finds the bucket full.
        """
        skip = {self.address, *cert.addresses} | ({source} if source is not None else set())
        targets = push_targets(
            self.store,
            self._seeds,
            own_key=self._own_key,
            count=self.config.fanout,
            skip=skip,
            version=self.address.version,
            random=self._random,
        )
        for target in targets:
            if not self._emit(
                target, Certs((token,)), now, round_, keep=self.config.bandwidth_burst / 2
            ):
                return  # rumours and anti-entropy carry it on

    # -- helpers --------------------------------------------------------------------------

    def _verify(self, token: bytes, now: float) -> Verdict:
        verdict = self.verifier.check(token, now=now)
        if isinstance(verdict, Rejected):
            return verdict
        held = self.store.get(instance_key(verdict.certificate.instance))
        return Verifier.newer_than(verdict, held.certificate if held else None)

    def _round(self) -> Round:
        out, self._pending = self._pending, []
        return Round(out)

    def _hold(self, cert: PersonaCertificate, token: bytes, now: float, *, rumour: bool) -> None:
        key = instance_key(cert.instance)
        self.store.put(Held(key, cert, token))
        self.counters["accepted"] += 1
        self._wants.discard(key)
        self._next_expiry = min(self._next_expiry, cert.expires_at)
        if rumour:
            self._rumors.add(key, cert.seq)

    @property
    def _full(self) -> bool:
        return len(self.store) >= self.config.max_certs

    def _sender(self, source: IPAddress, now: float) -> Held | None:
        held = self.store.owner_of(source)
        return held if held is not None and not held.certificate.expired(now) else None

    def _emit(
        self, target: IPAddress, message: Message, now: float, round_: Round, keep: float = 0.0
    ) -> bool:
        """Queue ``message`` for ``target`` unless the bandwidth cap refuses it (or it would
        leave less than ``keep`` of the burst)."""
        if self.store.owner_of(target) is None:
            message = replace(message, flags=message.flags | Flag.UNKNOWN_YOU)
        payload = encode(message)
        if not self._bandwidth.take(len(payload) + IP_UDP_OVERHEAD, now, keep=keep):
            self.counters["drop_bandwidth"] += 1
            return False
        self.counters["tx_datagrams"] += 1
        self.counters["tx_bytes"] += len(payload)
        round_.out.append(Datagram(target, payload))
        return True

    def _random(self, bound: int) -> int:
        self._rng, value = splitmix64(self._rng)
        return value % bound if bound > 0 else 0

    def _pick_targets(self, count: int, skip: Collection[IPAddress] = ()) -> list[IPAddress]:
        """Up to ``count`` random peers, never this node nor one in ``skip``."""
        return random_peers(
            self.store,
            self._seeds,
            count=count,
            skip={self.address, *skip},
            version=self.address.version,
            random=self._random,
        )

    def _expire(self, now: float) -> tuple[str, ...]:
        if now < self._next_expiry:
            return ()
        gone, self._next_expiry = self.store.expire(now)
        for held in gone:
            self._rumors.discard(held.key)
        self.counters["expired"] += len(gone)
        return tuple(sorted(h.certificate.instance for h in gone))
