"""``netpersona admin can`` and ``netpersona admin reachability`` against a real service."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from netpersona.cli.main import app
from netpersona.errors import NetpersonaError
from tests.console.seed import seed_requests
from tests.service.serve_process import ServeProcess, serve

pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    data = tmp_path_factory.mktemp("can") / "data"
    data.mkdir()
    with serve(data) as process, process.admin() as admin:
        for method, path, body in seed_requests():
            assert admin.request(method, path, json=body).status_code in (200, 201)
        yield process


def admin(server: ServeProcess, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        ["admin", "--url", server.url, "--token", server.admin_token, *args],
        env={"COLUMNS": "200"},
    )
    if isinstance(result.exception, NetpersonaError):
        return result.exception.exit_code, str(result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_can_exits_0_when_reachable_and_1_with_the_reason_when_not(server: ServeProcess) -> None:
    code, out = admin(server, "can", "api1", "db1", "tcp/5432")
    assert code == 0, out
    assert "api1 reaches db1 with tcp/5432" in out
    code, out = admin(server, "can", "admin1", "db1", "postgres")
    assert code == 1, out
    assert "DROP db1 (db-restricted) in [peers]" in out
    assert "drop_not_peer" in out
    code, out = admin(server, "can", "disc1", "disc2", "udp/6000", "--broadcast")
    assert code == 0, out
    code, out = admin(server, "can", "media1", "media2", "udp/5004", "--group", "239.9.9.9")
    assert code == 1
    assert "drop_multicast" in out


def test_can_refuses_what_it_cannot_ask(server: ServeProcess) -> None:
    code, message = admin(server, "can", "api1", "nobody", "icmp")
    assert code == 3, message
    code, message = admin(server, "can", "api1", "db1", "tcp/0")
    assert code == 1
    assert "/proto" in message or "ports" in message


def test_the_matrix_of_a_selection(server: ServeProcess) -> None:
    code, out = admin(server, "reachability", "-i", "api1", "-i", "db1", "-i", "web1")
    assert code == 0, out
    row = next(line for line in out.splitlines() if line.strip("│ ").startswith("api1"))
    assert "postgres" in row


def test_the_policy_diff_lists_the_pairs_a_label_change_moves(server: ServeProcess) -> None:
    code, out = admin(server, "policy", "diff", "--label", "api1:app=web")
    assert code == 0, out
    assert "api1 -> db1 postgres: loses" in out
    assert "pair(s) would gain or lose reachability" in out
