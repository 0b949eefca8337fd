"""``netpersona policy validate | test | explain | diff`` as an operator uses them, on files."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from netpersona.cli.main import app
from netpersona.errors import UsageError
from tests.policy.conftest import EXAMPLES, POLICY_DIR

runner = CliRunner()
POLICY = str(POLICY_DIR / "policy.yaml")
FILES = ["--personas", str(EXAMPLES), "--inventory", str(POLICY_DIR / "inventory.yaml")]


def test_validate_accepts_the_example() -> None:
    result = runner.invoke(app, ["policy", "validate", POLICY, "--personas", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert result.output == f"{POLICY}: ok (7 rules, 3 overlays, default dev-sandbox)\n"


def test_validate_prints_one_line_per_error(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(
        "persona_policy:\n"
        "  rules:\n"
        "    - {name: web, persona: web-frontend}\n"
        "    - {name: db, persona: db-restricted, match: {matchLabels: {app: db}}}\n"
        "    - {name: x, persona: nosuch, when: 'threat_level == \"high\"'}\n"
    )
    result = runner.invoke(app, ["policy", "validate", str(bad), "--personas", str(EXAMPLES)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == f'{bad}:/persona_policy/rules/2/persona: persona "nosuch" does not exist'
    assert lines[1].startswith(f"{bad}:/persona_policy/rules/2/when: ")
    assert "undeclared reference to 'threat_level'" in lines[1]


def test_test_runs_the_example_tests() -> None:
    result = runner.invoke(app, ["policy", "test", POLICY, str(POLICY_DIR / "tests.yaml"), *FILES])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "16 passed, 0 failed"


def test_test_fails_with_the_broken_expectation(tmp_path: Path) -> None:
    tests = tmp_path / "tests.yaml"
    tests.write_text("tests:\n  - {name: web, instance: web-1, expect: {persona: api-server}}\n")
    result = runner.invoke(app, ["policy", "test", POLICY, str(tests), *FILES])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "FAIL web",
        f'  {tests}:/tests/0/expect/persona: web: expected "api-server", got "web-frontend"',
        "0 passed, 1 failed",
    ]


def test_explain_names_the_deciding_rule_for_every_instance() -> None:
    result = runner.invoke(app, ["policy", "explain", POLICY, *FILES, "-o", "json"])
    assert result.exit_code == 0, result.output
    explanations = json.loads(result.output)
    assert len(explanations) == 12
    for item in explanations:
        decision = item["decision"]
        matched = [s["name"] for s in item["rules"] if s["outcome"] == "matched"]
        assert matched == ([decision["rule"]] if decision["rule"] else [])
        assert item["summary"].startswith(("persona ", "no persona"))


def test_explain_one_instance_as_text() -> None:
    result = runner.invoke(app, ["policy", "explain", POLICY, "db-1", *FILES])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("db-1: persona db-restricted from rule database")
    assert lines[1] == "  rule database (/persona_policy/rules/0) matched: -> db-restricted"


def test_explain_unknown_instance_is_an_error() -> None:
    result = runner.invoke(app, ["policy", "explain", POLICY, "ghost", *FILES])
    assert isinstance(result.exception, UsageError)
    assert str(result.exception) == "not in the inventory: ghost"


def test_diff_of_a_context_change_lists_who_moves_and_how() -> None:
    context = ["--context", str(POLICY_DIR / "context.yaml")]
    result = runner.invoke(
        app, ["policy", "diff", POLICY, *FILES, *context, "--set-context", "threat_level=high"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.splitlines()[-1] == "11 of 12 instances would change"
    assert (
        "dev-1: dev-sandbox (default) -> dev-sandbox (default) + threat-high-dev-quarantine, "
        in out
    )
    assert not [line for line in out.splitlines() if line.startswith("legacy-web:")]
    # The blast radius: who stops reaching whom, and the drop counter that would count it.
    assert "admin-ws-1 -> legacy-web http: loses" in out
    assert "drop_not_peer" in out


def test_diff_of_a_label_change() -> None:
    result = runner.invoke(app, ["policy", "diff", POLICY, *FILES, "--label", "dev-1:app=api"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        "dev-1: dev-sandbox (default) -> api-server (rule api)"
    )


def test_diff_refuses_a_value_the_context_key_does_not_take() -> None:
    result = runner.invoke(
        app, ["policy", "diff", POLICY, *FILES, "--set-context", "threat_level=severe"]
    )
    assert isinstance(result.exception, UsageError)
    assert "severe" in str(result.exception)
    assert result.exception.exit_code == 2


def test_diff_of_a_persona_edit_lists_the_reachability_it_moves(tmp_path: Path) -> None:
    """db-restricted taking peers from web-frontend instead of api-server: api-1's own persona
    is untouched, yet it loses the database."""
    edited = tmp_path / "db.yaml"
    edited.write_text(
        "network_persona:\n"
        "  communication_mode: restricted\n"
        "  security_profile: high\n"
        "  allowed_protocols: [postgres, icmp]\n"
        "  priority: 6\n"
        "  peers: [{persona: web-frontend}]\n"
    )
    result = runner.invoke(
        app, ["policy", "diff", POLICY, *FILES, "--set-persona", f"db-restricted={edited}"]
    )
    assert result.exit_code == 0, result.output
    assert "api-1 -> db-1 postgres: loses (now dropped: db-1 (db-restricted) in [peers]" in (
        result.output
    )
    as_json = runner.invoke(
        app,
        [
            "policy",
            "diff",
            POLICY,
            *FILES,
            "--set-persona",
            f"db-restricted={edited}",
            "-o",
            "json",
        ],
    )
    answer = json.loads(as_json.output)
    assert answer["connectivity_count"] == len(answer["connectivity"]) > 0
    bad = runner.invoke(app, ["policy", "diff", POLICY, *FILES, "--set-persona", "db-restricted"])
    assert isinstance(bad.exception, UsageError)
