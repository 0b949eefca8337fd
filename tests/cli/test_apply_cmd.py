"""``netpersona apply | confirm | remove | status`` against a throwaway namespace."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from netpersona.cli.apply_cmd import CHECK_DIFFERS
from netpersona.cli.main import app
from netpersona.dataplane import LinuxKernel
from netpersona.dataplane.host_probe import gather_facts
from netpersona.dataplane.state import StateStore
from netpersona.facts import Tier
from netpersona.testing.topology import Lab, lab
from tests.cli.cli_doc import documented_json
from tests.dataplane.personas import PERSONA_A, PERSONA_B

pytestmark = pytest.mark.kernel

runner = CliRunner()


@pytest.fixture
def net() -> Iterator[Lab]:
    with lab() as built:
        yield built


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(PERSONA_A)
    b.write_text(PERSONA_B)
    return a, b, tmp_path / "state"


def test_facts_auto_reads_uplinks_addresses_and_gateways(net: Lab) -> None:
    facts = gather_facts(LinuxKernel(net.vm.name), tiers={"eth1": Tier.STANDARD})
    # Only eth1 carries the default route, so it is the uplink.
    assert [u.name for u in facts.uplinks] == ["eth1"]
    uplink = facts.uplinks[0]
    assert [str(a) for a in uplink.addresses] == ["10.78.0.1/24"]
    assert str(uplink.gateway4) == "10.78.0.2"
    assert uplink.tier is Tier.STANDARD
    assert facts.control_port == 7480


def test_check_apply_status_drift_and_remove(net: Lab, tmp_path: Path) -> None:
    a, _, state = _files(tmp_path)
    common = ["--state-dir", str(state), "--netns", net.vm.name]

    code, output = _cli("apply", str(a), "--check", *common)
    assert code == CHECK_DIFFERS, output
    assert "table inet netpersona is missing" in output
    code, output = _cli("apply", str(a), "--check", "-o", "json", *common)
    assert code == CHECK_DIFFERS, output
    differences = json.loads(output)
    assert sorted(differences) == sorted(documented_json()["apply --check"][1])
    assert "nftables: table inet netpersona is missing" in differences["differences"]

    code, output = _cli("apply", str(a), *common)
    assert code == 0, output
    assert "apply a:" in output
    code, output = _cli("apply", str(a), "--check", *common)
    assert code == 0, output

    code, output = _cli("status", "-o", "json", *common)
    assert code == 0, output
    status = json.loads(output)
    assert status["persona"] == "a"
    assert status["drift"] == []
    assert "drop_protocol" in status["drops"]

    # Someone else changes what the agent owns: status names it.
    net.vm.run(["sysctl", "-w", "net.ipv4.conf.eth1.rp_filter=0"])
    net.vm.run(["nft", "flush", "chain", "inet", "netpersona", "in_new"])
    code, output = _cli("status", *common)
    assert code == 0, output
    assert "net.ipv4.conf.eth1.rp_filter is '0', planned '2'" in output
    assert "chain in_new has 0 rules" in output

    code, output = _cli("remove", *common)
    assert code == 0, output
    assert net.vm.run(["nft", "list", "tables"]).stdout == ""
    code, output = _cli("status", *common)
    assert "no persona applied" in output


def test_apply_and_remove_print_the_documented_json(net: Lab, tmp_path: Path) -> None:
    a, _, state = _files(tmp_path)
    common = ["--state-dir", str(state), "--netns", net.vm.name]
    documented = documented_json()

    code, output = _cli("apply", str(a), "-o", "json", *common)
    assert code == 0, output
    report = json.loads(output)
    assert sorted(report) == sorted(documented["apply"][1])
    assert report["action"] == "apply"
    assert report["persona"] == "a"
    assert report["steps"]
    assert report["unchanged"] is False
    assert report["failed"] is None
    assert report["rollback_held"] is None
    assert net.vm.run(["nft", "list", "table", "inet", "netpersona"]).returncode == 0

    code, output = _cli("apply", str(a), "-o", "json", *common)
    assert code == 0, output
    again = json.loads(output)
    assert sorted(again) == sorted(documented["apply"][1])
    assert again["unchanged"] is True
    assert again["steps"] == []

    code, output = _cli("remove", "-o", "json", *common)
    assert code == 0, output
    removed = json.loads(output)
    assert sorted(removed) == sorted(documented["remove"][1])
    assert removed["action"] == "remove"
    assert removed["steps"]
    assert removed["failed"] is None
    assert net.vm.run(["nft", "list", "tables"]).stdout == ""


def _wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)


def test_unconfirmed_apply_reverts_and_confirmed_one_stays(net: Lab, tmp_path: Path) -> None:
    a, b, state = _files(tmp_path)
    common = ["--state-dir", str(state), "--netns", net.vm.name]
    store = StateStore(state)
    assert _cli("apply", str(a), *common)[0] == 0

    code, output = _cli("apply", str(b), "--confirm-timeout", "1", *common)
    assert code == 0, output
    assert "netpersona confirm" in output
    loaded = store.load()
    assert loaded is not None
    assert loaded.persona == "b"

    def reverted() -> bool:
        current = store.load()
        return current is not None and current.persona == "a" and current.pending is None

    _wait_for(reverted, 15)
    assert reverted(), (state / "trial.log").read_text()
    code, _ = _cli("apply", str(a), "--check", *common)
    assert code == 0

    code, output = _cli("apply", str(b), "--confirm-timeout", "1", *common)
    assert code == 0, output
    code, output = _cli("confirm", "--state-dir", str(state))
    assert code == 0, output
    time.sleep(2.5)
    kept = store.load()
    assert kept is not None
    assert kept.persona == "b"
    assert kept.pending is None
    assert _cli("apply", str(b), "--check", *common)[0] == 0
    assert _cli("remove", *common)[0] == 0
