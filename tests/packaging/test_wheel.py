"""The wheel, installed alone in a fresh environment outside the repository, is a working
agent and CLI without the web stack; the service's commands say what to install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = os.environ.get("UV") or shutil.which("uv")


def run(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if UV is None:
        pytest.fail("uv is needed to build the wheel (scripts/setup installs it)")
    work = tmp_path_factory.mktemp("wheel")
    built = run([UV, "build", "--wheel", "-q", "-o", str(work), str(ROOT)], cwd=work)
    assert built.returncode == 0, built.stderr
    (wheel,) = work.glob("netpersona-*.whl")
    # The locked versions of the base dependencies (from uv's cache when it has them).
    locked = run(
        [UV, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "-q"],
        cwd=ROOT,
    )
    assert locked.returncode == 0, locked.stderr
    (work / "requirements.txt").write_text(locked.stdout)
    venv = work / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=work)
    assert made.returncode == 0, made.stderr
    python = str(venv / "bin" / "python")
    argv = [UV, "pip", "install", "-q", "--python", python, "-r", "requirements.txt", str(wheel)]
    installed = run(argv, cwd=work)
    assert installed.returncode == 0, installed.stderr
    return venv


def netpersona(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # From a directory that is not the repository, with nothing of it on the path.
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(venv)}
    return run([str(venv / "bin" / "netpersona"), *args], cwd=venv, env=env)


@pytest.mark.slow
@pytest.mark.subprocess
def test_version_comes_from_the_package(base_venv: Path) -> None:
    result = netpersona(base_venv, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "netpersona 0.1.0"


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_shipped_examples_validate_and_plan(base_venv: Path) -> None:
    (site,) = (base_venv / "lib").glob("python3*/site-packages")
    examples = site / "netpersona" / "examples"
    assert (examples / "lab" / "scenario.yaml").is_file()
    assert (examples / "lab" / "policy.yaml").is_file()
    personas = sorted(str(p) for p in examples.glob("*.yaml"))
    assert len(personas) >= 10
    validated = netpersona(base_venv, "validate", *personas)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    plan = netpersona(
        base_venv,
        "plan",
        str(examples / "db-restricted.yaml"),
        "--facts",
        str(examples / "facts" / "default.yaml"),
    )
    assert plan.returncode == 0, plan.stderr
    assert "netpersona" in plan.stdout


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_lab_default_scenario_loads_from_the_install(base_venv: Path) -> None:
    code = (
        "from netpersona.lab.scenario import DEFAULT_SCENARIO, load_scenario\n"
        "scenario = load_scenario(DEFAULT_SCENARIO)\n"
        "print(DEFAULT_SCENARIO, len(scenario.vms))\n"
    )
    result = run([str(base_venv / "bin" / "python"), "-c", code], cwd=base_venv)
    assert result.returncode == 0, result.stderr
    path, vms = result.stdout.split()
    assert Path(path).is_relative_to(base_venv)
    assert int(vms) == 8


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_base_install_has_what_the_agents_metrics_need(base_venv: Path) -> None:
    python = str(base_venv / "bin" / "python")
    probe = run([python, "-c", "import prometheus_client, netpersona.agent.metrics"], cwd=base_venv)
    assert probe.returncode == 0, probe.stderr
    helped = netpersona(base_venv, "agent", "--help")
    assert "--metrics-listen" in helped.stdout
    assert "--metrics-textfile" in helped.stdout


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_base_install_has_no_web_stack_and_serve_says_what_to_install(
    base_venv: Path,
) -> None:
    python = str(base_venv / "bin" / "python")
    for module in ("fastapi", "uvicorn", "starlette", "uvloop", "httptools"):
        probe = run([python, "-c", f"import {module}"], cwd=base_venv)
        assert probe.returncode != 0, f"{module} is installed in the base environment"
    result = netpersona(base_venv, "serve", "--data-dir", str(base_venv / "data"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'netpersona[service]'" in lines[0]
    assert not (base_venv / "data").exists()
