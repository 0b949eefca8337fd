"""``netpersona plan | validate | schema | protocols`` as an operator uses them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from netpersona.cli.main import app
from netpersona.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "db-restricted.yaml"
FACTS = ROOT / "examples" / "facts" / "default.yaml"
runner = CliRunner()


def test_validate_accepts_all_examples() -> None:
    result = runner.invoke(app, ["validate", *map(str, sorted((ROOT / "examples").glob("*.yaml")))])
    assert result.exit_code == 0, result.output
    assert result.output == ""


def test_validate_prints_one_line_per_error_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "network_persona:\n  communication_mode: unicast\n  security_profile: low\n"
        "  allowed_protocols: [ssh]\n  priority: 9\n  qos_parameters: {egress_rate: fast}\n"
    )
    result = runner.invoke(app, ["validate", str(EXAMPLE), str(bad)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{bad}:/network_persona/priority: 9 is out of range (expected an integer 0..7)",
        f"{bad}:/network_persona/qos_parameters/egress_rate: "
        '"fast" is not a rate (expected e.g. 100mbit)',
    ]


def test_plan_json_carries_digest_and_every_section() -> None:
    result = runner.invoke(app, ["plan", str(EXAMPLE), "--facts", str(FACTS), "--format", "json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert set(plan) >= {
        "digest",
        "ruleset_digest",
        "nftables",
        "peer_sets",
        "tc",
        "routes",
        "rules",
        "sysctls",
        "links",
    }
    assert plan["peer_sets"]["addrs_v4"] == ["10.0.0.20", "10.0.0.30"]


def test_plan_text_shows_kernel_state_and_the_nft_script() -> None:
    result = runner.invoke(app, ["plan", str(EXAMPLE), "--facts", str(FACTS)])
    assert result.exit_code == 0, result.output
    assert "mode=restricted profile=high priority=6 dscp=34" in result.output
    assert (
        "class htb 6e70:20 dev eth0 parent 6e70:1 rate 100mbit ceil 1gbit burst 65536b prio 1"
        in result.output
    )
    assert "net.ipv4.conf.eth0.rp_filter = 2" in result.output
    assert "fib saddr . iif oif missing" in result.output
    assert "dev eth0 mtu 1450" in result.output
    assert "add table inet netpersona" in result.output


@pytest.mark.subprocess
def test_plan_of_invalid_persona_exits_1_naming_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "network_persona: {communication_mode: unicast, security_profile: low, priority: 1}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "netpersona", "plan", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert (
        f"{bad}: /network_persona/allowed_protocols: allowed_protocols is required" in done.stderr
    )


def test_plan_of_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", str(tmp_path / "nope.yaml")])
    assert isinstance(result.exception, UsageError)
    assert result.exception.exit_code == 2
    assert "cannot read" in str(result.exception)


@pytest.mark.subprocess
def test_bad_facts_name_the_field(tmp_path: Path) -> None:
    facts = tmp_path / "facts.yaml"
    facts.write_text("control_port: 99999\n")
    argv = [sys.executable, "-m", "netpersona", "plan", str(EXAMPLE), "--facts", str(facts)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "/control_port: 99999 is not a UDP port 1..65535" in done.stderr


def test_schema_is_json() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output)["$defs"]["persona"]["properties"]["priority"]["maximum"] == 7


def test_protocols_lists_services() -> None:
    result = runner.invoke(app, ["protocols"])
    assert result.exit_code == 0
    assert "postgres" in result.output
    assert "tcp/5432" in result.output
