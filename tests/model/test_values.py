"""Rates, sizes, DSCP and protocol entries: the small grammars of a persona."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netpersona.errors import DscpError, InvalidValue, UnitError
from netpersona.model.dscp import PRIORITY_DSCP, dscp_name, parse_dscp
from netpersona.model.labels import check_label_key, check_label_value, check_persona_name
from netpersona.model.protocols import (
    L4,
    SERVICES,
    PortRange,
    ProtocolError,
    ProtocolRule,
    parse_protocol,
)
from netpersona.model.quote import quote
from netpersona.model.units import MAX_RATE_BPS, MIN_RATE_BPS, format_rate, parse_rate, parse_size


@pytest.mark.parametrize(
    ("text", "bits"),
    [
        ("100mbit", 100_000_000),
        ("1gbit", 1_000_000_000),
        ("10kbit", 10_000),
        ("500bit", 500),
        ("1.5mbit", 1_500_000),
        ("100Mbit", 100_000_000),
        # tc(8): the bps forms are bytes per second.
        ("1mbps", 8_000_000),
        ("125kbps", 1_000_000),
    ],
)
def test_rates_follow_tc(text: str, bits: int) -> None:
    assert parse_rate(text) == bits


@pytest.mark.parametrize(("text", "size"), [("64kb", 65536), ("1mb", 1048576), ("1500b", 1500)])
def test_sizes_follow_tc(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["fast", "100", 100, "mbit", "-5mbit", "10 furlongs", True, None])
def test_bad_rates_are_refused(bad: object) -> None:
    with pytest.raises(UnitError):
        parse_rate(bad)


@given(st.integers(min_value=MIN_RATE_BPS, max_value=MAX_RATE_BPS))
def test_format_rate_round_trips(bits: int) -> None:
    assert parse_rate(format_rate(bits)) == bits


def test_priority_dscp_table_is_spec_section_6() -> None:
    names = [dscp_name(v) for v in PRIORITY_DSCP]
    assert names == ["cs0", "cs1", "af11", "af21", "af31", "af41", "cs5", "ef"]


@pytest.mark.parametrize(
    ("value", "code"), [("af41", 34), ("EF", 46), (46, 46), ("63", 63), ("cs0", 0)]
)
def test_dscp_names_and_numbers(value: object, code: int) -> None:
    assert parse_dscp(value) == code


def test_protocol_entries() -> None:
    assert parse_protocol("tcp").rules == (ProtocolRule(L4.TCP),)
    assert parse_protocol("tcp/22").rules == (ProtocolRule(L4.TCP, PortRange(22, 22)),)
    assert parse_protocol("udp/5000-5010").rules == (ProtocolRule(L4.UDP, PortRange(5000, 5010)),)
    assert parse_protocol("postgres").rules == (ProtocolRule(L4.TCP, PortRange(5432, 5432)),)
    assert {str(r) for r in parse_protocol("dns").rules} == {"udp/53", "tcp/53"}


def test_service_table_has_the_names_the_spec_requires() -> None:
    required = "ssh http https dns ntp dhcp mdns postgres mysql redis amqp mqtt kafka smtp ldap"
    required += " syslog snmp"
    assert set(required.split()) <= set(SERVICES)


def test_unknown_protocol_message_points_to_the_table() -> None:
    with pytest.raises(ProtocolError, match="netpersona protocols"):
        parse_protocol("quic")


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_rate, "1" * 5000 + "mbit"),  # int() of 5,000 digits raises, not UnitError
        (parse_rate, "1." + "1" * 5000 + "mbit"),
        (parse_rate, "\u0661\u0660mbit"),  # Arabic-Indic digits: \d matched them
        (parse_size, "\uff16\uff14kb"),  # full-width digits
        (parse_dscp, "\u00b2"),  # "²".isdigit() is true, int("²") raises
        (parse_dscp, "0" * 5000 + "1"),
        (parse_protocol, "tcp/\u0662\u0662"),
    ],
)
def test_grammars_take_ascii_digits_only(parse: Callable[[object], object], text: str) -> None:
    with pytest.raises(InvalidValue):
        parse(text)


@pytest.mark.parametrize(
    "check",
    [
        lambda: check_persona_name("web\n"),
        lambda: check_label_value("prod\n"),
        lambda: check_label_key("app\n"),
        lambda: check_label_key("example.com\n/app"),
    ],
)
def test_names_with_a_trailing_newline_are_refused(check: Callable[[], str | None]) -> None:
    """``$`` in a regular expression also matches before a final newline."""
    assert check() is not None


def test_quote_never_expands_or_fails_on_what_it_shows() -> None:
    """An error message quotes the bad value: a shared-reference bomb, a cycle or an integer of
    thousands of digits must cost no more than the 80 characters shown."""
    bomb: object = ["lol"] * 9
    for _ in range(40):
        bomb = [bomb] * 9
    shown = quote(bomb)
    assert len(shown) == 80
    assert shown.startswith("[" * 41 + '"lol", ')
    cycle: list[object] = []
    cycle.append(cycle)
    assert quote(cycle) == "[..."
    assert quote(10**5000) == "an integer of about 5,001 digits"
    assert quote([10**5000]) == "<list>"
    assert quote({1: "a", "b": 2}) == "{..."
    assert quote("x" * 100) == '"' + "x" * 76 + "..."


@pytest.mark.parametrize("value", [64, -1, 2**63, 10**4300], ids=["64", "-1", "2^63", "10^4300"])
def test_dscp_numbers_out_of_range_are_errors_whatever_their_size(value: int) -> None:
    """str() of an integer past 4,300 digits raises ValueError: the message must not use it."""
    with pytest.raises(DscpError, match=r"is not a DSCP number 0\.\.63"):
        parse_dscp(value)
