"""``netpersona db backup`` / ``restore`` for a SQLite database, with the sqlite3 backup API.

The backup API copies pages under SQLite's own locking, so a backup taken while the service
writes is one consistent snapshot (https://www.sqlite.org/backup.html), unlike a ``cp`` of the
file, which misses what is still in the write-ahead log. A backup is written aside and
renamed into place, so an interrupted one never leaves a file that looks whole. A restore
checks the backup (header, schema version, ``quick_check``) before it replaces anything.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from netpersona.errors import StoreError, UsageError
from netpersona.store.sqlite.database import check_schema_and_integrity, translate
from netpersona.store.sqlite.files import PRIVATE_FILE, check_database_file, check_wal_file

__all__ = ["backup_database", "restore_database"]


def _copy(source: Path, target: Path, operation: str) -> None:
    """Copy ``source`` into a new file at ``target`` (private, written aside and checked, then
    renamed over ``target``, whose write-ahead log and index go with it)."""
    aside = target.with_name(f".{target.name}.new-{os.getpid()}")
    aside.unlink(missing_ok=True)
    try:
        os.close(os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
        try:
            dst = sqlite3.connect(aside)
            try:
                src.backup(dst)
                # A restored database is checked like one the service opens; a backup is too.
                check_schema_and_integrity(dst, str(source))
            finally:
                dst.close()
        finally:
            src.close()
        for stale in (Path(f"{target}-wal"), Path(f"{target}-shm")):
            stale.unlink(missing_ok=True)  # they belong to the database being replaced
        os.replace(aside, target)
    except sqlite3.Error as exc:
        raise translate(exc, str(source), operation) from exc
    except OSError as exc:
        raise StoreError(f"{exc.filename or target}: {operation}: {exc.strerror}") from None
    finally:
        aside.unlink(missing_ok=True)


def backup_database(path: Path, target: Path) -> None:
    """Write a consistent copy of the database at ``path`` to ``target`` (a new file)."""
    if target.exists():
        raise UsageError(f"backup file {str(target)!r} exists; name a new file")
    if not check_database_file(path):
        raise StoreError(f"database {path}: does not exist")
    check_wal_file(path)
    _copy(path, target, f"back up to {target}")


def restore_database(backup: Path, path: Path) -> None:
    """Replace the database at ``path`` with the checked backup ``backup``.

    The service must be stopped: it keeps the database open.
    """
    if not check_database_file(backup):
        raise UsageError(f"backup file {str(backup)!r} does not exist")
    _copy(backup, path, f"restore from {backup}")
