"""Rates and sizes as tc(8) writes them.

Rates use SI multipliers (``kbit`` = 1000 bit/s) and sizes use binary ones (``kb`` = 1024
bytes), exactly as tc does, so a value an operator copies from a tc command line means the
same here. The ``bps`` forms are *bytes* per second, again as in tc(8): ``1mbps`` is 8 mbit/s.
"""

from __future__ import annotations

import re

from netpersona.errors import UnitError
from netpersona.model.quote import quote

__all__ = [
    "MAX_RATE_BPS",
    "MAX_SIZE_BYTES",
    "MIN_RATE_BPS",
    "UnitError",
    "format_rate",
    "parse_rate",
    "parse_size",
]

_RATE_UNITS = {
    "bit": 1,
    "kbit": 1_000,
    "mbit": 1_000_000,
    "gbit": 1_000_000_000,
    "tbit": 1_000_000_000_000,
    "bps": 8,
    "kbps": 8_000,
    "mbps": 8_000_000,
    "gbps": 8_000_000_000,
    "tbps": 8_000_000_000_000,
}
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024 * 1024}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")

# The rates every rate field can take, as the kernel holds them (docs/dataplane.md, "Rates
# and sizes in the kernel"; tests/dataplane/test_rate_bounds_kernel.py checks both ends).
# Below 48 bit/s (6 bytes/s) tc computes an HTB class's default burst (1600 bytes) as more
# timer ticks than fit in 32 bits, so the class gets a wrapped, meaningless burst.
MIN_RATE_BPS = 48
# nft_limit refuses (EOVERFLOW) a byte limit whose rate + burst, times 10^9 ns, overflows 64
# bits: rate + burst <= 18446744073 bytes/s. ingress_rate renders as rate/8 bytes/s with a
# default burst of rate/10, so 16769767339 bytes/s is the highest it can police.
MAX_RATE_BPS = 134_158_138_719
MAX_SIZE_BYTES = 64 * 1024 * 1024


def _parse(value: object, units: dict[str, int], kind: str, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, str):
        raise UnitError(f"{quote(value)} is not a {kind} (expected e.g. {example})")
    match = _NUMBER_UNIT.match(value.lower())
    if match is None or match.group(2) not in units:
        raise UnitError(f"{quote(value)} is not a {kind} (expected e.g. {example})")
    number, unit = match.groups()
    # Decimal arithmetic by hand keeps "1.5mbit" exact without floats.
    whole, _, frac = number.partition(".")
    scale = units[unit]
    return (
        int(whole) * scale + (int(frac) * scale) // (10 ** len(frac))
        if frac
        else int(whole) * scale
    )


def parse_rate(value: object) -> int:
    """``"100mbit"`` -> 100_000_000 (bits per second), within what the kernel can hold."""
    bits = _parse(value, _RATE_UNITS, "rate", "100mbit")
    if bits <= 0:
        raise UnitError(f"{quote(value)} is not a rate above zero")
    if bits < MIN_RATE_BPS:
        raise UnitError(
            f"{quote(value)} is below the smallest rate accepted "
            f"({MIN_RATE_BPS}bit, the least the kernel can enforce)"
        )
    if bits > MAX_RATE_BPS:
        raise UnitError(
            f"{quote(value)} is above the largest rate accepted "
            f"({MAX_RATE_BPS}bit, about 134gbit, the most the kernel can enforce)"
        )
    return bits


def parse_size(value: object) -> int:
    """``"64kb"`` -> 65536 (bytes)."""
    size = _parse(value, _SIZE_UNITS, "size", "64kb")
    if size <= 0:
        raise UnitError(f"{quote(value)} is not a size above zero")
    if size > MAX_SIZE_BYTES:
        raise UnitError(f"{quote(value)} is above the largest size accepted (64mb)")
    return size


def format_rate(bits_per_second: int) -> str:
    """The shortest exact tc spelling of a rate: 100_000_000 -> ``"100mbit"``."""
    for unit, scale in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bits_per_second % scale == 0:
            return f"{bits_per_second // scale}{unit}"
    return f"{bits_per_second}bit"
