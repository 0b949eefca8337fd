"""What ``netpersona db status`` says about a database file, read without changing it.

Unlike opening the store, this never makes, migrates or changes the modes of a file: it reports.
"""

from __future__ import annotations

import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

from netpersona.errors import StoreError
from netpersona.store.migrations import MIGRATIONS
from netpersona.store.sqlite.database import check_schema_and_integrity, translate
from netpersona.store.sqlite.files import check_database_file, check_wal_file, companion_files

__all__ = ["DatabaseReport", "FileState", "inspect_database"]


@dataclass(frozen=True, slots=True)
class FileState:
    path: Path
    mode: int | None  # None: the file does not exist
    size: int | None

    @classmethod
    def of(cls, path: Path) -> FileState:
        try:
            info = path.stat()
        except FileNotFoundError:
            return cls(path, None, None)
        return cls(path, stat.S_IMODE(info.st_mode), info.st_size)

    @property
    def private(self) -> bool:
        return self.mode is None or not self.mode & 0o077


@dataclass(frozen=True, slots=True)
class DatabaseReport:
    files: tuple[FileState, ...]  # the database, its -wal and its -shm
    schema_version: int | None
    known_version: int
    check_seconds: float | None  # how long PRAGMA quick_check took
    error: StoreError | None  # why the service would refuse it; None: it would open it


def inspect_database(path: Path) -> DatabaseReport:
    files = tuple(FileState.of(p) for p in (path, *companion_files(path)))
    try:
        if not check_database_file(path):
            raise StoreError(f"database {path}: does not exist (netpersona serve makes it)")
        check_wal_file(path)
    except StoreError as exc:
        return DatabaseReport(files, None, len(MIGRATIONS), None, exc)
    return _read_only_checks(path, files)


def _read_only_checks(path: Path, files: tuple[FileState, ...]) -> DatabaseReport:
    version: int | None = None
    seconds: float | None = None
    error: StoreError | None = None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            seconds = check_schema_and_integrity(db, str(path))
        finally:
            db.close()
    except sqlite3.Error as exc:
        error = translate(exc, str(path), "check the schema and integrity (read-only)")
    except StoreError as exc:
        error = exc
    return DatabaseReport(files, version, len(MIGRATIONS), seconds, error)
