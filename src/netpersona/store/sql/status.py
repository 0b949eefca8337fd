"""Instance status: the last report each instance's agent made about applying its persona."""

from __future__ import annotations

import json

from netpersona.errors import NotFound
from netpersona.store.base import InstanceStatus
from netpersona.store.sql.aggregate import Aggregate, dump
from netpersona.store.sql.engine import Row, from_row, retried

__all__ = ["StatusTable"]


def status_from_row(row: Row) -> InstanceStatus:
    return from_row(InstanceStatus, row, drops=_drops)


def _drops(text: str) -> tuple[tuple[str, int], ...]:
    drops: dict[str, int] = json.loads(text)
    return tuple(sorted(drops.items()))


class StatusTable(Aggregate):
    @retried
    def record_status(self, status: InstanceStatus) -> None:
        with self._database.write(f"record the status of instance {status.instance_id!r}") as db:
            if (
                db.execute("SELECT 1 FROM instances WHERE id = ?", (status.instance_id,)).fetchone()
                is None
            ):
                raise NotFound(f"instance {status.instance_id!r} does not exist")
            db.execute(
                "INSERT INTO status (instance_id, persona, version, result, message, drops, "
                "reported_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT (instance_id) DO UPDATE SET "
                "persona = excluded.persona, version = excluded.version, "
                "result = excluded.result, message = excluded.message, drops = excluded.drops, "
                "reported_at = excluded.reported_at",
                (
                    status.instance_id,
                    status.persona,
                    status.version,
                    status.result,
                    status.message,
                    dump(dict(status.drops)),
                    status.reported_at,
                ),
            )
            self._changed(db, "status", status.instance_id)

    def get_status(self, instance_id: str) -> InstanceStatus:
        with self._database.read(f"read the status of instance {instance_id!r}") as db:
            row = db.execute(
                "SELECT * FROM status WHERE instance_id = ?", (instance_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"instance {instance_id!r} has not reported a status")
        return self._rows.one("status", instance_id, row, status_from_row)
