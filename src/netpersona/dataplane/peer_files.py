"""The peer sets' elements on disk, apart from the plan: a base file and a journal of changes.

A peer joining a 100k-address allowlist changes one element; rewriting (and fsyncing) every
address for it would cost time and bytes proportional to the fleet. So the elements live in
two files of one *generation* (a random name), which ``state.json`` names:

* ``peers.<generation>.json``: every element, written once, atomically (temporary file,
  fsync, rename(2), fsync of the directory);
* ``peers.<generation>.journal``: one JSON line per in-place update (the keys deleted and the
  elements added, per set), appended with O_APPEND and fsync'd before the update counts as
  recorded: its size is proportional to the change.

Replaying the journal over the base gives the current elements. A record sets the membership
(and the map value) of the keys it names, so the last record naming a key decides it, and a
record whose write was cut short by a crash (the journal's last line, without its newline) is
ignored: the kernel may then hold one update more than recorded, which the drift check finds
and repairs like any other difference. A new generation is written by a full save (a new
plan, a trial) or when the journal has grown past half its base; ``state.json`` switching to it
is the commit point, so a crash in between leaves the old generation in force, whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from netpersona.compiler.peer_delta import PeerDelta, peer_delta
from netpersona.compiler.plan import PeerSets
from netpersona.errors import StateError

__all__ = ["PeerDelta", "PeerFiles", "peer_delta"]

# PeerSets field -> (the nftables set or map it fills, whether it is a map)
FIELDS: dict[str, tuple[str, bool]] = {
    "addrs_v4": ("peer_addrs_v4", False),
    "addrs_v6": ("peer_addrs_v6", False),
    "dscp_v4": ("peer_dscp_v4", True),
    "dscp_v6": ("peer_dscp_v6", True),
}
# A journal is folded into a new base once it is this large and half the base's size.
COMPACT_MIN_BYTES = 256 * 1024


def _by_address(addresses: Iterable[str]) -> tuple[str, ...]:
    """The compiler's order (resolve_peer_sets): by numeric address."""
    return tuple(sorted(addresses, key=lambda a: int(ip_address(a))))


def _replay(base: PeerSets, records: Iterable[Mapping[str, Any]]) -> PeerSets:
    members: dict[str, dict[str, Any]] = {}
    for name, (_, is_map) in FIELDS.items():
        elements = getattr(base, name)
        members[name] = dict(elements) if is_map else dict.fromkeys(elements)
    for record in records:
        for name, change in record.items():
            held = members[name]
            for key in change.get("delete", ()):
                held.pop(key, None)
            for element in change.get("add", ()):
                if FIELDS[name][1]:
                    held[element[0]] = int(element[1])
                else:
                    held[element] = None
    fields: dict[str, Any] = {}
    for name, (_, is_map) in FIELDS.items():
        order = _by_address(members[name])
        fields[name] = tuple((a, members[name][a]) for a in order) if is_map else order
    return PeerSets(**fields)


class PeerFiles:
    """The base files and journals of one state directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def base_path(self, generation: str) -> Path:
        return self.directory / f"peers.{generation}.json"

    def journal_path(self, generation: str) -> Path:
        return self.directory / f"peers.{generation}.journal"

    def write_base(self, peers: PeerSets, write: Any) -> str:
        """A new generation holding ``peers`` (``write`` is the store's atomic writer)."""
        generation = secrets.token_hex(8)
        body = {name: getattr(peers, name) for name in FIELDS}
        write(self.base_path(generation), json.dumps(body, separators=(",", ":")))
        return generation

    def load(self, generation: str) -> tuple[PeerSets, int]:
        """The elements of ``generation`` (base, then journal), and the journal's size."""
        path = self.base_path(generation)
        try:
            body = json.loads(path.read_text())
            base = PeerSets(
                addrs_v4=tuple(body.get("addrs_v4", ())),
                addrs_v6=tuple(body.get("addrs_v6", ())),
                dscp_v4=tuple((a, int(d)) for a, d in body.get("dscp_v4", ())),
                dscp_v6=tuple((a, int(d)) for a, d in body.get("dscp_v6", ())),
            )
        except FileNotFoundError:
            raise StateError(f"{path}: the peer sets named by state.json are missing") from None
        except (OSError, ValueError, TypeError) as exc:
            raise StateError(f"{path}: peer sets not readable: {exc}") from None
        records, size = self._records(generation)
        return (_replay(base, records) if records else base), size

    def _records(self, generation: str) -> tuple[list[Mapping[str, Any]], int]:
        path = self.journal_path(generation)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return [], 0
        except OSError as exc:
            raise StateError(f"{path}: cannot read the peer journal: {exc}") from None
        lines = data.split(b"\n")
        # The last piece is "" after a whole record, or a record cut short by a crash.
        records: list[Mapping[str, Any]] = []
        for number, line in enumerate(lines[:-1], 1):
            try:
                record = json.loads(line)
            except ValueError:
                raise StateError(f"{path}: line {number} is not a journal record") from None
            if not isinstance(record, dict) or not set(record) <= set(FIELDS):
                raise StateError(f"{path}: line {number} is not a journal record")
            records.append(record)
        return records, len(data) - len(lines[-1])

    def append(self, generation: str, delta: PeerDelta) -> int:
        """Record ``delta`` durably; the journal's size after it."""
        path = self.journal_path(generation)
        line = json.dumps(delta.to_json(), separators=(",", ":")).encode() + b"\n"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                created = os.fstat(fd).st_size == 0
                os.write(fd, line)
                os.fsync(fd)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if created:  # the journal's name must survive a crash too
                _sync_directory(self.directory)
        except OSError as exc:
            raise StateError(f"{path}: cannot record the peer update: {exc}") from None
        return size

    def should_compact(self, journal_size: int, generation: str) -> bool:
        if journal_size < COMPACT_MIN_BYTES:
            return False
        try:
            return journal_size * 2 > self.base_path(generation).stat().st_size
        except OSError:
            return True

    def remove_others(self, keep: str | None) -> None:
        """Delete the files of every generation but ``keep`` (after the switch to it)."""
        names = set() if keep is None else {self.base_path(keep), self.journal_path(keep)}
        for path in self._all():
            if path not in names:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _all(self) -> Sequence[Path]:
        try:
            return [p for p in self.directory.glob("peers.*") if p.suffix in (".json", ".journal")]
        except OSError:
            return []


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
