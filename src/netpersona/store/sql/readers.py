"""Connections for read transactions, beside the one that writes.

A write waits for the database's write lock only, not for reads: the service reads the whole
fleet (hundreds of milliseconds at 100,000 instances) in a worker thread while an operator's
write commits, and the token check of the next request reads while both run. Each read
transaction takes an idle connection of the pool (making one, up to ``size``; beyond, it waits
for one), so reads do not wait for each other either. SQLite serves them concurrently in WAL
mode (https://www.sqlite.org/wal.html, "Concurrency"); PostgreSQL gives each its snapshot.
When a connection cannot be made (a PostgreSQL role limited to one connection, say), the pool
gives None from then on, and reads share the writing connection, as they did before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

__all__ = ["ReadConnections"]

C = TypeVar("C")


class ReadConnections(Generic[C]):
    def __init__(
        self,
        connect: Callable[[], C],
        close: Callable[[C], None],
        size: int,
        usable: Callable[[C], bool] = lambda _: True,
    ) -> None:
        self._connect = connect
        self._close = close
        self._usable = usable
        self._size = size
        self._free = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[C] = []
        self._made: list[C] = []
        self._closed = False
        self._failed = False

    @contextmanager
    def connection(self) -> Iterator[C | None]:
        """An idle connection for one read transaction (the caller begins and ends it); None:
        none can be made (or the pool is closed), read on the writing connection."""
        if self._failed or self._closed:
            yield None
            return
        with self._free:
            with self._lock:
                db = self._idle.pop() if self._idle else None
            if db is not None and not self._usable(db):  # dropped by the server
                self._forget(db)
                db = None
            if db is None:
                try:
                    db = self._connect()
                except Exception:
                    if self._made:  # it worked before: the server is away, say so
                        raise
                    self._failed = True
                    yield None
                    return
                with self._lock:
                    self._made.append(db)
            try:
                yield db
            finally:
                with self._lock:
                    closed = self._closed
                    if not closed:
                        self._idle.append(db)
                if closed:
                    self._forget(db)

    def open(self) -> None:
        """Make the connections now, not when the first reads need them (a PostgreSQL
        connection costs a server process's start: tens of milliseconds)."""
        made = []
        for _ in range(self._size):
            try:
                made.append(self._connect())
            except Exception:
                if not made and not self._made:
                    self._failed = True
                break
        with self._lock:
            self._made.extend(made)
            self._idle.extend(made)

    def _forget(self, db: C) -> None:
        with self._lock:
            if db in self._made:
                self._made.remove(db)
        with contextlib.suppress(Exception):
            self._close(db)

    def close(self) -> None:
        """Close every connection (one in use is closed when given back)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for db in idle:
            self._forget(db)
