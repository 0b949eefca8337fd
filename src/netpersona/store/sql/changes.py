"""The change sequence: one row per committed write, numbered in commit order.

Replicas of the service read it to catch up (``changes_since`` the last number they saw) after
a lost notification. Numbers only grow, but need not be consecutive: a write that rolls back
may have used one.
"""

from __future__ import annotations

from netpersona.store.base import Change
from netpersona.store.sql.aggregate import Aggregate
from netpersona.store.sql.engine import Row

__all__ = ["ChangeLog"]


def change_from_row(row: Row) -> Change:
    return Change(int(row["seq"]), row["kind"], row["key"], float(row["at"]))


class ChangeLog(Aggregate):
    def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """The changes after ``seq``, oldest first, at most ``limit`` of them."""
        with self._database.read("read the change sequence") as db:
            rows = db.execute(
                "SELECT seq, kind, key, at FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [change_from_row(row) for row in rows]

    def last_change(self) -> int:
        """The number of the newest change (0: none yet)."""
        with self._database.read("read the change sequence") as db:
            row = db.execute("SELECT COALESCE(MAX(seq), 0) AS seq FROM changes").fetchone()
        return int(row["seq"])
