"""A full disk: a write is refused as StorageFull (HTTP 507), and what was written stays."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from netpersona.errors import StorageFull
from netpersona.service import create_app
from netpersona.store import Instance, Role, SqliteStore
from netpersona.system.command import run
from tests.service.conftest import persona_doc


def spec(n: int) -> Instance:
    return Instance(
        f"vm{n}", f"vm {n} " + "x" * 200, (f"10.{n // 65536}.{n // 256 % 256}.{n % 256}",)
    )


def write_until_full(store: SqliteStore, start: int, most: int = 5000) -> tuple[int, StorageFull]:
    """Create instances from ``start`` on until one is refused; returns (that number, error)."""
    for n in range(start, start + most):
        try:
            store.create_instance(spec(n), "t")
        except StorageFull as exc:
            return n, exc
    raise AssertionError(f"{most} writes and the disk never filled")


def test_a_page_limit_gives_storage_full_and_keeps_what_was_written(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "np.db")
    try:
        for n in range(5):
            store.create_instance(spec(n), "t")
        pages = store._database.connection.execute("PRAGMA page_count").fetchone()[0]
        store._database.connection.execute(f"PRAGMA max_page_count={pages + 2}")
        refused, error = write_until_full(store, 5)
        assert str(tmp_path / "np.db") in str(error)
        assert f"create instance 'vm{refused}'" in str(error)
        assert "full" in str(error)
        assert [i.id for i in store.list_instances(1000).items] == sorted(
            f"vm{n}" for n in range(refused)
        )
        with pytest.raises(Exception, match="does not exist"):
            store.get_instance(f"vm{refused}")
    finally:
        store.close()


@pytest.mark.anyio
async def test_a_write_on_a_full_store_answers_507_with_the_error_body(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "np.db")
    try:
        _, secret = store.create_token("admin", Role.ADMIN, "t")
        pages = store._database.connection.execute("PRAGMA page_count").fetchone()[0]
        store._database.connection.execute(f"PRAGMA max_page_count={pages}")
        transport = httpx.ASGITransport(app=create_app(store), client=("192.0.2.250", 40000))
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://metadata",
            headers={"Authorization": f"Bearer {secret}"},
        ) as admin:
            for n in range(200):
                response = await admin.put(
                    f"/v1/admin/personas/p{n}",
                    json=persona_doc(),
                )
                if response.status_code != 201:
                    break
            assert response.status_code == 507, response.text
            error = response.json()["error"]
            assert error["code"] == "storage_full"
            assert str(tmp_path / "np.db") in error["message"]
            listed = await admin.get("/v1/admin/personas")
            assert listed.status_code == 200
            assert len(listed.json()["items"]) == n
    finally:
        store.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.contextmanager
def tiny_filesystem(where: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (made here), unmounted however the test ends."""
    where.mkdir()
    run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)])
    try:
        yield where
    finally:
        run(["umount", str(where)])


def fill_up(directory: Path) -> Path:
    """Write a file until the file system has no space left; returns it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(100_000):
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return filler
    finally:
        os.close(fd)
    raise AssertionError("the file system never filled")


@pytest.mark.subprocess
def test_a_real_full_disk_refuses_the_write_and_loses_nothing(tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path / "fs") as fs:
        store = SqliteStore(fs / "np.db")
        try:
            for n in range(20):
                store.create_instance(spec(n), "t")
            filler = fill_up(fs)
            refused, error = write_until_full(store, 20)
            assert str(fs / "np.db") in str(error)
            written = sorted(f"vm{n}" for n in range(refused))
            assert [i.id for i in store.list_instances(10_000).items] == written
            filler.unlink()  # space again: the same store writes again, no restart needed
            store.create_instance(spec(refused), "t")
        finally:
            store.close()
        reopened = SqliteStore(fs / "np.db")
        try:
            ids = {i.id for i in reopened.list_instances(10_000).items}
            assert ids == {*written, f"vm{refused}"}
        finally:
            reopened.close()
