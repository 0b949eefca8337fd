"""Network context: operator-set key/value pairs the policy can read, each with a revision."""

from __future__ import annotations

from collections.abc import Sequence

from netpersona.errors import NotFound, PreconditionFailed
from netpersona.store.base import ContextEntry
from netpersona.store.sql.aggregate import Aggregate, check_expect
from netpersona.store.sql.engine import Connection, Row, retried

__all__ = ["ContextTable", "context_from_row"]


def context_from_row(row: Row) -> ContextEntry:
    if not isinstance(row["value"], str):
        raise TypeError(f"the value is {type(row['value']).__name__}, not text")
    return ContextEntry(row["key"], row["value"], row["revision"], row["updated_at"])


class ContextTable(Aggregate):
    def _context_row(self, db: Connection, key: str) -> ContextEntry | None:
        row = db.execute("SELECT * FROM context WHERE key = ?", (key,)).fetchone()
        return None if row is None else self._rows.one("context", key, row, context_from_row)

    def _context_entries(self, db: Connection) -> list[ContextEntry]:
        rows = db.execute("SELECT * FROM context ORDER BY key").fetchall()
        decoded = (self._rows.decode("context", r["key"], r, context_from_row) for r in rows)
        return [entry for entry in decoded if entry is not None]

    def list_context(self) -> Sequence[ContextEntry]:
        with self._database.read("list context") as db:
            return self._context_entries(db)

    def get_context(self, key: str) -> ContextEntry:
        with self._database.read(f"read context key {key!r}") as db:
            entry = self._context_row(db, key)
        if entry is None:
            raise NotFound(f"context key {key!r} is not set")
        return entry

    @retried
    def set_context(
        self, key: str, value: str, actor: str, expect: int | None = None
    ) -> ContextEntry:
        with self._database.write(f"set context key {key!r}") as db:
            before = self._context_row(db, key)
            if expect is not None:
                if before is None:
                    raise PreconditionFailed(f"context key {key!r} is not set (If-Match)")
                check_expect(f"context key {key!r}", before.revision, expect)
            if before is not None and before.value == value:
                return before
            revision = 1 if before is None else before.revision + 1
            entry = ContextEntry(key, value, revision, self._clock())
            db.execute(
                "INSERT INTO context (key, value, revision, updated_at) VALUES (?,?,?,?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "revision = excluded.revision, updated_at = excluded.updated_at",
                (key, value, entry.revision, entry.updated_at),
            )
            self._audit(
                db,
                actor,
                "context.set",
                f"context/{key}",
                before=None if before is None else before.to_json(),
                after=entry.to_json(),
            )
            return entry

    @retried
    def delete_context(self, key: str, actor: str, expect: int | None = None) -> None:
        with self._database.write(f"delete context key {key!r}") as db:
            before = self._context_row(db, key)
            if before is None:
                raise NotFound(f"context key {key!r} is not set")
            check_expect(f"context key {key!r}", before.revision, expect)
            db.execute("DELETE FROM context WHERE key = ?", (key,))
            self._audit(
                db, actor, "context.delete", f"context/{key}", before=before.to_json(), after=None
            )
