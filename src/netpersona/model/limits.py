"""How large and how deep a document may be, whoever sends it (a file, stdin, the HTTP API).

    limit                               persona     policy
    input (YAML or JSON text)           256 KiB     1 MiB
    nodes after expanding aliases       10,000      10,000
    nesting depth (mappings and lists)  32          32
    canonical JSON of the document      64 KiB      1 MiB
    digits of one integer               19          19
    integers (any field, x- values)     signed 64-bit; each field narrows it

A YAML alias costs nothing to write and everything to expand: the counts are of the expanded
document, computed once per node, so neither the count nor the text it stands for can blow up.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_INT_DIGITS",
    "PERSONA_LIMITS",
    "POLICY_LIMITS",
    "DocumentLimits",
    "size_text",
]

KIB = 1024
# Signed 64-bit: what SQLite, Go and most JSON consumers hold without loss.
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
# Enough for every 64-bit integer; parsing longer digit strings is quadratic in CPython and
# past 4,300 digits it raises (sys.get_int_max_str_digits), so they are refused unread.
MAX_INT_DIGITS = 19


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    what: str  # "persona" or "policy", for messages
    max_input_bytes: int
    max_canonical_bytes: int
    max_nodes: int = 10_000
    max_depth: int = 32

    def too_large(self) -> str:
        return f"is larger than {size_text(self.max_input_bytes)}, the most a {self.what} may be"

    def too_large_expanded(self) -> str:
        return (
            f"is larger than {size_text(self.max_input_bytes)} with its aliases expanded "
            f"(the most a {self.what} may be)"
        )

    def too_large_canonical(self, size: int | None = None) -> str:
        told = f"is {size:,} bytes" if size is not None else "is larger than that"
        return (
            f"{told} as canonical JSON; a {self.what} may be at most "
            f"{size_text(self.max_canonical_bytes)}"
        )

    def too_many(self) -> str:
        return (
            f"has more than {self.max_nodes:,} values with its aliases expanded "
            f"(the most a {self.what} may have)"
        )

    def too_deep(self) -> str:
        return f"nests deeper than {self.max_depth} levels of mappings and lists"


PERSONA_LIMITS = DocumentLimits("persona", max_input_bytes=256 * KIB, max_canonical_bytes=64 * KIB)
POLICY_LIMITS = DocumentLimits("policy", max_input_bytes=1024 * KIB, max_canonical_bytes=1024 * KIB)


def size_text(count: int) -> str:
    """``65536`` -> ``"64 KiB"``; exact counts stay exact (``"70,001 bytes"``)."""
    if count and count % (KIB * KIB) == 0:
        return f"{count // (KIB * KIB):,} MiB"
    if count and count % KIB == 0:
        return f"{count // KIB:,} KiB"
    return f"{count:,} bytes"
