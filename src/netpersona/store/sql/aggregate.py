"""What every aggregate's SQL shares: the open database, the clock, the row reader, the audit
and the change sequence.

Each aggregate (instances, personas, policy, ...) is a class of its own module holding its SQL;
:class:`~netpersona.store.sql.SqlStore` inherits them all and sets this shared state once.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from netpersona.errors import PreconditionFailed
from netpersona.store.rows import RowReader
from netpersona.store.sql.engine import Connection, Engine

__all__ = ["Aggregate", "check_expect", "dump"]


def dump(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def check_expect(what: str, current: int, expect: int | None) -> None:
    if expect is not None and expect != current:
        raise PreconditionFailed(
            f"{what} is at revision {current}, not {expect} (If-Match); read it again and retry"
        )


class Aggregate:
    _database: Engine
    _clock: Callable[[], float]
    _rows: RowReader

    def _audit(
        self,
        db: Connection,
        actor: str,
        action: str,
        target: str,
        *,
        before: object,
        after: object,
    ) -> None:
        """Record a change in the audit log (and the change sequence), in the transaction
        that makes it."""
        at = self._clock()
        # Before the audit row: its seq (the fleet's revision) is then in commit order too.
        self._lock_changes(db)
        db.execute(
            "INSERT INTO audit (at, actor, action, target, before, after) VALUES (?,?,?,?,?,?)",
            (
                at,
                actor,
                action,
                target,
                None if before is None else dump(before),
                None if after is None else dump(after),
            ),
        )
        kind, _, key = target.partition("/")
        self._changed(db, kind, key, at)

    def _changed(self, db: Connection, kind: str, key: str, at: float | None = None) -> int:
        """Append to the change sequence, in the transaction that makes the change; on an
        engine that notifies, listeners hear the new number when (and if) it commits."""
        self._lock_changes(db)
        row = db.execute(
            "INSERT INTO changes (kind, key, at) VALUES (?,?,?) RETURNING seq",
            (kind, key, self._clock() if at is None else at),
        ).fetchone()
        seq = int(row["seq"])
        dialect = self._database.dialect
        if dialect.notify is not None:
            db.execute(dialect.notify, (str(seq),))
        return seq

    def _lock_changes(self, db: Connection) -> None:
        """Hold the change sequence until this transaction ends (a no-op where writers are
        one at a time already), so numbers given out later are committed later."""
        lock = self._database.dialect.change_lock
        if lock is not None:
            db.execute(lock)
