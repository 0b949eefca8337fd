"""The default lab scenario, decided without a kernel: the matrix the lab proves with packets."""

from __future__ import annotations

from pathlib import Path

import pytest

from netpersona.lab.expect import ProbeKind
from netpersona.lab.matrix import expected_matrix, planned_hosts, probes_for
from netpersona.lab.scenario import load_scenario
from netpersona.reachability import can_reach, connectivity_changes

SCENARIO = Path(__file__).resolve().parents[2] / "examples" / "lab" / "scenario.yaml"


@pytest.fixture(scope="module")
def low() -> dict[tuple[str, str, ProbeKind], bool | None]:
    scenario = load_scenario(SCENARIO)
    return expected_matrix(planned_hosts(scenario, scenario.context), scenario.probes)


@pytest.fixture(scope="module")
def high() -> dict[tuple[str, str, ProbeKind], bool | None]:
    scenario = load_scenario(SCENARIO)
    return expected_matrix(planned_hosts(scenario, scenario.raised_context), scenario.probes)


def test_every_pair_and_probe_is_decided(
    low: dict[tuple[str, str, ProbeKind], bool | None],
) -> None:
    assert len(low) == 8 * 7 * len(ProbeKind)
    assert sum(v is not None for v in low.values()) > 300


def test_the_database_takes_postgres_from_the_api_only(
    low: dict[tuple[str, str, ProbeKind], bool | None],
) -> None:
    assert low[("api1", "db1", ProbeKind.TCP_ALLOWED)] is True
    assert low[("web1", "db1", ProbeKind.TCP_ALLOWED)] is False
    assert low[("admin1", "db1", ProbeKind.TCP_ALLOWED)] is False
    assert low[("api1", "db1", ProbeKind.TCP_DENIED)] is False


def test_discovery_broadcasts_until_the_threat_level_is_high(
    low: dict[tuple[str, str, ProbeKind], bool | None],
    high: dict[tuple[str, str, ProbeKind], bool | None],
) -> None:
    assert low[("disc1", "disc2", ProbeKind.BROADCAST)] is True
    assert high[("disc1", "disc2", ProbeKind.BROADCAST)] is False
    assert low[("media1", "media2", ProbeKind.MULTICAST_LISTED)] is True
    assert low[("media1", "media2", ProbeKind.MULTICAST_UNLISTED)] is False


def test_the_verdict_names_the_counter_the_lab_would_see_move() -> None:
    """admin1 (low profile) sends postgres; db1 is restricted to the api and drops it."""
    scenario = load_scenario(SCENARIO)
    hosts = {h.name: h for h in planned_hosts(scenario, scenario.context)}
    probe = probes_for(hosts["admin1"], hosts["db1"], scenario.probes)[ProbeKind.TCP_ALLOWED]
    assert probe is not None
    verdict = can_reach(hosts["admin1"], hosts["db1"], probe.traffic())
    assert verdict.decisive is not None
    assert (verdict.decisive.vm, verdict.decisive.counter) == ("db1", "drop_not_peer")


def test_raising_the_threat_level_changes_exactly_the_pairs_the_matrices_differ_on() -> None:
    scenario = load_scenario(SCENARIO)
    before = {h.name: h for h in planned_hosts(scenario, scenario.context)}
    after = {h.name: h for h in planned_hosts(scenario, scenario.raised_context)}
    changes = connectivity_changes(before, after)
    assert changes
    for change in changes:
        assert change.before.reachable != change.after.reachable
    lost = {(c.src, c.dst, c.service) for c in changes if not c.gained}
    assert ("admin1", "disc1", "dns") in lost  # high admin1 sends only its own protocols
    # Discovery stops broadcasting: the blast radius says so, not only the persona diff.
    assert ("disc1", "disc2", "udp/6000-6010 broadcast") in lost
