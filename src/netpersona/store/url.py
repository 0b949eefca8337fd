"""``--db`` URLs: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

The spelling follows SQLAlchemy's (three slashes, then the path), so an operator's existing
habit works. Other schemes are refused by name until a backend for them exists.
"""

from __future__ import annotations

from pathlib import Path

from netpersona.errors import UsageError
from netpersona.store.base import Store
from netpersona.store.sqlite import SqliteStore

__all__ = ["open_store", "sqlite_path"]


def sqlite_path(url: str) -> Path:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "sqlite":
        raise UsageError(
            f"--db {url!r}: unsupported database URL (expected sqlite:///PATH; "
            f"{scheme or url!r} has no backend yet)"
        )
    if not rest.startswith("/") or rest == "/":
        raise UsageError(f"--db {url!r}: expected sqlite:///PATH (three slashes, then a path)")
    return Path(rest[1:])


def open_store(url: str) -> Store:
    path = sqlite_path(url)
    if not path.parent.is_dir():
        raise UsageError(f"--db {url!r}: directory {str(path.parent)!r} does not exist")
    return SqliteStore(path)
