"""Opening a database the store cannot trust is refused, by name, and changes nothing."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import struct
from pathlib import Path

import pytest

from netpersona.errors import SchemaTooNew, StoreCorrupt, StoreError, StoreUnavailable
from netpersona.store import Instance, SqliteStore
from netpersona.store.migrations import MIGRATIONS
from netpersona.store.sqlite.files import wal_checksum


def fill(path: Path, n: int) -> None:
    store = SqliteStore(path)
    try:
        for i in range(n):
            store.create_instance(Instance(f"vm{i}", "", (f"10.1.{i // 250}.{i % 250}",)), "t")
    finally:
        store.close()


def test_an_empty_file_is_refused_not_taken_for_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "np.db"
    path.touch()
    with pytest.raises(StoreCorrupt, match=r"np\.db: is empty \(0 bytes\).*restore it"):
        SqliteStore(path)
    assert path.stat().st_size == 0


def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "np.db").mkdir()
    with pytest.raises(StoreUnavailable, match="is a directory"):
        SqliteStore(tmp_path / "np.db")


@pytest.mark.parametrize("keep", [0.5, 60])
def test_a_truncated_database_is_refused(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "np.db"
    fill(path, 300)
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.truncate(int(size * keep) if keep < 1 else int(keep))
    with pytest.raises(StoreCorrupt, match=str(path)):
        SqliteStore(path)


def test_garbage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "np.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(StoreCorrupt, match="not a SQLite database"):
        SqliteStore(path)


def test_a_damaged_page_fails_the_start_up_integrity_check(tmp_path: Path) -> None:
    path = tmp_path / "np.db"
    fill(path, 300)
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'instances'").fetchone()[0]
    db.close()
    with path.open("r+b") as file:
        file.seek(page_size * (root - 1))
        file.write(b"\x07")  # not a b-tree page type (fileformat2.html, 1.6)
    with pytest.raises(StoreCorrupt, match=str(path)):
        SqliteStore(path)


def test_a_schema_from_a_newer_netpersona_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "np.db"
    fill(path, 1)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=999")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(SchemaTooNew, match=f"schema version 999.*up to {len(MIGRATIONS)}"):
        SqliteStore(path)
    assert path.read_bytes() == before


def test_a_foreign_sqlite_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE songs (title TEXT)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"not netpersona's.*'songs'"):
        SqliteStore(path)
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists()


def _copy_with_wal(tmp_path: Path, n: int) -> Path:
    """A database whose last changes are only in its write-ahead log (as after kill -9)."""
    live = tmp_path / "live" / "np.db"
    live.parent.mkdir()
    store = SqliteStore(live)
    store._database.connection.execute("PRAGMA wal_autocheckpoint=0")
    try:
        for i in range(n):
            store.create_instance(Instance(f"vm{i}", "", (f"10.2.0.{i}",)), "t")
        copy = tmp_path / "copy" / "np.db"
        copy.parent.mkdir()
        shutil.copy(live, copy)
        shutil.copy(f"{live}-wal", f"{copy}-wal")
    finally:
        store.close()
    assert Path(f"{copy}-wal").stat().st_size > 0
    return copy


def test_a_valid_write_ahead_log_is_read_whole(tmp_path: Path) -> None:
    copy = _copy_with_wal(tmp_path, 200)
    store = SqliteStore(copy)
    try:
        assert len(store.fleet().instances) == 200
    finally:
        store.close()


@pytest.mark.parametrize("damage", ["magic", "checksum", "garbage", "short"])
def test_a_write_ahead_log_with_a_bad_header_is_refused(tmp_path: Path, damage: str) -> None:
    copy = _copy_with_wal(tmp_path, 200)
    wal = Path(f"{copy}-wal")
    data = bytearray(wal.read_bytes())
    if damage == "magic":
        data[0:4] = b"\x00\x00\x00\x00"
    elif damage == "checksum":
        data[16] ^= 0x01  # salt-1: only the header checksum can tell
    elif damage == "garbage":
        data[:] = os.urandom(len(data))
    else:
        del data[20:]
    wal.write_bytes(bytes(data))
    # What the refusal prevents: SQLite itself opens a copy and quietly loses the log.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    shutil.copy(copy, scratch / "np.db")
    (scratch / "np.db-wal").write_bytes(bytes(data))
    raw = sqlite3.connect(scratch / "np.db")
    assert raw.execute("SELECT COUNT(*) FROM instances").fetchone()[0] < 200
    raw.close()
    with pytest.raises(StoreCorrupt, match=r"np\.db-wal: not a valid SQLite WAL.*move np\.db-wal"):
        SqliteStore(copy)


def test_an_empty_write_ahead_log_is_no_problem(tmp_path: Path) -> None:
    path = tmp_path / "np.db"
    fill(path, 3)
    Path(f"{path}-wal").touch()
    store = SqliteStore(path)
    assert len(store.fleet().instances) == 3
    store.close()


def test_the_wal_header_checksum_matches_what_sqlite_wrote(tmp_path: Path) -> None:
    header = Path(f"{_copy_with_wal(tmp_path, 2)}-wal").read_bytes()[:32]
    magic, stored = struct.unpack(">I", header[:4])[0], struct.unpack(">II", header[24:32])
    assert wal_checksum(header[:24], big_endian=bool(magic & 1)) == stored


def test_new_files_are_private_and_existing_ones_are_made_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "np.db"
        store = SqliteStore(path)
        store.create_instance(Instance("vm1", "", ("10.0.0.1",)), "t")
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {
            f.name: 0o600 for f in files
        }
        store.close()
        path.chmod(0o644)
        second = SqliteStore(path)
        second.create_instance(Instance("vm2", "", ("10.0.0.2",)), "t")
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files if f.exists()} == {
            f.name: 0o600 for f in files if f.exists()
        }
        second.close()
    finally:
        os.umask(old_umask)
