"""The dataplane plan: everything a persona asks of one VM's kernel, as plain data.

A :class:`Plan` is what :func:`netpersona.compiler.compile_plan` returns and what the applier
makes true. It is a *desired state*, not a script: the applier diffs it against the kernel.

- ``nftables``: the objects of the table ``inet netpersona`` (table, named counters, sets, maps,
  chains, rules) in libnftables JSON (libnftables-json(5)), in load order. They are applied by
  :func:`replace_table_batch` as one kernel transaction that replaces the table whole.
- ``peer_sets``: the elements of the sets that follow the peer view. They are kept apart from
  ``nftables`` so that a peer change is an in-place set update, never a table reload;
  :attr:`Plan.ruleset_digest` does not depend on them.
- ``tc``, ``routes``, ``rules``, ``sysctls``, ``links``: the rest, each owned by the agent.
"""

from __future__ import annotations

import hashlib
import json
import operator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from netpersona.model.jsontree import JSON

__all__ = [
    "CONTROL_CLASS",
    "OWNED_TABLE",
    "PERSONA_CLASS",
    "PORT_SETS",
    "ROUTE_TABLE",
    "RULE_PRIORITY",
    "TABLE_FAMILY",
    "TABLE_NAME",
    "TC_HANDLE",
    "LinkSetting",
    "PeerSets",
    "Plan",
    "Route",
    "RoutingRule",
    "Sysctl",
    "TcClass",
    "TcQdisc",
    "dscp_chain",
    "dscp_verdict",
    "replace_table_batch",
]


TABLE_FAMILY = "inet"
TABLE_NAME = "netpersona"
OWNED_TABLE = f"{TABLE_FAMILY} {TABLE_NAME}"
# tc handle major 0x6e70 ("np"); the control class outranks the persona class (spec section 6).
TC_HANDLE = "6e70:"
ROOT_CLASS = "6e70:1"
CONTROL_CLASS = "6e70:10"
PERSONA_CLASS = "6e70:20"
# The routing table and rule preferences the agent owns (spec section 7).
ROUTE_TABLE = 7480
RULE_PRIORITY = 7480
MAIN_TABLE = 254
# Transport -> the named interval set of the destination ports the persona allows. The rules
# name the sets, so a change that only adds or removes ports changes only these sets' elements
# and is applied in place (docs/applier.md), not by replacing the table.
PORT_SETS = {"tcp": "allow_tcp", "udp": "allow_udp", "sctp": "allow_sctp"}


@dataclass(frozen=True, slots=True, order=True)
class Sysctl:
    # sysctl(8) spelling: dotted, with dots inside an interface name written as '/'
    # (net.ipv4.conf.eth0/100.rp_filter for eth0.100).
    key: str
    value: str


@dataclass(frozen=True, slots=True, order=True)
class LinkSetting:
    ifname: str
    mtu: int | None = None
    multicast: bool | None = None


@dataclass(frozen=True, slots=True, order=True)
class TcQdisc:
    dev: str
    handle: str
    parent: str  # "root" or a class id
    kind: Literal["htb"]
    default_class: str  # minor id of HTB's default class, e.g. "20"
    r2q: int | None = None


@dataclass(frozen=True, slots=True, order=True)
class TcClass:
    dev: str
    classid: str
    parent: str
    rate: int  # bits per second
    ceil: int  # bits per second
    burst: int | None  # bytes; None lets tc compute it from the rate
    prio: int


@dataclass(frozen=True, slots=True, order=True)
class Route:
    family: Literal[4, 6]
    table: int
    dst: str  # "default" or a prefix
    dev: str
    gateway: str | None = None
    src: str | None = None
    kind: Literal["unicast", "multicast"] = "unicast"


@dataclass(frozen=True, slots=True, order=True)
class RoutingRule:
    family: Literal[4, 6]
    priority: int
    table: int
    dst: str | None = None  # "to" selector
    suppress_prefixlength: int | None = None


def dscp_chain(dscp: int) -> str:
    """The chain that marks a packet with ``dscp`` (see ruleset.py: nft 1.0.6 cannot set a
    DSCP from a map lookup, so a verdict map jumps to one small chain per code point)."""
    return f"dscp_{dscp}"


def dscp_verdict(dscp: int) -> JSON:
    return {"goto": {"target": dscp_chain(dscp)}}


@dataclass(frozen=True, slots=True)
class PeerSets:
    """Elements of the peer-following sets (addresses as strings, sorted)."""

    addrs_v4: tuple[str, ...] = ()
    addrs_v6: tuple[str, ...] = ()
    dscp_v4: tuple[tuple[str, int], ...] = ()
    dscp_v6: tuple[tuple[str, int], ...] = ()

    def set_elements(self) -> dict[str, list[Any]]:
        """Set name -> libnftables JSON elements."""
        return {
            "peer_addrs_v4": list(self.addrs_v4),
            "peer_addrs_v6": list(self.addrs_v6),
            "peer_dscp_v4": [[addr, dscp_verdict(dscp)] for addr, dscp in self.dscp_v4],
            "peer_dscp_v6": [[addr, dscp_verdict(dscp)] for addr, dscp in self.dscp_v6],
        }

    def to_json(self) -> JSON:
        """The fields as they are (what ``asdict`` gives, without copying 100k tuples)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class Plan:
    nftables: tuple[JSON, ...]
    peer_sets: PeerSets = field(default_factory=PeerSets)
    tc: tuple[TcQdisc | TcClass, ...] = ()
    routes: tuple[Route, ...] = ()
    rules: tuple[RoutingRule, ...] = ()
    sysctls: tuple[Sysctl, ...] = ()
    links: tuple[LinkSetting, ...] = ()

    def to_json(self) -> JSON:
        return {**self._ruleset_json(), "peer_sets": self.peer_sets.to_json()}

    def _ruleset_json(self) -> JSON:
        return {
            "nftables": list(self.nftables),
            "tc": [{"type": type(op).__name__, **asdict(op)} for op in self.tc],
            "routes": [asdict(r) for r in self.routes],
            "rules": [asdict(r) for r in self.rules],
            "sysctls": [asdict(s) for s in self.sysctls],
            "links": [asdict(link) for link in self.links],
        }

    @property
    def digest(self) -> str:
        """A stable hash of the whole plan: equal plans, equal digests, on any machine.

        It is the SHA-256 of the plan's canonical JSON (sorted keys, no spaces). A peer
        update compiles a plan that shares everything but the peer sets with the last one,
        so the rest's text is kept from the last plan whose parts are the same objects, and
        the peer sets' text is joined from their addresses (json.dumps of 100k addresses is
        about 20 ms; the text is the same, which tests/compiler/test_plan_digest.py checks).
        """
        ruleset = _ruleset_text(self)
        if ruleset is None:
            return _digest(self.to_json())
        head, tail = ruleset.split(_PEERS_MARK, 1)
        digest = hashlib.sha256(head.encode())
        for piece in _peer_sets_text(self.peer_sets):
            digest.update(piece)
        digest.update(tail.encode())
        return digest.hexdigest()

    @property
    def ruleset_digest(self) -> str:
        """The hash of everything but the peer-set elements: unchanged by a peer update."""
        parts = _parts(self)
        cached = _RULESET_DIGEST
        if cached and len(cached[0]) == len(parts) and all(map(operator.is_, cached[0], parts)):
            known: str = cached[1]
            return known
        digest = _digest(self._ruleset_json())
        _RULESET_DIGEST[:] = [parts, digest]
        return digest

    def nftables_objects(self) -> list[JSON]:
        """The table's objects with the peer-set elements filled in, in load order."""
        elements = self.peer_sets.set_elements()
        objects: list[JSON] = []
        for obj in self.nftables:
            kind = next(iter(obj))
            body = obj[kind]
            if kind in ("set", "map") and elements.get(body["name"]):
                body = {**body, "elem": elements[body["name"]]}
            objects.append({kind: body})
        return objects


def _digest(body: JSON) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# Stands for the peer sets in the canonical text of the rest of a plan: a string no plan
# holds (a control character), so it is found exactly once.
_PEERS_MARK_VALUE = "\x00peer-sets\x00"
_PEERS_MARK = json.dumps(_PEERS_MARK_VALUE)
# The last plan parts whose texts were made, and those texts (one entry each: the agent
# compiles one plan after another, each sharing its parts with the last).
_RULESET_TEXT: list[Any] = []
_RULESET_DIGEST: list[Any] = []


def _parts(plan: Plan) -> tuple[Any, ...]:
    return (plan.nftables, plan.tc, plan.routes, plan.rules, plan.sysctls, plan.links)


def _ruleset_text(plan: Plan) -> str | None:
    """The canonical text of ``plan`` with the peer sets as :data:`_PEERS_MARK` (None in the
    unlikely case that the plan itself holds the mark)."""
    parts = _parts(plan)
    cached = _RULESET_TEXT
    if cached and len(cached[0]) == len(parts) and all(map(operator.is_, cached[0], parts)):
        text: str = cached[1]
        return text
    body = {**plan._ruleset_json(), "peer_sets": _PEERS_MARK_VALUE}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    if text.count(_PEERS_MARK) != 1:
        return None
    _RULESET_TEXT[:] = [parts, text]
    return text


# Bytes json.dumps writes as they are: printable ASCII but '"' and '\\'.
_VERBATIM = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')


def _strings_text(texts: tuple[str, ...]) -> bytes:
    """``json.dumps(list(texts), separators=(",", ":"))``, encoded, by a join when nothing in
    them needs escaping (addresses never do): a few C passes over the bytes instead of one
    Python call per string."""
    if not texts:
        return b"[]"
    joined = '","'.join(texts)
    if joined.isascii():
        data = joined.encode()
        # Left after deleting what is written verbatim: only the separators' quotes.
        if data.translate(None, _VERBATIM) == b'""' * (len(texts) - 1):
            return b'["' + data + b'"]'
    return json.dumps(list(texts), separators=(",", ":")).encode()


def _peer_sets_text(peers: PeerSets) -> list[bytes]:
    """The canonical JSON of ``peers.to_json()``, encoded, in pieces (keys sorted: the field
    names are)."""
    pairs = (",", ":")
    return [
        b'{"addrs_v4":',
        _strings_text(peers.addrs_v4),
        b',"addrs_v6":',
        _strings_text(peers.addrs_v6),
        b',"dscp_v4":',
        json.dumps(peers.dscp_v4, separators=pairs).encode(),
        b',"dscp_v6":',
        json.dumps(peers.dscp_v6, separators=pairs).encode(),
        b"}",
    ]


def replace_table_batch(objects: list[JSON]) -> JSON:
    """One libnftables JSON document that replaces ``inet netpersona`` in a single transaction.

    ``add table`` first makes ``delete table`` safe when the table does not exist yet; the
    kernel commits the whole batch or none of it, so no packet ever sees a half-built table.
    Only this table is named: other tables and the rest of the ruleset are never touched.
    """
    table = {"family": TABLE_FAMILY, "name": TABLE_NAME}
    commands: list[JSON] = [
        {"metainfo": {"json_schema_version": 1}},
        {"add": {"table": table}},
        {"delete": {"table": table}},
    ]
    commands += [{"add": obj} for obj in objects]
    return {"nftables": commands}
