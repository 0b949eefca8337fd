"""``netpersona db``: the service's database, on the file directly (safe while the service runs).

``status`` reports what the service would check on start-up (the file, its write-ahead log,
the schema version, ``PRAGMA quick_check``) and the files' modes and sizes, changing nothing.
``token`` mints a new admin token for an existing database and writes DATA_DIR/admin.token:
the documented way back in when that file is lost, and what ``netpersona serve`` asks for when
it finds a database without any admin token.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from netpersona.cli.serve_cmd import (
    DEFAULT_DATA_DIR,
    DataDir,
    DbUrl,
    database_path,
    open_data_store,
    write_admin_token,
)
from netpersona.store.sqlite.report import DatabaseReport, FileState, inspect_database

__all__ = ["register"]


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


def register(app: typer.Typer) -> None:
    db_app = typer.Typer(help="The service's database (works on the file directly).")
    app.add_typer(db_app, name="db")

    @db_app.command("status")
    def status(data_dir: DataDir = DEFAULT_DATA_DIR, db: DbUrl = None) -> None:
        """Schema version, integrity (quick_check), file modes and sizes; changes nothing.
        Exits non-zero, with the error the service would refuse to start with, when it would."""
        report = inspect_database(database_path(data_dir, db))
        sys.stdout.write("\n".join(_report_lines(report, data_dir)) + "\n")
        if report.error is not None:
            raise report.error

    @db_app.command("token")
    def token(data_dir: DataDir = DEFAULT_DATA_DIR, db: DbUrl = None) -> None:
        """Mint a new admin token for an existing database and write it to DATA_DIR/admin.token
        (mode 0600, replacing that file). Older admin tokens stay valid until revoked."""
        store = open_data_store(data_dir, db)
        try:
            written = write_admin_token(
                store, data_dir, "admin (netpersona db token)", "netpersona db token"
            )
        finally:
            store.close()
        Console(stderr=True).print(
            f"wrote a new admin token to {written}; older admin tokens stay valid until revoked"
            " (netpersona token list / revoke)"
        )
