"""``--db`` URLs: ``sqlite:///PATH`` for the embedded store, ``postgresql://...`` for a fleet's.

SQLite: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``, SQLAlchemy's
spelling (three slashes, then the path), so an operator's existing habit works.

PostgreSQL: a libpq URL (``postgresql://user@host:5432/db``, or
``postgresql:///db?host=/run/postgresql`` for a Unix socket;
https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING). A password in it
is refused: a command line is visible to every user of the host (``ps``), and the URL appears
in messages. The password comes from libpq's environment (``PGPASSWORD``, ``PGPASSFILE``) or
from a file (``--db-password-file``).
"""

from __future__ import annotations

from pathlib import Path

from netpersona.errors import UsageError
from netpersona.store.base import Store
from netpersona.store.sqlite import SqliteStore

__all__ = ["is_postgres", "open_store", "postgres_url", "read_password_file", "sqlite_path"]

_POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_postgres(url: str | None) -> bool:
    return url is not None and url.partition("://")[0] in _POSTGRES_SCHEMES


def sqlite_path(url: str) -> Path:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "sqlite":
        raise UsageError(
            f"--db {url!r}: unsupported database URL (expected sqlite:///PATH or "
            f"postgresql://USER@HOST/DB; {scheme or url!r} has no backend)"
        )
    if not rest.startswith("/") or rest == "/":
        raise UsageError(f"--db {url!r}: expected sqlite:///PATH (three slashes, then a path)")
    return Path(rest[1:])


def postgres_url(url: str) -> str:
    """``url``, checked: a libpq URL without a password."""
    import psycopg  # noqa: PLC0415 (the service extra's; see netpersona.store)

    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"--db: not a PostgreSQL URL ({exc})") from None
    if "password" in params:
        raise UsageError(
            "--db: the URL holds a password, which every user of this host could read; put it "
            "in PGPASSWORD, a PGPASSFILE, or a file named by --db-password-file instead"
        )
    return url


def read_password_file(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"--db-password-file {str(path)!r}: {exc.strerror}") from None
    password = text.rstrip("\r\n")
    if not password:
        raise UsageError(f"--db-password-file {str(path)!r}: the file is empty")
    return password


def open_store(url: str, *, password_file: Path | None = None, create: bool = True) -> Store:
    """The store at ``url``, its schema brought up to date; ``create``: also make the schema
    of an empty PostgreSQL database (a SQLite file is made, or not, by its caller)."""
    if is_postgres(url):
        from netpersona.store.postgres import PostgresStore  # noqa: PLC0415

        password = None if password_file is None else read_password_file(password_file)
        return PostgresStore(postgres_url(url), password=password, create=create)
    if password_file is not None:
        raise UsageError("--db-password-file: only a postgresql:// database takes a password")
    path = sqlite_path(url)
    if not path.parent.is_dir():
        raise UsageError(f"--db {url!r}: directory {str(path.parent)!r} does not exist")
    return SqliteStore(path)
