"""``netpersona admin ...`` against a real service process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from netpersona.cli.main import app
from netpersona.errors import NetpersonaError
from netpersona.system.command import run
from tests.service.serve_process import NETPERSONA, ServeProcess, serve

pytestmark = pytest.mark.subprocess

PERSONA = """\
network_persona:
  communication_mode: restricted
  security_profile: high
  allowed_protocols: [postgres, icmp]
  priority: {priority}
  peers:
    - labels: {{app: api}}
"""


def admin(server: ServeProcess, *args: str, token: str | None = None) -> tuple[int, str, str]:
    """Run ``netpersona admin ARGS`` in-process; errors map to exit codes as main() does."""
    result = CliRunner().invoke(
        app,
        [
            "admin",
            "--url",
            server.url,
            "--token",
            token if token is not None else server.admin_token,
            *args,
        ],
        env={"COLUMNS": "200"},
    )
    if isinstance(result.exception, NetpersonaError):
        return result.exception.exit_code, result.output, str(result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output, ""


def test_operating_a_service_from_the_cli(tmp_path: Path) -> None:
    v1, v2, bad = tmp_path / "v1.yaml", tmp_path / "v2.yaml", tmp_path / "bad.yaml"
    v1.write_text(PERSONA.format(priority=6))
    v2.write_text(PERSONA.format(priority=3))
    bad.write_text(PERSONA.format(priority=6).replace("peers:\n    - labels: {app: api}\n", ""))
    with serve(tmp_path / "data") as server:
        code, out, _ = admin(server, "apply", str(v1), "--name", "db")
        assert (code, out.strip()) == (0, "persona db is at version 1")
        assert admin(server, "apply", str(v2), "--name", "db")[1].strip().endswith("version 2")
        code, _, err = admin(server, "apply", str(bad), "--name", "db")
        assert code == 1
        assert "/network_persona/peers" in err
        code, out, _ = admin(server, "add-instance", "vm1", "-a", "127.0.0.5", "-l", "app=db")
        assert code == 0
        assert "vm1" in out
        assert admin(server, "pin", "vm1", "db")[0] == 0
        code, out, _ = admin(server, "label", "vm1", "role=primary", "app-")
        assert code == 0
        assert "role=primary" in out
        assert "app=db" not in out
        assert admin(server, "restore", "db", "1")[1].strip().endswith("version 3 (from 1)")
        code, out, _ = admin(server, "history", "db")
        assert code == 0
        assert re.findall(r"^│\s+(\d+)\s+│", out, re.MULTILINE) == ["3", "2", "1"]
        code, out, _ = admin(server, "audit", "--target", "instance/vm1")
        assert "instance.labels" in out
        assert "instance.pin" in out
        code, out, _ = admin(server, "context", "threat_level=high")
        assert "threat_level" in out
        assert "high" in out
        code, _, err = admin(server, "pin", "vm1", "nope")
        assert code == 1
        assert "/persona" in err
        code, _, err = admin(server, "instances", token="np_not-a-token")
        assert code == 5
        assert "not valid" in err
        code, _, err = admin(server, "remove-instance", "ghost")
        assert code == 3
        assert "ghost" in err

        # URL and token from the environment.
        result = CliRunner().invoke(
            app,
            ["admin", "instances"],
            env={"NETPERSONA_URL": server.url, "NETPERSONA_TOKEN": server.admin_token},
        )
        assert result.exit_code == 0, result.output
        assert "vm1" in result.output
        assert "role=primary" in result.output

        # The installed command prints errors on stderr with the error's exit code.
        done = run(
            [NETPERSONA, "admin", "--url", server.url, "--token", "np_x", "personas"],
            check=False,
        )
        assert done.returncode == 5
        assert "unauthorized" in done.stderr
