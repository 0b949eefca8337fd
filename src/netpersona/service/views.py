"""What each VM sees, derived from one consistent read of the store.

A :class:`FleetView` is an immutable snapshot: every instance, the *effective* persona of each
(what a :class:`PersonaResolver` decides: the policy engine's decision, see
:mod:`netpersona.service.assignment`), and the three per-VM views the VM-facing API serves
(``instance``, ``persona``, ``peers``), each as JSON bytes with an ETag derived from those
bytes. Because the ETag is a hash of the content, it survives a restart of the service, which
is what lets an agent resume a watch.

:func:`affected_keys` compares two snapshots and names exactly the watched views whose content
changed; the change notifier wakes those and nobody else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import ip_address
from typing import Any, Protocol

from netpersona.model import CidrSelector, LabelSelector, PeerSelector, PersonaSelector
from netpersona.records import EffectivePersona, Instance, Peer, unassigned_json
from netpersona.service.network import (
    Network,
    NetworkDiff,
    NetworkIndex,
    member_json,
    seed_json,
)
from netpersona.store.base import FleetData, FleetDelta

__all__ = [
    "FleetView",
    "PersonaResolver",
    "PinnedPersonas",
    "View",
    "ViewKind",
    "WatchKey",
    "affected_keys",
    "NO_CERTIFICATE",
    "NO_KEYS",
    "normalize_etag",
]


class ViewKind(StrEnum):
    INSTANCE = "instance"
    PERSONA = "persona"
    PEERS = "peers"
    CERTIFICATE = "certificate"
    KEYS = "keys"  # the same content for every instance


WatchKey = tuple[ViewKind, str]  # (which view, instance id)


@dataclass(frozen=True, slots=True)
class View:
    body: bytes
    etag: str  # quoted, as in an HTTP ETag header

    @classmethod
    def of(cls, data: object) -> View:
        body = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return cls(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


NO_CERTIFICATE = View.of({"certificate": None, "expires_at": None, "seq": None})
NO_KEYS = View.of({"keys": []})


def normalize_etag(value: str) -> str:
    """An ETag as a client may send it back (bare, quoted, or weak) in its quoted form."""
    value = value.strip()
    value = value.removeprefix("W/")
    return '"' + value.strip('"') + '"'


class PersonaResolver(Protocol):
    """Decides the effective persona of every instance from the whole fleet.

    The service's resolver is the policy engine (:class:`~netpersona.service.assignment.
    PolicyPersonas`); it is called after every write, under one lock, with the fleet as the
    write left it, and when its inputs change outside a write the service rebuilds the view
    (``Fleet.refresh``), which wakes exactly the watchers whose view changed.
    """

    def resolve(self, data: FleetData) -> Mapping[str, EffectivePersona]: ...


class PinnedPersonas:
    """The effective persona is the pinned persona's current version; unpinned = none."""

    def __init__(self) -> None:
        # Every fleet read loads the catalogue afresh: a version already served keeps its
        # parsed document (and one object per persona, as the views expect).
        self._served: dict[tuple[str, int], EffectivePersona] = {}

    def resolve(self, data: FleetData) -> Mapping[str, EffectivePersona]:
        served: dict[str, EffectivePersona] = {}
        result = {}
        for instance in data.instances:
            pin = instance.pin
            if pin is None or pin not in data.personas:
                continue
            if pin not in served:
                version = data.personas[pin]
                held = self._served.get((pin, version.version))
                served[pin] = held if held is not None else version.effective()
            result[instance.id] = served[pin]
        self._served = {(e.name, e.version): e for e in served.values()}
        return result


@dataclass(slots=True)
class FleetView:
    revision: int
    instances: Mapping[str, Instance]
    effective: Mapping[str, EffectivePersona]
    by_address: Mapping[str, str]
    # Attached by the certificate authority (service.certificates); empty without one.
    certificates: Mapping[str, View] = field(default_factory=dict)
    keys: View | None = None
    generation: int = 0  # the order views were built in (the fleet's build counter)
    changes: int = 0  # the store's change sequence as of this view (FleetData.changes)
    # Made by :meth:`apply` from the view of that generation, and the instances it may differ in.
    delta_from: tuple[int, frozenset[str]] | None = None
    _cache: dict[tuple[ViewKind, str], View | None] = field(default_factory=dict)
    # By identity: the resolver hands every holder of one effective persona the same object
    # (and the view holds them all, so an id is not reused while it is cached here).
    _persona_cache: dict[int, View] = field(default_factory=dict)
    _peers: dict[str, Peer] = field(default_factory=dict)
    _network: NetworkIndex | None = None

    @classmethod
    def build(cls, data: FleetData, resolver: PersonaResolver) -> FleetView:
        # Stored addresses are already canonical (the API writes str(ip_address(...))).
        by_address = {a: i.id for i in data.instances for a in i.addresses}
        return cls(
            revision=data.revision,
            instances={i.id: i for i in data.instances},
            effective=dict(resolver.resolve(data)),
            by_address=by_address,
            changes=data.changes,
        )

    def apply(
        self, delta: FleetDelta, effective: Mapping[str, EffectivePersona], touched: set[str]
    ) -> FleetView:
        """This view after ``delta``, with the resolver's ``effective`` personas after it:
        what :meth:`build` makes of the fleet after it, at the cost of copying two mappings
        (none of the instances' when it wrote none: a persona, the context, the policy).
        ``touched``: every instance whose effective persona may have changed. The
        certificates and key set are this view's (the fleet stamps its own); the peer facts
        of untouched instances are carried over."""
        # Entries are replaced in place, not removed and added again: a dictionary with no
        # removed entries copies at memory speed (a few ms at 100,000), the next time too.
        instances = self.instances
        moved: list[tuple[Instance | None, Instance | None]] = []
        if delta.upserted or delta.removed:
            written = dict(instances)
            for instance_id in delta.removed:
                moved.append((written.pop(instance_id, None), None))
            for instance in delta.upserted:
                old = written.get(instance.id)
                written[instance.id] = instance
                if old is None or old.addresses != instance.addresses:
                    moved.append((old, instance))
            instances = written
        by_address = self.by_address
        if moved:  # addresses changed hands (most writes keep them: the mapping is shared)
            by_address = dict(by_address)
            for before, _ in moved:
                if before is not None:
                    for address in before.addresses:
                        if by_address.get(address) == before.id:
                            del by_address[address]
            for _, after in moved:
                if after is not None:
                    by_address.update(dict.fromkeys(after.addresses, after.id))
        changed = touched | {i.id for i in delta.upserted} | set(delta.removed)
        view = FleetView(
            revision=delta.revision,
            instances=instances,
            effective=effective,
            by_address=by_address,
            certificates=self.certificates,
            keys=self.keys,
            changes=delta.changes,
            delta_from=(self.generation, frozenset(changed)),
        )
        view._peers = {k: p for k, p in self._peers.items() if k not in changed}
        return view

    @classmethod
    def empty(cls) -> FleetView:
        return cls(0, {}, {}, {})

    def instance_for_address(self, address: str) -> Instance | None:
        """The instance owning ``address`` (canonical form: auth.canonical_address)."""
        instance_id = self.by_address.get(address)
        return None if instance_id is None else self.instances.get(instance_id)

    def persona_of(self, instance_id: str) -> EffectivePersona | None:
        return self.effective.get(instance_id)

    def view(self, key: WatchKey) -> View | None:
        """The view ``key`` names, or None when the instance does not exist (any more)."""
        kind, instance_id = key
        if instance_id not in self.instances:
            return None
        if kind is ViewKind.CERTIFICATE:
            return self.certificates.get(instance_id, NO_CERTIFICATE)
        if kind is ViewKind.KEYS:
            return self.keys if self.keys is not None else NO_KEYS
        # Views of the fleet data only: shared with the views the certificate authority makes
        # from this one (same data, other certificates).
        if key not in self._cache:
            if kind is ViewKind.PERSONA:
                self._cache[key] = self._persona_view(instance_id)
            elif kind is ViewKind.PEERS:
                peers = [p.to_json() for p in self.peers(instance_id)]
                self._cache[key] = View.of(
                    {"peers": peers, "network": self.network_part(instance_id)}
                )
            else:
                self._cache[key] = View.of(self._instance_data(instance_id))
        return self._cache[key]

    def _persona_view(self, instance_id: str) -> View:
        # Instances holding the same effective persona share one view object (and its bytes).
        effective = self.effective.get(instance_id)
        found = self._persona_cache.get(id(effective))
        if found is None:
            found = self._persona_cache[id(effective)] = View.of(
                unassigned_json() if effective is None else effective.to_json()
            )
        return found

    def _instance_data(self, instance_id: str) -> dict[str, Any]:
        instance = self.instances[instance_id]
        effective = self.effective.get(instance_id)
        return {
            "id": instance.id,
            "name": instance.name,
            "addresses": list(instance.addresses),
            "interfaces": [i.to_json() for i in instance.interfaces],
            "labels": instance.label_map,
            "persona": None
            if effective is None
            else {"name": effective.name, "version": effective.version},
        }

    def peer(self, instance_id: str) -> Peer | None:
        """What another VM's peer view shows of ``instance_id`` (None: no such instance).

        Mode, profile, priority and DSCP come from the parsed persona; a served document that
        does not validate leaves them unknown (priority 0), as the agent would not apply it.
        """
        found = self._peers.get(instance_id)
        if found is not None:
            return found
        instance = self.instances.get(instance_id)
        if instance is None:
            return None
        effective = self.effective.get(instance_id)
        persona = None if effective is None else effective.persona
        found = Peer(
            instance=instance.id,
            addresses=tuple(ip_address(a) for a in instance.addresses),
            persona=None if effective is None else effective.name,
            persona_version=None if effective is None else effective.version,
            priority=0 if persona is None else persona.priority,
            dscp=None if persona is None else persona.qos.dscp,
            mode=None if persona is None else persona.communication_mode,
            profile=None if persona is None else persona.security_profile,
            labels=instance.labels,
        )
        self._peers[instance_id] = found
        return found

    @property
    def network(self) -> NetworkIndex:
        """Who shares a network with whom (:mod:`netpersona.service.network`)."""
        if self._network is None:
            self._network = NetworkIndex(self.instances, self.peer)
        return self._network

    def network_part(self, instance_id: str) -> dict[str, Any]:
        """The peers answer's ``network``: gossip seeds and the priority summary."""
        own = self.peer(instance_id)
        members, truncated = self.network.summary(instance_id, 0 if own is None else own.priority)
        return {
            "members": [member_json(p) for p in members],
            "seeds": [seed_json(p) for p in self.network.seeds(instance_id)],
            "truncated": truncated,
        }

    def selectors(self, instance_id: str) -> tuple[PeerSelector, ...]:
        effective = self.effective.get(instance_id)
        persona = None if effective is None else effective.persona
        return () if persona is None else persona.peers

    def peers(self, instance_id: str) -> list[Peer]:
        """Spec section 1 ``peers``: every other instance a selector matches, and only what a
        peer needs to know of it (see :class:`~netpersona.records.Peer`)."""
        selectors = self.selectors(instance_id)
        if not selectors:
            return []
        found = []
        for other_id in self.instances:
            if other_id == instance_id:
                continue
            peer = self.peer(other_id)
            assert peer is not None
            if any(_matches(s, peer) for s in selectors):
                found.append(peer)
        return sorted(found, key=lambda p: ([str(a) for a in p.addresses], p.persona or ""))


def _matches(selector: PeerSelector, peer: Peer) -> bool:
    if isinstance(selector, PersonaSelector):
        return peer.persona == selector.persona
    if isinstance(selector, LabelSelector):
        return selector.matches(peer.labels)
    assert isinstance(selector, CidrSelector)
    return any(address in selector.network for address in peer.addresses)


def affected_keys(old: FleetView, new: FleetView, watched: Iterable[WatchKey]) -> set[WatchKey]:
    """The watched views whose content differs between ``old`` and ``new``.

    Cheap tests first: a persona view changes only with the instance's effective persona
    (name, version, overlays, document); an instance view only with its record or that
    persona; a peers view only when its own selectors changed or an instance whose peer facts
    changed matches them (before or after). Candidates are then confirmed by comparing ETags,
    so the result is exact.
    """
    watched = list(watched)
    changed_facts: list[str] | None = None
    touched: set[Network] | None = None
    network_diff: NetworkDiff | None = None
    persona_pairs: dict[tuple[int, int], bool] = {}
    result: set[WatchKey] = set()
    for key in watched:
        kind, instance_id = key
        if kind is ViewKind.CERTIFICATE or kind is ViewKind.KEYS:
            candidate = True  # precomputed views: comparing ETags is the cheap test
        elif kind is ViewKind.PERSONA:
            candidate = (instance_id in old.instances) != (instance_id in new.instances)
            if not candidate:
                # The answer depends on the effective persona alone, and the holders of one
                # share one object: compare each pair of them once (a persona's new version
                # pairs every holder's old and new).
                before_held = old.effective.get(instance_id)
                after_held = new.effective.get(instance_id)
                if before_held is after_held:
                    continue
                pair = (id(before_held), id(after_held))  # both alive: the views hold them
                differs = persona_pairs.get(pair)
                if differs is None:
                    differs = persona_pairs[pair] = before_held != after_held and (
                        old._persona_view(instance_id).etag != new._persona_view(instance_id).etag
                    )
                if differs:
                    result.add(key)
                continue
        elif kind is ViewKind.INSTANCE:
            candidate = old.instances.get(instance_id) != new.instances.get(instance_id) or (
                _held(old, instance_id) != _held(new, instance_id)
            )
        else:
            if changed_facts is None:
                changed_facts = [
                    i
                    for i in _may_differ(old, new)
                    if old.peer(i) != new.peer(i) or old.instances.get(i) != new.instances.get(i)
                ]
            candidate = _peers_candidate(old, new, instance_id, changed_facts)
            if touched is None:
                touched = _touched_networks(old, new, changed_facts)
                network_diff = NetworkDiff(old.network, new.network, changed_facts)
            if not candidate and _on_networks(old, new, instance_id, touched):
                # Only the network part can differ: compare it alone, without building the
                # peer lists (O(fleet) each).
                assert network_diff is not None
                priorities = (_priority(old, instance_id), _priority(new, instance_id))
                if network_diff.changed(instance_id, *priorities):
                    result.add(key)
                continue
        before, after = old.view(key), new.view(key)
        if before is not after and (before and before.etag) != (after and after.etag):
            result.add(key)
    return result


def _may_differ(old: FleetView, new: FleetView) -> Iterable[str]:
    """The instances whose record or persona may differ between ``old`` and ``new``: none for
    the same fleet data (a certificate renewal), those :meth:`FleetView.apply` changed when
    ``new`` was made from ``old`` so, else every one."""
    if old.instances is new.instances and old.effective is new.effective:
        return ()
    if new.delta_from is not None and new.delta_from[0] == old.generation:
        return new.delta_from[1]
    return set(old.instances) | set(new.instances)


def _touched_networks(old: FleetView, new: FleetView, changed: list[str]) -> set[Network]:
    """The networks an instance whose peer facts or record changed is (or was) on: only their
    VMs' seeds and priority summaries can differ."""
    return {
        net
        for other in changed
        for view in (old, new)
        if other in view.instances
        for net in view.network.networks(other)
    }


def _priority(view: FleetView, instance_id: str) -> int:
    peer = view.peer(instance_id)
    return 0 if peer is None else peer.priority


def _on_networks(old: FleetView, new: FleetView, instance_id: str, touched: set[Network]) -> bool:
    return any(not touched.isdisjoint(v.network.networks(instance_id)) for v in (old, new))


def _held(view: FleetView, instance_id: str) -> EffectivePersona | None:
    return view.effective.get(instance_id)


def _peers_candidate(old: FleetView, new: FleetView, instance_id: str, changed: list[str]) -> bool:
    if instance_id not in new.instances or instance_id not in old.instances:
        return True
    old_selectors, new_selectors = old.selectors(instance_id), new.selectors(instance_id)
    if old_selectors != new_selectors:
        return True
    for other in changed:
        if other == instance_id:
            continue
        for view in (old, new):
            peer = view.peer(other)
            if peer is not None and any(_matches(s, peer) for s in new_selectors):
                return True
    return False
