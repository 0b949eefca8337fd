"""What a database file must look like before SQLite is allowed to open it, and its modes.

SQLite is forgiving where the service must not be: it treats an empty file as a new database,
and a write-ahead log whose header does not verify as no log at all, silently dropping every
change in it (https://www.sqlite.org/fileformat2.html#walformat, "4.3 Checksum Algorithm").
Both look like a service that simply lost data, so they are refused here, by name.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import structlog

from netpersona.errors import StoreCorrupt, StoreUnavailable

__all__ = [
    "PRIVATE_FILE",
    "check_database_file",
    "check_wal_file",
    "companion_files",
    "make_private",
    "wal_checksum",
]

log = structlog.get_logger("netpersona.store")

PRIVATE_FILE = 0o600  # the database holds token hashes and the session-token HMAC key
SQLITE_MAGIC = b"SQLite format 3\x00"  # fileformat2.html, "1.3 The Database Header"
WAL_MAGIC = (0x377F0682, 0x377F0683)  # the low bit says the checksum's byte order
WAL_VERSION = 3007000
_WAL_HEADER = struct.Struct(">8I")
_RECOVER = "restore it from a backup, or move it aside to start a new, empty database"


def companion_files(path: Path) -> tuple[Path, Path]:
    """The write-ahead log and the shared-memory index SQLite keeps beside ``path``."""
    return Path(f"{path}-wal"), Path(f"{path}-shm")


def check_database_file(path: Path) -> bool:
    """Whether ``path`` exists; raises when it exists but is not a SQLite database file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreUnavailable(f"database {path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise StoreUnavailable(f"database {path}: is {kind}; --db must name a database file")
    try:
        with path.open("rb") as file:
            head = file.read(100)
    except OSError as exc:
        raise StoreUnavailable(f"database {path}: cannot be read ({exc.strerror})") from None
    if not head:
        raise StoreCorrupt(
            f"database {path}: is empty (0 bytes), so it is not the database it was "
            f"(a new one is never left empty); {_RECOVER}"
        )
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        raise StoreCorrupt(
            f"database {path}: is not a SQLite database (no SQLite header); {_RECOVER}"
        )
    return True


def wal_checksum(data: bytes, *, big_endian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum over ``data`` (a multiple of 8 bytes)."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    s0 = s1 = 0
    for first, second in zip(words[::2], words[1::2], strict=True):
        s0 = (s0 + first + s1) & 0xFFFFFFFF
        s1 = (s1 + second + s0) & 0xFFFFFFFF
    return s0, s1


def _wal_problem(header: bytes) -> str | None:
    if len(header) < _WAL_HEADER.size:
        return f"{len(header)} bytes, shorter than a WAL header"
    magic, version, page_size, _, _, _, sum1, sum2 = _WAL_HEADER.unpack(header[:32])
    if magic not in WAL_MAGIC:
        return f"magic number {magic:#010x}, expected {WAL_MAGIC[0]:#010x} or {WAL_MAGIC[1]:#010x}"
    if version != WAL_VERSION:
        return f"format version {version}, expected {WAL_VERSION}"
    if not 512 <= page_size <= 65536 or page_size & (page_size - 1):
        return f"page size {page_size} is not a power of two from 512 to 65536"
    if wal_checksum(header[:24], big_endian=bool(magic & 1)) != (sum1, sum2):
        return "its header checksum does not match"
    return None


def check_wal_file(path: Path) -> None:
    """Refuse a non-empty ``-wal`` beside ``path`` whose header SQLite would ignore."""
    wal = companion_files(path)[0]
    try:
        with wal.open("rb") as file:
            header = file.read(_WAL_HEADER.size)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreUnavailable(f"write-ahead log {wal}: cannot be read ({exc.strerror})") from None
    if not header:
        return  # an empty log holds no changes
    problem = _wal_problem(header)
    if problem is not None:
        raise StoreCorrupt(
            f"write-ahead log {wal}: not a valid SQLite WAL ({problem}); SQLite would ignore it "
            f"and every change it holds would be lost. Restore {path.name} and its -wal from a "
            f"backup, or, to go on with {path.name} alone knowingly, move {wal.name} aside"
        )


def make_private(path: Path) -> None:
    """Take group and other access away from the database and its companion files."""
    for file in (path, *companion_files(path)):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                os.chmod(file, mode & ~0o077)
                log.warning("store file made private", file=str(file), was=oct(mode))
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("store file mode not changed", file=str(file), error=exc.strerror)
