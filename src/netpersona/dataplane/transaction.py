"""One apply's undo log (:class:`Transaction`) and what the applier says it did
(:class:`ApplyReport`); :mod:`netpersona.dataplane.apply` runs them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from netpersona.compiler.plan import TABLE_FAMILY, TABLE_NAME
from netpersona.dataplane.snapshot import PARTS
from netpersona.errors import NetpersonaError
from netpersona.model.jsontree import JSON

__all__ = ["ApplyReport", "Transaction", "restore_table_text"]

# The first word of a step's description -> the snapshot part it changes.
_PART_OF = {
    "link": "links",
    "sysctl": "sysctls",
    "tc": "tc",
    "route": "routes",
    "rule": "rules",
    "nftables": "nftables",
}


@dataclass(frozen=True, slots=True)
class ApplyReport:
    action: str  # "apply" or "remove"
    persona: str | None
    steps: tuple[str, ...]  # what was changed, in order (also on failure: what was undone)
    unchanged: bool = False
    failed: str | None = None  # the error that stopped the apply
    rollback_held: bool | None = None  # None: no rollback was needed
    rollback_problems: tuple[str, ...] = ()
    seconds: float = 0.0

    def to_json(self) -> JSON:
        return {
            "action": self.action,
            "persona": self.persona,
            "steps": list(self.steps),
            "unchanged": self.unchanged,
            "failed": self.failed,
            "rollback_held": self.rollback_held,
            "rollback_problems": list(self.rollback_problems),
            "seconds": round(self.seconds, 4),
        }


def restore_table_text(listing: str | None) -> str:
    """An ``nft -f`` script that puts the table back as listed (or removes it), atomically."""
    head = f"add table {TABLE_FAMILY} {TABLE_NAME}\ndelete table {TABLE_FAMILY} {TABLE_NAME}\n"
    return head + (listing or "")


@dataclass
class Transaction:
    """The undo log. A step is logged before it runs: a command that fails may still have
    taken effect (a timeout, a partial batch of iproute2), so its undo is tried as well; an
    undo of such a step that fails is not an error, the readback after rollback judges."""

    steps: list[tuple[str, Callable[[], None] | None]] = field(default_factory=list)
    completed: int = 0

    def step(self, what: str, do: Callable[[], None], undo: Callable[[], None] | None) -> None:
        self.steps.append((what, undo))
        do()
        self.completed += 1

    @property
    def parts(self) -> set[str]:
        """The snapshot parts the steps changed (snapshot.PARTS), to read back."""
        found = set()
        for what, _ in self.steps:
            part = _PART_OF.get(what.split(maxsplit=1)[0].rstrip(":"))
            if part is None:  # a step of a kind not named here: read everything back
                return set(PARTS)
            found.add(part)
            if part == "links":  # an MTU can add or remove a link's IPv6 sysctls
                found.add("sysctls")
        return found

    def rollback(self) -> list[str]:
        problems = []
        for index in reversed(range(len(self.steps))):
            what, undo = self.steps[index]
            if undo is None:
                continue
            try:
                undo()
            except NetpersonaError as exc:
                if index < self.completed:
                    problems.append(f"undo of {what!r} failed: {exc}")
        return problems

    @property
    def descriptions(self) -> tuple[str, ...]:
        return tuple(what for what, _ in self.steps)
