"""The service's answers as the agent accepts them: strict, pure parsers (docs/metadata-api.md).

Every answer is checked against its documented shape before anything uses it. One that does
not have it is refused whole with :class:`MalformedAnswer`, whose message names the path, the
JSON pointer and the bad value; the agent then keeps what it had. Fields beyond the documented
ones are ignored, so the service may add some.

Bytes are checked before they are parsed: an answer nested deeper than :data:`MAX_DEPTH` is
refused without handing it to a recursive parser.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING, Any

from netpersona.compiler.peer_delta import common_prefix
from netpersona.errors import InvalidDocument, MalformedAnswer
from netpersona.model.collector import collector_paused
from netpersona.model.jsontree import JSON
from netpersona.records import Peer, Tier

if TYPE_CHECKING:  # its module loads the JOSE library, which only the control channel needs
    from netpersona.certs.keys import KeySet

__all__ = [
    "MAX_DEPTH",
    "MAX_REVISION_DIGITS",
    "MAX_TOKEN_LENGTH",
    "InstanceAnswer",
    "NetworkAnswer",
    "PeersAnswer",
    "PeersAnswerParser",
    "PersonaAnswer",
    "decode_json",
    "parse_certificate",
    "parse_instance",
    "parse_key_set",
    "parse_network",
    "parse_peer_view",
    "parse_peers_answer",
    "parse_revision",
    "parse_persona_answer",
    "parse_token",
]

# Deeper than any documented answer (a persona document is a handful of levels).
MAX_DEPTH = 32
# A session token is an HMAC in printable ASCII; anything longer is not one of ours.
MAX_TOKEN_LENGTH = 512
# A compact JWS of a certificate binding at most 8 addresses and 16 labels.
MAX_CERTIFICATE_LENGTH = 16384
_NOT_MARKS = bytes(c for c in range(256) if c not in b'[]{}"')
_SQUARE = bytes.maketrans(b"{}", b"[]")
_TIERS = {"premium": Tier.PREMIUM, "standard": Tier.STANDARD}


def _bad(where: str, pointer: str, message: str) -> MalformedAnswer:
    return MalformedAnswer(f"{where}: {pointer or '/'}: {message}")


def _show(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else None
    return (text or type(value).__name__)[:80]


def json_depth(raw: bytes, most: int = MAX_DEPTH) -> int:
    """How deeply ``raw`` nests arrays and objects (``most + 1`` for anything deeper), counted
    without parsing it, in passes over the bytes that each run at memory speed (a peers
    answer is megabytes): escaped backslashes and quotes dropped, then every byte but quotes
    and brackets, then the strings (what lies between a quote and the next), then, once per
    level, every innermost pair of brackets. Exact for JSON; what is not JSON fails to parse.
    """
    marks = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_MARKS)
    # Two quotes side by side enclose nothing: dropping them changes no byte's side.
    nesting = b"".join(marks.replace(b'""', b"").split(b'"')[::2]).translate(_SQUARE)
    depth = 0
    while depth <= most:
        inner = nesting.replace(b"[]", b"")
        if len(inner) == len(nesting):
            break
        nesting, depth = inner, depth + 1
    return depth


def decode_json(raw: bytes, where: str, *, max_depth: int = MAX_DEPTH) -> JSON:
    """The JSON object ``raw`` holds; refused when it is not one or nests too deeply."""
    if json_depth(raw, max_depth) > max_depth:
        raise _bad(where, "", f"nested deeper than {max_depth} levels")
    # A JSON document holds no cycles, so the collector has nothing to find in it; run while
    # a 100k-peer answer is built (1.5M objects), it walks the agent's heap again and again
    # (0.37-0.48 s of a 0.46 s decode here, against 0.12-0.14 s paused).
    try:
        with collector_paused():
            body = json.loads(raw)
    except (ValueError, RecursionError):
        raise _bad(where, "", "not JSON") from None
    if not isinstance(body, dict):
        raise _bad(where, "", f"expected an object, got {_show(body)}")
    return body


def parse_token(raw: bytes) -> str:
    """A session token: printable ASCII without spaces, bounded, so it can go in a header."""
    where = "PUT /v1/token"
    token = raw.strip()
    if not 1 <= len(token) <= MAX_TOKEN_LENGTH:
        raise _bad(where, "", f"a token of {len(token)} bytes (expected 1-{MAX_TOKEN_LENGTH})")
    if not all(0x21 <= c <= 0x7E for c in token):
        raise _bad(where, "", "the token is not printable ASCII")
    return token.decode("ascii")


MAX_REVISION_DIGITS = 18


def parse_revision(value: str | None) -> int | None:
    """An ``X-Netpersona-Revision`` header: a whole number of at most
    :data:`MAX_REVISION_DIGITS` digits. Anything else (or none) is None: not trusted, and no
    reason to refuse the answer it came with (the revision only steers which replica catches
    up)."""
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_REVISION_DIGITS):
        return None
    return int(text)


@dataclass(frozen=True, slots=True)
class InstanceAnswer:
    """``GET /v1/instance`` as the agent uses it: who it is, and its uplinks' tiers."""

    id: str
    tiers: Mapping[str, Tier] = field(default_factory=dict)


def parse_instance(body: Mapping[str, Any]) -> InstanceAnswer:
    where = "GET /v1/instance"
    instance_id = body.get("id")
    if not isinstance(instance_id, str) or not instance_id:
        raise _bad(where, "/id", f"{_show(instance_id)} is not an instance id")
    interfaces = body.get("interfaces", [])
    if not isinstance(interfaces, list):
        raise _bad(where, "/interfaces", f"{_show(interfaces)} is not a list")
    tiers: dict[str, Tier] = {}
    for index, interface in enumerate(interfaces):
        at = f"/interfaces/{index}"
        if not isinstance(interface, Mapping):
            raise _bad(where, at, f"{_show(interface)} is not an object")
        name, tier = interface.get("name"), interface.get("tier")
        if not isinstance(name, str) or not name:
            raise _bad(where, f"{at}/name", f"{_show(name)} is not an interface name")
        if tier is not None and tier not in _TIERS:
            raise _bad(where, f"{at}/tier", f"{_show(tier)} is not premium, standard or null")
        if tier is not None:
            tiers[name] = _TIERS[tier]
    return InstanceAnswer(instance_id, tiers)


@dataclass(frozen=True, slots=True)
class PersonaAnswer:
    """``GET /v1/instance/network_persona``: a persona, or (all None) the word to remove it."""

    name: str | None
    version: int | None
    document: Mapping[str, Any] | None
    overlays: tuple[str, ...] = ()
    digest: str | None = None


NO_PERSONA = PersonaAnswer(None, None, None)
_NO_PERSONA_FORM: tuple[tuple[str, object], ...] = (
    ("name", None),
    ("version", None),
    ("overlays", []),
    ("network_persona", None),
)


def parse_persona_answer(body: Mapping[str, Any]) -> PersonaAnswer:
    """Only the exact "no persona" form removes the persona; anything short of either form is
    garbage (an empty object must never read as "remove everything")."""
    where = "GET /v1/instance/network_persona"
    assigned = body.get("assigned")
    if not isinstance(assigned, bool):
        raise _bad(where, "/assigned", f"{_show(assigned)} is not true or false")
    if not assigned:
        for key, empty in _NO_PERSONA_FORM:
            if key not in body or body[key] != empty:
                raise _bad(where, f"/{key}", f"{_show(body.get(key))} with assigned false")
        return NO_PERSONA
    name, version, digest = body.get("name"), body.get("version"), body.get("digest")
    overlays, document = body.get("overlays"), body.get("network_persona")
    if not isinstance(name, str) or not name:
        raise _bad(where, "/name", f"{_show(name)} is not a persona name")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _bad(where, "/version", f"{_show(version)} is not a version (an integer >= 1)")
    if not isinstance(overlays, list) or not all(isinstance(o, str) for o in overlays):
        raise _bad(where, "/overlays", f"{_show(overlays)} is not a list of overlay names")
    if not isinstance(digest, str):
        raise _bad(where, "/digest", f"{_show(digest)} is not a digest")
    if not isinstance(document, Mapping):
        raise _bad(where, "/network_persona", f"{_show(document)} is not an object")
    return PersonaAnswer(name, version, document, tuple(overlays), digest)


def _peer(entry: object, at: str, where: str) -> Peer:
    try:
        return Peer.from_json(entry, at)
    except MalformedAnswer as exc:
        raise MalformedAnswer(f"{where}: {exc}") from None


def parse_peer_view(body: Mapping[str, Any]) -> tuple[Peer, ...]:
    return _peer_view(body, None)


def _peer_view(body: Mapping[str, Any], last: _Entries | None) -> tuple[Peer, ...]:
    where = "GET /v1/instance/peers"
    peers = body.get("peers")
    if not isinstance(peers, list):
        raise _bad(where, "/peers", f"{_show(peers)} is not a list")
    return _peer_list(peers, "/peers", where, last)


@dataclass(frozen=True, slots=True)
class _Entries:
    """One list of peer entries of an answer as it came (each one valid) and as parsed."""

    raw: list[Any]
    peers: tuple[Peer, ...]


def _same(entry: Any, known: dict[str, Any]) -> bool:
    """Whether ``entry`` is the (valid) entry ``known`` again, value for value.

    ``true == 1`` and ``1.0 == 1`` in Python, so the fields whose values are JSON numbers must
    have the same types too. (Every other field of a valid entry is a string, a list of
    strings or an object of strings, which no other JSON value equals.)
    """
    get, was = entry.get, known.get
    return (
        entry == known
        and type(get("priority")) is type(was("priority"))
        and type(get("dscp")) is type(was("dscp"))
        and type(get("persona_version")) is type(was("persona_version"))
    )


def _peer_list(entries: list[Any], at: str, where: str, last: _Entries | None) -> tuple[Peer, ...]:
    """The entries parsed; with ``last`` (the same list of the previous answer), an entry equal
    to one of ``last`` is that entry's ``Peer`` object again, not a new one.

    When no entry has a number field that is not an integer, the common head and tail of the
    two lists are found a chunk at a time in C. The entries between are walked alongside the
    previous ones (a peer that joins, leaves or changes shifts the rest by at most one); an
    entry that is neither the next one nor the one after is looked up by its instance id (the
    index made at the first such entry).
    """
    if last is None or not last.raw:
        return tuple(_peer(entry, f"{at}/{index}", where) for index, entry in enumerate(entries))
    raw, known = last.raw, last.peers
    head = tail = 0
    if _plain_numbers(entries):
        head = common_prefix(entries, raw)
        rest = min(len(entries), len(raw)) - head
        tail = common_prefix(entries[::-1][:rest], raw[::-1][:rest])
    end, raw_end = len(entries) - tail, len(raw) - tail
    parsed: list[Peer] = list(known[:head])
    by_instance: dict[Any, int] | None = None
    j = head
    for index in range(head, end):
        entry = entries[index]
        if j < raw_end and _same(entry, raw[j]):
            parsed.append(known[j])
            j += 1
            continue
        if j + 1 < raw_end and _same(entry, raw[j + 1]):
            parsed.append(known[j + 1])
            j += 2
            continue
        if by_instance is None:
            by_instance = {raw[k]["instance"]: k for k in range(head, raw_end)}
        instance = entry.get("instance") if isinstance(entry, dict) else None
        k = by_instance.get(instance) if isinstance(instance, str) else None
        if k is not None and _same(entry, raw[k]):
            parsed.append(known[k])
            j = k + 1
            continue
        parsed.append(_peer(entry, f"{at}/{index}", where))
    parsed.extend(known[raw_end:])
    return tuple(parsed)


# The entry fields whose values are JSON numbers (see _same).
_NUMBER_FIELDS = ("priority", "dscp", "persona_version")
_PLAIN = frozenset((int, type(None)))


def _plain_numbers(entries: list[Any]) -> bool:
    """Whether every entry is an object whose number fields are integers or absent: then an
    entry equal to a valid one is the same entry (``==`` alone says it, in C)."""
    try:
        return all(
            set(map(type, map(dict.get, entries, repeat(field)))) <= _PLAIN
            for field in _NUMBER_FIELDS
        )
    except TypeError:  # an entry that is not an object
        return False


@dataclass(frozen=True, slots=True)
class NetworkAnswer:
    """The peers answer's ``network`` part: the higher-priority VMs of this VM's networks
    (instance, addresses, priority and DSCP only) and its gossip seeds."""

    members: tuple[Peer, ...] = ()
    seeds: tuple[Peer, ...] = ()
    truncated: bool = False


def parse_network(body: Mapping[str, Any]) -> NetworkAnswer | None:
    """The ``network`` part of ``GET /v1/instance/peers``; None from a service without it."""
    return _network(body, {})


def _network(body: Mapping[str, Any], last: dict[str, _Entries]) -> NetworkAnswer | None:
    where = "GET /v1/instance/peers"
    network = body.get("network")
    if network is None:
        return None
    if not isinstance(network, Mapping):
        raise _bad(where, "/network", f"{_show(network)} is not an object")
    parts: dict[str, tuple[Peer, ...]] = {}
    for name in ("members", "seeds"):
        entries = network.get(name, [])
        if not isinstance(entries, list):
            raise _bad(where, f"/network/{name}", f"{_show(entries)} is not a list")
        parts[name] = _peer_list(entries, f"/network/{name}", where, last.get(name))
    truncated = network.get("truncated", False)
    if not isinstance(truncated, bool):
        raise _bad(where, "/network/truncated", f"{_show(truncated)} is not true or false")
    return NetworkAnswer(parts["members"], parts["seeds"], truncated)


PeersAnswer = tuple[tuple[Peer, ...], NetworkAnswer | None]


def parse_peers_answer(body: Mapping[str, Any]) -> PeersAnswer:
    """The whole peers answer: the peer view and its network part."""
    return parse_peer_view(body), parse_network(body)


class PeersAnswerParser:
    """:func:`parse_peers_answer` that keeps its last answer, for an agent that parses every
    answer of the peers view (up to 100k entries) as it comes.

    The same body object again gives the same result (no parsing); a new body gives a result
    in which every entry equal to one of the last answer's is the ``Peer`` object parsed then,
    so a peer that joins costs one entry's parsing and comparing the others, and the compiler,
    which compares views by object first, sees the unchanged entries as unchanged at once. A
    body that does not parse changes nothing kept.
    """

    def __init__(self) -> None:
        self._body: Mapping[str, Any] | None = None
        self._answer: PeersAnswer = ((), None)
        self._entries: dict[str, _Entries] = {}

    def __call__(self, body: Mapping[str, Any]) -> PeersAnswer:
        if body is self._body:
            return self._answer
        served = _peer_view(body, self._entries.get("peers"))
        network = _network(body, self._entries)
        entries = {"peers": _Entries(body["peers"], served)}
        if network is not None:
            raw = body["network"]
            entries["members"] = _Entries(raw.get("members", []), network.members)
            entries["seeds"] = _Entries(raw.get("seeds", []), network.seeds)
        self._body, self._answer, self._entries = body, (served, network), entries
        return self._answer


def parse_certificate(body: Mapping[str, Any]) -> str | None:
    """This VM's certificate (a compact JWS), or None when the service has none for it."""
    where = "GET /v1/instance/certificate"
    token = body.get("certificate")
    if token is None:
        return None
    if not isinstance(token, str) or not 1 <= len(token) <= MAX_CERTIFICATE_LENGTH:
        raise _bad(where, "/certificate", f"{_show(token)} is not a certificate")
    if not token.isascii():
        raise _bad(where, "/certificate", "not ASCII")
    return token


def parse_key_set(body: Mapping[str, Any]) -> KeySet:
    from netpersona.certs.keys import KeySet  # noqa: PLC0415

    try:
        return KeySet.from_jwks(body)
    except InvalidDocument as exc:
        raise MalformedAnswer(f"GET /v1/keys: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise _bad("GET /v1/keys", "/keys", f"{type(exc).__name__}: {exc}") from None
