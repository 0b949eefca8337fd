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
from netpersona.errors import UsageError
from netpersona.facts import PeerInfo
from netpersona.gossip.limits import SourceLimiter, TokenBucket, splitmix64
from netpersona.gossip.store import Held, Store, StoreSnapshot
from netpersona.gossip.wire import (
    BUCKETS,
    ENTRY_SIZE,
    MAX_DATAGRAM,
    MAX_PREFIX_LEN,
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
)

__all__ = ["Datagram", "GossipConfig", "GossipNode", "Step"]

IPAddress = IPv4Address | IPv6Address

# IPv4 + UDP headers: counted against the bandwidth cap, since they cross the wire too.
IP_UDP_OVERHEAD = 28
# A digest answers a summary bucket once both sides hold at most this many entries in it.
DIGEST_CAP = 64
_DIGEST_MAX_ENTRIES = (MAX_DATAGRAM - 16) // ENTRY_SIZE
# Peers remembered per wanted certificate, and how often it is asked for before giving up
# (anti-entropy still brings it later).
_MAX_OFFERS = 4
_MAX_TRIES = 16


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Protocol parameters; docs/propagation.md says why each default is what it is."""

    interval: float = 1.0
    fanout: int = 3
    push_pull_interval: float = 30.0
    retransmit_mult: int = 4
    news_window: float = 120.0
    bandwidth: int = 2048
    bandwidth_burst: int = 4096
    source_rate: float = 20.0
    source_burst: float = 40.0
    max_sources: int = 4096
    max_certs: int = 16384
    max_seeds: int = 64
    max_rumors: int = 4096
    summary_branches: int = 4
    max_replies: int = 8
    relay: bool = True

    def __post_init__(self) -> None:
        positive = {
            "interval": self.interval,
            "fanout": self.fanout,
            "push_pull_interval": self.push_pull_interval,
            "retransmit_mult": self.retransmit_mult,
            "bandwidth": self.bandwidth,
            "source_rate": self.source_rate,
            "max_sources": self.max_sources,
            "max_certs": self.max_certs,
            "max_rumors": self.max_rumors,
            "summary_branches": self.summary_branches,
            "max_replies": self.max_replies,
        }
        for name, value in positive.items():
            if not value > 0:
                raise UsageError(f"gossip {name}: {value!r} must be positive")
        if self.bandwidth_burst < MAX_DATAGRAM + IP_UDP_OVERHEAD:
            raise UsageError(
                f"gossip bandwidth_burst: {self.bandwidth_burst} is below one full datagram "
                f"({MAX_DATAGRAM + IP_UDP_OVERHEAD} bytes)"
            )
        if self.source_burst < 1:
            raise UsageError(f"gossip source_burst: {self.source_burst!r} must be at least 1")


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
    """A certificate asked for: who offered it, so a lost answer is asked again elsewhere."""

    seq: int
    asked_at: float
    offers: list[tuple[IPAddress, int]]  # (peer, the flags of its offer)
    tries: int = 1


@dataclass(slots=True)
class _Round:
    out: list[Datagram] = field(default_factory=list)
    learned: list[PersonaCertificate] = field(default_factory=list)

    def step(self, expired: tuple[str, ...] = ()) -> Step:
        return Step(tuple(self.out), tuple(self.learned), expired)


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
        self.store = Store(base, max_entries=self.config.max_certs + 1)
        self.counters: Counter[str] = Counter()
        self._rng = seed & 0xFFFFFFFFFFFFFFFF
        self._seeds: list[IPAddress] = []
        self._own_key = instance_key(instance) if instance is not None else None
        self._rumors: dict[int, _Rumor] = {}
        self._wants: dict[int, _Want] = {}
        self._introduced: OrderedDict[IPAddress, float] = OrderedDict()
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
        self._own_key = instance_key(verdict.certificate.instance)
        self._hold(verdict.certificate, raw, now, rumour=True)
        return verdict

    @property
    def own(self) -> Held | None:
        return self.store.get(self._own_key) if self._own_key is not None else None

    def peer_view(self, now: float) -> tuple[PeerInfo, ...]:
        """Every other VM with a current certificate: what resolves ``peers`` and DSCP."""
        view = [
            held.certificate.peer_info()
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
            self._introduce(source, now, round_)
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
        if self._rumors:
            limit = self.config.retransmit_mult * len(str(len(self.store) + 1))
            for target in self._pick_targets(self.config.fanout):
                ranked = sorted(self._rumors.items(), key=lambda kv: kv[1].transmits)
                chosen = ranked[:_DIGEST_MAX_ENTRIES]
                digest = Digest(tuple((k, r.seq) for k, r in chosen))
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
        """Ask again, of the next peer that offered it, for what has not arrived (loss)."""
        by_target: dict[tuple[IPAddress, int], list[int]] = {}
        for key, want in list(self._wants.items()):
            if now - want.asked_at < self.config.interval / 2:
                continue
            if want.tries >= _MAX_TRIES:
                del self._wants[key]
                self.counters["want_given_up"] += 1
                continue
            offer = want.offers[want.tries % len(want.offers)]
            want.tries += 1
            want.asked_at = now
            by_target.setdefault(offer, []).append(key)
        for (target, flags), keys in by_target.items():
            self._send_wants(keys, target, flags, now, round_)

    def _on_digest(self, message: Digest, source: IPAddress, now: float, round_: _Round) -> None:
        wants: list[int] = []
        for key, seq in message.entries:
            held = self.store.get(key)
            if held is not None and held.seq >= seq:
                continue
            want = self._wants.get(key)
            if want is not None:
                offer = (source, message.flags)
                if offer not in want.offers and len(want.offers) < _MAX_OFFERS:
                    want.offers.append(offer)
                want.seq = max(want.seq, seq)
                if now - want.asked_at < self.config.interval / 2:
                    continue
                want.asked_at = now
                want.tries += 1
            elif (held is None and self._full) or len(self._wants) >= self.config.max_certs:
                self.counters["drop_state_full"] += 1
                continue
            else:
                self._wants[key] = _Want(seq, now, [(source, message.flags)])
            wants.append(key)
        if wants:
            self._send_wants(wants, source, message.flags, now, round_)
        if message.range is not None:
            theirs = dict(message.entries)
            ours: list[tuple[int, int]] = []
            for key in self.store.keys_in(message.range):
                held = self.store.get(key)
                if held is not None and theirs.get(key, -1) < held.seq:
                    ours.append((key, held.seq))
                    if len(ours) >= _DIGEST_MAX_ENTRIES:
                        break
            if ours:
                self._emit(source, Digest(tuple(ours)), now, round_)
            if wants:
                # The exchange found a difference: keep reconciling at gossip pace until
                # it stops finding any (a joining node catches up, bounded by bandwidth).
                self._next_push_pull = min(self._next_push_pull, now + self.config.interval)

    def _send_wants(
        self, wants: list[int], source: IPAddress, flags: int, now: float, round_: _Round
    ) -> None:
        # The sender does not know us: show our certificate first, or it will not answer.
        own = self.own
        token = own.token if own is not None and flags & Flag.UNKNOWN_YOU else b""
        by_target: dict[IPAddress, list[int]] = {source: []}
        for key in wants:
            target = source
            if not self.config.relay:
                # Without relays only the owner can hand over its certificate: ask it, when
                # its address is known (it is for an update; a newcomer introduces itself).
                held = self.store.get(key)
                target = (self._address_of(held.certificate) if held else None) or source
            by_target.setdefault(target, []).append(key)
        sent = 0
        for target, keys in by_target.items():
            attach = token if target == source else b""
            per_datagram = (MAX_DATAGRAM - 9 - len(attach)) // 8
            for start in range(0, len(keys), per_datagram):
                if sent >= self.config.max_replies:
                    return
                self._emit(
                    target, Want(tuple(keys[start : start + per_datagram]), attach), now, round_
                )
                sent += 1

    def _on_want(self, message: Want, source: IPAddress, now: float, round_: _Round) -> None:
        if message.token:
            self._accept(message.token, source, now, round_)
        if self._sender(source, now) is None:
            self.counters["drop_unauthenticated"] += 1
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
            if biggest <= DIGEST_CAP or child.prefix_len > MAX_PREFIX_LEN:
                entries: list[tuple[int, int]] = []
                for key in self.store.keys_in(child):
                    held = self.store.get(key)
                    if held is not None:
                        entries.append((key, held.seq))
                    if len(entries) >= _DIGEST_MAX_ENTRIES:
                        break
                self._emit(source, Digest(tuple(entries), child), now, round_)
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

    def _emit(self, target: IPAddress, message: Message, now: float, round_: _Round) -> bool:
        """Queue ``message`` for ``target`` unless the bandwidth cap refuses it."""
        if self.store.owner_of(target) is None:
            message = replace(message, flags=message.flags | Flag.UNKNOWN_YOU)
        payload = encode(message)
        if not self._bandwidth.take(len(payload) + IP_UDP_OVERHEAD, now):
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
