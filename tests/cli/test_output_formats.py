"""``-o json`` and ``-o yaml`` of every list and show command, against a real service process
(over its admin Unix socket) and real files: the shapes are the ones docs/cli.md lists, YAML
carries the same data as JSON, and a table read through a pipe is never cut."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from netpersona.cli.main import app
from netpersona.service.auth import TOKEN_HEADER, TOKEN_TTL_HEADER
from tests.cli.cli_doc import documented_json
from tests.policy.test_policy_cmd import FILES, POLICY
from tests.service.conftest import persona_doc
from tests.service.serve_process import NETPERSONA, ServeProcess, serve
from tests.service.test_policy import POLICY as SERVICE_POLICY

pytestmark = pytest.mark.subprocess

# Longer than any terminal's 80 columns, so a table that fits itself to 80 would cut them.
LONG_ID = "vm-" + "0123456789" * 6  # an instance id has at most 63
LONG_LABEL = "team=" + "platform-networking-" * 3 + "end"  # a label value has at most 63


@dataclass
class Fleet:
    server: ServeProcess
    socket: Path
    token_file: Path
    files: Path  # a directory for the offline commands


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A service with personas (db at version 2), a policy, a context value, two instances
    (one with a long id and label) and an agent status report."""
    root = tmp_path_factory.mktemp("fleet")
    socket = root / "admin.sock"
    with serve(root / "data", "--admin-socket", str(socket)) as server, server.admin() as api:
        for name, priority in (("db", 6), ("db", 5), ("api", 4), ("web", 2), ("sandbox", 1)):
            assert api.put(f"/v1/admin/personas/{name}", json=persona_doc(priority)).is_success
        assert api.put("/v1/admin/personas/quarantine", json=persona_doc(0)).is_success
        assert api.put("/v1/admin/policy", json=SERVICE_POLICY).is_success
        key, _, value = LONG_LABEL.partition("=")
        for instance_id, address, labels in (
            ("vm2", "127.0.0.2", {"app": "web", "env": "dev"}),
            (LONG_ID, "127.0.0.3", {"app": "db", key: value}),
        ):
            body = {"id": instance_id, "addresses": [address], "labels": labels}
            made = api.post("/v1/admin/instances", json=body)
            assert made.status_code == 201, made.text
        assert api.put("/v1/admin/context/threat_level", json={"value": "elevated"}).is_success
        with server.vm("127.0.0.2") as vm:
            vm.headers[TOKEN_HEADER] = vm.put("/v1/token", headers={TOKEN_TTL_HEADER: "60"}).text
            report = {"persona": "web", "version": 1, "result": "applied", "drops": {"x": 1}}
            assert vm.post("/v1/instance/status", json=report).status_code == 204
        token_file = root / "admin.token"
        token_file.write_text(server.admin_token + "\n")
        token_file.chmod(0o600)
        files = root / "files"
        files.mkdir()
        yield Fleet(server, socket, token_file, files)


def _argv(fleet: Fleet, command: str) -> list[str]:
    """The arguments that run ``command`` (a docs/cli.md row) against the fleet."""
    data = ["--data-dir", str(fleet.server.data_dir)]
    admin = ["admin", "--admin-socket", str(fleet.socket), "--token-file", str(fleet.token_file)]
    table: dict[str, list[str]] = {
        "admin instances": [*admin, "instances"],
        "admin add-instance": [*admin, "add-instance", "vm9", "-a", "127.0.0.9"],
        "admin label": [*admin, "label", "vm2", "tier=gold"],
        "admin pin": [*admin, "pin", "vm2", "web"],
        "admin unpin": [*admin, "unpin", "vm2"],
        "admin personas": [*admin, "personas"],
        "admin show": [*admin, "show", "db"],
        "admin history": [*admin, "history", "db"],
        "admin context": [*admin, "context"],
        "admin audit": [*admin, "audit"],
        "admin status": [*admin, "status", "vm2"],
        "admin policy show": [*admin, "policy", "show"],
        "admin policy explain": [*admin, "policy", "explain", "vm2"],
        "admin policy diff": [*admin, "policy", "diff", "--context", "threat_level=high"],
        "admin can": [*admin, "can", "vm2", LONG_ID, "tcp/5432"],
        "admin reachability": [*admin, "reachability"],
        "policy explain": ["policy", "explain", POLICY, *FILES],
        "policy diff": ["policy", "diff", POLICY, *FILES, "--set-context", "threat_level=high"],
        "protocols": ["protocols"],
        "status": ["status", "--state-dir", str(fleet.files / "state")],
        "db status": ["db", "status", *data],
        "token list": ["token", "list", *data],
        "keys list": ["keys", "list", *data],
    }
    return table[command]


# Commands that open the data directory set the process's umask and its logging: they run as
# their own process, so this one is left as it was.
OWN_PROCESS = {"db", "token", "keys"}


def _run(argv: list[str]) -> str:
    if argv[0] in OWN_PROCESS:
        done = subprocess.run([NETPERSONA, *argv], capture_output=True, text=True, check=False)
        assert done.returncode == 0, (argv, done.stderr)
        return done.stdout
    result = CliRunner().invoke(app, argv)
    # `admin can` exits 1 when the answer is no, and still prints it.
    assert result.exit_code in (0, 1), (argv, result.output, result.exception)
    return result.stdout


MUTATING = {"admin add-instance", "admin label", "admin pin", "admin unpin"}
# Commands that need more than the fleet; their JSON is checked against docs/cli.md where they
# run: a kernel (tests/cli/test_apply_cmd.py), a running lab (tests/lab/test_lab_status_kernel.py).
ELSEWHERE = {"apply", "apply --check", "remove", "lab status"}


def test_the_doc_lists_every_command_that_prints_records() -> None:
    assert sorted(documented_json()) == sorted(
        [
            "admin instances",
            "admin add-instance",
            "admin label",
            "admin pin",
            "admin unpin",
            "admin personas",
            "admin show",
            "admin history",
            "admin context",
            "admin audit",
            "admin status",
            "admin policy show",
            "admin policy explain",
            "admin policy diff",
            "admin can",
            "admin reachability",
            "policy explain",
            "policy diff",
            "protocols",
            "status",
            "db status",
            "token list",
            "keys list",
            "apply",
            "apply --check",
            "remove",
            "lab status",
        ]
    )


@pytest.mark.parametrize("command", sorted(set(documented_json()) - ELSEWHERE))
def test_json_has_the_documented_shape(fleet: Fleet, command: str) -> None:
    kind, keys = documented_json()[command]
    data = json.loads(_run([*_argv(fleet, command), "-o", "json"]))
    if kind == "list of":
        assert isinstance(data, list)
        assert data, f"{command} listed nothing"
        data = data[0]
    assert isinstance(data, dict)
    assert sorted(data) == sorted(keys), f"{command}: {sorted(data)}"


@pytest.mark.parametrize("command", sorted(set(documented_json()) - MUTATING - ELSEWHERE))
def test_yaml_is_the_same_data_as_json(fleet: Fleet, command: str) -> None:
    argv = _argv(fleet, command)
    as_json = json.loads(_run([*argv, "--output", "json"]))
    as_yaml = yaml.safe_load(_run([*argv, "-o", "yaml"]))
    for volatile in ("check_seconds",):  # db status times its check each run
        for data in (as_json, as_yaml):
            if isinstance(data, dict):
                data.pop(volatile, None)
    assert as_yaml == as_json


def test_an_unknown_output_format_is_refused(fleet: Fleet) -> None:
    result = CliRunner().invoke(app, [*_argv(fleet, "protocols"), "-o", "xml"])
    assert result.exit_code == 2
    assert "xml" in result.output


def test_a_piped_table_keeps_long_ids_and_labels_whole(fleet: Fleet) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["NETPERSONA_ADMIN_SOCKET"] = str(fleet.socket)
    env["NETPERSONA_TOKEN_FILE"] = str(fleet.token_file)
    done = subprocess.run(
        [NETPERSONA, "admin", "instances"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert LONG_ID in done.stdout
    assert LONG_LABEL in done.stdout
    row = next(line for line in done.stdout.splitlines() if LONG_ID in line)
    assert len(row) > 80
    assert "…" not in done.stdout


def test_no_token_on_the_socket_is_refused(fleet: Fleet) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETPERSONA_")}
    done = subprocess.run(
        [NETPERSONA, "admin", "--admin-socket", str(fleet.socket), "--token", "np_x", "personas"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 5, done.stderr
    assert done.stderr.startswith("error (unauthorized) ")


@pytest.mark.parametrize(
    ("content", "mode", "problem"),
    [
        ("", 0o600, "the file is empty"),
        ("\n", 0o600, "the file is empty"),
        ("np_x\n", 0o644, "0644"),
    ],
)
def test_a_bad_token_file_is_refused_naming_it(
    fleet: Fleet, tmp_path: Path, content: str, mode: int, problem: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(content)
    token_file.chmod(mode)
    result = CliRunner().invoke(
        app,
        ["admin", "--admin-socket", str(fleet.socket), "--token-file", str(token_file), "personas"],
    )
    assert result.exit_code != 0
    assert result.exception is not None
    assert str(token_file) in str(result.exception)
    assert problem in str(result.exception)
    assert getattr(result.exception, "exit_code", None) == 2


def test_token_on_the_command_line_beats_a_token_file_from_the_environment(
    fleet: Fleet, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    empty.chmod(0o600)
    argv = ["admin", "--admin-socket", str(fleet.socket), "--token", fleet.server.admin_token]
    result = CliRunner().invoke(
        app, [*argv, "personas", "-o", "json"], env={"NETPERSONA_TOKEN_FILE": str(empty)}
    )
    assert result.exit_code == 0, result.exception
    both = CliRunner().invoke(app, [*argv, "--token-file", str(empty), "personas"])
    assert "not both" in str(both.exception)


def test_shell_completion_completes_commands_and_output_formats() -> None:
    shown = subprocess.run(
        [NETPERSONA, "--show-completion", "bash"], capture_output=True, text=True, check=True
    )
    assert "_NETPERSONA_COMPLETE=bash_complete" in shown.stdout
    for words, cword, expected in (
        ("netpersona adm", "1", ["admin"]),
        ("netpersona admin instances -o ", "4", ["table", "json", "yaml"]),
    ):
        env = {**os.environ, "_NETPERSONA_COMPLETE": "bash_complete"}
        env |= {"COMP_WORDS": words, "COMP_CWORD": cword}
        done = subprocess.run([NETPERSONA], capture_output=True, text=True, env=env, check=True)
        # Click's bash protocol: one TYPE,VALUE line per candidate.
        assert [line.partition(",")[2] for line in done.stdout.split()] == expected


def test_the_old_json_flag_still_means_output_json(fleet: Fleet) -> None:
    argv = _argv(fleet, "admin reachability")
    assert json.loads(_run([*argv, "--json"])) == json.loads(_run([*argv, "-o", "json"]))


def test_the_command_line_chooses_between_url_and_socket_over_the_environment(
    fleet: Fleet,
) -> None:
    unreachable = "http://127.0.0.1:1"
    token = ["--token-file", str(fleet.token_file)]
    on_socket = CliRunner().invoke(
        app,
        ["admin", "--admin-socket", str(fleet.socket), *token, "personas", "-o", "json"],
        env={"NETPERSONA_URL": unreachable},
    )
    assert on_socket.exit_code == 0, on_socket.exception
    on_url = CliRunner().invoke(
        app,
        ["admin", "--url", unreachable, *token, "personas"],
        env={"NETPERSONA_ADMIN_SOCKET": str(fleet.socket)},
    )
    assert f"cannot reach {unreachable}" in str(on_url.exception)
