"""What the agent makes of the service's answers: pure functions from JSON to typed values.

An answer that does not have the documented shape is garbage, and garbage is refused whole
(:class:`MalformedAnswer`): the agent then keeps what it had, as if the service were away.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from ipaddress import ip_address
from typing import Any

from netpersona.certs.certificate import PersonaCertificate
from netpersona.errors import MalformedAnswer
from netpersona.facts import HostFacts, Tier
from netpersona.records import Peer

__all__ = [
    "MalformedAnswer",
    "PersonaAnswer",
    "compose_facts",
    "merge_peer_views",
    "parse_peer_view",
    "parse_persona_answer",
    "uplink_tiers",
]


@dataclass(frozen=True, slots=True)
class PersonaAnswer:
    name: str | None
    version: int | None
    document: Mapping[str, Any] | None


def parse_persona_answer(body: Mapping[str, Any]) -> PersonaAnswer:
    name, version, document = body.get("name"), body.get("version"), body.get("network_persona")
    if document is None:
        return PersonaAnswer(None, None, None)
    if not isinstance(name, str) or isinstance(version, bool) or not isinstance(version, int):
        raise MalformedAnswer(f"persona answer without a name and version: {str(body)[:200]}")
    if not isinstance(document, Mapping):
        # A document of the wrong shape is still the operator's persona: let validation say why.
        return PersonaAnswer(name, version, {"network_persona": document})
    return PersonaAnswer(name, version, document)


def uplink_tiers(instance: Mapping[str, Any]) -> dict[str, Tier]:
    tiers: dict[str, Tier] = {}
    for interface in instance.get("interfaces") or ():
        if isinstance(interface, Mapping) and interface.get("tier") in ("premium", "standard"):
            tiers[str(interface.get("name"))] = Tier(interface["tier"])
    return tiers


def parse_peer_view(body: Mapping[str, Any]) -> tuple[Peer, ...]:
    peers = body.get("peers")
    if not isinstance(peers, list):
        raise MalformedAnswer("peer view without a peers list")
    out = []
    try:
        for index, entry in enumerate(peers):
            labels = entry.get("labels") or {}
            priority = entry.get("priority")
            out.append(
                Peer(
                    instance=str(entry.get("id") or entry.get("instance") or f"peer-{index}"),
                    addresses=tuple(ip_address(a) for a in entry["addresses"]),
                    persona=entry.get("persona"),
                    labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
                    priority=priority if isinstance(priority, int) and 0 <= priority <= 7 else 0,
                )
            )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise MalformedAnswer(f"peer view entry is malformed: {exc}") from None
    return tuple(out)


def compose_facts(live: HostFacts, peers: tuple[Peer, ...]) -> HostFacts:
    """The live host facts with the peer view the service gave."""
    return replace(live, peers=peers)


def merge_peer_views(
    served: tuple[Peer, ...],
    served_at: float | None,
    learned: Iterable[PersonaCertificate],
) -> tuple[Peer, ...]:
    """The peer view to compile with: the service's, and what gossip learned, per instance
    the newest knowledge winning.

    ``served`` is the service's last peer view and ``served_at`` when the service said it (its
    own clock, as certificates' ``iat``; None before any answer); ``learned`` are the current
    certificates held for other VMs. An entry of the service and a certificate are the same
    instance when they share an address. A certificate issued after ``served_at`` is news the
    service's answer could not show, so it replaces the service's entry (or adds one); one issued
    at or before it is older than the answer, and the answer wins: a VM the service no longer
    lists, because it left the selectors, is not kept alive by its old certificate.
    """
    view = list(served)
    for cert in sorted(learned, key=lambda c: c.instance):
        if served_at is not None and cert.issued_at <= served_at:
            continue
        mine = set(cert.addresses)
        view = [p for p in view if mine.isdisjoint(p.addresses)]
        view.append(cert.peer())
    return tuple(sorted(view, key=lambda p: (p.instance, [str(a) for a in p.addresses])))
