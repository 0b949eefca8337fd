"""A persona as the catalogue keeps it, and the persona an instance is served.

:class:`PersonaVersion` is one version of a named persona document (the admin API's catalogue
entry, what the store keeps, what the policy engine assigns from). :class:`EffectivePersona`
is what one instance holds: a persona's document after the policy's overlays, with the name
and version it derives from; its JSON form is the body of ``GET /v1/instance/network_persona``
when a persona is assigned (:func:`unassigned_json` when none is).

Both carry the parsed :class:`~netpersona.model.Persona`, parsed once: a stored document when
it is first used after being loaded or written, an effective one when it is made.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netpersona.errors import InvalidDocument
from netpersona.model import Persona, parse_persona
from netpersona.model.labels import check_persona_name
from netpersona.records.reading import Reader, answer, integer, number, text

__all__ = ["EffectivePersona", "PersonaVersion", "canonical_json", "digest_of", "unassigned_json"]

MAX_VERSION = 2**63 - 1
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def canonical_json(document: Mapping[str, Any]) -> str:
    """The one text of a document: keys sorted, no spaces (what is stored and hashed)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def digest_of(document: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON: equal digests mean equal documents."""
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


def _name(raw: Any) -> str | None:
    return raw if isinstance(raw, str) and check_persona_name(raw) is None else None


def _mapping(raw: Any) -> Mapping[str, Any] | None:
    return raw if isinstance(raw, Mapping) else None


def _parsed(document: Mapping[str, Any]) -> Persona | InvalidDocument:
    try:
        return parse_persona(document)
    except InvalidDocument as exc:
        return exc


@dataclass(frozen=True, slots=True)
class PersonaVersion:
    """One version of a persona in the catalogue; ``document`` is the inner ``network_persona``
    mapping as canonical JSON, exactly as stored."""

    name: str
    version: int
    document: str
    created_at: float = 0.0
    created_by: str = ""
    restored_from: int | None = None
    # The document decoded and parsed, on first use (the object is shared, the work done once).
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, name: str, version: int, body: Mapping[str, Any], **rest: Any) -> PersonaVersion:
        """A version holding ``body`` (the inner mapping), stored in canonical form."""
        return cls(name, version, canonical_json(body), **rest)

    @property
    def body(self) -> Mapping[str, Any]:
        if "body" not in self._memo:
            self._memo["body"] = json.loads(self.document)
        body: Mapping[str, Any] = self._memo["body"]
        return body

    @property
    def digest(self) -> str:
        """:func:`digest_of` the document (whatever spelling it was stored in)."""
        if "digest" not in self._memo:
            self._memo["digest"] = digest_of(self.body)
        digest: str = self._memo["digest"]
        return digest

    def _parse(self) -> Persona | InvalidDocument:
        if "parsed" not in self._memo:
            self._memo["parsed"] = _parsed(self.body)
        parsed: Persona | InvalidDocument = self._memo["parsed"]
        return parsed

    @property
    def persona(self) -> Persona | None:
        """The document parsed; None when it does not validate (see :attr:`problems`)."""
        parsed = self._parse()
        return parsed if isinstance(parsed, Persona) else None

    @property
    def problems(self) -> InvalidDocument | None:
        """Why the document does not validate (stored past the checks, or by older rules)."""
        parsed = self._parse()
        return parsed if isinstance(parsed, InvalidDocument) else None

    def effective(self) -> EffectivePersona:
        """This version served as it is: no overlays."""
        return EffectivePersona(self.name, self.version, (), self.digest, self.body, self.persona)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "network_persona": dict(self.body),
            "created_at": self.created_at,
            "created_by": self.created_by,
            "restored_from": self.restored_from,
        }

    @classmethod
    def from_json(cls, data: object, at: str = "") -> PersonaVersion:
        """The JSON form back; :class:`~netpersona.errors.MalformedAnswer` when it is not one.
        The document is kept as written (it is validated when it is used)."""
        reader = Reader()
        keys = ("name", "version", "network_persona", "created_at", "created_by")
        fields = reader.mapping(data, at, "a persona version", (*keys, "restored_from"))
        if fields is None:
            return answer(reader, None, "persona version")
        versions = integer(1, MAX_VERSION)
        name = reader.value(fields, "name", at, _name, "a persona name")
        version = reader.value(fields, "version", at, versions, "a persona version")
        body = reader.value(fields, "network_persona", at, _mapping, "a mapping")
        created_at = reader.value(fields, "created_at", at, number, "a time in seconds", 0.0)
        created_by = reader.value(fields, "created_by", at, text, "a string", "")
        restored = reader.optional(fields, "restored_from", at, versions, "a persona version")
        if name is None or version is None or body is None:
            return answer(reader, None, "persona version")
        made = cls.of(
            name,
            version,
            body,
            created_at=created_at,
            created_by=created_by,
            restored_from=restored,
        )
        return answer(reader, made, "persona version")


@dataclass(frozen=True, slots=True)
class EffectivePersona:
    """The persona an instance is served: the document after overlays, the name and version of
    the stored persona it derives from (the assigned one, or the last one an ``override``
    overlay replaced it with, e.g. quarantine), and the overlays applied, in order.

    Two instances hold the same effective persona when name, version, overlays and digest are
    equal; ``document`` and ``persona`` are not compared. ``persona`` is None only for a stored
    document that does not validate, which is still served as stored (the agent refuses it and
    says why).
    """

    name: str
    version: int
    overlays: tuple[str, ...]
    digest: str
    document: Mapping[str, Any] = field(compare=False, repr=False)
    persona: Persona | None = field(compare=False, repr=False)

    @classmethod
    def of(
        cls, name: str, version: int, overlays: tuple[str, ...], document: Mapping[str, Any]
    ) -> EffectivePersona:
        """A document that validated (``InvalidDocument`` otherwise), with its digest."""
        return cls(name, version, overlays, digest_of(document), document, parse_persona(document))

    def to_json(self) -> dict[str, Any]:
        return {
            "assigned": True,
            "name": self.name,
            "version": self.version,
            "overlays": list(self.overlays),
            "digest": self.digest,
            "network_persona": dict(self.document),
        }

    @classmethod
    def from_json(cls, data: object, at: str = "") -> EffectivePersona:
        """The assigned form back (:func:`unassigned_json` is not one);
        :class:`~netpersona.errors.MalformedAnswer` when it is not that form.

        A document that does not validate is still the operator's persona: it is kept, with
        ``persona`` None, for the caller to report why.
        """
        reader = Reader()
        keys = ("assigned", "name", "version", "overlays", "digest", "network_persona")
        fields = reader.mapping(data, at, "an assigned persona", keys)
        if fields is None:
            return answer(reader, None, "persona answer")
        reader.value(fields, "assigned", at, _true, "true (a persona is assigned)")
        name = reader.value(fields, "name", at, _name, "a persona name")
        version = reader.value(fields, "version", at, integer(1, MAX_VERSION), "a version")
        overlays = reader.items(fields, "overlays", at, _overlay, "an overlay name")
        digest = reader.value(fields, "digest", at, _digest, "a SHA-256 digest (64 hex digits)")
        body = reader.value(fields, "network_persona", at, _mapping, "a mapping")
        if name is None or version is None or digest is None or body is None:
            return answer(reader, None, "persona answer")
        parsed = _parsed(body)
        persona = parsed if isinstance(parsed, Persona) else None
        return answer(reader, cls(name, version, overlays, digest, body, persona), "persona")


def _overlay(raw: Any) -> str | None:
    return raw if isinstance(raw, str) and raw else None


def _true(raw: Any) -> bool | None:
    return True if raw is True else None


def _digest(raw: Any) -> str | None:
    return raw if isinstance(raw, str) and _DIGEST.match(raw) else None


def unassigned_json() -> dict[str, Any]:
    """The persona answer of an instance that holds no persona."""
    return {
        "assigned": False,
        "name": None,
        "version": None,
        "overlays": [],
        "network_persona": None,
    }
