"""The agent's status record: what it holds and why, written to ``agent.json``.

``netpersona status`` reads it. Besides the outcome of the last pass it says, per watched view,
whether the last answer was taken or refused, with the error's code and message and since when,
so an operator sees a watch that is failing instead of a stale "applied".
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from netpersona.errors import NetpersonaError

__all__ = ["RECORD_FILE", "AgentRecord", "StatusRecord", "WatchStatus", "error_code"]

RECORD_FILE = "agent.json"
# The views a pass compiles from: while one of them is refused, the pass's outcome is stale.
CONVERGE_VIEWS = ("instance", "persona", "peers")
# An exception from outside this tree is a defect: recorded under this code with its type.
UNEXPECTED = "unexpected_error"


def error_code(exc: BaseException) -> str:
    return exc.code if isinstance(exc, NetpersonaError) else UNEXPECTED


def error_text(exc: BaseException) -> str:
    text = str(exc)
    return text if isinstance(exc, NetpersonaError) else f"{type(exc).__name__}: {text}"


@dataclass
class WatchStatus:
    """One watched view: ``ok`` (the last answer was taken), ``failing`` (none since
    ``since``: the service is away or its answers are refused), or ``waiting`` (no answer yet)."""

    state: str = "waiting"
    since: float = field(default_factory=time.time)
    error: dict[str, str] | None = None  # {"code", "message"} of the last failure
    failures: int = 0  # in a row
    answered_at: float | None = None  # the last answer taken

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class AgentRecord:
    """What the agent holds and why: written to ``agent.json`` for ``netpersona status``."""

    instance: str | None = None
    persona: str | None = None
    version: int | None = None
    digest: str | None = None
    persona_etag: str | None = None  # the ETag of the persona answer this outcome is for
    # applied, unchanged, peers-updated, failed, rejected, removed; or refused while an answer
    # of a view the pass compiles from is refused (the kernel keeps what it had).
    result: str | None = None
    error: str | None = None
    retry_at: float | None = None  # when a plan that failed to apply is tried again
    service: str = "unknown"  # reachable, unreachable, malformed (it answers garbage)
    service_since: float = field(default_factory=time.time)
    service_answered_at: float | None = None  # the last answer from the service (this clock)
    updated_at: float = field(default_factory=time.time)
    watches: dict[str, WatchStatus] = field(default_factory=dict)
    # The control channel: listening or not, peers learned, and its counters (rejects by
    # reason as reject_<reason>, drops as drop_<reason>, traffic as rx_/tx_).
    gossip: str = "off"  # off, waiting (for a certificate and keys), listening, failed
    gossip_peers: int = 0
    gossip_counters: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        body = {k: getattr(self, k) for k in self.__dataclass_fields__}
        body["watches"] = {name: w.to_json() for name, w in sorted(self.watches.items())}
        return body


class StatusRecord:
    """The record, the rules for changing it, and its file (replaced atomically)."""

    def __init__(
        self, state_dir: Path, *, clock: Callable[[], float] = time.time, url: str = ""
    ) -> None:
        self.path = state_dir / RECORD_FILE
        self.record = AgentRecord()
        self.clock = clock
        self.url = url
        self.log = structlog.get_logger("netpersona.agent")
        # The outcome of the last pass, shown whenever no view it compiles from is refused.
        self._outcome: tuple[str | None, str | None] = (None, None)
        # Told of each pass's outcome, after the record says it (the agent's metrics).
        self.on_outcome: Callable[[str, AgentRecord], None] | None = None

    def save(self) -> None:
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.record.to_json(), indent=1, sort_keys=True))
            os.replace(tmp, self.path)

    # --- the service and the watches
    def _service(self) -> None:
        """The service's state, from the watches a pass compiles from (the control channel's
        say nothing more about its health, and an older service has no such paths)."""
        codes = {
            w.error["code"] if w.state == "failing" and w.error else w.state
            for name, w in self.record.watches.items()
            if name in CONVERGE_VIEWS
        }
        if "metadata_unavailable" in codes:
            state = "unreachable"
        elif codes - {"ok", "waiting"}:
            state = "malformed"
        elif "ok" in codes:
            state = "reachable"
        else:
            return
        if state == self.record.service:
            return
        # Logged once per change of state, not once per retry.
        if state == "reachable":
            self.log.info("metadata service reachable", url=self.url)
        else:
            self.log.warning(
                "metadata service unusable; keeping the persona in force",
                state=state,
                errors={n: w.error for n, w in self.record.watches.items() if w.error},
            )
        self.record.service, self.record.service_since = state, self.clock()

    def watch_ok(self, name: str) -> bool:
        """An answer of ``name`` was taken; True when the watch was failing until now."""
        watch = self.record.watches.setdefault(name, WatchStatus())
        recovered = watch.state != "ok"
        now = self.clock()
        if recovered:
            watch.state, watch.since, watch.error, watch.failures = "ok", now, None, 0
        watch.answered_at = self.record.service_answered_at = now
        if recovered:
            self._service()
            self._show_outcome()
            self.save()
        return recovered

    def watch_failed(self, name: str, exc: BaseException) -> None:
        watch = self.record.watches.setdefault(name, WatchStatus())
        if watch.state != "failing":
            watch.state, watch.since = "failing", self.clock()
        watch.error = {"code": error_code(exc), "message": error_text(exc)[:500]}
        watch.failures += 1
        self._service()
        self._show_outcome()
        self.save()

    def refused(self) -> list[str]:
        """The views a pass compiles from whose last answer was refused."""
        return [
            name
            for name in CONVERGE_VIEWS
            if (w := self.record.watches.get(name)) is not None
            and w.state == "failing"
            and w.error is not None
            and w.error["code"] != "metadata_unavailable"
        ]

    # --- the outcome of a pass
    def outcome(self, result: str, error: str | None) -> None:
        self._outcome = (result, error)
        self.record.updated_at = self.clock()
        self._show_outcome()
        self.save()
        if self.on_outcome is not None:
            self.on_outcome(result, self.record)

    def _show_outcome(self) -> None:
        """What the record says about the pass: its outcome, unless an answer it would compile
        from is being refused, when "applied" (or anything else) would be stale news."""
        refused = self.refused()
        if refused:
            watch = self.record.watches[refused[0]]
            assert watch.error is not None
            self.record.result = "refused"
            self.record.error = f"{refused[0]}: {watch.error['code']}: {watch.error['message']}"
        else:
            self.record.result, self.record.error = self._outcome
