"""What ``netpersona db status`` says about a PostgreSQL database, read without changing it."""

from __future__ import annotations

from dataclasses import dataclass

from netpersona.errors import StoreError
from netpersona.store.migrations import MIGRATIONS, check_version
from netpersona.store.postgres.database import Database

__all__ = ["ServerReport", "inspect_server"]


@dataclass(frozen=True, slots=True)
class ServerReport:
    name: str
    server_version: str | None
    schema_version: int | None
    known_version: int
    last_change: int | None  # None: no change sequence yet (an older schema, or none)
    error: StoreError | None  # why the service would refuse it; None: it would open it


def inspect_server(url: str, password: str | None = None) -> ServerReport:
    server = version = last = None
    error: StoreError | None = None
    try:
        database = Database(url, password=password)
        try:
            with database.read("read the schema version") as db:
                server = str(db.execute("SHOW server_version").fetchone()["server_version"])
                version = database.schema_version(db)
                if db.execute("SELECT to_regclass('changes') AS t").fetchone()["t"] is not None:
                    row = db.execute("SELECT COALESCE(MAX(seq), 0) AS seq FROM changes").fetchone()
                    last = int(row["seq"])
            check_version(version, database.name)
            if version == 0:
                raise StoreError(f"database {url}: has no netpersona schema (serve makes it)")
        finally:
            database.close()
    except StoreError as exc:
        error = exc
    return ServerReport(url, server, version, len(MIGRATIONS), last, error)
