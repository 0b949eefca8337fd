"""What the metadata service keeps, and the :class:`Store` seam it keeps it behind.

The records are frozen values (an instance and a persona version are the shared records of
:mod:`netpersona.records`, re-exported here); the :class:`Store` protocol is everything the
service asks of a backend, so a PostgreSQL store can replace the SQLite one without the API
code changing. A store checks what only it can check atomically (existence, uniqueness, the
revision an ``If-Match`` names) and records every change in the audit log in the same
transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from netpersona.records import Instance, Interface, PersonaVersion, Tier

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Change",
    "ContextEntry",
    "FleetData",
    "FleetDelta",
    "Instance",
    "InstanceStatus",
    "Interface",
    "IssuedCertificate",
    "Page",
    "PersonaVersion",
    "PRUNED_CHANGES",
    "PolicyVersion",
    "Role",
    "Store",
    "Tier",
]

T = TypeVar("T")


def _fields_json(record: DataclassInstance, **values: object) -> dict[str, Any]:
    """The record's fields by name, in order and not copied (unlike ``dataclasses.asdict``),
    with ``values`` in place of the fields they name."""
    return {**{f.name: getattr(record, f.name) for f in fields(record)}, **values}


class Role(StrEnum):
    """What an API token may do; each role can do everything the ones before it can."""

    READER = "reader"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return ("reader", "operator", "admin").index(self.value)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """One version of the persona policy: the document as stored (canonical JSON), which holds
    ``persona_policy`` and, optionally, the ``tests`` it was saved with."""

    version: int
    document: str
    created_at: float
    created_by: str

    @property
    def body(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.document)
        return loaded

    def to_json(self) -> dict[str, Any]:
        return _fields_json(self, document=self.body)


@dataclass(frozen=True, slots=True)
class ContextEntry:
    key: str
    value: str
    revision: int
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return _fields_json(self)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: float
    actor: str
    action: str  # e.g. persona.put, instance.labels
    target: str  # e.g. persona/db, instance/vm1
    before: Any  # the record before the change (plain JSON data), None on create
    after: Any  # the record after, None on delete

    def to_json(self) -> dict[str, Any]:
        return _fields_json(self)


@dataclass(frozen=True, slots=True)
class Change:
    """One committed write, in the store's change sequence.

    ``seq`` only grows, in commit order (not necessarily by one); ``kind`` and ``key`` name
    what changed (``instance``/``vm1``, ``persona``/``db``, ``policy``/``""``, ``status``/``vm1``,
    ``certificate``/``vm1``, ...), so a replica that missed a notification knows what to re-read.
    """

    seq: int
    kind: str
    key: str
    at: float


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An admin API token as stored: its secret is only ever kept as a SHA-256 hash."""

    id: str
    name: str
    role: Role
    created_at: float
    created_by: str

    def to_json(self) -> dict[str, Any]:
        return _fields_json(self, role=self.role.value)


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """The last report an instance's agent made about applying its persona."""

    instance_id: str
    persona: str | None
    version: int | None
    result: str
    message: str
    drops: tuple[tuple[str, int], ...]
    reported_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance_id,
            "persona": self.persona,
            "version": self.version,
            "result": self.result,
            "message": self.message,
            "drops": dict(self.drops),
            "reported_at": self.reported_at,
        }


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """The last persona certificate issued to an instance (spec section 8).

    ``summary`` is the canonical JSON of what the certificate vouches for (everything but its
    times and ``seq``, with the signing key id), so a change is found by comparing it. The row
    outlives the instance: ``seq`` must keep growing if the id comes back.
    """

    instance_id: str
    seq: int
    summary: str
    token: str
    issued_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class FleetData:
    """Everything the VM-facing views derive from, read in one consistent transaction.

    ``revision`` is the sequence number of the last change (the newest audit entry), so two
    reads can be ordered and an older one never replaces a newer one.
    """

    revision: int
    instances: tuple[Instance, ...]
    personas: Mapping[str, PersonaVersion]  # current version of every persona
    context: Mapping[str, str] = field(default_factory=dict)
    policy: PolicyVersion | None = None  # the current policy; None: none (or deleted)
    changes: int = 0  # the newest change's seq this read includes (see :meth:`Store.fleet_delta`)


# Changes that leave the fleet's views as they are (they only move its revision on).
VIEWLESS_CHANGES = frozenset({"token", "certificate", "status", "secret"})
# The kind of the change :meth:`Store.changes_since` puts first for a reader whose position is
# older than what :meth:`Store.prune_changes` removed: anything may have changed since.
PRUNED_CHANGES = "pruned"


@dataclass(frozen=True, slots=True)
class FleetDelta:
    """What changed in the fleet since a read (:meth:`Store.fleet_delta`), as it is now, in one
    consistent transaction with ``revision`` (as :attr:`FleetData.revision`) and ``changes``:
    the instances written since and those deleted since; the personas written or deleted since
    (name -> current version, None: deleted); the context keys set or deleted since (key ->
    value, None: deleted); and, when the policy was written or deleted since
    (``policy_changed``), the current one (None: none)."""

    revision: int
    changes: int
    upserted: tuple[Instance, ...]
    removed: tuple[str, ...]
    personas: Mapping[str, PersonaVersion | None] = field(default_factory=dict)
    context: Mapping[str, str | None] = field(default_factory=dict)
    policy_changed: bool = False
    policy: PolicyVersion | None = None

    @property
    def empty(self) -> bool:
        """Whether nothing a view derives from changed (a token, a status report, ...)."""
        return not (
            self.upserted or self.removed or self.personas or self.context or self.policy_changed
        )


class Store(Protocol):
    """The service's storage seam. Every method is blocking; the service calls it off-loop.

    Writes take the ``actor`` (for the audit log) and, where the API offers ``If-Match``, the
    revision or version the caller last saw (``None`` = unconditional); a mismatch raises
    :class:`~netpersona.errors.PreconditionFailed`. Missing records raise ``NotFound``,
    duplicates ``Conflict``, references to missing records ``InvalidDocument``.
    """

    # instances
    def create_instance(self, spec: Instance, actor: str) -> Instance:
        """Store ``spec`` as the operator described it: the store sets its pin (none),
        revision and times."""
        ...

    def import_instances(self, specs: Sequence[Instance], actor: str) -> int:
        """Create all of ``specs`` (pins included) in one transaction, or none; how many."""
        ...

    def get_instance(self, instance_id: str) -> Instance: ...
    def list_instances(self, limit: int, cursor: str | None = None) -> Page[Instance]: ...
    def replace_instance(self, spec: Instance, actor: str, expect: int | None = None) -> Instance:
        """Replace what the operator describes (name, addresses, interfaces, labels) of the
        instance ``spec.id``; its pin and creation time are kept."""
        ...

    def delete_instance(self, instance_id: str, actor: str, expect: int | None = None) -> None: ...
    def patch_labels(
        self,
        instance_id: str,
        changes: Mapping[str, str | None],
        actor: str,
        expect: int | None = None,
    ) -> Instance: ...
    def set_pin(
        self, instance_id: str, persona: str | None, actor: str, expect: int | None = None
    ) -> Instance: ...

    # personas
    def put_persona(
        self,
        name: str,
        document: str,
        actor: str,
        expect: int | None = None,
        create_only: bool = False,
    ) -> PersonaVersion: ...
    def get_persona(self, name: str, version: int | None = None) -> PersonaVersion: ...
    def list_personas(self, limit: int, cursor: str | None = None) -> Page[PersonaVersion]: ...
    def persona_history(
        self, name: str, limit: int, cursor: str | None = None
    ) -> Page[PersonaVersion]: ...
    def restore_persona(
        self, name: str, version: int, actor: str, expect: int | None = None
    ) -> PersonaVersion: ...
    def delete_persona(self, name: str, actor: str, expect: int | None = None) -> None: ...

    # the persona policy (one document, versioned like a persona)
    def put_policy(self, document: str, actor: str, expect: int | None = None) -> PolicyVersion:
        """A new version (the same document again is not one); ``expect`` as with If-Match."""
        ...

    def get_policy(self, version: int | None = None) -> PolicyVersion: ...
    def policy_history(self, limit: int, cursor: str | None = None) -> Page[PolicyVersion]: ...
    def delete_policy(self, actor: str, expect: int | None = None) -> None: ...

    # network context
    def list_context(self) -> Sequence[ContextEntry]: ...
    def get_context(self, key: str) -> ContextEntry: ...
    def set_context(
        self, key: str, value: str, actor: str, expect: int | None = None
    ) -> ContextEntry: ...
    def delete_context(self, key: str, actor: str, expect: int | None = None) -> None: ...

    # audit
    def list_audit(
        self, limit: int, cursor: str | None = None, target: str | None = None
    ) -> Page[AuditEntry]: ...

    # API tokens
    def create_token(self, name: str, role: Role, actor: str) -> tuple[ApiToken, str]: ...
    def token_for_secret(self, secret: str) -> ApiToken | None: ...
    def list_tokens(self) -> Sequence[ApiToken]: ...
    def revoke_token(self, token_id: str, actor: str) -> None: ...

    # agent reports
    def record_status(self, status: InstanceStatus) -> None: ...
    def get_status(self, instance_id: str) -> InstanceStatus: ...

    # whole-fleet read for the VM-facing views, and service secrets
    def fleet(self) -> FleetData: ...
    def fleet_delta(self, since: int, limit: int) -> FleetDelta | None:
        """What changed after change ``since`` (a :attr:`FleetData.changes`), when at most
        ``limit`` changes were made and all of a kind it knows (instances, personas, the
        context, the policy, and those that change no view); else None (read the fleet)."""
        ...

    # -- the change sequence (what replicas catch up with) ------------------------------------
    def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """The committed changes after ``seq``, oldest first (at most ``limit``)."""
        ...

    def last_change(self) -> int:
        """The newest change's ``seq`` (0: none yet)."""
        ...

    def prune_changes(self, keep: int, before: float) -> int:
        """Delete the changes made before ``before`` (a Unix time) that are not among the
        newest ``keep``; how many. A reader behind what was removed is told, never misled:
        :meth:`changes_since` starts with a :data:`PRUNED_CHANGES` change and
        :meth:`fleet_delta` answers None (read the fleet)."""
        ...

    def schema_versions(self) -> tuple[int, int]:
        """(the database's schema version, the newest this netpersona knows), read from the
        database now (a readiness check: it is reachable and migrated)."""
        ...

    # -- persona certificates (the newest issued to each instance, ever) ---------------------
    def certificates(self) -> Sequence[IssuedCertificate]: ...
    def save_certificates(self, issued: Sequence[IssuedCertificate]) -> None: ...
    def secret(self, name: str) -> bytes: ...
    def close(self) -> None: ...

    # -- the store itself ---------------------------------------------------------------------
    @property
    def created(self) -> bool:
        """Whether opening this store made it (a first start), rather than finding it."""
        ...

    def skipped_rows(self) -> Mapping[str, int]:
        """How many rows of each table cannot be read back and are skipped (each is logged)."""
        ...
