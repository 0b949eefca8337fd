"""The .deb scripts/build makes: what it installs and where, read from the package itself,
its units verified as extracted, its program run from the extraction; and, in CI only (a
throwaway machine, as root), installed with apt, checked, and purged."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.packaging.test_wheel import UV

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.subprocess,
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="not a Debian system"),
]


def output(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{argv}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if UV is None:
        pytest.fail("uv is needed to build the package (scripts/setup installs it)")
    out = tmp_path_factory.mktemp("deb")
    env = {
        **os.environ,
        "OUT": str(out),
        "DEB_COMPRESSION": "none",  # the same files; only the build is quicker
        "PATH": f"{Path(UV).parent}:{os.environ['PATH']}",
    }
    built = subprocess.run(
        [str(ROOT / "scripts" / "build")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (package,) = out.glob("netpersona_*.deb")
    return package


@pytest.fixture(scope="module")
def extracted(deb: Path) -> Path:
    root = deb.parent / "root"
    output(["dpkg-deb", "-x", str(deb), str(root)])
    return root


def getpwnam(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def field(deb: Path, name: str) -> str:
    return output(["dpkg-deb", "-f", str(deb), name]).strip()


def test_control_fields(deb: Path) -> None:
    assert field(deb, "Package") == "netpersona"
    assert field(deb, "Version") == "0.1.0-1"
    depends = {d.strip() for d in field(deb, "Depends").split(",")}
    # The kernel tools the agent runs, and the Python its compiled libraries are built for.
    assert {"nftables", "iproute2", "procps", "python3.11", "adduser"} <= depends
    info = output(["dpkg-deb", "-I", str(deb)])
    for script in ("postinst", "prerm", "postrm", "conffiles"):
        assert script in info


def test_files_are_root_owned_and_in_their_places(deb: Path) -> None:
    listing = output(["dpkg-deb", "-c", str(deb)])
    lines = listing.splitlines()
    assert all(" root/root " in line for line in lines)
    names = {line.split()[5] for line in lines}
    expected = {
        "./usr/bin/netpersona",
        "./lib/systemd/system/netpersona-agent.service",
        "./lib/systemd/system/netpersona-serve.service",
        "./etc/default/netpersona-agent",
        "./etc/default/netpersona-serve",
        "./usr/share/doc/netpersona/install.md",
        "./usr/share/doc/netpersona/copyright",
    }
    assert expected <= names
    assert re.search(r"\./usr/bin/netpersona -> \.\./lib/netpersona/bin/netpersona\n", listing)


def test_modes_let_the_service_user_read_and_nobody_but_root_write(deb: Path) -> None:
    for line in output(["dpkg-deb", "-c", str(deb)]).splitlines():
        mode, name = line.split()[0], line.split()[5]
        if mode.startswith("l"):
            continue
        assert mode[5] != "w", f"{name} is group-writable: {mode}"
        assert mode[8] != "w", f"{name} is world-writable: {mode}"
        assert mode[7] == "r", f"{name} is not readable by the service's user: {mode}"
        if mode.startswith("d"):
            assert mode == "drwxr-xr-x", f"{name}: {mode}"


def test_defaults_are_conffiles(deb: Path, tmp_path: Path) -> None:
    output(["dpkg-deb", "-e", str(deb), str(tmp_path)])
    conffiles = (tmp_path / "conffiles").read_text().split()
    assert conffiles == ["/etc/default/netpersona-agent", "/etc/default/netpersona-serve"]
    postinst = (tmp_path / "postinst").read_text()
    assert "adduser --system --group" in postinst
    assert "getent passwd netpersona" in postinst  # runs again without failing
    assert "purge" in (tmp_path / "postrm").read_text()


def test_units_documentation_is_installed(extracted: Path) -> None:
    for unit in (extracted / "lib/systemd/system").glob("netpersona-*.service"):
        # Documentation= may be given more than once; each line adds to the list.
        urls = re.findall(r"^Documentation=(.*)$", unit.read_text(), re.MULTILINE)
        assert urls
        for url in " ".join(urls).split():
            path = url.removeprefix("file://")
            assert (extracted / path.lstrip("/")).is_file(), f"{unit.name}: {url}"


def test_extracted_units_verify_with_the_packaged_program(extracted: Path) -> None:
    systemd = Path("/usr/lib/systemd/system")
    if shutil.which("systemd-analyze") is None or not systemd.is_dir():
        pytest.skip("systemd-analyze is not installed")
    shutil.copytree(systemd, extracted / "usr/lib/systemd/system", symlinks=True)
    units = sorted(
        f"/lib/systemd/system/{u.name}" for u in (extracted / "lib/systemd/system").iterdir()
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={extracted}", *units],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_the_packaged_program_runs_with_its_own_libraries(extracted: Path) -> None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    program = str(extracted / "usr/bin/netpersona")
    version = subprocess.run(
        [program, "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd="/",
        check=False,
    )
    assert version.stdout.strip() == "netpersona 0.1.0", version.stderr
    # The service's libraries are in the package too: it installs the agent and the service.
    python = str(extracted / "usr/lib/netpersona/bin/python")
    check = subprocess.run(
        [python, "-c", "import netpersona.service, uvicorn, uvloop, httptools"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def package_status(package: str) -> tuple[str, str] | None:
    """dpkg's status and version of ``package`` (None: dpkg does not know it at all)."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Version}", package],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    status, _, version = result.stdout.partition("|")
    if result.returncode != 0 or status.startswith("un"):
        return None
    return status.strip(), version


def apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", "-y", "-q", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def exposure(unit: str) -> float:
    """``systemd-analyze security``'s overall exposure of an installed unit (0 best, 10 worst)."""
    text = output(["systemd-analyze", "security", "--offline=yes", f"/lib/systemd/system/{unit}"])
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", text)
    assert found, text
    return float(found.group(1))


def test_apt_installs_the_package_and_purge_removes_all_of_it(deb: Path) -> None:
    """What docs/install.md promises, on the machine itself: apt installs the local .deb with
    its dependencies, the units verify, the program runs from /usr/bin, the service's user is
    made; purge takes all of it away. CI only: it changes the machine's packages and users."""
    if os.environ.get("CI") != "true":
        pytest.skip("installs a package on this machine: only in CI (CI=true), a throwaway one")
    if os.geteuid() != 0:
        pytest.fail("installing a package needs root")
    known = package_status("netpersona")
    if known is not None or Path("/usr/lib/netpersona").exists():
        state = f"dpkg status {known[0]}, version {known[1]}" if known else "/usr/lib/netpersona"
        pytest.skip(
            f"a netpersona package is already on this machine ({state}), not installed by this "
            "test: it installs and purges only its own"
        )
    if getpwnam("netpersona") is not None:
        pytest.skip("a netpersona user already exists here, and not by this test")
    try:
        done = apt("install", str(deb))
        assert done.returncode == 0, done.stdout + done.stderr
        assert package_status("netpersona") == ("ii", "0.1.0-1")
        units = sorted(str(u) for u in Path("/lib/systemd/system").glob("netpersona-*.service"))
        assert [Path(u).name for u in units] == [
            "netpersona-agent.service",
            "netpersona-serve.service",
        ]
        verified = subprocess.run(
            ["systemd-analyze", "verify", *units],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert verified.returncode == 0, verified.stderr
        assert verified.stderr == ""
        assert exposure("netpersona-agent.service") <= 2.5
        assert exposure("netpersona-serve.service") <= 2.5
        version = subprocess.run(
            ["/usr/bin/netpersona", "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            check=False,
        )
        assert version.stdout.strip() == "netpersona 0.1.0", version.stderr
        user = getpwnam("netpersona")
        assert user is not None
        assert user.pw_uid < 1000  # a system user
        assert user.pw_shell == "/usr/sbin/nologin"
        # The service's user can run the packaged program (every file is readable to it).
        as_user = subprocess.run(
            ["runuser", "-u", "netpersona", "--", "/usr/bin/netpersona", "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            check=False,
        )
        assert as_user.returncode == 0, as_user.stderr
    finally:
        purged = apt("purge", "netpersona")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert package_status("netpersona") is None
    assert getpwnam("netpersona") is None
    for path in (
        "/usr/lib/netpersona",
        "/usr/bin/netpersona",
        "/lib/systemd/system/netpersona-agent.service",
        "/etc/default/netpersona-agent",
        "/var/lib/netpersona-service",
    ):
        assert not Path(path).exists(), path
