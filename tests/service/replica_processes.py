"""Real ``netpersona serve`` replicas on one PostgreSQL database, stopped however a test ends."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from tests.service.serve_process import ServeProcess, free_port


@contextlib.contextmanager
def serve_replicas(root: Path, url: str, count: int = 2) -> Iterator[list[ServeProcess]]:
    """``count`` replicas of ``serve --db url``: the first starts alone (it makes the schema,
    the admin token and the signing key), the others get copies of its data directory's
    files, as docs/deployment.md says to do."""
    first = ServeProcess(root / "replica0", free_port(), extra_args=("--db", url))
    replicas = [first]
    try:
        first.start()
        for n in range(1, count):
            data = root / f"replica{n}"
            data.mkdir(mode=0o700)
            for name in ("admin.token", "certificate-keys.json"):
                shutil.copy2(first.data_dir / name, data / name)
            replica = ServeProcess(data, free_port(), extra_args=("--db", url))
            replicas.append(replica)
            replica.start()
        yield replicas
    finally:
        for replica in replicas:
            replica.kill()
