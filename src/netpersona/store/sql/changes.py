"""The change sequence: one row per committed write, numbered in commit order.

Replicas of the service read it to catch up (``changes_since`` the last number they saw) after
a lost notification. Numbers only grow, but need not be consecutive: a write that rolls back
may have used one.

The sequence is pruned (:meth:`ChangeLog.prune_changes`, which the service runs on a timer):
changes older than an age and beyond a count are deleted, and the highest number deleted is
kept in ``meta`` (``changes.pruned_through``), so a reader whose position is older is told that
it cannot know what changed rather than handed an incomplete list.
"""

from __future__ import annotations

from netpersona.store.base import PRUNED_CHANGES, Change
from netpersona.store.sql.aggregate import Aggregate
from netpersona.store.sql.engine import Connection, Row, retried

__all__ = ["PRUNED_THROUGH", "ChangeLog", "pruned_through"]

PRUNED_THROUGH = "changes.pruned_through"  # the meta key: the highest seq pruned


def pruned_through(db: Connection) -> int:
    """The highest change number pruned (0: none)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (PRUNED_THROUGH,)).fetchone()
    return 0 if row is None else int(bytes(row["value"]).decode())


def change_from_row(row: Row) -> Change:
    return Change(int(row["seq"]), row["kind"], row["key"], float(row["at"]))


class ChangeLog(Aggregate):
    def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """The changes after ``seq``, oldest first, at most ``limit`` of them; first a
        :data:`~netpersona.store.base.PRUNED_CHANGES` change when some of them were pruned."""
        with self._database.read("read the change sequence") as db:
            horizon = pruned_through(db)
            rows = db.execute(
                "SELECT seq, kind, key, at FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        found = [change_from_row(row) for row in rows]
        if seq < horizon:
            return [Change(horizon, PRUNED_CHANGES, "", 0.0), *found]
        return found

    def last_change(self) -> int:
        """The number of the newest change (0: none yet)."""
        with self._database.read("read the change sequence") as db:
            row = db.execute("SELECT COALESCE(MAX(seq), 0) AS seq FROM changes").fetchone()
        return int(row["seq"])

    @retried
    def prune_changes(self, keep: int, before: float) -> int:
        """Delete the changes made before ``before`` that are not among the newest ``keep``,
        and remember the highest number deleted; how many were."""
        with self._database.write("prune the change sequence") as db:
            self._lock_changes(db)  # no write is between taking a number and committing it
            row = db.execute(
                "SELECT MAX(seq) AS seq FROM changes WHERE at < ? AND seq <= "
                "(SELECT COALESCE(MAX(seq), 0) FROM changes) - ?",
                (before, keep),
            ).fetchone()
            if row is None or row["seq"] is None:
                return 0
            horizon = max(int(row["seq"]), pruned_through(db))
            deleted = db.execute("DELETE FROM changes WHERE seq <= ?", (horizon,)).rowcount
            value = str(horizon).encode()
            db.execute("DELETE FROM meta WHERE key = ?", (PRUNED_THROUGH,))
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (PRUNED_THROUGH, value))
        return int(deleted)
