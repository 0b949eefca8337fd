"""Every error netpersona raises, in one tree.

    NetpersonaError                 code              exit  http
    +-- InvalidDocument             invalid_document     1   422
    +-- NotFound                    not_found            3   404
    +-- Conflict                    conflict             4   409
    |   +-- PreconditionFailed      precondition_failed  4   412
    +-- Unauthorized                unauthorized         5   401
    +-- Forbidden                   forbidden            5   403
    +-- KernelError                 kernel_error         6   500
    |   +-- CommandFailed           command_failed       6   500
    +-- ApplyFailed                 apply_failed         7   500
    +-- StateError                  state_error          9   500
    +-- UsageError                  usage_error          2   400

Third-party exceptions are translated where they enter the program, so the CLI and the
HTTP edge each map this tree once (``exit_code`` / ``http_status``) and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ApplyFailed",
    "CommandFailed",
    "Conflict",
    "FieldError",
    "Forbidden",
    "InvalidDocument",
    "KernelError",
    "NetpersonaError",
    "NotFound",
    "PreconditionFailed",
    "StateError",
    "Unauthorized",
    "UsageError",
]


class NetpersonaError(Exception):
    code = "error"
    exit_code = 1
    http_status = 500


@dataclass(frozen=True, slots=True, order=True)
class FieldError:
    """One problem in a document: where (RFC 6901 JSON pointer) and what."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


class InvalidDocument(NetpersonaError):
    """A document failed validation; ``errors`` holds every problem found, not just the first."""

    code = "invalid_document"
    exit_code = 1
    http_status = 422

    def __init__(self, errors: Sequence[FieldError], source: str | None = None) -> None:
        self.errors = tuple(errors)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(f"{prefix}{e}" for e in self.errors))


class NotFound(NetpersonaError):
    code = "not_found"
    exit_code = 3
    http_status = 404


class Conflict(NetpersonaError):
    code = "conflict"
    exit_code = 4
    http_status = 409


class PreconditionFailed(Conflict):
    """An ``If-Match`` named a version that is no longer current (RFC 9110 section 13.1.1)."""

    code = "precondition_failed"
    http_status = 412


class Unauthorized(NetpersonaError):
    code = "unauthorized"
    exit_code = 5
    http_status = 401


class Forbidden(NetpersonaError):
    code = "forbidden"
    exit_code = 5
    http_status = 403


class KernelError(NetpersonaError):
    code = "kernel_error"
    exit_code = 6
    http_status = 500


class CommandFailed(KernelError):
    """An external command failed: names the command, its exit code and what it printed."""

    code = "command_failed"

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{' '.join(argv)!s} exited {returncode}: {stderr.strip()}")


class ApplyFailed(NetpersonaError):
    code = "apply_failed"
    exit_code = 7
    http_status = 500


class StateError(NetpersonaError):
    """The agent's state directory cannot be read or written (names the file and why)."""

    code = "state_error"
    exit_code = 9
    http_status = 500


class UsageError(NetpersonaError):
    """A command line or request option that cannot work (e.g. an unsupported ``--db`` URL)."""

    code = "usage_error"
    exit_code = 2
    http_status = 400
