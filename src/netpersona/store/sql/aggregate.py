"""What every aggregate's SQL shares: the open database, the clock, the row reader, the audit.

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
        """Record a change in the audit log, in the transaction that makes it."""
        db.execute(
            "INSERT INTO audit (at, actor, action, target, before, after) VALUES (?,?,?,?,?,?)",
            (
                self._clock(),
                actor,
                action,
                target,
                None if before is None else dump(before),
                None if after is None else dump(after),
            ),
        )
