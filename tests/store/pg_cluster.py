"""A throwaway PostgreSQL cluster for tests: ``initdb`` into a temporary directory, a server on
a Unix socket in it (no TCP: ``listen_addresses=''``), a fresh database per test.

initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` system user
(which the Debian package creates) and its commands run through ``runuser -u postgres --``;
as anyone else they run as that user. fsync is off: the cluster dies with the test session.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from netpersona.system.command import run

__all__ = ["PgCluster", "find_pg_bin", "pg_cluster"]


def find_pg_bin() -> Path | None:
    """The directory of initdb and pg_ctl: $NETPERSONA_PG_BIN, Debian's newest, or PATH's."""
    if os.environ.get("NETPERSONA_PG_BIN"):
        return Path(os.environ["NETPERSONA_PG_BIN"])
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return None if initdb is None else Path(initdb).parent


def _free_port() -> int:
    # Only names the socket file (.s.PGSQL.PORT); a TCP port free now is as good as any.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PgCluster:
    bin: Path
    root: Path  # holds the data directory, the socket and the log
    port: int
    user: str  # the cluster's superuser (and the OS user it runs as)
    as_user: tuple[str, ...]  # the prefix that runs a command as that user

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.root}&port={self.port}"

    def command(self, name: str, *args: str, timeout: float = 120) -> str:
        done = run([*self.as_user, str(self.bin / name), *args], timeout=timeout)
        return done.stdout

    def start(self) -> None:
        self.command("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8")
        options = (
            f"-k {self.root} -p {self.port} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        log = str(self.root / "server.log")
        self.command("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.command("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A new, empty database for one test (dropped afterwards); yields its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"'.encode())
        try:
            yield self.url(name)
        finally:
            with psycopg.connect(self.url(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@contextlib.contextmanager
def pg_cluster(bin_dir: Path) -> Iterator[PgCluster]:
    """A running cluster, stopped and removed afterwards, also when the body fails."""
    root = Path(tempfile.mkdtemp(prefix="np-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        cluster = PgCluster(
            bin_dir, root, _free_port(), "postgres", ("runuser", "-u", "postgres", "--")
        )
    else:
        user = pwd.getpwuid(os.geteuid()).pw_name
        cluster = PgCluster(bin_dir, root, _free_port(), user, ())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
