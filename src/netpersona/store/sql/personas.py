"""Personas: every version ever stored, and which one is current (or that it was deleted).

Versions keep growing across delete and re-create so that (name, version) is never reused for
a different document: agents and certificates rely on that.
"""

from __future__ import annotations

import json

from netpersona.errors import Conflict, NotFound, PreconditionFailed
from netpersona.store.base import Page, PersonaVersion
from netpersona.store.pages import decode_cursor, int_cursor, page_of
from netpersona.store.sql.aggregate import Aggregate, check_expect
from netpersona.store.sql.engine import Connection, Row, from_row, retried

__all__ = ["CURRENT_PERSONAS", "PersonaTables", "persona_from_row"]

# The current version of every persona that is not deleted.
CURRENT_PERSONAS = (
    "SELECT v.* FROM personas p JOIN persona_versions v "
    "ON v.name = p.name AND v.version = p.current WHERE p.deleted = 0"
)
_NEWEST = 2**62


def document_object(text: str) -> str:
    """``text`` if it holds a JSON object (as every stored document does), else ValueError."""
    if not isinstance(json.loads(text), dict):
        raise ValueError("the document is not a JSON object")
    return text


def persona_from_row(row: Row) -> PersonaVersion:
    return from_row(PersonaVersion, row, document=document_object)


class PersonaTables(Aggregate):
    def _persona(self, row: Row) -> PersonaVersion:
        key = f"{row['name']}@{row['version']}"
        return self._rows.one("persona_versions", key, row, persona_from_row)

    def _decode_persona(self, row: Row) -> PersonaVersion | None:
        key = f"{row['name']}@{row['version']}"
        return self._rows.decode("persona_versions", key, row, persona_from_row)

    def _current(self, db: Connection, name: str) -> PersonaVersion:
        row = db.execute(f"{CURRENT_PERSONAS} AND p.name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"persona {name!r} does not exist")
        return self._persona(row)

    def _version_row(self, db: Connection, name: str, version: int) -> Row:
        row: Row | None = db.execute(
            "SELECT * FROM persona_versions WHERE name = ? AND version = ?", (name, version)
        ).fetchone()
        if row is None:
            raise NotFound(f"persona {name!r} has no version {version}")
        return row

    def _add_version(
        self,
        db: Connection,
        name: str,
        document: str,
        *,
        actor: str,
        action: str,
        restored_from: int | None,
    ) -> PersonaVersion:
        row = db.execute("SELECT current, deleted FROM personas WHERE name = ?", (name,)).fetchone()
        before = None if row is None or row["deleted"] else self._current(db, name)
        if before is not None and before.document == document and restored_from is None:
            return before  # the same document again is not a change
        version = 1 if row is None else row["current"] + 1
        created = PersonaVersion(name, version, document, self._clock(), actor, restored_from)
        db.execute(
            "INSERT INTO persona_versions (name, version, document, created_at, created_by, "
            "restored_from) VALUES (?,?,?,?,?,?)",
            (name, version, document, created.created_at, actor, restored_from),
        )
        db.execute(
            "INSERT INTO personas (name, current, deleted) VALUES (?, ?, 0) ON CONFLICT (name) "
            "DO UPDATE SET current = excluded.current, deleted = 0",
            (name, version),
        )
        self._audit(
            db,
            actor,
            action,
            f"persona/{name}",
            before=None if before is None else before.to_json(),
            after=created.to_json(),
        )
        return created

    @retried
    def put_persona(
        self,
        name: str,
        document: str,
        actor: str,
        expect: int | None = None,
        create_only: bool = False,
    ) -> PersonaVersion:
        with self._database.write(f"store persona {name!r}") as db:
            try:
                current: PersonaVersion | None = self._current(db, name)
            except NotFound:
                current = None
            if current is not None and create_only:
                raise PreconditionFailed(
                    f"persona {name!r} already exists (version {current.version}; If-None-Match)"
                )
            if expect is not None:
                if current is None:
                    raise PreconditionFailed(
                        f"persona {name!r} does not exist, so it is not at version {expect} "
                        "(If-Match)"
                    )
                check_expect(f"persona {name!r}", current.version, expect)
            return self._add_version(
                db, name, document, actor=actor, action="persona.put", restored_from=None
            )

    def get_persona(self, name: str, version: int | None = None) -> PersonaVersion:
        with self._database.read(f"read persona {name!r}") as db:
            if version is None:
                return self._current(db, name)
            return self._persona(self._version_row(db, name, version))

    def list_personas(self, limit: int, cursor: str | None = None) -> Page[PersonaVersion]:
        after = decode_cursor(cursor) or ""
        with self._database.read("list personas") as db:
            rows = db.execute(
                f"{CURRENT_PERSONAS} AND p.name > ? ORDER BY p.name LIMIT ?", (after, limit + 1)
            ).fetchall()
        return page_of(rows, limit, self._decode_persona, lambda r: r["name"])

    def persona_history(
        self, name: str, limit: int, cursor: str | None = None
    ) -> Page[PersonaVersion]:
        before = int_cursor(cursor)
        with self._database.read(f"read the history of persona {name!r}") as db:
            if db.execute("SELECT 1 FROM personas WHERE name = ?", (name,)).fetchone() is None:
                raise NotFound(f"persona {name!r} does not exist")
            rows = db.execute(
                "SELECT * FROM persona_versions WHERE name = ? AND version < ? "
                "ORDER BY version DESC LIMIT ?",
                (name, _NEWEST if before is None else before, limit + 1),
            ).fetchall()
        return page_of(rows, limit, self._decode_persona, lambda r: r["version"])

    @retried
    def restore_persona(
        self, name: str, version: int, actor: str, expect: int | None = None
    ) -> PersonaVersion:
        with self._database.write(f"restore persona {name!r} version {version}") as db:
            old = self._persona(self._version_row(db, name, version))
            if expect is not None:
                check_expect(f"persona {name!r}", self._current(db, name).version, expect)
            return self._add_version(
                db, name, old.document, actor=actor, action="persona.restore", restored_from=version
            )

    @retried
    def delete_persona(self, name: str, actor: str, expect: int | None = None) -> None:
        with self._database.write(f"delete persona {name!r}") as db:
            current = self._current(db, name)
            check_expect(f"persona {name!r}", current.version, expect)
            pinned = [
                r["id"]
                for r in db.execute(
                    "SELECT id FROM instances WHERE pin = ? ORDER BY id LIMIT 5", (name,)
                )
            ]
            if pinned:
                raise Conflict(
                    f"persona {name!r} is pinned to instance(s) {', '.join(pinned)}; "
                    "unpin them first"
                )
            db.execute("UPDATE personas SET deleted = 1 WHERE name = ?", (name,))
            self._audit(
                db, actor, "persona.delete", f"persona/{name}", before=current.to_json(), after=None
            )
