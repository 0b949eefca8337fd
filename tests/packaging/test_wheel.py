"""The wheel, installed alone in a fresh environment outside the repository, is a working
agent and CLI without the web stack; the service's commands say what to install. Installed
with the ``[service]`` extra, it runs the main job, ``netpersona lab demo``, green."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netpersona.cli.lab_cmd import RUN_DIR
from netpersona.lab.scenario import DEFAULT_SCENARIO, load_scenario
from netpersona.system.netns import list_netns

ROOT = Path(__file__).resolve().parents[2]
UV = os.environ.get("UV") or shutil.which("uv")
VMS = [vm.name for vm in load_scenario(DEFAULT_SCENARIO).vms]


def run(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built once for every environment below."""
    if UV is None:
        pytest.fail("uv is needed to build the wheel (scripts/setup installs it)")
    work = tmp_path_factory.mktemp("wheel")
    built = run([UV, "build", "--wheel", "-q", "-o", str(work), str(ROOT)], cwd=work)
    assert built.returncode == 0, built.stderr
    (found,) = work.glob("netpersona-*.whl")
    return found


def fresh_venv(wheel: Path, work: Path, *extras: str) -> Path:
    """A new virtual environment in ``work`` with the wheel (and ``extras``) installed, at the
    locked versions of its dependencies (from uv's cache when it has them)."""
    assert UV is not None
    export = [UV, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "-q"]
    for extra in extras:
        export += ["--extra", extra]
    locked = run(export, cwd=ROOT)
    assert locked.returncode == 0, locked.stderr
    (work / "requirements.txt").write_text(locked.stdout)
    venv = work / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=work)
    assert made.returncode == 0, made.stderr
    python = str(venv / "bin" / "python")
    target = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
    argv = [UV, "pip", "install", "-q", "--python", python, "-r", "requirements.txt", target]
    installed = run(argv, cwd=work)
    assert installed.returncode == 0, installed.stderr
    return venv


@pytest.fixture(scope="module")
def base_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_venv(wheel, tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def service_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_venv(wheel, tmp_path_factory.mktemp("service"), "service")


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


@pytest.mark.slow
@pytest.mark.kernel
def test_lab_demo_runs_green_from_the_wheel_with_the_service_extra(
    service_venv: Path, tmp_path: Path
) -> None:
    """The main job, in full (8 VMs, both contexts), from the installed wheel alone: its own
    default scenario, its own service and agents, run from a directory outside the repo."""
    assert not tmp_path.is_relative_to(ROOT)
    assert not service_venv.is_relative_to(ROOT)
    prefix = f"npwheel{os.getpid() % 100000}"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "COLUMNS": "160"}
    before = set(list_netns())
    try:
        done = subprocess.run(
            [str(service_venv / "bin" / "netpersona"), "lab", "demo", "--prefix", prefix],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        out = done.stdout
        assert done.returncode == 0, out + done.stderr
        assert "PASS: every probe agrees with the spec" in out, out
        checked = re.findall(r"(\d+)/(\d+) probes agree with the spec", out)
        assert len(checked) == 2, out
        assert all(agreed == total and int(total) > 300 for agreed, total in checked), checked
        assert str(service_venv) in out  # the scenario is the installed one
        assert "lab removed" in out
        # Every namespace the run made is gone, by exact name: the hypervisor's and each VM's.
        found = re.search(rf"namespaces ({prefix}-[0-9a-f]{{6}})-hv", out)
        assert found, out
        made = {f"{found.group(1)}-{name}" for name in ("hv", *VMS)}
        after = set(list_netns())
        assert made & after == set()
        assert {n for n in after - before if n.startswith(f"{prefix}-")} == set()
    finally:
        (RUN_DIR / f"{prefix}.lock").unlink(missing_ok=True)
