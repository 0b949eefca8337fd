"""What the agent owns, on disk: the last applied plan and the VM's originals.

A state directory (``/var/lib/netpersona`` by default; one per network namespace when several
share a host) holds ``state.json``, the applied state without the peer sets' elements, which
live apart in a base file and a journal of in-place updates (:mod:`.peer_files`), so a peer
joining writes bytes in proportion to the change, not to the fleet. ``state.json`` is replaced
atomically: written to a temporary file in the same directory, fsync'd, renamed over the old
one, and the directory fsync'd (rename(2) is atomic within a filesystem), so a crash leaves
either the old state or the new, never half of one; it names the peer files' generation, so
switching to a new one is that same rename. ``lock`` serialises the commands that change it
(flock(2)).

The store keeps the state it last read or wrote in memory, and reads the files again only when
they changed on disk (another process, e.g. ``netpersona confirm``, wrote them).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from netpersona.compiler.plan import (
    LinkSetting,
    PeerSets,
    Plan,
    Route,
    RoutingRule,
    Sysctl,
    TcClass,
    TcQdisc,
)
from netpersona.dataplane.link_ipv6 import LinkIPv6
from netpersona.dataplane.peer_files import FIELDS, PeerDelta, PeerFiles
from netpersona.errors import StateError
from netpersona.model.jsontree import JSON

__all__ = [
    "DEFAULT_STATE_DIR",
    "AppliedState",
    "Originals",
    "Pending",
    "StateError",
    "StateStore",
    "plan_from_json",
]

T = TypeVar("T")
DEFAULT_STATE_DIR = Path("/var/lib/netpersona")
FORMAT = 1
# state.json with the peer sets' elements in their own files (FORMAT is the whole state, as a
# trial keeps its previous one).
SPLIT_FORMAT = 2
PEER_SET_NAMES = frozenset(name for name, _ in FIELDS.values())


def without_peer_elements(listing: Iterable[JSON]) -> tuple[JSON, ...]:
    """A normalised table listing with the peer sets' elements left out: what ``state.json``
    keeps for the comparisons a peer update does not change (the rules, the other sets)."""
    out = []
    for obj in listing:
        kind = next(iter(obj))
        body = obj[kind]
        if kind in ("set", "map") and body.get("name") in PEER_SET_NAMES and "elem" in body:
            body = {k: v for k, v in body.items() if k != "elem"}
        out.append({kind: body})
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Originals:
    """What the VM had before the agent first changed it, field by field."""

    sysctls: dict[str, str] = field(default_factory=dict)
    mtu: dict[str, int] = field(default_factory=dict)
    multicast: dict[str, bool] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    rules: tuple[RoutingRule, ...] = ()
    qdiscs: dict[str, str] = field(default_factory=dict)  # dev -> root qdisc kind, for the record
    ipv6: dict[str, LinkIPv6] = field(default_factory=dict)  # of links whose MTU changed

    def to_json(self) -> JSON:
        return {
            "sysctls": self.sysctls,
            "mtu": self.mtu,
            "multicast": self.multicast,
            "routes": [asdict(r) for r in self.routes],
            "rules": [asdict(r) for r in self.rules],
            "qdiscs": self.qdiscs,
            "ipv6": {name: link.to_json() for name, link in self.ipv6.items()},
        }

    @classmethod
    def from_json(cls, body: JSON) -> Originals:
        return cls(
            sysctls=dict(body.get("sysctls", {})),
            mtu={k: int(v) for k, v in body.get("mtu", {}).items()},
            multicast={k: bool(v) for k, v in body.get("multicast", {}).items()},
            routes=tuple(Route(**r) for r in body.get("routes", [])),
            rules=tuple(RoutingRule(**r) for r in body.get("rules", [])),
            qdiscs=dict(body.get("qdiscs", {})),
            ipv6={k: LinkIPv6.from_json(v) for k, v in body.get("ipv6", {}).items()},
        )


@dataclass(frozen=True, slots=True)
class Pending:
    """An apply on trial: reverted at ``deadline`` (epoch seconds) unless confirmed."""

    token: str
    deadline: float
    previous: JSON | None  # the AppliedState to go back to, or None for "nothing applied"
    watchdog_pid: int | None = None


@dataclass(frozen=True, slots=True)
class AppliedState:
    persona: str
    plan: Plan
    applied_at: float
    nft_listing: tuple[JSON, ...] = ()  # normalised listing right after apply, for drift
    pending: Pending | None = None

    def to_json(self) -> JSON:
        return {
            "format": FORMAT,
            "persona": self.persona,
            "plan": self.plan.to_json(),
            "applied_at": self.applied_at,
            "nft_listing": list(self.nft_listing),
            "pending": asdict(self.pending) if self.pending else None,
        }

    @classmethod
    def from_json(cls, body: JSON) -> AppliedState:
        if body.get("format") != FORMAT:
            raise StateError(f"state format {body.get('format')!r} is not {FORMAT}")
        pending = body.get("pending")
        return cls(
            persona=body["persona"],
            plan=plan_from_json(body["plan"]),
            applied_at=float(body["applied_at"]),
            nft_listing=tuple(body.get("nft_listing", [])),
            pending=Pending(**pending) if pending else None,
        )

    def with_pending(self, pending: Pending | None) -> AppliedState:
        return replace(self, pending=pending)


def plan_from_json(body: JSON) -> Plan:
    """The inverse of :meth:`Plan.to_json`."""
    peer = body.get("peer_sets", {})
    tc: list[TcQdisc | TcClass] = []
    for item in body.get("tc", []):
        fields = {k: v for k, v in item.items() if k != "type"}
        tc.append(TcQdisc(**fields) if item["type"] == "TcQdisc" else TcClass(**fields))
    return Plan(
        nftables=tuple(body["nftables"]),
        peer_sets=PeerSets(
            addrs_v4=tuple(peer.get("addrs_v4", ())),
            addrs_v6=tuple(peer.get("addrs_v6", ())),
            dscp_v4=tuple((a, int(d)) for a, d in peer.get("dscp_v4", ())),
            dscp_v6=tuple((a, int(d)) for a, d in peer.get("dscp_v6", ())),
        ),
        tc=tuple(tc),
        routes=tuple(Route(**r) for r in body.get("routes", [])),
        rules=tuple(RoutingRule(**r) for r in body.get("rules", [])),
        sysctls=tuple(Sysctl(**s) for s in body.get("sysctls", [])),
        links=tuple(LinkSetting(**link) for link in body.get("links", [])),
    )


def _read(path: Path, what: str, subject: str, parse: Callable[[JSON], T]) -> T | None:
    """One state file parsed, None if there is none; anything else is a StateError."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: cannot read {what}: {exc}") from None
    try:
        return parse(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(f"{path}: {subject} not readable: {exc}") from None


class StateStore:
    """The state directory: ``state.json`` (the applied state), its peer files,
    ``originals.json`` and ``lock``.

    The originals are written before the first change to the kernel, so even an agent killed
    mid-apply leaves behind what ``remove`` needs to put the VM back.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.peer_files = PeerFiles(self.directory)
        self._depth = 0
        # (state.json's identity, journal size, the state, its peer generation)
        self._cached: tuple[tuple[int, int, int], int, AppliedState, str | None] | None = None

    @property
    def path(self) -> Path:
        return self.directory / "state.json"

    def _identity(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read state: {exc}") from None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _journal_size(self, generation: str | None) -> int:
        if generation is None:
            return 0
        try:
            return self.peer_files.journal_path(generation).stat().st_size
        except FileNotFoundError:
            return 0

    def load(self) -> AppliedState | None:
        identity = self._identity()
        if identity is None:
            self._cached = None
            return None
        cached = self._cached
        if (
            cached is not None
            and cached[0] == identity
            and cached[1] == self._journal_size(cached[3])
        ):
            return cached[2]
        loaded = _read(self.path, "state", "state is", self._parse)
        if loaded is None:
            return None
        state, generation, journal = loaded
        self._cached = (identity, journal, state, generation)
        return state

    def _parse(self, body: JSON) -> tuple[AppliedState, str | None, int]:
        if body.get("format") != SPLIT_FORMAT:
            return AppliedState.from_json(body), None, 0
        generation = str(body["peers"])
        peers, journal = self.peer_files.load(generation)
        whole = {**body, "format": FORMAT, "plan": {**body["plan"], "peer_sets": {}}}
        state = AppliedState.from_json(whole)
        return replace(state, plan=replace(state.plan, peer_sets=peers)), generation, journal

    def save(self, state: AppliedState) -> None:
        """Write the whole state; the peer files are written anew only if their elements
        changed since they were last written or read."""
        cached = self._cached
        identity = self._identity()
        if (
            cached is not None
            and cached[0] == identity
            and cached[3] is not None
            and cached[2].plan.peer_sets == state.plan.peer_sets
        ):
            generation, journal = cached[3], cached[1]
        else:
            generation = self.peer_files.write_base(state.plan.peer_sets, self._write)
            journal = 0
        listing = without_peer_elements(state.nft_listing)
        bare = replace(state, plan=replace(state.plan, peer_sets=PeerSets()), nft_listing=listing)
        body = bare.to_json()
        body["format"] = SPLIT_FORMAT
        body["peers"] = generation
        del body["plan"]["peer_sets"]
        self._write(self.path, json.dumps(body, indent=1, sort_keys=True))
        self.peer_files.remove_others(generation)
        identity = self._identity()
        stored = replace(state, nft_listing=listing)
        self._cached = (identity, journal, stored, generation) if identity else None

    def save_peers(self, state: AppliedState, peers: PeerSets, delta: PeerDelta) -> AppliedState:
        """Record an in-place update of ``state``'s peer sets to ``peers`` (``delta`` apart):
        one journal record, or a new generation when the journal has grown large."""
        updated = replace(state, plan=replace(state.plan, peer_sets=peers))
        identity = self._identity()
        cached = self._cached
        if cached is None or cached[0] != identity or cached[3] is None or cached[2] is not state:
            self.save(updated)
            return updated
        generation = cached[3]
        journal = self.peer_files.append(generation, delta)
        if self.peer_files.should_compact(journal, generation):
            self._cached = None
            self.save(updated)
            return updated
        self._cached = (identity, journal, updated, generation)
        return updated

    @property
    def originals_path(self) -> Path:
        return self.directory / "originals.json"

    def load_originals(self) -> Originals:
        originals = _read(self.originals_path, "originals", "originals are", Originals.from_json)
        return originals if originals is not None else Originals()

    def save_originals(self, originals: Originals) -> None:
        body = json.dumps(originals.to_json(), indent=1, sort_keys=True)
        self._write(self.originals_path, body)

    def clear(self) -> None:
        """Forget everything: nothing is applied and nothing needs restoring."""
        for path in (self.path, self.originals_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._cached = None
        self.peer_files.remove_others(None)
        if self.directory.exists():
            self._sync_directory()

    def _write(self, path: Path, text: str) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".state.", suffix=".tmp", dir=self.directory)
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            self._sync_directory()
        except OSError as exc:
            raise StateError(f"{path}: cannot write state: {exc}") from None

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the state directory's lock (blocking) for the duration of the block.

        Re-entrant within one store object, so an operation can call another under the lock.
        """
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle = open(self.directory / "lock", "a")  # noqa: SIM115 - held across the yield
        except OSError as exc:
            raise StateError(f"{self.directory}: cannot lock state: {exc}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._depth = 1
            yield
        finally:
            self._depth = 0
            handle.close()
