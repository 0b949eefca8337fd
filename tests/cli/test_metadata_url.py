"""``apply --metadata-url`` takes the agent's URL (or the older ADDR:PORT) for the endpoint the
firewall keeps open."""

from __future__ import annotations

import pytest

from netpersona.cli.apply_cmd import _endpoint_text
from netpersona.errors import InvalidDocument


@pytest.mark.parametrize(
    ("given", "endpoint"),
    [
        ("http://169.254.169.254", "169.254.169.254:80"),
        ("http://10.0.0.1:8080/", "10.0.0.1:8080"),
        ("https://10.0.0.1", "10.0.0.1:443"),
        ("http://[fd00::1]:8080", "[fd00::1]:8080"),
        ("10.0.0.1:8080", "10.0.0.1:8080"),
    ],
)
def test_a_url_becomes_the_endpoint(given: str, endpoint: str) -> None:
    assert _endpoint_text(given) == endpoint


@pytest.mark.parametrize("given", ["http://", "http://10.0.0.1:99999"])
def test_a_url_without_a_host_or_port_is_refused_naming_it(given: str) -> None:
    with pytest.raises(InvalidDocument) as raised:
        _endpoint_text(given)
    assert given in str(raised.value)
