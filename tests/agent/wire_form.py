"""Whether the metadata service under test sends the persona answer's v1 form.

The agent takes ``GET /v1/instance/network_persona`` only with its ``assigned`` field (an answer
without it is malformed, so that ``{}`` can never read as "remove the persona"). Tests that run
the agent against the real service need a service that sends it; against one that does not
yet, they are skipped with that reason rather than failing for it.
"""

from __future__ import annotations

import sys

import pytest

from netpersona.testing.netns import Netns

__all__ = ["skip_unless_v1_persona_answer"]

PROBE = """
import json, sys, urllib.request
base = sys.argv[1]
put = urllib.request.Request(
    base + "/v1/token", method="PUT", headers={"X-Netpersona-Token-TTL-Seconds": "60"}
)
token = urllib.request.urlopen(put, timeout=10).read().decode()
get = urllib.request.Request(
    base + "/v1/instance/network_persona", headers={"X-Netpersona-Token": token}
)
print("assigned" in json.loads(urllib.request.urlopen(get, timeout=10).read()))
"""


def skip_unless_v1_persona_answer(vm: Netns, url: str) -> None:
    """Ask the service as ``vm`` would; skip the test when the answer has no ``assigned``."""
    answer = vm.run([sys.executable, "-c", PROBE, url]).stdout.strip()
    if answer != "True":
        pytest.skip("the service does not send the persona answer's `assigned` field yet")
