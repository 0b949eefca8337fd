"""libnftables is found by the dynamic loader alone: loading it starts no process (this test
runs under the guard that refuses processes), so the first test, or the agent's first pass,
that asks for a runner gets the in-process one wherever the library is installed."""

from __future__ import annotations

import ctypes

import pytest

from netpersona.dataplane import nftlib


def test_the_library_loads_without_starting_a_process() -> None:
    try:
        ctypes.CDLL(nftlib.LIBRARY_NAME)
    except OSError:
        pytest.skip("libnftables is not installed")
    assert nftlib._library() is not None
