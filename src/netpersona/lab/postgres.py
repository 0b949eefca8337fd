"""A throwaway PostgreSQL cluster: ``initdb`` into a directory of its own, a server on a Unix
socket in that directory (no TCP: ``listen_addresses=''``), fsync off. The lab runs one for
``--replicas`` above 1, the tests one per session.

initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` system user
(which the Debian package creates) and its commands run through ``runuser -u postgres --``;
as anyone else they run as that user. Given a network namespace, the server runs in it, so it
is also found among the namespace's processes if it was started but never written down.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from netpersona.errors import UsageError
from netpersona.system.command import run

__all__ = ["PORT", "PgCluster", "find_pg_bin", "pg_cluster", "require_pg_bin"]

PORT = 5432  # only names the socket file (.s.PGSQL.PORT) in the cluster's own directory
INSTALL_HINT = (
    "install PostgreSQL's server (Debian: apt-get install postgresql; scripts/setup does)"
)


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


def require_pg_bin(why: str) -> Path:
    """:func:`find_pg_bin`, or a UsageError that says what to install (and, as root, that the
    ``postgres`` user is needed)."""
    found = find_pg_bin()
    if found is None or not all((found / name).exists() for name in ("initdb", "pg_ctl")):
        where = (
            found if found is not None else "$NETPERSONA_PG_BIN, /usr/lib/postgresql/*/bin, PATH"
        )
        raise UsageError(
            f"{why} needs PostgreSQL's initdb and pg_ctl, not found in {where}: {INSTALL_HINT}"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise UsageError(
                f"{why} needs a postgres system user to run initdb as (it refuses root): "
                f"{INSTALL_HINT}"
            ) from None
    return found


@dataclass
class PgCluster:
    bin: Path
    root: Path  # holds the data directory, the socket and the log
    port: int
    user: str  # the cluster's superuser (and the OS user it runs as)
    as_user: tuple[str, ...]  # the prefix that runs a command as that user
    netns: str | None = None  # the network namespace the server runs in

    @classmethod
    def at(cls, bin_dir: Path, root: Path, netns: str | None = None) -> PgCluster:
        """A cluster to be made in ``root`` (created here, owned by the user it runs as)."""
        root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)
            return cls(bin_dir, root, PORT, "postgres", ("runuser", "-u", "postgres", "--"), netns)
        user = pwd.getpwuid(os.geteuid()).pw_name
        return cls(bin_dir, root, PORT, user, (), netns)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.root}&port={self.port}"

    def command(self, name: str, *args: str, timeout: float = 120) -> str:
        inside = ("ip", "netns", "exec", self.netns) if self.netns else ()
        done = run([*inside, *self.as_user, str(self.bin / name), *args], timeout=timeout)
        return done.stdout

    def start(self) -> None:
        self.command("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8")
        options = (
            f"-k {self.root} -p {self.port} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        log = str(self.log)
        self.command("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def pid(self) -> int | None:
        """The server's (postmaster's) pid, from the first line of ``postmaster.pid``."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.command("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def create_database(self, name: str) -> str:
        """Make the database ``name``; returns its URL."""
        import psycopg  # noqa: PLC0415  # the service's extra, needed only with a cluster

        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A new, empty database (dropped afterwards); yields its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        url = self.create_database(name)
        try:
            yield url
        finally:
            import psycopg  # noqa: PLC0415

            with psycopg.connect(self.url(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@contextlib.contextmanager
def pg_cluster(bin_dir: Path) -> Iterator[PgCluster]:
    """A running cluster in a new temporary directory, stopped and removed afterwards, also
    when the body fails."""
    root = Path(tempfile.mkdtemp(prefix="np-pg-"))
    cluster = PgCluster.at(bin_dir, root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
