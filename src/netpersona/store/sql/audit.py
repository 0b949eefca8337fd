"""The audit log: every change, who made it, and the record before and after, newest first."""

from __future__ import annotations

import json
from typing import Any

from netpersona.store.base import AuditEntry, Page
from netpersona.store.pages import int_cursor, page_of
from netpersona.store.sql.aggregate import Aggregate
from netpersona.store.sql.engine import Row, from_row

__all__ = ["AuditTable"]

_NEWEST = 2**62


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def audit_from_row(row: Row) -> AuditEntry:
    return from_row(AuditEntry, row, before=_json, after=_json)


class AuditTable(Aggregate):
    def list_audit(
        self, limit: int, cursor: str | None = None, target: str | None = None
    ) -> Page[AuditEntry]:
        before = int_cursor(cursor)
        query = "SELECT * FROM audit WHERE seq < ?"
        args: list[Any] = [_NEWEST if before is None else before]
        if target is not None:
            query += " AND target = ?"
            args.append(target)
        query += " ORDER BY seq DESC LIMIT ?"
        args.append(limit + 1)
        with self._database.read("read the audit log") as db:
            rows = db.execute(query, args).fetchall()
        return page_of(rows, limit, self._decode_audit, lambda r: r["seq"])

    def _decode_audit(self, row: Row) -> AuditEntry | None:
        return self._rows.decode("audit", str(row["seq"]), row, audit_from_row)
