"""Who shares a network with whom: each VM's gossip seeds and its priority summary.

A VM's peer view (``GET /v1/instance/peers``) lists only the instances its ``peers`` selectors
match, but two things need more than that (docs/metadata-api.md, "The network part"):

- **Gossip seeds.** A VM whose selectors match nobody still needs someone to gossip with. Each
  VM gets up to :data:`MAX_SEEDS` instances of its networks that hold a persona (and so a
  certificate to gossip with): its :data:`SUCCESSORS` successors
  in the control channel's key order (the first 8 bytes of BLAKE2b of the instance id, the
  order the gossip node pushes along), and "fingers" at a half, a quarter, ... of the key space
  ahead (as in Chord). Deterministic per VM, every VM is a successor seed of exactly
  :data:`SUCCESSORS` others (the load spreads evenly), a join or a leave changes only the seeds
  of the VMs just before it in key order and of those whose finger it takes, and the seeds
  form a connected graph of logarithmic diameter, so a fleet gossiping from seeds alone is one
  component from the start.
- **The priority summary** (spec section 6): toward a VM of higher priority, a VM marks its
  packets with that VM's DSCP, whether its selectors allow that VM or not. So each VM learns,
  of every instance on its networks whose priority is *above its own*, the instance id,
  addresses, priority and DSCP override, and nothing else: no labels, no persona name, and
  nothing of VMs of equal or lower priority, which the rule does not need. At most
  :data:`MAX_MEMBERS` entries, highest priority first (then instance id); ``truncated`` says
  when more were left out.

Networks are the subnets of an instance's declared interface addresses. An instance that
declares none is placed on every declared subnet holding one of its addresses, or else on one
default network shared by every such instance (a fleet registered by addresses alone).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

from netpersona.gossip.wire import instance_key
from netpersona.records import Instance, Peer

__all__ = [
    "MAX_MEMBERS",
    "MAX_SEEDS",
    "SUCCESSORS",
    "Network",
    "NetworkDiff",
    "NetworkIndex",
    "member_json",
    "seed_json",
]

MAX_SEEDS = 16
SUCCESSORS = 8
MAX_MEMBERS = 1024
KEY_SPACE = 1 << 64
DEFAULT_NETWORK = "default"

Network = IPv4Network | IPv6Network | str


def member_json(peer: Peer) -> dict[str, Any]:
    """A summary entry: what the DSCP rule needs of a VM, and nothing else."""
    return {
        "instance": peer.instance,
        "addresses": [str(a) for a in peer.addresses],
        "priority": peer.priority,
        "dscp": peer.dscp,
    }


def seed_json(peer: Peer) -> dict[str, Any]:
    return {"instance": peer.instance, "addresses": [str(a) for a in peer.addresses]}


def _has_persona(peer: Peer | None) -> bool:
    return peer is not None and peer.persona is not None


@dataclass(slots=True)
class NetworkIndex:
    """The networks of a fleet snapshot; built once per view, lazily, and then read."""

    instances: Mapping[str, Instance]
    peer: Callable[[str], Peer | None]
    _networks: dict[str, frozenset[Network]] = field(default_factory=dict)
    _members: dict[Network, list[str]] = field(default_factory=dict)
    _rings: dict[Network, tuple[list[int], list[str]]] = field(default_factory=dict)
    _summaries: dict[tuple[frozenset[Network], int], tuple[list[Peer], bool]] = field(
        default_factory=dict
    )
    _built: bool = False

    def _build(self) -> None:
        if self._built:
            return
        subnets = {i.id: i.subnets() for i in self.instances.values()}
        declared = {n for nets in subnets.values() for n in nets}
        for instance in self.instances.values():
            nets: set[Network] = set(subnets[instance.id])
            if not nets and declared:
                addresses = [ip_address(a) for a in instance.addresses]
                nets = {n for n in declared for a in addresses if a in n}
            self._networks[instance.id] = frozenset(nets or {DEFAULT_NETWORK})
        for instance_id in sorted(self.instances):
            for net in self._networks[instance_id]:
                self._members.setdefault(net, []).append(instance_id)
        self._built = True

    def networks(self, instance_id: str) -> frozenset[Network]:
        self._build()
        return self._networks.get(instance_id, frozenset())

    def shares_network(self, instance_id: str, other: str) -> bool:
        return not self.networks(instance_id).isdisjoint(self.networks(other))

    def _ring(self, net: Network) -> tuple[list[int], list[str]]:
        # Only VMs with a persona hold a certificate, and so gossip: the others are no seeds.
        if net not in self._rings:
            gossiping = [i for i in self._members[net] if _has_persona(self.peer(i))]
            keyed = sorted((instance_key(i), i) for i in gossiping)
            self._rings[net] = ([k for k, _ in keyed], [i for _, i in keyed])
        return self._rings[net]

    def seeds(self, instance_id: str) -> list[Peer]:
        """Up to :data:`MAX_SEEDS` instances to gossip with, the same for the same fleet."""
        chosen: dict[str, None] = {}
        own = instance_key(instance_id)
        nets = sorted(self.networks(instance_id), key=str)
        # The successors of every network first, then the fingers, then further successors
        # (a small network has fewer distinct fingers): with several networks, each gives its
        # nearest neighbours before anyone's far ones.
        steps: list[tuple[int, int | None]] = [(n, None) for n in range(SUCCESSORS)]
        steps += [(0, KEY_SPACE >> k) for k in range(1, 64)]
        steps += [(n, None) for n in range(SUCCESSORS, MAX_SEEDS)]
        for step, offset in steps:
            for net in nets:
                keys, ids = self._ring(net)
                if len(ids) <= 1:
                    continue
                if offset is None:
                    at = (bisect_right(keys, own) + step) % len(ids)
                else:
                    at = bisect_right(keys, (own + offset) % KEY_SPACE) % len(ids)
                if ids[at] != instance_id:
                    chosen.setdefault(ids[at])
            if len(chosen) >= MAX_SEEDS:
                break
        peers = (self.peer(i) for i in list(chosen)[:MAX_SEEDS])
        return [p for p in peers if p is not None and p.addresses]

    def seed_holders(self, instance_id: str) -> set[str]:
        """Every VM that may have ``instance_id`` among its seeds (a superset), found from the
        rings alone: those up to :data:`MAX_SEEDS` places before it, and those whose finger
        lands on it. Whether or not it is in the rings itself (it may have just left or
        joined), only these VMs' seeds can change when it does."""
        found: set[str] = set()
        own = instance_key(instance_id)
        for net in self.networks(instance_id):
            if net not in self._members:
                continue
            keys, ids = self._ring(net)
            n = len(ids)
            if n == 0:
                continue
            at = bisect_left(keys, own)
            found.update(ids[(at - j) % n] for j in range(1, min(MAX_SEEDS, n) + 1))
            # A finger at offset d from x lands on instance_id when x + d falls in
            # (previous key, own key]: x is in that range shifted back by d.
            previous = keys[(at - 1) % n]
            for k in range(1, 64):
                offset = KEY_SPACE >> k
                low, high = (previous - offset) % KEY_SPACE, (own - offset) % KEY_SPACE
                found.update(_in_range(keys, ids, low, high))
        found.discard(instance_id)
        return found

    def summary(self, instance_id: str, priority: int) -> tuple[list[Peer], bool]:
        """The VMs on ``instance_id``'s networks with priority above ``priority``, and whether
        the list was cut at :data:`MAX_MEMBERS`. ``priority`` is the VM's own, so it is never
        in its summary, and every VM of the same networks and priority shares one (read-only)
        list."""
        nets = self.networks(instance_id)
        key = (nets, priority)
        if key not in self._summaries:
            found: dict[str, Peer] = {}
            for net in nets:
                for other in self._members[net]:
                    peer = self.peer(other)
                    if peer is not None and peer.priority > priority and peer.addresses:
                        found[other] = peer
            ranked = sorted(found.values(), key=lambda p: (-p.priority, p.instance))
            self._summaries[key] = (ranked[:MAX_MEMBERS], len(ranked) > MAX_MEMBERS)
        return self._summaries[key]


@dataclass(slots=True)
class NetworkDiff:
    """Whether a VM's network part differs between two snapshots, found without building it:
    its seeds can differ only if a ring of its networks did (a VM joined, left, or gained or
    lost a persona) or a VM changed addresses, and VMs of the same networks and priority share
    one summary, compared once. A priority change on a 10,000-VM network so costs each of its
    VMs two dictionary lookups, not a seed search."""

    old: NetworkIndex
    new: NetworkIndex
    touched: Iterable[str]  # instances whose record or peer facts changed
    _holders: set[str] | None = None
    _summaries: dict[tuple[frozenset[Network], int, int], bool] = field(default_factory=dict)

    def changed(self, instance_id: str, old_priority: int, new_priority: int) -> bool:
        nets = self.old.networks(instance_id)
        if nets != self.new.networks(instance_id):
            return True
        key = (nets, old_priority, new_priority)
        if key not in self._summaries:
            before = self.old.summary(instance_id, old_priority)
            after = self.new.summary(instance_id, new_priority)
            self._summaries[key] = _shown(before[0], member_json) != _shown(
                after[0], member_json
            ) or (before[1] != after[1])
        if self._summaries[key]:
            return True
        if self._holders is None:
            self._holders = set()
            for other in self.touched:
                self._holders |= self.old.seed_holders(other) | self.new.seed_holders(other)
        if instance_id in self._holders:
            before_seeds = _shown(self.old.seeds(instance_id), seed_json)
            return before_seeds != _shown(self.new.seeds(instance_id), seed_json)
        return False


def _shown(peers: list[Peer], form: Callable[[Peer], dict[str, Any]]) -> list[dict[str, Any]]:
    """What the answer shows of ``peers`` (a member's labels, say, are not shown)."""
    return [form(p) for p in peers]


def _in_range(keys: list[int], ids: list[str], low: int, high: int) -> list[str]:
    """The ids whose key is in the ring interval (low, high], wrapping past the top."""
    if low == high:
        return list(ids)  # the whole ring (one member: previous is itself)
    if low < high:
        return ids[bisect_right(keys, low) : bisect_right(keys, high)]
    return ids[bisect_right(keys, low) :] + ids[: bisect_right(keys, high)]
