"""Instances: their rows, the address index that keeps an address to one instance, labels and
pins."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from netpersona.errors import Conflict, FieldError, InvalidDocument, NotFound
from netpersona.model.labels import check_label_key, check_label_value
from netpersona.store.base import Instance, Interface, Page, Tier
from netpersona.store.pages import decode_cursor, page_of
from netpersona.store.sql.aggregate import Aggregate, check_expect, dump
from netpersona.store.sql.engine import Connection, Row, retried

__all__ = ["InstanceTables", "instance_from_row"]

Change = Callable[[Connection, Instance], Instance]


def _labels(text: str) -> tuple[tuple[str, str], ...]:
    labels: dict[str, str] = json.loads(text)
    for key, value in labels.items():
        problem = check_label_key(key) or check_label_value(value)
        if problem:
            raise ValueError(f"label {problem}")
    return tuple(sorted(labels.items()))


def _interface(data: Mapping[str, Any]) -> Interface:
    tier = data["tier"]
    return Interface(data["name"], tuple(data["addresses"]), Tier(tier) if tier else None)


def instance_from_row(row: Row) -> Instance:
    return Instance(
        id=row["id"],
        name=row["name"],
        addresses=tuple(json.loads(row["addresses"])),
        interfaces=tuple(_interface(i) for i in json.loads(row["interfaces"])),
        labels=_labels(row["labels"]),
        pin=row["pin"],
        revision=row["revision"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


_INSERT_INSTANCE = (
    "INSERT INTO instances (id, name, addresses, interfaces, labels, pin, revision, "
    "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)"
)


def _instance_row(instance: Instance) -> tuple[Any, ...]:
    return (
        instance.id,
        instance.name,
        dump(list(instance.addresses)),
        dump([i.to_json() for i in instance.interfaces]),
        dump(instance.label_map),
        instance.pin,
        instance.revision,
        instance.created_at,
        instance.updated_at,
    )


class InstanceTables(Aggregate):
    # Decoded instances kept between fleet reads; this store's own writes drop theirs.
    _fleet_cache: dict[str, Instance]

    def _instance_row(self, db: Connection, instance_id: str) -> Row:
        row: Row | None = db.execute(
            "SELECT * FROM instances WHERE id = ?", (instance_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"instance {instance_id!r} does not exist")
        return row

    def _load_instance(self, db: Connection, instance_id: str) -> Instance:
        row = self._instance_row(db, instance_id)
        return self._rows.one("instances", instance_id, row, instance_from_row)

    def _claim_addresses(self, db: Connection, instance_id: str, addresses: Sequence[str]) -> None:
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

    def _save_instance(self, db: Connection, instance: Instance) -> None:
        self._fleet_cache.pop(instance.id, None)
        db.execute(
            _INSERT_INSTANCE + " ON CONFLICT (id) DO UPDATE SET "
            "name = excluded.name, addresses = excluded.addresses, "
            "interfaces = excluded.interfaces, labels = excluded.labels, pin = excluded.pin, "
            "revision = excluded.revision, created_at = excluded.created_at, "
            "updated_at = excluded.updated_at",
            _instance_row(instance),
        )

    @retried
    def create_instance(self, spec: Instance, actor: str) -> Instance:
        instance_id = spec.id
        with self._database.write(f"create instance {instance_id!r}") as db:
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
            target = f"instance/{instance_id}"
            self._audit(db, actor, "instance.create", target, before=None, after=instance.to_json())
            return instance

    def import_instances(self, specs: Sequence[Instance], actor: str) -> int:
        """Create every instance of ``specs``, pins included, in one transaction (all or none):
        a fleet brought in from elsewhere, or a benchmark's. Each is audited as a create."""
        owners: dict[str, str] = {}
        for spec in specs:
            for index, address in enumerate(spec.addresses):
                other = owners.setdefault(address, spec.id)
                if other != spec.id:
                    raise Conflict(
                        f"/{spec.id}/addresses/{index}: {address} already belongs to instance "
                        f"{other!r} (an address identifies one instance)"
                    )
        with self._database.write(f"import {len(specs)} instances") as db:
            for pin in sorted({s.pin for s in specs if s.pin is not None}):
                row = db.execute("SELECT deleted FROM personas WHERE name = ?", (pin,)).fetchone()
                if row is None or row["deleted"]:
                    spec = next(s for s in specs if s.pin == pin)
                    raise InvalidDocument(
                        [FieldError(f"/{spec.id}/pin", f"no persona is named {pin!r}")]
                    )
            ids = [s.id for s in specs]
            if len(set(ids)) != len(ids) or self._taken(db, "instances", "id", ids):
                taken = self._taken(db, "instances", "id", ids) or [
                    i for i in ids if ids.count(i) > 1
                ]
                raise Conflict(f"instance {taken[0]!r} already exists")
            for address in self._taken(db, "instance_addresses", "address", list(owners)):
                owner = db.execute(
                    "SELECT instance_id FROM instance_addresses WHERE address = ?", (address,)
                ).fetchone()["instance_id"]
                raise Conflict(
                    f"/{owners[address]}/addresses: {address} already belongs to instance "
                    f"{owner!r} (an address identifies one instance)"
                )
            now = self._clock()
            made = [
                replace(
                    spec,
                    labels=tuple(sorted(spec.labels)),
                    revision=1,
                    created_at=now,
                    updated_at=now,
                )
                for spec in specs
            ]
            for instance in made:
                self._fleet_cache.pop(instance.id, None)
            db.executemany(_INSERT_INSTANCE, [_instance_row(i) for i in made])
            db.executemany(
                "INSERT INTO instance_addresses (address, instance_id) VALUES (?, ?)",
                list(owners.items()),
            )
            self._lock_changes(db)
            db.executemany(
                "INSERT INTO audit (at, actor, action, target, before, after) VALUES (?,?,?,?,?,?)",
                [
                    (now, actor, "instance.create", f"instance/{i.id}", None, dump(i.to_json()))
                    for i in made
                ],
            )
            db.executemany(
                "INSERT INTO changes (kind, key, at) VALUES (?,?,?)",
                [("instance", i.id, now) for i in made],
            )
            notify = self._database.dialect.notify
            if notify is not None and made:
                last = db.execute("SELECT MAX(seq) AS seq FROM changes").fetchone()["seq"]
                db.execute(notify, (str(last),))
            return len(made)

    @staticmethod
    def _taken(db: Connection, table: str, column: str, values: list[str]) -> list[str]:
        """Which of ``values`` the column already holds."""
        found: list[str] = []
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            marks = ",".join("?" * len(chunk))  # placeholders only; the values are bound
            query = f"SELECT {column} AS v FROM {table} WHERE {column} IN ({marks})"  # noqa: S608
            found += [row["v"] for row in db.execute(query, chunk)]
        return found

    def get_instance(self, instance_id: str) -> Instance:
        with self._database.read(f"read instance {instance_id!r}") as db:
            return self._load_instance(db, instance_id)

    def list_instances(self, limit: int, cursor: str | None = None) -> Page[Instance]:
        after = decode_cursor(cursor) or ""
        with self._database.read("list instances") as db:
            rows = db.execute(
                "SELECT * FROM instances WHERE id > ? ORDER BY id LIMIT ?", (after, limit + 1)
            ).fetchall()
        return page_of(rows, limit, self._decode_instance, lambda r: r["id"])

    def _decode_instance(self, row: Row) -> Instance | None:
        return self._rows.decode("instances", row["id"], row, instance_from_row)

    @retried
    def _change_instance(
        self, instance_id: str, actor: str, action: str, expect: int | None, change: Change
    ) -> Instance:
        with self._database.write(f"{action} {instance_id!r}") as db:
            before = self._load_instance(db, instance_id)
            check_expect(f"instance {instance_id!r}", before.revision, expect)
            after = change(db, before)
            if after == before:
                return before  # nothing changed: no new revision, no audit entry, no wake-up
            after = replace(after, revision=before.revision + 1, updated_at=self._clock())
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

        def change(db: Connection, old: Instance) -> Instance:
            if spec.addresses != old.addresses:
                self._claim_addresses(db, instance_id, spec.addresses)
            return replace(
                old,
                name=spec.name,
                addresses=spec.addresses,
                interfaces=spec.interfaces,
                labels=tuple(sorted(spec.labels)),
            )

        return self._change_instance(instance_id, actor, "instance.replace", expect, change)

    @retried
    def delete_instance(self, instance_id: str, actor: str, expect: int | None = None) -> None:
        """Delete an instance; one whose row cannot be read can still be deleted (without
        If-Match, since its revision is unknown), which is how an operator gets rid of it."""
        with self._database.write(f"delete instance {instance_id!r}") as db:
            row = self._instance_row(db, instance_id)
            before = self._decode_instance(row) if expect is None else None
            if expect is not None:
                before = self._load_instance(db, instance_id)
                check_expect(f"instance {instance_id!r}", before.revision, expect)
            db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
            self._fleet_cache.pop(instance_id, None)
            self._rows.forget("instances", instance_id)
            db.execute("DELETE FROM status WHERE instance_id = ?", (instance_id,))
            self._audit(
                db,
                actor,
                "instance.delete",
                f"instance/{instance_id}",
                before=dict(row) if before is None else before.to_json(),
                after=None,
            )

    def patch_labels(
        self,
        instance_id: str,
        changes: Mapping[str, str | None],
        actor: str,
        expect: int | None = None,
    ) -> Instance:
        def change(db: Connection, old: Instance) -> Instance:
            labels = old.label_map
            for key, value in changes.items():
                if value is None:
                    labels.pop(key, None)
                else:
                    labels[key] = value
            return replace(old, labels=tuple(sorted(labels.items())))

        return self._change_instance(instance_id, actor, "instance.labels", expect, change)

    def set_pin(
        self, instance_id: str, persona: str | None, actor: str, expect: int | None = None
    ) -> Instance:
        def change(db: Connection, old: Instance) -> Instance:
            if persona is not None:
                row = db.execute(
                    "SELECT deleted FROM personas WHERE name = ?", (persona,)
                ).fetchone()
                if row is None or row["deleted"]:
                    raise InvalidDocument(
                        [FieldError("/persona", f"no persona is named {persona!r}")]
                    )
            return replace(old, pin=persona)

        action = "instance.pin" if persona is not None else "instance.unpin"
        return self._change_instance(instance_id, actor, action, expect, change)
