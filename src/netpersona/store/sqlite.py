"""The embedded store: one SQLite file in WAL mode with ``synchronous=FULL``.

WAL with FULL syncs the log on every commit, so a write the service has acknowledged survives
``kill -9`` and power loss (https://www.sqlite.org/wal.html, "synchronous"). One connection
serialised by a lock serves the whole process; other processes (``netpersona token create``)
may write the same file at the same time, which SQLite's own locking and ``busy_timeout`` handle.

The schema evolves by the numbered migrations in :mod:`netpersona.store.migrations`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace as _replace
from pathlib import Path
from typing import Any

from netpersona.errors import (
    Conflict,
    FieldError,
    InvalidDocument,
    NotFound,
    PreconditionFailed,
)
from netpersona.store.base import (
    ApiToken,
    AuditEntry,
    ContextEntry,
    FleetData,
    Instance,
    InstanceStatus,
    Interface,
    IssuedCertificate,
    Page,
    PersonaVersion,
    PolicyVersion,
    Role,
    Tier,
)
from netpersona.store.migrations import MIGRATIONS

__all__ = ["SqliteStore"]


def _dump(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidDocument([FieldError("/cursor", f"{cursor!r} is not a cursor")]) from None


def _int_cursor(cursor: str | None) -> int | None:
    raw = _decode_cursor(cursor)
    if raw is None:
        return None
    if not raw.isdigit():
        raise InvalidDocument([FieldError("/cursor", f"{cursor!r} is not a cursor")])
    return int(raw)


def hash_secret(secret: str) -> str:
    # Token secrets are 256 random bits, so a plain SHA-256 cannot be brute-forced; a slow
    # password hash would only cost time on every request.
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_expect(what: str, current: int, expect: int | None) -> None:
    if expect is not None and expect != current:
        raise PreconditionFailed(
            f"{what} is at revision {current}, not {expect} (If-Match); read it again and retry"
        )


class SqliteStore:
    """:class:`~netpersona.store.base.Store` on one SQLite file."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._fleet_cache: dict[str, Instance] = {}
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._migrate()

    # -- plumbing -------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._lock:
            current = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in script.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={number}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def _audit(
        self,
        db: sqlite3.Connection,
        actor: str,
        action: str,
        target: str,
        *,
        before: object,
        after: object,
    ) -> None:
        db.execute(
            "INSERT INTO audit (at, actor, action, target, before, after) VALUES (?,?,?,?,?,?)",
            (
                self._clock(),
                actor,
                action,
                target,
                None if before is None else _dump(before),
                None if after is None else _dump(after),
            ),
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- instances ------------------------------------------------------------------------

    @staticmethod
    def _instance(row: sqlite3.Row) -> Instance:
        return Instance(
            id=row["id"],
            name=row["name"],
            addresses=tuple(json.loads(row["addresses"])),
            interfaces=tuple(
                Interface(
                    name=i["name"],
                    addresses=tuple(i["addresses"]),
                    tier=Tier(i["tier"]) if i["tier"] else None,
                )
                for i in json.loads(row["interfaces"])
            ),
            labels=tuple(sorted(json.loads(row["labels"]).items())),
            pin=row["pin"],
            revision=row["revision"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def _load_instance(self, db: sqlite3.Connection, instance_id: str) -> Instance:
        row = db.execute("SELECT * FROM instances WHERE id = ?", (instance_id,)).fetchone()
        if row is None:
            raise NotFound(f"instance {instance_id!r} does not exist")
        return self._instance(row)

    def _claim_addresses(
        self, db: sqlite3.Connection, instance_id: str, addresses: Sequence[str]
    ) -> None:
        db.execute("DELETE FROM instance_addresses WHERE instance_id = ?", (instance_id,))
        for index, address in enumerate(addresses):
            row = db.execute(
                "SELECT instance_id FROM instance_addresses WHERE address = ?", (address,)
            ).fetchone()
            if row is not None:
                raise Conflict(
                    f"/addresses/{index}: {address} already belongs to instance "
                    f"{row['instance_id']!r} (an address identifies one instance)"
                )
            db.execute(
                "INSERT INTO instance_addresses (address, instance_id) VALUES (?, ?)",
                (address, instance_id),
            )

    def _save_instance(self, db: sqlite3.Connection, instance: Instance) -> None:
        self._fleet_cache.pop(instance.id, None)
        db.execute(
            "INSERT OR REPLACE INTO instances (id, name, addresses, interfaces, labels, pin, "
            "revision, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                instance.id,
                instance.name,
                _dump(list(instance.addresses)),
                _dump([i.to_json() for i in instance.interfaces]),
                _dump(instance.label_map),
                instance.pin,
                instance.revision,
                instance.created_at,
                instance.updated_at,
            ),
        )

    def create_instance(self, spec: Instance, actor: str) -> Instance:
        instance_id = spec.id
        with self._write() as db:
            if db.execute("SELECT 1 FROM instances WHERE id = ?", (instance_id,)).fetchone():
                raise Conflict(f"instance {instance_id!r} already exists")
            now = self._clock()
            instance = Instance(
                id=instance_id,
                name=spec.name,
                addresses=spec.addresses,
                interfaces=spec.interfaces,
                labels=tuple(sorted(spec.labels)),
                pin=None,
                revision=1,
                created_at=now,
                updated_at=now,
            )
            self._save_instance(db, instance)
            self._claim_addresses(db, instance_id, spec.addresses)
            self._audit(
                db,
                actor,
                "instance.create",
                f"instance/{instance_id}",
                before=None,
                after=instance.to_json(),
            )
            return instance

    def get_instance(self, instance_id: str) -> Instance:
        with self._read() as db:
            return self._load_instance(db, instance_id)

    def list_instances(self, limit: int, cursor: str | None = None) -> Page[Instance]:
        after = _decode_cursor(cursor) or ""
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM instances WHERE id > ? ORDER BY id LIMIT ?", (after, limit + 1)
            ).fetchall()
        items = tuple(self._instance(r) for r in rows[:limit])
        more = len(rows) > limit
        return Page(items, _encode_cursor(items[-1].id) if more and items else None)

    def _change_instance(
        self,
        instance_id: str,
        actor: str,
        action: str,
        expect: int | None,
        change: Callable[[sqlite3.Connection, Instance], Instance],
    ) -> Instance:
        with self._write() as db:
            before = self._load_instance(db, instance_id)
            _check_expect(f"instance {instance_id!r}", before.revision, expect)
            after = change(db, before)
            if after == before:
                return before  # nothing changed: no new revision, no audit entry, no wake-up
            after = _replace(after, revision=before.revision + 1, updated_at=self._clock())
            self._save_instance(db, after)
            self._audit(
                db,
                actor,
                action,
                f"instance/{instance_id}",
                before=before.to_json(),
                after=after.to_json(),
            )
            return after

    def replace_instance(self, spec: Instance, actor: str, expect: int | None = None) -> Instance:
        instance_id = spec.id

        def change(db: sqlite3.Connection, old: Instance) -> Instance:
            if spec.addresses != old.addresses:
                self._claim_addresses(db, instance_id, spec.addresses)
            return _replace(
                old,
                name=spec.name,
                addresses=spec.addresses,
                interfaces=spec.interfaces,
                labels=tuple(sorted(spec.labels)),
            )

        return self._change_instance(instance_id, actor, "instance.replace", expect, change)

    def delete_instance(self, instance_id: str, actor: str, expect: int | None = None) -> None:
        with self._write() as db:
            before = self._load_instance(db, instance_id)
            _check_expect(f"instance {instance_id!r}", before.revision, expect)
            db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
            self._fleet_cache.pop(instance_id, None)
            db.execute("DELETE FROM status WHERE instance_id = ?", (instance_id,))
            self._audit(
                db,
                actor,
                "instance.delete",
                f"instance/{instance_id}",
                before=before.to_json(),
                after=None,
            )

    def patch_labels(
        self,
        instance_id: str,
        changes: Mapping[str, str | None],
        actor: str,
        expect: int | None = None,
    ) -> Instance:
        def change(db: sqlite3.Connection, old: Instance) -> Instance:
            labels = old.label_map
            for key, value in changes.items():
                if value is None:
                    labels.pop(key, None)
                else:
                    labels[key] = value
            return _replace(old, labels=tuple(sorted(labels.items())))

        return self._change_instance(instance_id, actor, "instance.labels", expect, change)

    def set_pin(
        self, instance_id: str, persona: str | None, actor: str, expect: int | None = None
    ) -> Instance:
        def change(db: sqlite3.Connection, old: Instance) -> Instance:
            if persona is not None:
                row = db.execute(
                    "SELECT deleted FROM personas WHERE name = ?", (persona,)
                ).fetchone()
                if row is None or row["deleted"]:
                    raise InvalidDocument(
                        [FieldError("/persona", f"no persona is named {persona!r}")]
                    )
            return _replace(old, pin=persona)

        action = "instance.pin" if persona is not None else "instance.unpin"
        return self._change_instance(instance_id, actor, action, expect, change)

    # -- personas -------------------------------------------------------------------------

    @staticmethod
    def _version(row: sqlite3.Row) -> PersonaVersion:
        return PersonaVersion(
            name=row["name"],
            version=row["version"],
            document=row["document"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            restored_from=row["restored_from"],
        )

    def _current(self, db: sqlite3.Connection, name: str) -> PersonaVersion:
        row = db.execute(
            "SELECT v.* FROM personas p JOIN persona_versions v "
            "ON v.name = p.name AND v.version = p.current WHERE p.name = ? AND p.deleted = 0",
            (name,),
        ).fetchone()
        if row is None:
            raise NotFound(f"persona {name!r} does not exist")
        return self._version(row)

    def _add_version(
        self,
        db: sqlite3.Connection,
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
        # Versions keep growing across delete and re-create so that (name, version) is never
        # reused for a different document: agents and certificates rely on that.
        version = 1 if row is None else row["current"] + 1
        created = PersonaVersion(name, version, document, self._clock(), actor, restored_from)
        db.execute(
            "INSERT INTO persona_versions (name, version, document, created_at, created_by, "
            "restored_from) VALUES (?,?,?,?,?,?)",
            (name, version, document, created.created_at, actor, restored_from),
        )
        db.execute(
            "INSERT OR REPLACE INTO personas (name, current, deleted) VALUES (?, ?, 0)",
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

    def put_persona(
        self,
        name: str,
        document: str,
        actor: str,
        expect: int | None = None,
        create_only: bool = False,
    ) -> PersonaVersion:
        with self._write() as db:
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
                _check_expect(f"persona {name!r}", current.version, expect)
            return self._add_version(
                db, name, document, actor=actor, action="persona.put", restored_from=None
            )

    def get_persona(self, name: str, version: int | None = None) -> PersonaVersion:
        with self._read() as db:
            if version is None:
                return self._current(db, name)
            row = db.execute(
                "SELECT * FROM persona_versions WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
            if row is None:
                raise NotFound(f"persona {name!r} has no version {version}")
            return self._version(row)

    def list_personas(self, limit: int, cursor: str | None = None) -> Page[PersonaVersion]:
        after = _decode_cursor(cursor) or ""
        with self._read() as db:
            rows = db.execute(
                "SELECT v.* FROM personas p JOIN persona_versions v "
                "ON v.name = p.name AND v.version = p.current "
                "WHERE p.deleted = 0 AND p.name > ? ORDER BY p.name LIMIT ?",
                (after, limit + 1),
            ).fetchall()
        items = tuple(self._version(r) for r in rows[:limit])
        more = len(rows) > limit
        return Page(items, _encode_cursor(items[-1].name) if more and items else None)

    def persona_history(
        self, name: str, limit: int, cursor: str | None = None
    ) -> Page[PersonaVersion]:
        before = _int_cursor(cursor)
        with self._read() as db:
            if db.execute("SELECT 1 FROM personas WHERE name = ?", (name,)).fetchone() is None:
                raise NotFound(f"persona {name!r} does not exist")
            rows = db.execute(
                "SELECT * FROM persona_versions WHERE name = ? AND version < ? "
                "ORDER BY version DESC LIMIT ?",
                (name, before if before is not None else 2**62, limit + 1),
            ).fetchall()
        items = tuple(self._version(r) for r in rows[:limit])
        more = len(rows) > limit
        return Page(items, _encode_cursor(str(items[-1].version)) if more and items else None)

    def restore_persona(
        self, name: str, version: int, actor: str, expect: int | None = None
    ) -> PersonaVersion:
        with self._write() as db:
            row = db.execute(
                "SELECT * FROM persona_versions WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
            if row is None:
                raise NotFound(f"persona {name!r} has no version {version}")
            if expect is not None:
                _check_expect(f"persona {name!r}", self._current(db, name).version, expect)
            return self._add_version(
                db,
                name,
                row["document"],
                actor=actor,
                action="persona.restore",
                restored_from=version,
            )

    def delete_persona(self, name: str, actor: str, expect: int | None = None) -> None:
        with self._write() as db:
            current = self._current(db, name)
            _check_expect(f"persona {name!r}", current.version, expect)
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

    # -- the persona policy ---------------------------------------------------------------

    @staticmethod
    def _policy_version(row: sqlite3.Row) -> PolicyVersion:
        return PolicyVersion(
            version=row["version"],
            document=row["document"],
            created_at=row["created_at"],
            created_by=row["created_by"],
        )

    def _current_policy(self, db: sqlite3.Connection) -> PolicyVersion | None:
        row = db.execute(
            "SELECT v.* FROM policy p JOIN policy_versions v ON v.version = p.current "
            "WHERE p.id = 1 AND p.deleted = 0"
        ).fetchone()
        return None if row is None else self._policy_version(row)

    def put_policy(self, document: str, actor: str, expect: int | None = None) -> PolicyVersion:
        with self._write() as db:
            before = self._current_policy(db)
            if expect is not None:
                if before is None:
                    raise PreconditionFailed(
                        f"there is no policy, so it is not at version {expect} (If-Match)"
                    )
                _check_expect("the policy", before.version, expect)
            if before is not None and before.document == document:
                return before  # the same document again is not a change
            # Versions keep growing across delete and re-create, as persona versions do.
            last = db.execute("SELECT COALESCE(MAX(version), 0) FROM policy_versions").fetchone()
            created = PolicyVersion(int(last[0]) + 1, document, self._clock(), actor)
            db.execute(
                "INSERT INTO policy_versions (version, document, created_at, created_by) "
                "VALUES (?,?,?,?)",
                (created.version, document, created.created_at, actor),
            )
            db.execute(
                "INSERT OR REPLACE INTO policy (id, current, deleted) VALUES (1, ?, 0)",
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
        with self._read() as db:
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
        return self._policy_version(row)

    def policy_history(self, limit: int, cursor: str | None = None) -> Page[PolicyVersion]:
        before = _int_cursor(cursor)
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM policy_versions WHERE version < ? ORDER BY version DESC LIMIT ?",
                (before if before is not None else 2**62, limit + 1),
            ).fetchall()
        items = tuple(self._policy_version(r) for r in rows[:limit])
        more = len(rows) > limit
        return Page(items, _encode_cursor(str(items[-1].version)) if more and items else None)

    def delete_policy(self, actor: str, expect: int | None = None) -> None:
        with self._write() as db:
            current = self._current_policy(db)
            if current is None:
                raise NotFound("there is no policy to delete")
            _check_expect("the policy", current.version, expect)
            db.execute("UPDATE policy SET deleted = 1 WHERE id = 1")
            self._audit(db, actor, "policy.delete", "policy", before=current.to_json(), after=None)

    # -- network context ------------------------------------------------------------------

    @staticmethod
    def _context(row: sqlite3.Row) -> ContextEntry:
        return ContextEntry(row["key"], row["value"], row["revision"], row["updated_at"])

    def list_context(self) -> Sequence[ContextEntry]:
        with self._read() as db:
            return [self._context(r) for r in db.execute("SELECT * FROM context ORDER BY key")]

    def get_context(self, key: str) -> ContextEntry:
        with self._read() as db:
            row = db.execute("SELECT * FROM context WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"context key {key!r} is not set")
        return self._context(row)

    def set_context(
        self, key: str, value: str, actor: str, expect: int | None = None
    ) -> ContextEntry:
        with self._write() as db:
            row = db.execute("SELECT * FROM context WHERE key = ?", (key,)).fetchone()
            before = None if row is None else self._context(row)
            if expect is not None:
                if before is None:
                    raise PreconditionFailed(f"context key {key!r} is not set (If-Match)")
                _check_expect(f"context key {key!r}", before.revision, expect)
            if before is not None and before.value == value:
                return before
            entry = ContextEntry(
                key, value, 1 if before is None else before.revision + 1, self._clock()
            )
            db.execute(
                "INSERT OR REPLACE INTO context (key, value, revision, updated_at) "
                "VALUES (?,?,?,?)",
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

    def delete_context(self, key: str, actor: str, expect: int | None = None) -> None:
        with self._write() as db:
            row = db.execute("SELECT * FROM context WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise NotFound(f"context key {key!r} is not set")
            before = self._context(row)
            _check_expect(f"context key {key!r}", before.revision, expect)
            db.execute("DELETE FROM context WHERE key = ?", (key,))
            self._audit(
                db, actor, "context.delete", f"context/{key}", before=before.to_json(), after=None
            )

    # -- audit ----------------------------------------------------------------------------

    def list_audit(
        self, limit: int, cursor: str | None = None, target: str | None = None
    ) -> Page[AuditEntry]:
        before = _int_cursor(cursor)
        query = "SELECT * FROM audit WHERE seq < ?"
        args: list[Any] = [before if before is not None else 2**62]
        if target is not None:
            query += " AND target = ?"
            args.append(target)
        query += " ORDER BY seq DESC LIMIT ?"
        args.append(limit + 1)
        with self._read() as db:
            rows = db.execute(query, args).fetchall()
        items = tuple(
            AuditEntry(
                seq=r["seq"],
                at=r["at"],
                actor=r["actor"],
                action=r["action"],
                target=r["target"],
                before=None if r["before"] is None else json.loads(r["before"]),
                after=None if r["after"] is None else json.loads(r["after"]),
            )
            for r in rows[:limit]
        )
        more = len(rows) > limit
        return Page(items, _encode_cursor(str(items[-1].seq)) if more and items else None)

    # -- API tokens -----------------------------------------------------------------------

    @staticmethod
    def _token(row: sqlite3.Row) -> ApiToken:
        return ApiToken(
            row["id"], row["name"], Role(row["role"]), row["created_at"], row["created_by"]
        )

    def create_token(self, name: str, role: Role, actor: str) -> tuple[ApiToken, str]:
        secret = "np_" + secrets.token_urlsafe(32)
        token = ApiToken("tok-" + secrets.token_hex(6), name, role, self._clock(), actor)
        with self._write() as db:
            db.execute(
                "INSERT INTO tokens (id, name, role, hash, created_at, created_by) "
                "VALUES (?,?,?,?,?,?)",
                (token.id, name, role.value, hash_secret(secret), token.created_at, actor),
            )
            self._audit(
                db, actor, "token.create", f"token/{token.id}", before=None, after=token.to_json()
            )
        return token, secret

    def token_for_secret(self, secret: str) -> ApiToken | None:
        with self._read() as db:
            row = db.execute(
                "SELECT * FROM tokens WHERE hash = ?", (hash_secret(secret),)
            ).fetchone()
        return None if row is None else self._token(row)

    def list_tokens(self) -> Sequence[ApiToken]:
        with self._read() as db:
            return [self._token(r) for r in db.execute("SELECT * FROM tokens ORDER BY id")]

    def revoke_token(self, token_id: str, actor: str) -> None:
        with self._write() as db:
            row = db.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
            if row is None:
                raise NotFound(f"token {token_id!r} does not exist")
            db.execute("DELETE FROM tokens WHERE id = ?", (token_id,))
            self._audit(
                db,
                actor,
                "token.revoke",
                f"token/{token_id}",
                before=self._token(row).to_json(),
                after=None,
            )

    # -- agent reports --------------------------------------------------------------------

    def record_status(self, status: InstanceStatus) -> None:
        with self._write() as db:
            self._load_instance(db, status.instance_id)
            db.execute(
                "INSERT OR REPLACE INTO status (instance_id, persona, version, result, message, "
                "drops, reported_at) VALUES (?,?,?,?,?,?,?)",
                (
                    status.instance_id,
                    status.persona,
                    status.version,
                    status.result,
                    status.message,
                    _dump(dict(status.drops)),
                    status.reported_at,
                ),
            )

    def get_status(self, instance_id: str) -> InstanceStatus:
        with self._read() as db:
            row = db.execute(
                "SELECT * FROM status WHERE instance_id = ?", (instance_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"instance {instance_id!r} has not reported a status")
        return InstanceStatus(
            instance_id=row["instance_id"],
            persona=row["persona"],
            version=row["version"],
            result=row["result"],
            message=row["message"],
            drops=tuple(sorted(json.loads(row["drops"]).items())),
            reported_at=row["reported_at"],
        )

    # -- fleet and secrets ----------------------------------------------------------------

    def fleet(self) -> FleetData:
        with self._read() as db:
            revision = db.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()[0]
            # Decoding every row is most of the cost of a fleet read, so rows are kept from the
            # previous read: this store's own writes drop them, and a row some other process
            # changed shows a different revision or update time.
            current = db.execute("SELECT id, revision, updated_at FROM instances ORDER BY id")
            keys = [(r["id"], r["revision"], r["updated_at"]) for r in current]
            stale = [
                k[0]
                for k in keys
                if (cached := self._fleet_cache.get(k[0])) is None
                or (cached.revision, cached.updated_at) != k[1:]
            ]
            for start in range(0, len(stale), 500):
                chunk = stale[start : start + 500]
                marks = ",".join("?" * len(chunk))  # placeholders only; the ids are bound
                query = f"SELECT * FROM instances WHERE id IN ({marks})"  # noqa: S608
                for row in db.execute(query, chunk):
                    self._fleet_cache[row["id"]] = self._instance(row)
            personas = {
                r["name"]: self._version(r)
                for r in db.execute(
                    "SELECT v.* FROM personas p JOIN persona_versions v "
                    "ON v.name = p.name AND v.version = p.current WHERE p.deleted = 0"
                )
            }
            context = {r["key"]: r["value"] for r in db.execute("SELECT key, value FROM context")}
            policy = self._current_policy(db)
            instances = tuple(self._fleet_cache[k[0]] for k in keys)
            if len(self._fleet_cache) > len(keys):
                self._fleet_cache = {i.id: i for i in instances}
        return FleetData(int(revision), instances, personas, context, policy)

    def certificates(self) -> Sequence[IssuedCertificate]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM certificates ORDER BY instance_id").fetchall()
        return [
            IssuedCertificate(
                instance_id=r["instance_id"],
                seq=r["seq"],
                summary=r["summary"],
                token=r["token"],
                issued_at=r["issued_at"],
                expires_at=r["expires_at"],
            )
            for r in rows
        ]

    def save_certificates(self, issued: Sequence[IssuedCertificate]) -> None:
        """Record newly issued certificates; a row never goes back to a lower ``seq``."""
        if not issued:
            return
        with self._write() as db:
            db.executemany(
                "INSERT INTO certificates (instance_id, seq, summary, token, issued_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (instance_id) DO UPDATE SET"
                " seq = excluded.seq, summary = excluded.summary, token = excluded.token,"
                " issued_at = excluded.issued_at, expires_at = excluded.expires_at"
                " WHERE excluded.seq > certificates.seq",
                [
                    (c.instance_id, c.seq, c.summary, c.token, c.issued_at, c.expires_at)
                    for c in issued
                ],
            )

    def secret(self, name: str) -> bytes:
        with self._write() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (f"secret.{name}",)).fetchone()
            if row is not None:
                return bytes(row["value"])
            value = secrets.token_bytes(32)
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"secret.{name}", value))
            return value
