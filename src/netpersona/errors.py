"""Every error netpersona raises, in one closed tree.

    NetpersonaError                 code                  exit  http
    +-- InvalidDocument             invalid_document         1   422
    +-- InvalidValue (ValueError)   invalid_value            1   422
    |   +-- UnitError               invalid_value            1   422
    |   +-- DscpError               invalid_value            1   422
    |   +-- ProtocolError           invalid_value            1   422
    |   +-- ConditionError          invalid_value            1   422
    |   +-- WireError               invalid_value            1   422
    +-- UsageError                  usage_error              2   400
    +-- PayloadTooLarge             payload_too_large        2   413
    +-- NotFound                    not_found                3   404
    +-- Conflict                    conflict                 4   409
    |   +-- PreconditionFailed      precondition_failed      4   412
    +-- Unauthorized                unauthorized             5   401
    +-- Forbidden                   forbidden                5   403
    +-- KernelError                 kernel_error             6   500
    |   +-- CommandFailed           command_failed           6   500
    +-- ApplyFailed                 apply_failed             7   500
    |   +-- ApplyRolledBack         apply_rolled_back        7   500
    +-- MetadataUnavailable         metadata_unavailable     8   503
    |   +-- MalformedAnswer         malformed_answer         8   502
    +-- StateError                  state_error              9   500
    +-- StoreError                  store_error             10   500
        +-- StoreUnavailable        store_unavailable       10   503
        +-- StorageFull             storage_full            10   507
        +-- StoreCorrupt            store_corrupt           11   500
        +-- SchemaTooNew            schema_too_new          12   500

Every class is defined here and nowhere else; modules that raise one re-export it under its
old name where callers expect it there. Third-party exceptions (sqlite3, httpx, OSError, ...)
are translated where they enter the program, so the CLI and the HTTP edge each map this tree
once (``exit_code`` / ``http_status``) and nowhere else. ``code`` is stable: scripts and the
API's error body (``{"error": {"code", "message", "errors"?}}``) may rely on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ApplyFailed",
    "ApplyRolledBack",
    "CommandFailed",
    "ConditionError",
    "Conflict",
    "DscpError",
    "FieldError",
    "Forbidden",
    "InvalidDocument",
    "InvalidValue",
    "KernelError",
    "MalformedAnswer",
    "MetadataUnavailable",
    "NetpersonaError",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "ProtocolError",
    "SchemaTooNew",
    "StateError",
    "StorageFull",
    "StoreCorrupt",
    "StoreError",
    "StoreUnavailable",
    "Unauthorized",
    "UnitError",
    "UsageError",
    "WireError",
]


class NetpersonaError(Exception):
    """The root of the tree; a subclass names its own ``code``, ``exit_code`` and ``http_status``
    as class keywords and inherits whichever it leaves out."""

    code = "error"
    exit_code = 1
    http_status = 500

    def __init_subclass__(
        cls,
        *,
        code: str | None = None,
        exit_code: int | None = None,
        http_status: int | None = None,
        **kwargs: object,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if exit_code is not None:
            cls.exit_code = exit_code
        if http_status is not None:
            cls.http_status = http_status


@dataclass(frozen=True, slots=True, order=True)
class FieldError:
    """One problem in a document: where (RFC 6901 JSON pointer) and what."""

    pointer: str
    message: str

    def __str__(self) -> str:
        # One line whatever a key holds: control characters are shown escaped.
        text = f"{self.pointer or '/'}: {self.message}"
        return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class InvalidDocument(NetpersonaError, code="invalid_document", exit_code=1, http_status=422):
    """A document failed validation; ``errors`` holds every problem found, not just the first."""

    def __init__(self, errors: Sequence[FieldError], source: str | None = None) -> None:
        self.errors = tuple(errors)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(f"{prefix}{e}" for e in self.errors))


class NotFound(NetpersonaError, code="not_found", exit_code=3, http_status=404):
    """Nothing is stored under the name or id asked for."""


class Conflict(NetpersonaError, code="conflict", exit_code=4, http_status=409):
    """The request clashes with what is stored (a name taken, a version moved on)."""


class PreconditionFailed(Conflict, code="precondition_failed", http_status=412):
    """An ``If-Match`` named a version that is no longer current (RFC 9110 section 13.1.1)."""


class Unauthorized(NetpersonaError, code="unauthorized", exit_code=5, http_status=401):
    """No credential, or one that is not known."""


class Forbidden(NetpersonaError, code="forbidden", exit_code=5, http_status=403):
    """A known credential that may not do what was asked."""


class KernelError(NetpersonaError, code="kernel_error", exit_code=6, http_status=500):
    """The kernel refused or failed a change (netlink, nftables, tc)."""


class CommandFailed(KernelError, code="command_failed"):
    """An external command failed: names the command, its exit code and what it printed."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{' '.join(argv)!s} exited {returncode}: {stderr.strip()}")


class ApplyFailed(NetpersonaError, code="apply_failed", exit_code=7, http_status=500):
    """A persona could not be put in force."""


class StateError(NetpersonaError, code="state_error", exit_code=9, http_status=500):
    """The agent's state directory cannot be read or written (names the file and why)."""


class UsageError(NetpersonaError, code="usage_error", exit_code=2, http_status=400):
    """A command line or request option that cannot work (e.g. an unsupported ``--db`` URL)."""


class PayloadTooLarge(NetpersonaError, code="payload_too_large", exit_code=2, http_status=413):
    """A request body, document or answer is larger than its documented limit."""


class InvalidValue(NetpersonaError, ValueError, code="invalid_value", exit_code=1, http_status=422):
    """One value is not of its kind (a rate, a DSCP, a protocol, a condition, a datagram).

    The message is meant for the user as is; the caller adds the field path it was found at.
    It is a ``ValueError`` too, so pure parsers can be used where a ValueError is expected.
    """


class UnitError(InvalidValue):
    """The value is not a rate or size."""


class DscpError(InvalidValue):
    """The value is not a DSCP name or code point."""


class ProtocolError(InvalidValue):
    """The value is not a protocol entry (spec section 2)."""


class ConditionError(InvalidValue):
    """A policy condition does not compile."""


class WireError(InvalidValue):
    """A control-channel datagram that is not a valid message; the text says which part."""


class _RollbackReport(Protocol):
    @property
    def action(self) -> str: ...
    @property
    def failed(self) -> str | None: ...
    @property
    def rollback_held(self) -> bool | None: ...
    @property
    def rollback_problems(self) -> Sequence[str]: ...


class ApplyRolledBack(ApplyFailed, code="apply_rolled_back"):
    """An apply or remove failed and was undone; ``report`` says what failed and if undo held."""

    def __init__(self, report: _RollbackReport) -> None:
        self.report = report
        held = (
            "the previous state is back in force (verified by readback)"
            if report.rollback_held
            else "ROLLBACK DID NOT HOLD: " + "; ".join(report.rollback_problems)
        )
        super().__init__(f"{report.action} failed: {report.failed}; {held}")


class MetadataUnavailable(
    NetpersonaError, code="metadata_unavailable", exit_code=8, http_status=503
):
    """The metadata service cannot be reached, or did not answer in time."""


class MalformedAnswer(MetadataUnavailable, code="malformed_answer", http_status=502):
    """The metadata service answered, but not in the documented shape: refused whole, and the
    agent keeps what it had, as if the service were away."""


class StoreError(NetpersonaError, code="store_error", exit_code=10, http_status=500):
    """The database cannot do what was asked; names the database and why."""


class StoreUnavailable(StoreError, code="store_unavailable", http_status=503):
    """The database cannot be reached or opened (locked, missing, permission denied)."""


class StorageFull(StoreError, code="storage_full", http_status=507):
    """The disk (or quota) under the database is full: nothing was written."""


class StoreCorrupt(StoreError, code="store_corrupt", exit_code=11):
    """The database file fails its integrity check, or a row cannot be read."""


class SchemaTooNew(StoreError, code="schema_too_new", exit_code=12):
    """The database was written by a newer netpersona; this one refuses to touch it."""
