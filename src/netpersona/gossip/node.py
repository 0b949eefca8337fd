"""The control channel's protocol core: datagrams and clock ticks in, datagrams and news out.

Sans-I/O (as h11 is): no sockets and no clock. The transport hands in each datagram with its
source address and the time, and calls :meth:`GossipNode.tick` once per gossip interval; each
call returns a :class:`Step` with the datagrams to send and what changed. Randomness comes from
a seeded SplitMix64, so a node's behaviour is a function of its inputs.

The design is the dissemination half of SWIM (Das, Gupta, Motivala 2002) as memberlist and Serf
run it, plus their push-pull anti-entropy, with two changes that cut bandwidth:

- Rumours are digests, not certificates (lazy push, as Plumtree's IHAVE): news of a new
  certificate is its (instance key, seq), 16 bytes, sent to ``fanout`` random peers each round
  until it has gone out ``retransmit_mult * ceil(log10(n + 1))`` times (memberlist's limit). A
  node that lacks it asks the sender (WANT) and gets the certificate once (CERTS).
- Push-pull compares range summaries (count and XOR-hash of 32 key ranges, descending into the
  ranges that differ), not whole states, so it fits in 1200-byte datagrams at any fleet size.

Spec section 8 accepts a certificate only from one of its own addresses, and by default
(``relay=False``) the core holds to that: rumours and summaries are hints that anyone may pass
on, and in this mode each digest entry carries its owner's address, but a certificate is asked
for (WANT) and taken only from its owner, who answers from a queue as its bandwidth cap allows.
``relay=True`` is the opt-in reading in which a certified VM may hand over certificates it holds
(docs/propagation.md weighs the two).

No failure detector: a VM's liveness is its certificate, which the service alone can extend.
See docs/propagation.md for the parameters and why.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address

from netpersona.certs.certificate import PersonaCertificate
from netpersona.certs.verify import Accepted, Rejected, Verdict, Verifier
from netpersona.gossip.config import IP_UDP_OVERHEAD, GossipConfig
from netpersona.gossip.limits import SourceLimiter, TokenBucket, splitmix64
from netpersona.gossip.store import Held, HeldCertificates, StoreSnapshot
from netpersona.gossip.wire import (
    ADDRESSED_ENTRY_SIZE,
    BUCKETS,
    ENTRY_SIZE,
    MAX_DATAGRAM,
    MAX_PREFIX_LEN,
    ROOT,
    Certs,
    Digest,
    Flag,
    KeyRange,
    Message,
    Summary,
    Want,
    WireError,
    decode,
    encode,
    instance_key,
)
from netpersona.records import Peer

__all__ = ["Datagram", "GossipNode", "Step"]

IPAddress = IPv4Address | IPv6Address

# A digest answers a summary bucket once both sides hold at most this many entries in it
# (37 when entries carry their owner's address, so that a full bucket fits one datagram).
DIGEST_CAP = 64
_DIGEST_HEAD = 16  # header, range and count
# Peers remembered per wanted certificate, and how often it is asked for before giving up
# (anti-entropy still brings it later).
_MAX_OFFERS = 4
_MAX_TRIES = 16


@dataclass(frozen=True, slots=True)
class Datagram:
    address: IPAddress
    payload: bytes


@dataclass(frozen=True, slots=True)
class Step:
    """What one input did: datagrams to send, certificates learned, instances that expired."""

    out: tuple[Datagram, ...] = ()
    learned: tuple[PersonaCertificate, ...] = ()
    expired: tuple[str, ...] = ()


@dataclass(slots=True)
class _Rumor:
    seq: int
    transmits: int = 0


@dataclass(slots=True)
class _Want:
    """A certificate wanted: where to ask (the peers that offered it, so that a lost answer
    is asked again elsewhere, or its owner alone), when to ask next, how often it was asked."""

    seq: int
    due: float
    offers: list[IPAddress]
    tries: int = 0


@dataclass(slots=True)
class _Round:
    out: list[Datagram] = field(default_factory=list)
    learned: list[PersonaCertificate] = field(default_factory=list)

    def step(self, expired: tuple[str, ...] = ()) -> Step:
        return Step(tuple(self.out), tuple(self.learned), expired)


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
        self._rumors: dict[int, _Rumor] = {}
        self._wants: dict[int, _Want] = {}
        self._introduced: OrderedDict[IPAddress, float] = OrderedDict()
        # With relays: peers whose last message showed they hold our certificate (no
        # UNKNOWN_YOU); a WANT to any other relay carries our certificate, or it would not answer.
        self._knows_me: OrderedDict[IPAddress, None] = OrderedDict()
        # Peers owed our certificate, paid first in the next rounds at the cap, oldest first:
        # those that asked while the cap was spent, and, when it changes without relays,
        # every VM we know (the owner hands its news to each itself).
        self._owed: OrderedDict[IPAddress, None] = OrderedDict()
        entry_size = ENTRY_SIZE if self.config.relay else ADDRESSED_ENTRY_SIZE
        self._digest_max = (MAX_DATAGRAM - _DIGEST_HEAD) // entry_size
        self._digest_cap = min(DIGEST_CAP, self._digest_max)
        self._bandwidth = TokenBucket(self.config.bandwidth, self.config.bandwidth_burst, now)
        self._sources = SourceLimiter(
            self.config.source_rate, self.config.source_burst, self.config.max_sources
        )
        self._next_push_pull = now
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
        """This VM's own certificate, as the service issued it; verified like any other."""
        raw = token.encode() if isinstance(token, str) else bytes(token)
        verdict = self.verifier.check(raw, now=now)
        if isinstance(verdict, Accepted):
            key = instance_key(verdict.certificate.instance)
            held = self.store.get(key)
            verdict = self.verifier.admit(
                verdict,
                source=self.address,
                now=now,
                held=held.certificate if held else None,
            )
        if isinstance(verdict, Rejected):
            self.counters[f"reject_{verdict.reason}"] += 1
            return verdict
        cert = verdict.certificate
        self._own_key = instance_key(cert.instance)
        before = self.own
        self._hold(cert, raw, now, rumour=True)
        if (
            not self.config.relay
            and before is not None
            and not _same_content(before.certificate, cert)
        ):
            # Only we may hand this over: owe it to every VM we know (a renewal, which changes
            # nothing they act on, reaches them by anti-entropy instead).
            for held in self.store:
                address = self._address_of(held.certificate) if held.key != self._own_key else None
                if address is not None and address != self.address:
                    self._owe(address)
        return verdict

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
        round_ = _Round()
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
            # Before anything else, so that what follows (relayed certificates) is accepted.
            self._knows_me.pop(source, None)
            self._introduce(source, now, round_)
        elif self.config.relay:
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
        round_ = _Round()
        expired = self._expire(now)
        self._pay_owed(now, round_)
        if self._rumors:
            limit = self.config.retransmit_mult * len(str(len(self.store) + 1))
            for target in self._pick_targets(self.config.fanout):
                ranked = sorted(self._rumors.items(), key=lambda kv: kv[1].transmits)
                chosen = ranked[: self._digest_max]
                digest = self._digest([(k, r.seq) for k, r in chosen])
                if not self._emit(target, digest, now, round_):
                    break  # over the bandwidth cap: these rumours wait for the next round
                for key, rumor in chosen:
                    rumor.transmits += 1
                    if rumor.transmits >= limit:
                        del self._rumors[key]
                if not self._rumors:
                    break
        if now >= self._next_push_pull:
            targets = self._pick_targets(1)
            if targets:
                self._emit(targets[0], Summary(ROOT, self.store.summary()), now, round_)
            # Jitter of +-25% keeps a fleet started together from synchronising its exchanges.
            jitter = 0.75 + (self._random(1 << 16) / (1 << 17))
            self._next_push_pull = now + self.config.push_pull_interval * jitter
        self._retry_wants(now, round_)
        return round_.step(expired)

    # -- handlers -------------------------------------------------------------------------

    def _retry_wants(self, now: float, round_: _Round) -> None:
        """Ask for what is due: again, of the next peer that offered it (loss), or of the
        owner that has not delivered it yet."""
        by_target: dict[IPAddress, list[int]] = {}
        for key, want in list(self._wants.items()):
            if now < want.due:
                continue
            if want.tries >= _MAX_TRIES:
                del self._wants[key]
                self.counters["want_given_up"] += 1
                continue
            by_target.setdefault(self._asked(want, now), []).append(key)
        budget = self.config.max_replies
        for target, keys in by_target.items():
            budget -= self._send_wants(keys, target, budget, now, round_)
            if budget <= 0:
                break

    def _asked(self, want: _Want, now: float) -> IPAddress:
        """Count one ask of ``want``, schedule the next, and say whom to ask.

        With relays: the offerers in turn, every half interval. Owners only: backing off from
        one interval to half a push-pull period (or 1/16 of the owner's time, in large fleets),
        since a busy owner queues the askers it cannot serve yet (an asker that asks again keeps
        its place), and asking more would only cost it; the first ask for news of a known VM
        waits longer still (:meth:`_on_digest`)."""
        target = want.offers[want.tries % len(want.offers)]
        want.tries += 1
        if self.config.relay:
            want.due = now + self.config.interval / 2
        else:
            # 16 asks must outlast the owner's queue, or a VM whose push was lost gives up
            # while it waits its turn (and waits a whole owner's time again for the next news).
            ceiling = max(self.config.push_pull_interval / 2, self._owner_wait() / _MAX_TRIES)
            backoff = self.config.interval * (1 << min(want.tries - 1, 16))
            want.due = now + min(backoff, ceiling)
        return target

    def _owner_wait(self) -> float:
        """How long an owner may take to hand a change to every VM: one certificate each, at
        the cap (this node's own; a fleet runs one configuration), or a push-pull period."""
        own = self.own
        per_vm = (len(own.token) if own is not None else 430) + 6 + IP_UDP_OVERHEAD
        return max(self.config.push_pull_interval, len(self.store) * per_vm / self.config.bandwidth)

    def _where(
        self, key: int, held: Held | None, source: IPAddress, hint: IPAddress | None
    ) -> IPAddress | None:
        """Where to ask for the certificate of ``key``: the sender of the news when relays
        may answer; otherwise its owner, at the address of the certificate held for it
        (verified) or else at the digest's hint, which a certificate must then confirm."""
        if self.config.relay:
            return source
        if held is not None:
            return self._address_of(held.certificate)
        if (
            hint is None
            or hint.version != self.address.version
            or hint == self.address
            or hint.is_unspecified
            or hint.is_multicast
        ):
            return None
        return hint

    def _on_digest(self, message: Digest, source: IPAddress, now: float, round_: _Round) -> None:
        by_target: dict[IPAddress, list[int]] = {}
        for index, (key, seq) in enumerate(message.entries):
            held = self.store.get(key)
            if held is not None and held.seq >= seq:
                continue
            hint = message.owners[index] if message.owners else None
            target = self._where(key, held, source, hint)
            if target is None:
                self.counters["drop_no_owner"] += 1
                continue
            want = self._wants.get(key)
            if want is not None:
                if target not in want.offers and len(want.offers) < _MAX_OFFERS:
                    want.offers.append(target)
                want.seq = max(want.seq, seq)
            elif (held is None and self._full) or len(self._wants) >= self.config.max_certs:
                self.counters["drop_state_full"] += 1
                continue
            elif held is not None and not self.config.relay:
                # News of a VM we know: its owner is handing the change to every VM it knows,
                # us included, at its cap. Ask only if it has not come by a random point of
                # that time (a lost datagram, or an owner that does not know us): a fleet of
                # askers spread out is a trickle at the owner, not a flood.
                spread = 0.5 + self._random(1 << 16) / (1 << 17)
                self._wants[key] = _Want(seq, now + spread * self._owner_wait(), [target])
                continue
            else:
                want = self._wants[key] = _Want(seq, now, [target])
            if now >= want.due:
                by_target.setdefault(self._asked(want, now), []).append(key)
        budget = self.config.max_replies
        for target, keys in by_target.items():
            budget -= self._send_wants(keys, target, budget, now, round_)
            if budget <= 0:
                break  # the rest is asked again by _retry_wants
        if message.range is not None:
            theirs = dict(message.entries)
            ours: list[tuple[int, int]] = []
            for key in self.store.keys_in(message.range):
                held = self.store.get(key)
                if held is not None and theirs.get(key, -1) < held.seq:
                    ours.append((key, held.seq))
                    if len(ours) >= self._digest_max:
                        break
            if ours:
                self._emit(source, self._digest(ours), now, round_)
            if by_target:
                # The exchange found a difference: keep reconciling at gossip pace until
                # it stops finding any (a joining node catches up, bounded by bandwidth).
                self._next_push_pull = min(self._next_push_pull, now + self.config.interval)

    def _send_wants(
        self, keys: list[int], target: IPAddress, budget: int, now: float, round_: _Round
    ) -> int:
        """WANTs for ``keys`` to ``target``, at most ``budget`` datagrams; how many were sent."""
        # A relay that does not know us will not answer: show it our certificate too. An owner
        # that does not know us answers by introducing itself (:meth:`_on_want`).
        own = self.own
        show = self.config.relay and target not in self._knows_me
        token = own.token if own is not None and show else b""
        per_datagram = (MAX_DATAGRAM - 9 - len(token)) // 8
        sent = 0
        for start in range(0, len(keys), per_datagram):
            if sent >= budget:
                break
            want = Want(tuple(keys[start : start + per_datagram]), token)
            if not self._emit(target, want, now, round_):
                break
            sent += 1
        return sent

    def _on_want(self, message: Want, source: IPAddress, now: float, round_: _Round) -> None:
        if message.token and self._sender(source, now) is None:
            # An introduction from a sender we do not know yet (a known one's repeat of the
            # certificate we hold is not verified again).
            self._accept(message.token, source, now, round_)
        if self._sender(source, now) is None:
            if self._own_key in message.keys:
                # The asker wants what an introduction gives: our certificate, flagged
                # UNKNOWN_YOU, so that it introduces itself in turn (once per interval).
                self._introduce(source, now, round_)
            else:
                self.counters["drop_unauthenticated"] += 1
            return
        if not self.config.relay:
            # Only the owner's copy of a certificate is accepted: hand over nothing else.
            if self._own_key in message.keys:
                self._hand_over(source, now, round_)
            return
        tokens = [held.token for key in message.keys if (held := self.store.get(key))]
        batch: list[bytes] = []
        size = 6
        sent = 0
        for token in tokens:
            if size + 2 + len(token) > MAX_DATAGRAM or len(batch) == 255:
                self._emit(source, Certs(tuple(batch)), now, round_)
                sent += 1
                batch, size = [], 6
                if sent >= self.config.max_replies:
                    return
            batch.append(token)
            size += 2 + len(token)
        if batch:
            self._emit(source, Certs(tuple(batch)), now, round_)

    def _hand_over(self, source: IPAddress, now: float, round_: _Round) -> None:
        """Our certificate to ``source`` now, or in turn when others asked first or the cap is
        spent (then it is queued, not dropped)."""
        own = self.own
        if own is None:
            return
        if self._owed and next(iter(self._owed)) != source:
            self._owe(source)
        elif self._emit(source, Certs((own.token,)), now, round_, count_refusal=False):
            self._owed.pop(source, None)
        else:
            self._owe(source)

    def _owe(self, source: IPAddress) -> None:
        """Queue ``source`` for our certificate; one that asks again keeps its place."""
        if source in self._owed:
            return
        if len(self._owed) >= self.config.max_certs:
            self.counters["drop_owed_full"] += 1
            return
        self._owed[source] = None

    def _pay_owed(self, now: float, round_: _Round) -> None:
        """Send our certificate to the peers that asked while the cap was spent, oldest first."""
        own = self.own
        if own is None:
            self._owed.clear()
            return
        while self._owed:
            target = next(iter(self._owed))
            if not self._emit(target, Certs((own.token,)), now, round_, count_refusal=False):
                return
            del self._owed[target]

    def _on_summary(self, message: Summary, source: IPAddress, now: float, round_: _Round) -> None:
        mine = self.store.summary(message.range)
        differing = [i for i in range(BUCKETS) if mine[i] != message.buckets[i]]
        if not differing:
            return
        # Unauthenticated senders get one branch: a summary must not buy many replies.
        branches = self.config.summary_branches if self._sender(source, now) else 1
        start = self._random(len(differing))
        for i in (differing[(start + n) % len(differing)] for n in range(len(differing))):
            if branches == 0:
                break
            branches -= 1
            child = message.range.child(i)
            biggest = max(mine[i].count, message.buckets[i].count)
            if biggest <= self._digest_cap or child.prefix_len > MAX_PREFIX_LEN:
                entries: list[tuple[int, int]] = []
                for key in self.store.keys_in(child):
                    held = self.store.get(key)
                    if held is not None:
                        entries.append((key, held.seq))
                    if len(entries) >= self._digest_max:
                        break
                self._emit(source, self._digest(entries, child), now, round_)
            else:
                self._emit(source, Summary(child, self.store.summary(child)), now, round_)

    def _accept(self, token: bytes, source: IPAddress, now: float, round_: _Round) -> None:
        verdict = self.verifier.check(token, now=now)
        if isinstance(verdict, Accepted):
            key = instance_key(verdict.certificate.instance)
            held = self.store.get(key)
            relayer = self._sender(source, now)
            verdict = self.verifier.admit(
                verdict,
                source=source,
                now=now,
                held=held.certificate if held else None,
                relay=self.config.relay,
                relayer=relayer.certificate if relayer else None,
            )
        if isinstance(verdict, Rejected):
            self.counters[f"reject_{verdict.reason}"] += 1
            return
        cert = verdict.certificate
        held = self.store.get(instance_key(cert.instance))
        if held is None and self._full:
            self.counters["drop_state_full"] += 1
            return
        # Rumour news, not renewals: a re-issue that changes only times and seq travels by
        # anti-entropy (it has until the old certificate expires), which keeps the cost of
        # periodic re-issue off the rumour path.
        renewal = held is not None and _same_content(held.certificate, cert)
        fresh = now - cert.issued_at <= self.config.news_window
        self._hold(cert, token, now, rumour=fresh and not renewal)
        round_.learned.append(cert)

    # -- helpers --------------------------------------------------------------------------

    def _hold(self, cert: PersonaCertificate, token: bytes, now: float, *, rumour: bool) -> None:
        key = instance_key(cert.instance)
        self.store.put(Held(key, cert, token))
        self.counters["accepted"] += 1
        self._wants.pop(key, None)
        self._next_expiry = min(self._next_expiry, cert.expires_at)
        if rumour and (key in self._rumors or len(self._rumors) < self.config.max_rumors):
            self._rumors[key] = _Rumor(cert.seq)

    @property
    def _full(self) -> bool:
        return len(self.store) >= self.config.max_certs

    def _sender(self, source: IPAddress, now: float) -> Held | None:
        held = self.store.owner_of(source)
        return held if held is not None and not held.certificate.expired(now) else None

    def _introduce(self, source: IPAddress, now: float, round_: _Round) -> None:
        """Send our certificate to a peer that said it has none for us (once per interval)."""
        own = self.own
        last = self._introduced.get(source)
        if own is None or (last is not None and now - last < self.config.interval):
            return
        self._introduced[source] = now
        self._introduced.move_to_end(source)
        if len(self._introduced) > self.config.max_sources:
            self._introduced.popitem(last=False)
        self._emit(source, Certs((own.token,)), now, round_)

    def _digest(
        self, entries: Iterable[tuple[int, int]], key_range: KeyRange | None = None
    ) -> Digest:
        """A digest of held entries; when only owners hand over certificates, each entry
        carries its owner's address (entries with none of this node's family are left out)."""
        if self.config.relay:
            return Digest(tuple(entries), key_range)
        kept: list[tuple[int, int]] = []
        owners: list[IPAddress] = []
        for key, seq in entries:
            held = self.store.get(key)
            address = self._address_of(held.certificate) if held is not None else None
            if address is not None:
                kept.append((key, seq))
                owners.append(address)
        return Digest(tuple(kept), key_range, owners=tuple(owners))

    def _emit(
        self,
        target: IPAddress,
        message: Message,
        now: float,
        round_: _Round,
        *,
        count_refusal: bool = True,
    ) -> bool:
        """Queue ``message`` for ``target`` unless the bandwidth cap refuses it."""
        if self.store.owner_of(target) is None:
            message = replace(message, flags=message.flags | Flag.UNKNOWN_YOU)
        payload = encode(message)
        if not self._bandwidth.take(len(payload) + IP_UDP_OVERHEAD, now):
            if count_refusal:
                self.counters["drop_bandwidth"] += 1
            return False
        self.counters["tx_datagrams"] += 1
        self.counters["tx_bytes"] += len(payload)
        round_.out.append(Datagram(target, payload))
        return True

    def _random(self, bound: int) -> int:
        self._rng, value = splitmix64(self._rng)
        return value % bound if bound > 0 else 0

    def _address_of(self, cert: PersonaCertificate) -> IPAddress | None:
        for address in cert.addresses:
            if address.version == self.address.version:
                return address
        return None

    def _pick_targets(self, count: int) -> list[IPAddress]:
        """Up to ``count`` distinct random peers: members first, seeds to make up the number."""
        chosen: list[IPAddress] = []
        positions = self.store.positions
        for _ in range(count * 4 if positions else 0):
            if len(chosen) >= count:
                break
            key = self.store.key_at(self._random(positions))
            if key is None or key == self._own_key:
                continue
            held = self.store.get(key)
            address = self._address_of(held.certificate) if held else None
            if address is not None and address != self.address and address not in chosen:
                chosen.append(address)
        spare = [s for s in self._seeds if s not in chosen]
        while len(chosen) < count and spare:
            chosen.append(spare.pop(self._random(len(spare))))
        return chosen

    def _expire(self, now: float) -> tuple[str, ...]:
        if now < self._next_expiry:
            return ()
        gone: list[str] = []
        upcoming = float("inf")
        for held in list(self.store):
            if held.certificate.expired(now):
                self.store.remove(held.key)
                self._rumors.pop(held.key, None)
                gone.append(held.certificate.instance)
            else:
                upcoming = min(upcoming, held.certificate.expires_at)
        self._next_expiry = upcoming
        self.store.compact()
        self.counters["expired"] += len(gone)
        return tuple(sorted(gone))
