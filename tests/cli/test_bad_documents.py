"""A bad document file is one line per error and the error's exit code, never a traceback.

Through the real entry point (``netpersona.cli.main.main``, which maps the error tree to exit
codes), in-process with argv set, and once as a real process.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from netpersona.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GOOD = (
    "network_persona:\n  communication_mode: unicast\n  security_profile: low\n"
    "  allowed_protocols: [ssh]\n  priority: 1\n"
)
BOMB = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'] + [
    f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)
]


def bomb_under(key: str) -> str:
    return "".join(f"  {key}{line}\n" for line in BOMB)


# name -> (file bytes, the pointer and a part of the message of the one error expected)
BAD_PERSONAS: dict[str, tuple[bytes, str, str]] = {
    "alias-bomb-in-extension": (
        (GOOD + bomb_under("x-")).encode(),
        "/",
        "has more than 10,000 values with its aliases expanded",
    ),
    "alias-bomb-in-priority": (
        (GOOD.replace("  priority: 1\n", "") + bomb_under("x-") + "  priority: *a8\n").encode(),
        "/",
        "has more than 10,000 values",
    ),
    "latin-1": ((GOOD + "  x-owner: caf\xe9\n").encode("latin-1"), "/", "is not UTF-8"),
    "utf-16": (GOOD.encode("utf-16"), "/", "is UTF-16"),
    "utf-16-without-bom": (GOOD.encode("utf-16-le"), "/", "contains a NUL byte"),
    "deep-nesting": (
        (GOOD + "  x-deep: " + "[" * 10_000 + "]" * 10_000 + "\n").encode(),
        "/",
        "nests deeper than 32 levels",
    ),
    "int-max-str-digits": (
        GOOD.replace("priority: 1", "priority: " + "7" * 4301).encode(),
        "/network_persona/priority",
        "an integer of 4,301 digits is too large",
    ),
    "int-past-64-bits": (
        (GOOD + f"  qos_parameters: {{max_connections: {2**63}}}\n").encode(),
        "/network_persona/qos_parameters/max_connections",
        "is out of range (expected an integer 1..2147483647)",
    ),
    "nan-in-extension": (
        (GOOD + "  x-ratio: .nan\n").encode(),
        "/network_persona/x-ratio",
        "NaN is not a JSON number",
    ),
    "too-large": ((GOOD + "#" * 300_000 + "\n").encode(), "/", "is larger than 256 KiB"),
    "not-yaml": (b"network_persona: [\n", "/", "not valid YAML or JSON"),
    "control-characters-in-a-key": (
        (GOOD + '  "x-a\\nb\\u2028c": .inf\n').encode(),
        "/network_persona/x-a\\nb\\u2028c",
        "Infinity is not a JSON number",
    ),
}


def run(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[object, str, str]:
    monkeypatch.setattr(sys, "argv", ["netpersona", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    out = capsys.readouterr()
    return exited.value.code, out.out, out.err


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for name, (data, _, _) in BAD_PERSONAS.items():
        files[name] = tmp_path / f"{name}.yaml"
        files[name].write_bytes(data)
    return files


def test_validate_prints_one_line_per_bad_file(
    bad_files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = EXAMPLES / "db-restricted.yaml"
    code, out, err = run(
        ["validate", str(good), *map(str, bad_files.values())], monkeypatch, capsys
    )
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert len(lines) == len(BAD_PERSONAS)
    for line, (name, (_, pointer, message)) in zip(lines, BAD_PERSONAS.items(), strict=True):
        assert line.startswith(f"{bad_files[name]}:{pointer}: "), line
        assert message in line


@pytest.mark.parametrize("name", BAD_PERSONAS)
def test_plan_of_a_bad_file_is_one_error_line_and_exit_1(
    name: str,
    bad_files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, pointer, message = BAD_PERSONAS[name]
    code, out, err = run(["plan", str(bad_files[name])], monkeypatch, capsys)
    assert (code, out) == (1, "")
    assert "Traceback" not in err
    [line] = err.splitlines()
    assert line.startswith(f"error (invalid_document) {bad_files[name]}: {pointer}: ")
    assert message in line


def test_plan_reads_stdin_within_the_same_limits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _, message = BAD_PERSONAS["utf-16"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, _, err = run(["plan", "-"], monkeypatch, capsys)
    assert code == 1
    assert message in err


def test_policy_validate_of_bad_policies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cases: dict[str, tuple[str | bytes, str, str]] = {
        "bomb": ("rules: []\n" + "".join(f"x-{line}\n" for line in BOMB), "/", "10,000 values"),
        "utf16": ("rules: []\n".encode("utf-16"), "/", "is UTF-16"),
        "deep": ("rules: []\nx-d: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "/", "deeper"),
        "digits": ("rules: []\nx-n: " + "1" * 5000 + "\n", "/x-n", "5,000 digits is too large"),
        "big": ("rules: []\n" + "#" * (1 << 20) + "\n", "/", "is larger than 1 MiB"),
    }
    for name, (content, pointer, message) in cases.items():
        path = tmp_path / f"{name}.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        code, out, err = run(
            ["policy", "validate", str(path), "--personas", str(EXAMPLES)], monkeypatch, capsys
        )
        assert (code, err) == (1, ""), name
        [line] = out.splitlines()
        assert line.startswith(f"{path}:{pointer}: "), line
        assert message in line


def test_policy_commands_refuse_a_bad_persona_or_inventory_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    personas = tmp_path / "personas"
    personas.mkdir()
    (personas / "web.yaml").write_bytes(BAD_PERSONAS["latin-1"][0])
    policy = str(EXAMPLES / "policy" / "policy.yaml")
    code, _, err = run(
        ["policy", "validate", policy, "--personas", str(personas)], monkeypatch, capsys
    )
    assert code == 1
    assert err.startswith(f"error (invalid_document) {personas / 'web.yaml'}: /: is not UTF-8")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("instances: " + "[" * 100 + "]" * 100 + "\n")
    argv = ["policy", "explain", policy, "--personas", str(EXAMPLES), "--inventory", str(inventory)]
    code, _, err = run(argv, monkeypatch, capsys)
    assert code == 1
    assert f"error (invalid_document) {inventory}: /: nests deeper than 32 levels" in err
    assert "Traceback" not in err


@pytest.mark.subprocess
def test_a_real_process_prints_no_traceback(bad_files: dict[str, Path]) -> None:
    for name in ("alias-bomb-in-priority", "utf-16", "int-max-str-digits"):
        done = subprocess.run(
            [sys.executable, "-m", "netpersona", "plan", str(bad_files[name])],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr.splitlines()) == 1
