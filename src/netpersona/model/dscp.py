"""DSCP code points (RFC 2474, 2597, 3246, 8622) and the priority mapping of spec section 6."""

from __future__ import annotations

from netpersona.errors import DscpError
from netpersona.model.quote import quote

__all__ = ["DSCP_NAMES", "PEER_DSCP_CODES", "PRIORITY_DSCP", "dscp_name", "parse_dscp"]

DSCP_NAMES: dict[str, int] = {
    "cs0": 0,
    "le": 1,
    "cs1": 8,
    "af11": 10,
    "af12": 12,
    "af13": 14,
    "cs2": 16,
    "af21": 18,
    "af22": 20,
    "af23": 22,
    "cs3": 24,
    "af31": 26,
    "af32": 28,
    "af33": 30,
    "cs4": 32,
    "af41": 34,
    "af42": 36,
    "af43": 38,
    "cs5": 40,
    "va": 44,
    "ef": 46,
    "cs6": 48,
    "cs7": 56,
}
_BY_VALUE = {value: name for name, value in DSCP_NAMES.items()}

# Spec section 6: priority 0..7 -> DSCP.
PRIORITY_DSCP: tuple[int, ...] = (0, 8, 10, 18, 26, 34, 40, 46)


# The code points a peer's DSCP may take on this VM's packets (spec section 6): every named
# one. A peer whose DSCP has no name is treated as holding its priority's code point.
PEER_DSCP_CODES: tuple[int, ...] = tuple(sorted(DSCP_NAMES.values()))


def parse_dscp(value: object) -> int:
    """A DSCP name (``af41``) or number (0..63) -> the 6-bit code point."""
    if isinstance(value, bool):
        raise DscpError(f"{quote(value)} is not a DSCP name or number 0..63")
    if isinstance(value, int):
        if 0 <= value <= 63:
            return value
        raise DscpError(f"{quote(value)} is not a DSCP number 0..63")
    if isinstance(value, str):
        name = value.strip().lower()
        if name in DSCP_NAMES:
            return DSCP_NAMES[name]
        # ASCII digits only: str.isdigit() is true of "²", which int() refuses.
        if name.isascii() and name.isdigit() and len(name) <= 2 and int(name) <= 63:
            return int(name)
    raise DscpError(f"{quote(value)} is not a DSCP name (e.g. af41, ef, cs5) or number 0..63")


def dscp_name(value: int) -> str:
    """The nftables spelling: a name where one exists, else the number."""
    return _BY_VALUE.get(value, str(value))
