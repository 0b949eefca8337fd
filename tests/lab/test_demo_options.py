"""``lab demo --wrong-expectation`` is checked before anything is built."""

from __future__ import annotations

import pytest

from netpersona.cli.lab_cmd import _wrong_expectation
from netpersona.errors import UsageError
from netpersona.lab.expect import ProbeKind
from netpersona.lab.scenario import DEFAULT_SCENARIO, load_scenario

SCENARIO = load_scenario(DEFAULT_SCENARIO)


def test_a_probe_of_the_scenario_is_taken() -> None:
    assert _wrong_expectation("web1,api1,tcp-allowed", SCENARIO) == {
        ("web1", "api1", ProbeKind.TCP_ALLOWED)
    }
    assert _wrong_expectation(None, SCENARIO) == set()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("web1,api1", "expected SRC,DST,PROBE"),
        ("web9,api1,udp", "SRC 'web9' is not a VM of the scenario (web1, api1,"),
        ("web1,api9,udp", "DST 'api9' is not a VM"),
        ("web1,web1,udp", "SRC and DST are the same VM"),
        ("web1,api1,sctp", "PROBE 'sctp' is not one of tcp-allowed, tcp-denied, udp,"),
    ],
)
def test_a_bad_value_names_the_option_and_the_value(text: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        _wrong_expectation(text, SCENARIO)
    assert f"--wrong-expectation {text!r}" in str(caught.value)
    assert says in str(caught.value)
