"""``netpersona serve`` on a database it cannot trust: one error line, its exit code, no
traceback, nothing made; and on one it can, private files and a clear way back in."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from netpersona.errors import (
    NetpersonaError,
    SchemaTooNew,
    StorageFull,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
)
from netpersona.store import Instance, Role, SqliteStore
from netpersona.system.command import run
from tests.service.conftest import persona_doc
from tests.service.serve_process import NETPERSONA, free_port, serve
from tests.store.test_full_disk import fill_up, tiny_filesystem
from tests.store.test_open_faults import _copy_with_wal

pytestmark = pytest.mark.subprocess


def start(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``netpersona serve``, expecting it to refuse (a start that listens times out)."""
    argv = [NETPERSONA, "serve", "--data-dir", str(data_dir), "--listen"]
    argv += [f"127.0.0.1:{free_port()}", "--log-level", "warning", *args]
    return run(argv, check=False, timeout=60)


def assert_refused(
    result: subprocess.CompletedProcess[str], error: type[NetpersonaError], *phrases: str
) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error ({error.code}) "), lines[0]
    for phrase in phrases:
        assert phrase in lines[0]
    assert result.returncode == error.exit_code
    return lines[0]


def make_data_dir(tmp_path: Path) -> Path:
    """A data directory as a first start leaves it: database, admin token, keys."""
    data = tmp_path / "data"
    with serve(data) as server, server.admin() as admin:
        made = admin.post("/v1/admin/instances", json={"id": "vm1", "addresses": ["127.0.0.9"]})
        assert made.status_code == 201
    return data


def test_an_empty_database_file_is_refused_and_no_admin_token_is_minted(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path)
    (data / "admin.token").unlink()
    (data / "netpersona.db").write_bytes(b"")
    for companion in ("netpersona.db-wal", "netpersona.db-shm"):
        (data / companion).unlink(missing_ok=True)
    assert_refused(start(data), StoreCorrupt, "is empty (0 bytes)")
    assert not (data / "admin.token").exists()
    assert (data / "netpersona.db").stat().st_size == 0


@pytest.mark.parametrize("kind", ["directory", "garbage", "truncated"])
def test_a_database_that_is_not_one_is_refused(tmp_path: Path, kind: str) -> None:
    if kind == "truncated":
        data = make_data_dir(tmp_path)
        with (data / "netpersona.db").open("r+b") as file:
            file.truncate(60)
        assert_refused(start(data), StoreCorrupt, str((data / "netpersona.db").resolve()))
        return
    data = tmp_path / "data"
    data.mkdir()
    if kind == "directory":
        (data / "netpersona.db").mkdir()
        assert_refused(start(data), StoreUnavailable, "is a directory")
    else:
        (data / "netpersona.db").write_bytes(os.urandom(20_000))
        assert_refused(start(data), StoreCorrupt, "not a SQLite database")


def test_a_garbage_write_ahead_log_is_refused(tmp_path: Path) -> None:
    copy = _copy_with_wal(tmp_path, 200)
    data = copy.parent
    copy.rename(data / "netpersona.db")
    wal = data / "netpersona.db-wal"
    Path(f"{copy}-wal").rename(wal)
    wal.write_bytes(os.urandom(wal.stat().st_size))
    assert_refused(start(data), StoreCorrupt, "netpersona.db-wal", "move netpersona.db-wal aside")


def test_a_schema_from_the_future_is_refused(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path)
    db = sqlite3.connect(data / "netpersona.db")
    db.execute("PRAGMA user_version=999")
    db.commit()
    db.close()
    assert_refused(start(data), SchemaTooNew, "schema version 999")


def test_an_admin_token_without_its_database_is_refused(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path)
    for name in ("netpersona.db", "netpersona.db-wal", "netpersona.db-shm"):
        (data / name).unlink(missing_ok=True)
    assert_refused(start(data), StoreUnavailable, "does not exist", "admin.token")
    assert not (data / "netpersona.db").exists()


def test_a_database_without_an_admin_token_is_refused_until_one_is_minted(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = SqliteStore(data / "netpersona.db")
    store.create_token("ci", Role.OPERATOR, "t")
    store.close()
    assert_refused(start(data), StoreError, "no admin token", "netpersona db token")
    assert not (data / "admin.token").exists()
    minted = run([NETPERSONA, "db", "token", "--data-dir", str(data)])
    assert "admin.token" in minted.stderr
    assert stat.S_IMODE((data / "admin.token").stat().st_mode) == 0o600
    with serve(data) as server, server.admin() as admin:
        assert admin.get("/v1/admin/tokens").status_code == 200


@pytest.mark.parametrize(
    "command", [["db", "token"], ["token", "create", "--name", "ci"], ["token", "list"]]
)
def test_only_serve_makes_a_database(tmp_path: Path, command: list[str]) -> None:
    # A database made by another command would have no admin token, which serve refuses.
    result = run([NETPERSONA, *command, "--data-dir", str(tmp_path)], check=False)
    assert result.returncode == StoreUnavailable.exit_code
    assert "netpersona serve` makes one" in result.stderr
    assert not (tmp_path / "netpersona.db").exists()
    assert not (tmp_path / "admin.token").exists()


def test_a_first_start_on_a_full_disk_says_so_in_one_line(tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path / "fs", "1m") as fs:
        (fs / "data").mkdir()
        fill_up(fs)
        assert_refused(start(fs / "data"), StorageFull, "full")
        assert sorted(p.name for p in (fs / "data").iterdir()) == []


def test_writes_on_a_full_disk_answer_507_and_the_service_carries_on(tmp_path: Path) -> None:
    with (
        tiny_filesystem(tmp_path / "fs", "4m") as fs,
        serve(fs / "data") as server,
        server.admin() as admin,
    ):
        assert admin.put("/v1/admin/personas/db", json=persona_doc()).status_code == 201
        filler = fill_up(fs)
        statuses = []
        for n in range(2000):
            body = {"id": f"vm{n}", "addresses": [f"127.1.{n // 250}.{n % 250 + 1}"]}
            response = admin.post("/v1/admin/instances", json=body)
            statuses.append(response.status_code)
            if response.status_code != 201:
                break
        assert response.status_code == 507, response.text
        assert response.json()["error"]["code"] == "storage_full"
        assert admin.get("/v1/admin/personas/db").status_code == 200
        listed = admin.get("/v1/admin/instances", params={"limit": 1000}).json()["items"]
        assert len(listed) == statuses.count(201)
        filler.unlink()
        again = admin.post("/v1/admin/instances", json={"id": "late", "addresses": ["127.9.9.9"]})
        assert again.status_code == 201


def test_a_malformed_row_is_reported_and_skipped_and_the_service_runs(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path)
    with serve(data) as server, server.admin() as admin:
        made = admin.post("/v1/admin/instances", json={"id": "vm2", "addresses": ["127.0.0.10"]})
        assert made.status_code == 201
    db = sqlite3.connect(data / "netpersona.db")
    db.execute("UPDATE instances SET labels = '{\"bad key!\": 1}' WHERE id = 'vm1'")
    db.commit()
    db.close()
    with serve(data) as server, server.admin() as admin:
        listed = admin.get("/v1/admin/instances").json()["items"]
        assert [i["id"] for i in listed] == ["vm2"]
        broken = admin.get("/v1/admin/instances/vm1")
        assert broken.status_code == 500
        assert broken.json()["error"]["code"] == "store_corrupt"
        log = (data.parent / f"serve-{server.port}.log").read_text()
    skipped = [json.loads(line) for line in log.splitlines() if "store row skipped" in line]
    assert skipped
    assert (skipped[0]["table"], skipped[0]["key"]) == ("instances", "vm1")


def test_data_files_are_private_for_new_and_existing_directories(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path)
    files = [data / n for n in ("netpersona.db", "netpersona.db-wal", "netpersona.db-shm")]
    data.chmod(0o755)
    for file in files:
        if file.exists():
            file.chmod(0o644)
    with serve(data) as server, server.admin() as admin:
        assert admin.get("/v1/admin/instances").status_code == 200
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
        assert modes == {f.name: 0o600 for f in files}


def test_db_status_reports_what_start_up_checks(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path)
    report = run([NETPERSONA, "db", "status", "--data-dir", str(data)])
    assert "schema version: 4 (this netpersona: 4)" in report.stdout
    assert "check: ok (quick_check took" in report.stdout
    assert f"file {data / 'netpersona.db'}: 0600," in report.stdout
    (data / "netpersona.db").write_bytes(b"")
    broken = run([NETPERSONA, "db", "status", "--data-dir", str(data)], check=False)
    assert broken.returncode == StoreCorrupt.exit_code
    assert "the service would refuse it" in broken.stdout


def test_a_store_made_elsewhere_opens_in_place(tmp_path: Path) -> None:
    # A database a tool made beside the service, with an admin token, starts as it is.
    data = tmp_path / "data"
    data.mkdir()
    store = SqliteStore(data / "netpersona.db")
    store.create_instance(Instance("vm1", "", ("127.0.0.5",)), "t")
    _, secret = store.create_token("bench", Role.ADMIN, "t")
    store.close()
    with (
        serve(data) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}) as admin,
    ):
        assert [i["id"] for i in admin.get("/v1/admin/instances").json()["items"]] == ["vm1"]
