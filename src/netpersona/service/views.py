"""What each VM sees, derived from one consistent read of the store.

A :class:`FleetView` is an immutable snapshot: every instance, the *effective* persona of each
(what a :class:`PersonaResolver` decides: the policy engine's decision, see
:mod:`netpersona.service.policy`), and the three per-VM views the VM-facing API serves
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

import structlog

from netpersona.errors import InvalidDocument
from netpersona.model import (
    CidrSelector,
    LabelSelector,
    PeerSelector,
    Persona,
    PersonaSelector,
    parse_persona,
)
from netpersona.store.base import FleetData, Instance, PersonaVersion

__all__ = [
    "EffectiveVersion",
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

log = structlog.get_logger("netpersona.service")


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


@dataclass(frozen=True, slots=True)
class EffectiveVersion:
    """The persona an instance is served: the document after overlays, the name and version of
    the stored persona it derives from, and the overlays applied (in order).

    Two instances hold the same effective persona when name, version, overlays and digest (a
    hash of the canonical document) are equal; ``body`` and ``persona`` are not compared.
    """

    name: str
    version: int
    digest: str
    overlays: tuple[str, ...] = ()
    body: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # The parsed document when the resolver already has it (saves parsing it again).
    persona: Persona | None = field(default=None, compare=False, repr=False)

    @classmethod
    def stored(cls, version: PersonaVersion) -> EffectiveVersion:
        """A stored persona version served as it is (no overlays)."""
        digest = hashlib.sha256(version.document.encode()).hexdigest()
        return cls(version.name, version.version, digest, (), version.body)


class PersonaResolver(Protocol):
    """Decides the effective persona of every instance from the whole fleet.

    The service's resolver is the policy engine (:class:`~netpersona.service.policy.
    PolicyPersonas`); it is called after every write, under one lock, with the fleet as the
    write left it, and when its inputs change outside a write the service rebuilds the view
    (``Fleet.refresh``), which wakes exactly the watchers whose view changed.
    """

    def resolve(self, data: FleetData) -> Mapping[str, EffectiveVersion]: ...


class PinnedPersonas:
    """The effective persona is the pinned persona's current version; unpinned = none."""

    def resolve(self, data: FleetData) -> Mapping[str, EffectiveVersion]:
        return {
            i.id: EffectiveVersion.stored(data.personas[i.pin])
            for i in data.instances
            if i.pin is not None and i.pin in data.personas
        }


@dataclass(frozen=True, slots=True)
class _PeerFacts:
    """What a peer view shows of an instance; when these change, peer views may change."""

    addresses: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    persona: str | None
    priority: int | None


@dataclass(slots=True)
class FleetView:
    revision: int
    instances: Mapping[str, Instance]
    effective: Mapping[str, EffectiveVersion]
    parsed: Mapping[EffectiveVersion, Persona | None]  # None: the document is invalid
    by_address: Mapping[str, str]
    # Attached by the certificate authority (service.certificates); empty without one.
    certificates: Mapping[str, View] = field(default_factory=dict)
    keys: View | None = None
    generation: int = 0  # the order views were built in (the fleet's build counter)
    _cache: dict[tuple[ViewKind, str], View | None] = field(default_factory=dict)
    _persona_cache: dict[EffectiveVersion | None, View] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        data: FleetData,
        resolver: PersonaResolver,
        parsed_cache: dict[EffectiveVersion, Persona | None] | None = None,
    ) -> FleetView:
        cache = parsed_cache if parsed_cache is not None else {}
        effective = dict(resolver.resolve(data))
        parsed: dict[EffectiveVersion, Persona | None] = {}
        # The resolver hands out one object per distinct effective persona: dedupe by identity
        # (cheap) before hashing.
        for key in {id(v): v for v in effective.values()}.values():
            if key in parsed:
                continue
            if key not in cache:
                cache[key] = key.persona if key.persona is not None else _parse(key)
            parsed[key] = cache[key]
        for stale in set(cache) - set(parsed):
            del cache[stale]
        # Stored addresses are already canonical (the API writes str(ip_address(...))).
        by_address = {a: i.id for i in data.instances for a in i.addresses}
        return cls(
            revision=data.revision,
            instances={i.id: i for i in data.instances},
            effective=effective,
            parsed=parsed,
            by_address=by_address,
        )

    @classmethod
    def empty(cls) -> FleetView:
        return cls(0, {}, {}, {}, {})

    def instance_for_address(self, address: str) -> Instance | None:
        """The instance owning ``address`` (canonical form: auth.canonical_address)."""
        instance_id = self.by_address.get(address)
        return None if instance_id is None else self.instances.get(instance_id)

    def persona_of(self, instance_id: str) -> tuple[EffectiveVersion, Persona | None] | None:
        version = self.effective.get(instance_id)
        if version is None:
            return None
        return version, self.parsed[version]

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
                self._cache[key] = View.of({"peers": self.peers(instance_id)})
            else:
                self._cache[key] = View.of(self._instance_data(instance_id))
        return self._cache[key]

    def _persona_view(self, instance_id: str) -> View:
        # Instances holding the same effective persona share one view object (and its bytes).
        version = self.effective.get(instance_id)
        if version not in self._persona_cache:
            self._persona_cache[version] = View.of(
                {"name": None, "version": None, "overlays": [], "network_persona": None}
                if version is None
                else {
                    "name": version.name,
                    "version": version.version,
                    "overlays": list(version.overlays),
                    "network_persona": version.body,
                }
            )
        return self._persona_cache[version]

    def _instance_data(self, instance_id: str) -> dict[str, Any]:
        instance = self.instances[instance_id]
        version = self.effective.get(instance_id)
        return {
            "id": instance.id,
            "name": instance.name,
            "addresses": list(instance.addresses),
            "interfaces": [i.to_json() for i in instance.interfaces],
            "labels": instance.label_map,
            "persona": None
            if version is None
            else {"name": version.name, "version": version.version},
        }

    def _facts(self, instance_id: str) -> _PeerFacts | None:
        instance = self.instances.get(instance_id)
        if instance is None:
            return None
        held = self.persona_of(instance_id)
        return _PeerFacts(
            addresses=instance.addresses,
            labels=instance.labels,
            persona=None if held is None else held[0].name,
            priority=None if held is None or held[1] is None else held[1].priority,
        )

    def selectors(self, instance_id: str) -> tuple[PeerSelector, ...]:
        held = self.persona_of(instance_id)
        return () if held is None or held[1] is None else held[1].peers

    def peers(self, instance_id: str) -> list[dict[str, Any]]:
        """Spec section 1 ``peers``: every other instance a selector matches, and only what a
        peer needs to know of it (addresses, persona name, priority, labels)."""
        selectors = self.selectors(instance_id)
        if not selectors:
            return []
        found = []
        for other_id in self.instances:
            if other_id == instance_id:
                continue
            facts = self._facts(other_id)
            assert facts is not None
            if any(_matches(s, facts) for s in selectors):
                found.append(
                    {
                        "addresses": list(facts.addresses),
                        "persona": facts.persona,
                        "priority": facts.priority,
                        "labels": dict(facts.labels),
                    }
                )
        return sorted(found, key=lambda p: (p["addresses"], p["persona"] or ""))


def _parse(version: EffectiveVersion) -> Persona | None:
    """The served document as a Persona; None when it does not validate.

    The admin API validates every document, but one written past it, or judged by newer rules,
    must not take the service down for every VM: it is still served (the agent validates and
    reports the failure), and only its peers selectors and priority are treated as absent.
    """
    try:
        return parse_persona(version.body)
    except InvalidDocument as exc:
        log.warning(
            "served persona does not validate",
            persona=version.name,
            version=version.version,
            errors=[str(e) for e in exc.errors],
        )
        return None


def _matches(selector: PeerSelector, facts: _PeerFacts) -> bool:
    if isinstance(selector, PersonaSelector):
        return facts.persona == selector.persona
    if isinstance(selector, LabelSelector):
        return selector.matches(facts.labels)
    assert isinstance(selector, CidrSelector)
    for address in facts.addresses:
        try:
            if ip_address(address) in selector.network:
                return True
        except (ValueError, TypeError):
            continue
    return False


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
    result: set[WatchKey] = set()
    for key in watched:
        kind, instance_id = key
        if kind is ViewKind.CERTIFICATE or kind is ViewKind.KEYS:
            candidate = True  # precomputed views: comparing ETags is the cheap test
        elif kind is ViewKind.PERSONA:
            candidate = _held(old, instance_id) != _held(new, instance_id) or (
                (instance_id in old.instances) != (instance_id in new.instances)
            )
        elif kind is ViewKind.INSTANCE:
            candidate = old.instances.get(instance_id) != new.instances.get(instance_id) or (
                _held(old, instance_id) != _held(new, instance_id)
            )
        else:
            if changed_facts is None:
                changed_facts = [
                    i
                    for i in set(old.instances) | set(new.instances)
                    if old._facts(i) != new._facts(i)
                ]
            candidate = _peers_candidate(old, new, instance_id, changed_facts)
        if not candidate:
            continue
        before, after = old.view(key), new.view(key)
        if (before and before.etag) != (after and after.etag):
            result.add(key)
    return result


def _held(view: FleetView, instance_id: str) -> EffectiveVersion | None:
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
            facts = view._facts(other)
            if facts is not None and any(_matches(s, facts) for s in new_selectors):
                return True
    return False
