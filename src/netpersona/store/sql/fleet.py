"""The whole-fleet read the VM-facing views derive from, in one consistent transaction, and
the read of what changed in it since an earlier one (from the change sequence)."""

from __future__ import annotations

from netpersona.store.base import (
    VIEWLESS_CHANGES,
    FleetData,
    FleetDelta,
    Instance,
    PersonaVersion,
)
from netpersona.store.sql.changes import pruned_through
from netpersona.store.sql.context import ContextTable, context_from_row
from netpersona.store.sql.engine import Connection
from netpersona.store.sql.instances import InstanceTables, instance_from_row
from netpersona.store.sql.personas import CURRENT_PERSONAS, PersonaTables
from netpersona.store.sql.policy import PolicyTables

__all__ = ["FleetQuery"]

_VIEWLESS = ",".join("?" * len(VIEWLESS_CHANGES))  # placeholders for the kinds
# Change kinds a delta carries (with the viewless ones); any other and the fleet is read whole.
_DELTA_KINDS = ("instance", "persona", "context", "policy")
_CHUNK = 500  # ids per IN (...) query, well under SQLite's bound-parameter limit


class FleetQuery(InstanceTables, PersonaTables, PolicyTables, ContextTable):
    def fleet(self) -> FleetData:
        with self._database.read("read the fleet") as db:
            last = db.execute("SELECT COALESCE(MAX(seq), 0) AS seq FROM audit").fetchone()
            changes = db.execute("SELECT COALESCE(MAX(seq), 0) AS seq FROM changes").fetchone()
            instances = self._fleet_instances(db)
            personas: dict[str, PersonaVersion] = {}
            for row in db.execute(CURRENT_PERSONAS):
                persona = self._decode_persona(row)
                if persona is not None:
                    personas[persona.name] = persona
            context = {e.key: e.value for e in self._context_entries(db)}
            policy = self._current_policy(db)
        return FleetData(
            int(last["seq"]), instances, personas, context, policy, int(changes["seq"])
        )

    def fleet_delta(self, since: int, limit: int) -> FleetDelta | None:
        with self._database.read("read the fleet's changes") as db:
            last = db.execute("SELECT COALESCE(MAX(seq), 0) AS seq FROM audit").fetchone()
            newest = db.execute("SELECT COALESCE(MAX(seq), 0) AS seq FROM changes").fetchone()
            if since < pruned_through(db):
                return None  # some of the changes since were pruned: read it all
            rows = db.execute(
                f"SELECT seq, kind, key FROM changes WHERE seq > ? AND kind NOT IN ({_VIEWLESS}) "  # noqa: S608
                "ORDER BY seq LIMIT ?",
                (since, *sorted(VIEWLESS_CHANGES), limit + 1),
            ).fetchall()
            if len(rows) > limit:
                return None
            written: dict[str, set[str]] = {kind: set() for kind in _DELTA_KINDS}
            for row in rows:
                keys = written.get(row["kind"])
                if keys is None:
                    return None  # a kind this read does not know: read it all
                keys.add(row["key"])
            upserted = self._written_instances(db, written["instance"])
            personas = {name: self._persona_now(db, name) for name in sorted(written["persona"])}
            context = {key: self._context_now(db, key) for key in sorted(written["context"])}
            policy = self._current_policy(db) if written["policy"] else None
        found = {i.id for i in upserted}
        return FleetDelta(
            int(last["seq"]),
            max(since, int(newest["seq"])),
            upserted,
            tuple(sorted(written["instance"] - found)),
            personas,
            context,
            bool(written["policy"]),
            policy,
        )

    def _written_instances(self, db: Connection, ids: set[str]) -> tuple[Instance, ...]:
        upserted = []
        for instance_id in sorted(ids):
            row = db.execute("SELECT * FROM instances WHERE id = ?", (instance_id,)).fetchone()
            decoded = None
            if row is not None:
                decoded = self._rows.decode("instances", instance_id, row, instance_from_row)
            if decoded is None:
                self._fleet_cache.pop(instance_id, None)
            else:
                self._fleet_cache[instance_id] = decoded
                upserted.append(decoded)
        return tuple(upserted)

    def _persona_now(self, db: Connection, name: str) -> PersonaVersion | None:
        """The current version of persona ``name`` as :meth:`fleet` reads it (None: deleted,
        or a row that cannot be read back)."""
        row = db.execute(f"{CURRENT_PERSONAS} AND p.name = ?", (name,)).fetchone()
        return None if row is None else self._decode_persona(row)

    def _context_now(self, db: Connection, key: str) -> str | None:
        row = db.execute("SELECT * FROM context WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        entry = self._rows.decode("context", key, row, context_from_row)
        return None if entry is None else entry.value

    def _fleet_instances(self, db: Connection) -> tuple[Instance, ...]:
        # Decoding every row is most of the cost of a fleet read, so rows are kept from the
        # previous read: this store's own writes drop them, and a row some other process
        # changed shows a different revision or update time.
        current = db.execute("SELECT id, revision, updated_at FROM instances ORDER BY id")
        keys = [(r["id"], r["revision"], r["updated_at"]) for r in current]
        cache = self._fleet_cache
        stale = [
            k[0]
            for k in keys
            if (cached := cache.get(k[0])) is None or (cached.revision, cached.updated_at) != k[1:]
        ]
        for start in range(0, len(stale), _CHUNK):
            chunk = stale[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))  # placeholders only; the ids are bound
            query = f"SELECT * FROM instances WHERE id IN ({marks})"  # noqa: S608
            for row in db.execute(query, chunk):
                decoded = self._rows.decode("instances", row["id"], row, instance_from_row)
                if decoded is not None:
                    cache[row["id"]] = decoded
                else:
                    cache.pop(row["id"], None)
        instances = tuple(cache[k[0]] for k in keys if k[0] in cache)
        if len(cache) > len(instances):
            self._fleet_cache = {i.id: i for i in instances}
        return instances
