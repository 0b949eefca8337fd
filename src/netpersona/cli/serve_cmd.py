"""``netpersona serve`` runs the metadata service; ``netpersona token`` manages API tokens.

``keys`` works on the certificate key file in the data directory (while the service runs or
not: the service re-reads the file when it changes).

``token`` works on the database directly (no running service needed, and safe while one runs:
SQLite locks the file), so an operator who lost every admin token can still make one.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path
from typing import TypeVar

import click
import structlog
from rich.console import Console
from rich.table import Table

from netpersona.cli.log_options import log_options
from netpersona.cli.output import OutputFormat, emit, output_option, print_table
from netpersona.cli.params import PATH, EnumChoice, option
from netpersona.errors import StorageFull, StoreError, StoreUnavailable, UsageError
from netpersona.logs import LogFormat, configure_logging
from netpersona.store import Role, Store, open_store
from netpersona.store.url import is_postgres, sqlite_path

__all__ = [
    "data_dir_option",
    "database_path",
    "db_option",
    "db_password_file_option",
    "ensure_admin_token",
    "open_data_store",
    "with_data_store",
    "parse_listen",
    "register",
    "write_admin_token",
]

DEFAULT_DATA_DIR = Path("/var/lib/netpersona-service")
DEFAULT_LISTEN = "127.0.0.1:8080"
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 (a file name)
DEFAULT_CERTIFICATE_LIFETIME = 3600  # netpersona.service.certificates.DEFAULT_LIFETIME
DEFAULT_HEADER_TIMEOUT = 10.0  # netpersona.service.connections.DEFAULT_HEADER_TIMEOUT
SWITCH_INTERVAL = 0.0005  # seconds a thread holds the GIL while another waits for it

log = structlog.get_logger("netpersona.serve")

# The options of the commands that work on the service's data (``@data_dir_option`` gives
# ``data_dir: Path``; ``@db_option``, ``db: str | None``; ``@db_password_file_option``,
# ``db_password_file: Path | None``).
data_dir_option = option(
    "--data-dir",
    type=PATH,
    default=DEFAULT_DATA_DIR,
    envvar="NETPERSONA_DATA_DIR",
    help="Where the database and admin.token live.",
)
db_option = option(
    "--db",
    help="Database URL: sqlite:///PATH (default sqlite:///DATA_DIR/netpersona.db) or"
    " postgresql://USER@HOST/DB (password from PGPASSWORD, ~/.pgpass or"
    " --db-password-file; never in the URL).",
)
db_password_file_option = option(
    "--db-password-file",
    type=PATH,
    help="File whose first line is the PostgreSQL password (keeps it off the command line).",
)


T = TypeVar("T")


def _tune_interpreter() -> None:
    """Keep the event loop responsive while a worker thread builds a fleet view or signs a
    batch of certificates (pure Python, holding the GIL): an admin write's answer crosses
    between the loop and a worker thread a few times, and each crossing may wait the whole
    switch interval for the GIL (5 ms by default). And the fleet read at start (every
    instance, persona and certificate) is moved out of the collector's sight: a full
    collection would otherwise walk it each time, holding the GIL for tens of milliseconds
    at 100,000 instances (see bench/fanout.py, whose write timings report both)."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.collect()
    gc.freeze()


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6ADDR]:PORT``."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. 169.254.169.254:80")
    try:
        ip_address(host)
    except ValueError:
        if host != "localhost":
            raise UsageError(f"--listen {text!r}: {host!r} is not an IP address") from None
    return host, int(port)


def database_path(data_dir: Path, db: str | None) -> Path:
    return sqlite_path(db) if db is not None else data_dir / "netpersona.db"


def open_data_store(
    data_dir: Path, db: str | None, *, create: bool = False, password_file: Path | None = None
) -> Store:
    """The store for ``--data-dir`` / ``--db``, with DATA_DIR made (or made private), its
    schema brought up to date.

    Only ``serve`` (``create``) makes a new database (on PostgreSQL: its schema), since only
    it gives one its admin token.
    """
    if not structlog.is_configured():
        # Store warnings go to stderr: `token create` prints the secret alone on stdout.
        configure_logging("warning")
    if is_postgres(db):
        assert db is not None
        os.umask(0o077)
        _private_dir(data_dir)
        return open_store(db, password_file=password_file, create=create)
    if not create and not database_path(data_dir, db).exists():
        raise StoreUnavailable(
            f"database {database_path(data_dir, db)} does not exist: `netpersona serve` makes "
            "one (with its admin token) on first start"
        )
    # Everything the service writes (database, admin token, keys) is for its owner only.
    os.umask(0o077)
    _private_dir(data_dir)
    if db is None:
        db = f"sqlite:///{data_dir.resolve()}/netpersona.db"
    return open_store(db, password_file=password_file)


def with_data_store(
    data_dir: Path, db: str | None, op: Callable[[Store], T], password_file: Path | None = None
) -> T:
    """``op`` on the store of an existing database, closed again whatever ``op`` does."""
    store = open_data_store(data_dir, db, password_file=password_file)
    try:
        return op(store)
    finally:
        store.close()


def _private_dir(data_dir: Path) -> None:
    """Make DATA_DIR, or take group and other access away from an existing one (0700)."""
    with _data_dir_errors(data_dir):
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(data_dir.stat().st_mode)
        if mode & 0o077:
            data_dir.chmod(mode & ~0o077)
            log.warning("data directory made private", path=str(data_dir), was=oct(mode))


@contextlib.contextmanager
def _data_dir_errors(where: Path) -> Iterator[None]:
    """OSError from the data directory, as the store error an operator can act on."""
    try:
        yield
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        kind: type[StoreError] = StorageFull if full else StoreUnavailable
        raise kind(f"{exc.filename or where}: {exc.strerror}") from None


def _check_database_is_there(data_dir: Path, db: str | None) -> None:
    """An admin.token without the database it belongs to: the database was lost or moved."""
    if is_postgres(db):
        return  # the server keeps the database; there is no file here to miss
    token = data_dir / ADMIN_TOKEN_FILE
    path = database_path(data_dir, db)
    if token.exists() and not path.exists():
        raise StoreUnavailable(
            f"database {path} does not exist, but {token} does: the database it belongs to is "
            f"missing. Restore it from a backup (or point --db at it); to start a new, empty "
            f"one knowingly, move {token} aside"
        )


def write_admin_token(store: Store, data_dir: Path, name: str, actor: str) -> Path:
    """Mint an admin token and write its secret to DATA_DIR/admin.token (mode 0600)."""
    _, secret = store.create_token(name, Role.ADMIN, actor)
    path = data_dir / ADMIN_TOKEN_FILE
    temporary = path.with_name(f".{ADMIN_TOKEN_FILE}.{os.getpid()}")
    with _data_dir_errors(path):
        temporary.unlink(missing_ok=True)
        # O_EXCL + mode at creation: the secret is never readable by others, not even briefly.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secret + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    return path


def ensure_admin_token(store: Store, data_dir: Path) -> Path | None:
    """On first start (the store was just made), make an admin token and write it to
    DATA_DIR/admin.token with mode 0600; returns the file written, else None.

    An existing database without any admin token is refused rather than given a new one
    quietly: that is what a database replaced or emptied behind the service's back looks like.
    ``netpersona db token`` mints one on purpose.
    """
    if store.created:
        return write_admin_token(store, data_dir, "bootstrap", "netpersona serve")
    if not any(t.role is Role.ADMIN for t in store.list_tokens()):
        raise StoreError(
            f"the database has no admin token, and it is not new (a new one gets one on first "
            f"start): if it is the right database, `netpersona db token --data-dir {data_dir}` "
            f"mints one and writes {data_dir / ADMIN_TOKEN_FILE}"
        )
    if not (data_dir / ADMIN_TOKEN_FILE).exists():
        log.warning(
            "admin token file missing",
            path=str(data_dir / ADMIN_TOKEN_FILE),
            hint="netpersona db token mints a new one",
        )
    return None


def _tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=8192)
    except OSError as exc:
        raise UsageError(f"--listen {host}:{port}: {exc.strerror}") from None


def _unix_socket(path: Path) -> socket.socket:
    """A listening Unix socket only its owner may use; a stale one from a crash is replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    sock.listen(1024)
    return sock


def register(app: click.Group) -> None:
    @app.command()
    @data_dir_option
    @option("--listen", default=DEFAULT_LISTEN, help="HOST:PORT to listen on.")
    @db_option
    @db_password_file_option
    @log_options
    @option(
        "--access-log/--no-access-log",
        default=True,
        help="Log each request (method, path, status) at info level, in the log's format.",
    )
    @option(
        "--admin-socket",
        type=PATH,
        envvar="NETPERSONA_ADMIN_SOCKET",
        help="Also answer on this Unix socket (mode 0600), for operators on this host;"
        " it carries no VM identity, so only the admin API is of use on it.",
    )
    @option(
        "--certificate-lifetime",
        type=click.IntRange(min=30),
        default=DEFAULT_CERTIFICATE_LIFETIME,
        help="Seconds a persona certificate is valid; it is re-issued when a third is left.",
    )
    @option(
        "--header-timeout",
        default=DEFAULT_HEADER_TIMEOUT,
        help="Seconds a connection has to send a request's header section (a new"
        " connection, or the next request on a kept-alive one); then it is closed.",
    )
    @option(
        "--max-connections",
        type=int,
        help="Open connections at most; more are closed at once. Default: the open"
        " files limit (ulimit -n) less 64 kept for the database and logs.",
    )
    def serve(
        data_dir: Path,
        listen: str,
        db: str | None,
        db_password_file: Path | None,
        log_level: str,
        log_format: LogFormat | None,
        access_log: bool,
        admin_socket: Path | None,
        certificate_lifetime: int,
        header_timeout: float,
        max_connections: int | None,
    ) -> None:
        """Run the metadata service (VM-facing API, admin API, /metrics)."""
        # The web stack loads only for this command: the agent shares this CLI and must not
        # import it.
        import uvicorn  # noqa: PLC0415

        from netpersona.cli.notifying_server import NotifyingServer  # noqa: PLC0415
        from netpersona.service import create_app  # noqa: PLC0415
        from netpersona.service.connections import (  # noqa: PLC0415
            KEEP_ALIVE_TIMEOUT,
            ConnectionLimits,
            default_max_connections,
            limited_protocol,
        )
        from netpersona.service.health import begin_shutdown  # noqa: PLC0415
        from netpersona.service.keyring import KeyFile  # noqa: PLC0415

        host, port = parse_listen(listen)
        limits = ConnectionLimits(
            header_timeout,
            default_max_connections() if max_connections is None else max_connections,
        )
        configure_logging(log_level, log_format)
        _check_database_is_there(data_dir, db)
        store = open_data_store(data_dir, db, create=True, password_file=db_password_file)
        try:
            written = ensure_admin_token(store, data_dir)
            if written is not None:
                log.warning("admin token created", path=str(written))
            keys = KeyFile.in_dir(data_dir)
            with _data_dir_errors(data_dir):
                keys.load_or_create(time.time())
            app_ = create_app(store, keys=keys, certificate_lifetime=certificate_lifetime)
            _tune_interpreter()
            log.info(
                "serving",
                listen=f"{host}:{port}",
                data_dir=str(data_dir),
                max_connections=limits.max_connections,
            )
            config = uvicorn.Config(
                app_,
                host=host,
                port=port,
                # uvicorn's error and access logs go through the root logger's one handler
                # (netpersona.logs), in the same format as everything else.
                log_config=None,
                log_level=log_level,
                access_log=access_log,
                backlog=8192,
                http=limited_protocol(limits),
                timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
                # Held long polls answer as stopping begins (begin_shutdown); this bounds
                # the wait for any other request. Agents reconnect and resume by ETag.
                timeout_graceful_shutdown=2,
            )
            sockets = [_tcp_socket(host, port)]
            if admin_socket is not None:
                sockets.append(_unix_socket(admin_socket))
            NotifyingServer(config, on_stop=lambda: begin_shutdown(app_)).run(sockets=sockets)
        finally:
            store.close()

    @app.group("token")
    def token_app() -> None:
        """Admin API tokens (works on the database directly)."""

    @token_app.command("create")
    @option("--name", required=True, help="What the token is for (shown in the audit).")
    @option("--role", type=EnumChoice(Role), default=Role.READER, help="reader, operator or admin.")
    @data_dir_option
    @db_option
    def token_create(name: str, role: Role, data_dir: Path, db: str | None) -> None:
        """Make a token and print its secret (shown once; only a hash is kept)."""
        token, secret = with_data_store(
            data_dir, db, lambda store: store.create_token(name, role, "netpersona token create")
        )
        Console(stderr=True).print(f"created {token.id} ({token.role.value}) for {token.name}")
        sys.stdout.write(secret + "\n")

    @token_app.command("list")
    @data_dir_option
    @db_option
    @output_option
    def token_list(data_dir: Path, db: str | None, output: OutputFormat) -> None:
        """List tokens (never their secrets)."""
        tokens = with_data_store(data_dir, db, lambda store: store.list_tokens())
        rows = [
            {"id": t.id, "name": t.name, "role": t.role.value, "created_by": t.created_by}
            for t in tokens
        ]

        def table(console: Console) -> None:
            table = Table("id", "name", "role", "created by")
            for row in rows:
                table.add_row(row["id"], row["name"], row["role"], row["created_by"])
            print_table(console, table)

        emit(output, rows, table)

    @token_app.command("revoke")
    @click.argument("token_id", help="The token's id (tok-...).")
    @data_dir_option
    @db_option
    def token_revoke(token_id: str, data_dir: Path, db: str | None) -> None:
        """Revoke a token at once."""
        with_data_store(
            data_dir, db, lambda store: store.revoke_token(token_id, "netpersona token revoke")
        )

    @app.group("keys")
    def keys_app() -> None:
        """Certificate signing keys (works on DATA_DIR's key file)."""

    @keys_app.command("rotate")
    @data_dir_option
    @option(
        "--overlap",
        type=click.IntRange(min=0),
        default=DEFAULT_CERTIFICATE_LIFETIME,
        help="Seconds the old key stays valid for verification (default: one"
        " certificate lifetime).",
    )
    @option(
        "--publish-ahead",
        type=click.IntRange(min=0),
        default=0,
        help="Seconds the new key is served for verification before it signs (so"
        " agents have it before they see certificates it signed).",
    )
    def keys_rotate(data_dir: Path, overlap: int, publish_ahead: int) -> None:
        """Make a new signing key; older keys stay valid for verification for OVERLAP seconds
        after it starts signing, then are dropped. Prints the new key id."""
        from netpersona.service.keyring import KeyFile  # noqa: PLC0415

        ring = KeyFile.in_dir(data_dir).rotate(time.time(), overlap, publish_ahead=publish_ahead)
        Console(stderr=True).print(
            f"new key {ring.newest.kid}, signing in {publish_ahead} s; older keys valid for"
            f" {publish_ahead + overlap} s"
        )
        sys.stdout.write(ring.newest.kid + "\n")

    @keys_app.command("list")
    @data_dir_option
    @output_option
    def keys_list(data_dir: Path, output: OutputFormat) -> None:
        """List the keys: which one signs, which are still valid for verification until when."""
        from netpersona.service.keyring import KeyFile  # noqa: PLC0415

        ring = KeyFile.in_dir(data_dir).current()
        now = time.time()
        signer = ring.signer(now).kid

        def when(t: int | None) -> str:
            return (
                "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            )

        # Plain columns (not a table that narrows to the terminal): scripts read key ids here.
        lines = [f"{'kid':<18}{'state':<13}{'created':<22}{'signs from':<22}valid until"]
        rows = []
        for key in ring.keys:
            if key.key.kid == signer:
                state = "signing"
            elif not key.valid(now):
                state = "retired"
            elif key.signs_from is not None and now < key.signs_from:
                state = "published"
            else:
                state = "verify only"
            lines.append(
                f"{key.key.kid:<18}{state:<13}{when(key.created_at):<22}"
                f"{when(key.signs_from or key.created_at):<22}{when(key.retire_at)}"
            )
            rows.append(
                {
                    "kid": key.key.kid,
                    "state": state,
                    "created_at": key.created_at,
                    "signs_from": key.signs_from or key.created_at,
                    "valid_until": key.retire_at,
                }
            )

        def table(_: Console) -> None:
            sys.stdout.write("\n".join(lines) + "\n")

        emit(output, rows, table)
