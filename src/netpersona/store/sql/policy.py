"""The persona policy: one document, versioned like a persona (versions keep growing across
delete and re-create)."""

from __future__ import annotations

from netpersona.errors import NotFound, PreconditionFailed
from netpersona.store.base import Page, PolicyVersion
from netpersona.store.pages import int_cursor, page_of
from netpersona.store.sql.aggregate import Aggregate, check_expect
from netpersona.store.sql.engine import Connection, Row, from_row, retried
from netpersona.store.sql.personas import document_object

__all__ = ["PolicyTables", "policy_from_row"]

_NEWEST = 2**62


def policy_from_row(row: Row) -> PolicyVersion:
    return from_row(PolicyVersion, row, document=document_object)


class PolicyTables(Aggregate):
    def _decode_policy(self, row: Row) -> PolicyVersion | None:
        return self._rows.decode("policy_versions", str(row["version"]), row, policy_from_row)

    def _current_policy(self, db: Connection) -> PolicyVersion | None:
        """The current policy; None when there is none, or its row cannot be read (skipped, as
        a listing skips a row: the fleet is then served as if there were no policy)."""
        row = db.execute(
            "SELECT v.* FROM policy p JOIN policy_versions v ON v.version = p.current "
            "WHERE p.id = 1 AND p.deleted = 0"
        ).fetchone()
        return None if row is None else self._decode_policy(row)

    @retried
    def put_policy(self, document: str, actor: str, expect: int | None = None) -> PolicyVersion:
        with self._database.write("store the policy") as db:
            before = self._current_policy(db)
            if expect is not None:
                if before is None:
                    raise PreconditionFailed(
                        f"there is no policy, so it is not at version {expect} (If-Match)"
                    )
                check_expect("the policy", before.version, expect)
            if before is not None and before.document == document:
                return before  # the same document again is not a change
            last = db.execute(
                "SELECT COALESCE(MAX(version), 0) AS version FROM policy_versions"
            ).fetchone()
            created = PolicyVersion(int(last["version"]) + 1, document, self._clock(), actor)
            db.execute(
                "INSERT INTO policy_versions (version, document, created_at, created_by) "
                "VALUES (?,?,?,?)",
                (created.version, document, created.created_at, actor),
            )
            db.execute(
                "INSERT INTO policy (id, current, deleted) VALUES (1, ?, 0) "
                "ON CONFLICT (id) DO UPDATE SET current = excluded.current, deleted = 0",
                (created.version,),
            )
            self._audit(
                db,
                actor,
                "policy.put",
                "policy",
                before=None if before is None else before.to_json(),
                after=created.to_json(),
            )
            return created

    def get_policy(self, version: int | None = None) -> PolicyVersion:
        with self._database.read("read the policy") as db:
            if version is None:
                current = self._current_policy(db)
                if current is None:
                    raise NotFound("there is no policy (PUT /v1/admin/policy makes one)")
                return current
            row = db.execute(
                "SELECT * FROM policy_versions WHERE version = ?", (version,)
            ).fetchone()
        if row is None:
            raise NotFound(f"the policy has no version {version}")
        return self._rows.one("policy_versions", str(version), row, policy_from_row)

    def policy_history(self, limit: int, cursor: str | None = None) -> Page[PolicyVersion]:
        before = int_cursor(cursor)
        with self._database.read("read the policy history") as db:
            rows = db.execute(
                "SELECT * FROM policy_versions WHERE version < ? ORDER BY version DESC LIMIT ?",
                (_NEWEST if before is None else before, limit + 1),
            ).fetchall()
        return page_of(rows, limit, self._decode_policy, lambda r: r["version"])

    @retried
    def delete_policy(self, actor: str, expect: int | None = None) -> None:
        with self._database.write("delete the policy") as db:
            current = self._current_policy(db)
            if current is None:
                raise NotFound("there is no policy to delete")
            check_expect("the policy", current.version, expect)
            db.execute("UPDATE policy SET deleted = 1 WHERE id = 1")
            self._audit(db, actor, "policy.delete", "policy", before=current.to_json(), after=None)
