"""``netpersona db``: the service's database, worked on directly (safe while the service runs,
except ``restore``).

``status`` reports what the service would check on start-up, changing nothing: for SQLite the
file, its write-ahead log, the schema version, ``PRAGMA quick_check`` and the files' modes and
sizes; for PostgreSQL the server version, the schema version and the last change. ``migrate``
brings an existing database's schema up to date (``serve`` does too, on every start).
``token`` mints a new admin token for an existing database and writes DATA_DIR/admin.token:
the documented way back in when that file is lost, and what ``netpersona serve`` asks for when
it finds a database without any admin token. ``backup`` and ``restore`` copy a SQLite database
with the sqlite3 backup API; a PostgreSQL database is backed up with ``pg_dump``
(docs/deployment.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from netpersona.cli.output import OutputFormat, data_text, output_option
from netpersona.cli.params import PATH
from netpersona.cli.serve_cmd import (
    data_dir_option,
    database_path,
    db_option,
    db_password_file_option,
    open_data_store,
    with_data_store,
    write_admin_token,
)
from netpersona.errors import StoreError, UsageError
from netpersona.store.migrations import MIGRATIONS
from netpersona.store.sqlite.backup import backup_database, restore_database
from netpersona.store.sqlite.report import DatabaseReport, FileState, inspect_database
from netpersona.store.url import is_postgres, postgres_url, read_password_file

if TYPE_CHECKING:
    from netpersona.store.postgres.report import ServerReport

__all__ = ["register"]

_PG_BACKUP = (
    "a PostgreSQL database is backed up and restored with pg_dump / pg_restore (docs/deployment.md)"
)


def _file_line(file: FileState) -> str:
    if file.mode is None:
        return f"{file.path}: absent"
    warning = "" if file.private else "  (readable by others: the service makes it 0600)"
    return f"{file.path}: {file.mode:04o}, {file.size} bytes{warning}"


def _report_lines(report: DatabaseReport, data_dir: Path) -> list[str]:
    version = "unknown" if report.schema_version is None else str(report.schema_version)
    lines = [f"schema version: {version} (this netpersona: {report.known_version})"]
    if report.error is not None:
        lines.append(f"check: the service would refuse it: {report.error}")
    else:
        lines.append(f"check: ok (quick_check took {report.check_seconds or 0:.3f} s)")
    lines += [f"file {_file_line(f)}" for f in report.files]
    directory = FileState.of(data_dir)
    if directory.mode is not None:
        lines.append(f"data directory {data_dir}: {directory.mode:04o}")
    token = FileState.of(data_dir / "admin.token")
    lines.append(f"admin token {_file_line(token)}")
    return lines


def _server_lines(report: ServerReport) -> list[str]:
    version = "unknown" if report.schema_version is None else str(report.schema_version)
    lines = [
        f"database: {report.name}",
        f"server: PostgreSQL {report.server_version or 'unknown'}",
        f"schema version: {version} (this netpersona: {report.known_version})",
    ]
    if report.last_change is not None:
        lines.append(f"last change: {report.last_change}")
    if report.error is not None:
        lines.append(f"check: the service would refuse it: {report.error}")
    else:
        lines.append("check: ok")
    return lines


def _error_json(error: StoreError | None) -> dict[str, str] | None:
    return None if error is None else {"code": error.code, "message": str(error)}


def _file_json(file: FileState) -> dict[str, Any]:
    mode = None if file.mode is None else f"{file.mode:04o}"
    return {"path": str(file.path), "mode": mode, "size": file.size}


def _report_json(report: DatabaseReport, data_dir: Path) -> dict[str, Any]:
    return {
        "engine": "sqlite",
        "schema_version": report.schema_version,
        "known_version": report.known_version,
        "ok": report.error is None,
        "error": _error_json(report.error),
        "check_seconds": report.check_seconds,
        "files": [_file_json(f) for f in report.files],
        "data_dir": _file_json(FileState.of(data_dir)),
        "admin_token": _file_json(FileState.of(data_dir / "admin.token")),
    }


def _server_json(report: ServerReport) -> dict[str, Any]:
    return {
        "engine": "postgresql",
        "database": report.name,
        "server_version": report.server_version,
        "schema_version": report.schema_version,
        "known_version": report.known_version,
        "last_change": report.last_change,
        "ok": report.error is None,
        "error": _error_json(report.error),
    }


def _sqlite_only(db: str | None, command: str) -> None:
    if is_postgres(db):
        raise UsageError(f"netpersona db {command}: {_PG_BACKUP}")


def register(app: click.Group) -> None:
    @app.group("db")
    def db_app() -> None:
        """The service's database (works on it directly)."""

    @db_app.command("status")
    @data_dir_option
    @db_option
    @db_password_file_option
    @output_option
    def status(
        data_dir: Path, db: str | None, db_password_file: Path | None, output: OutputFormat
    ) -> None:
        """Schema version and the start-up checks (SQLite: quick_check, file modes and sizes;
        PostgreSQL: server version, last change); changes nothing. Exits non-zero, with the
        error the service would refuse to start with, when it would."""
        if is_postgres(db):
            assert db is not None
            from netpersona.store.postgres.report import inspect_server  # noqa: PLC0415

            password = None if db_password_file is None else read_password_file(db_password_file)
            server = inspect_server(postgres_url(db), password)
            if output is OutputFormat.TABLE:
                sys.stdout.write("\n".join(_server_lines(server)) + "\n")
            else:
                sys.stdout.write(data_text(_server_json(server), output))
            if server.error is not None:
                raise server.error
            return
        report = inspect_database(database_path(data_dir, db))
        if output is OutputFormat.TABLE:
            sys.stdout.write("\n".join(_report_lines(report, data_dir)) + "\n")
        else:
            sys.stdout.write(data_text(_report_json(report, data_dir), output))
        if report.error is not None:
            raise report.error

    @db_app.command("migrate")
    @data_dir_option
    @db_option
    @db_password_file_option
    def migrate(data_dir: Path, db: str | None, db_password_file: Path | None) -> None:
        """Bring an existing database's schema up to date (serve also does, on every start)."""
        store = open_data_store(data_dir, db, password_file=db_password_file)
        store.close()
        Console(stderr=True).print(f"schema version {len(MIGRATIONS)}: up to date")

    @db_app.command("token")
    @data_dir_option
    @db_option
    @db_password_file_option
    def token(data_dir: Path, db: str | None, db_password_file: Path | None) -> None:
        """Mint a new admin token for an existing database and write it to DATA_DIR/admin.token
        (mode 0600, replacing that file). Older admin tokens stay valid until revoked."""
        written = with_data_store(
            data_dir,
            db,
            lambda store: write_admin_token(
                store, data_dir, "admin (netpersona db token)", "netpersona db token"
            ),
            db_password_file,
        )
        Console(stderr=True).print(
            f"wrote a new admin token to {written}; older admin tokens stay valid until revoked"
            " (netpersona token list / revoke)"
        )

    @db_app.command("backup")
    @click.argument("file", type=PATH, help="The backup file to write (a new file).")
    @data_dir_option
    @db_option
    def backup(file: Path, data_dir: Path, db: str | None) -> None:
        """Copy the SQLite database to FILE, consistently, while the service runs."""
        _sqlite_only(db, "backup")
        backup_database(database_path(data_dir, db), file)
        Console(stderr=True).print(f"backed up to {file}")

    @db_app.command("restore")
    @click.argument("file", type=PATH, help="A backup made by netpersona db backup.")
    @data_dir_option
    @db_option
    def restore(file: Path, data_dir: Path, db: str | None) -> None:
        """Replace the SQLite database with the backup FILE, once FILE passes the start-up
        checks. Stop the service first: it keeps the database open."""
        _sqlite_only(db, "restore")
        target = database_path(data_dir, db)
        if db is None:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        restore_database(file, target)
        Console(stderr=True).print(f"restored {target} from {file}")
