"""Rates and sizes as tc(8) writes them.

Rates use SI multipliers (``kbit`` = 1000 bit/s) and sizes use binary ones (``kb`` = 1024
bytes), exactly as tc does, so a value an operator copies from a tc command line means the
same here. The ``bps`` forms are *bytes* per second, again as in tc(8): ``1mbps`` is 8 mbit/s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
# ASCII digits only (\d would take any script's), and never more than int() reads quickly.
_NUMBER_UNIT = re.compile(r"^\s*([0-9]{1,19}(?:\.[0-9]{1,19})?)\s*([a-z]+)\s*$")

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


@dataclass(frozen=True, slots=True)
class _Grammar:
    kind: str
    units: dict[str, int]
    example: str
    largest: int
    largest_text: str
    smallest: int = 1
    smallest_text: str = ""

    def parse(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, str):
            raise UnitError(f"{quote(value)} is not a {self.kind} (expected e.g. {self.example})")
        match = _NUMBER_UNIT.match(value.lower())
        if match is None or match.group(2) not in self.units:
            raise UnitError(f"{quote(value)} is not a {self.kind} (expected e.g. {self.example})")
        number, unit = match.groups()
        # Decimal arithmetic by hand keeps "1.5mbit" exact without floats.
        whole, _, frac = number.partition(".")
        scale = self.units[unit]
        amount: int = int(whole) * scale + (int(frac or "0") * scale) // (10 ** len(frac))
        if amount <= 0:
            raise UnitError(f"{quote(value)} is not a {self.kind} above zero")
        if amount < self.smallest:
            raise UnitError(
                f"{quote(value)} is below the smallest {self.kind} accepted ({self.smallest_text})"
            )
        if amount > self.largest:
            raise UnitError(
                f"{quote(value)} is above the largest {self.kind} accepted ({self.largest_text})"
            )
        return amount


_RATE = _Grammar(
    "rate",
    _RATE_UNITS,
    "100mbit",
    MAX_RATE_BPS,
    f"{MAX_RATE_BPS}bit, about 134gbit, the most the kernel can enforce",
    MIN_RATE_BPS,
    f"{MIN_RATE_BPS}bit, the least the kernel can enforce",
)
_SIZE = _Grammar("size", _SIZE_UNITS, "64kb", MAX_SIZE_BYTES, "64mb")


def parse_rate(value: object) -> int:
    """``"100mbit"`` -> 100_000_000 (bits per second), within what the kernel can hold."""
    return _RATE.parse(value)


def parse_size(value: object) -> int:
    """``"64kb"`` -> 65536 (bytes)."""
    return _SIZE.parse(value)


def format_rate(bits_per_second: int) -> str:
    """The shortest exact tc spelling of a rate: 100_000_000 -> ``"100mbit"``."""
    for unit, scale in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bits_per_second % scale == 0:
            return f"{bits_per_second // scale}{unit}"
    return f"{bits_per_second}bit"
