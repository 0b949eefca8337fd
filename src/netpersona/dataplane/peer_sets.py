"""Peer changes as in-place set updates (spec section 7).

A peer joining, leaving or changing priority changes only the elements of the peer sets and
maps. They are added and deleted in one nftables transaction; the table, its chains and rules
are not reloaded, so conntrack entries and established flows are untouched.

The work is proportional to the change, not to the sets: the delta is computed once (or comes
with the change from the incremental compiler, :mod:`netpersona.compiler.incremental`), loaded
as one batch, read back for exactly the keys changed (each added one is there, each deleted
one is gone: :meth:`~netpersona.dataplane.kernel.Kernel.nft_holds`), and recorded as one
journal record (:mod:`.peer_files`). A large change (more than :data:`ELEMENT_READBACK_MAX`
keys in a set) reads that set back whole instead. Whether the rest of the table is as applied is the
drift check's question, on its own timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netpersona.compiler.incremental import PeerChange
from netpersona.compiler.plan import TABLE_FAMILY, TABLE_NAME, PeerSets, dscp_verdict
from netpersona.dataplane.kernel import Kernel
from netpersona.dataplane.nftview import element_keys
from netpersona.dataplane.peer_files import FIELDS, PeerDelta, peer_delta
from netpersona.dataplane.state import StateStore
from netpersona.errors import ApplyFailed, NotFound
from netpersona.model.jsontree import JSON

__all__ = ["ELEMENT_READBACK_MAX", "PeerUpdate", "peer_set_batch", "update_peer_sets"]

# Up to this many changed keys in one set, each is read back alone; past it, the set whole.
ELEMENT_READBACK_MAX = 64


@dataclass(frozen=True, slots=True)
class PeerUpdate:
    added: int
    deleted: int

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.deleted)


def _element(is_map: bool, element: Any) -> Any:
    """One added element in libnftables JSON."""
    if is_map:
        address, dscp = element
        return [address, dscp_verdict(dscp)]
    return element


def peer_set_batch(
    old: PeerSets, new: PeerSets, present: set[str]
) -> tuple[JSON | None, PeerUpdate]:
    """The one nftables batch turning ``old``'s elements into ``new``'s, in sets ``present``.

    A map element whose value changes is deleted and added back in the same batch.
    """
    return delta_batch(peer_delta(old, new), present)


def delta_batch(delta: PeerDelta, present: set[str]) -> tuple[JSON | None, PeerUpdate]:
    """The one nftables batch applying ``delta`` to the sets ``present`` in the table."""
    commands: list[JSON] = [{"metainfo": {"json_schema_version": 1}}]
    added = deleted = 0
    for field, (name, is_map) in FIELDS.items():
        if name not in present:
            continue
        gone, new = delta.deleted.get(field, ()), delta.added.get(field, ())
        target = {"family": TABLE_FAMILY, "table": TABLE_NAME, "name": name}
        if gone:
            # A map element is deleted by its key alone.
            commands.append({"delete": {"element": {**target, "elem": list(gone)}}})
            deleted += len(gone)
        if new:
            elements = [_element(is_map, e) for e in new]
            commands.append({"add": {"element": {**target, "elem": elements}}})
            added += len(new)
    update = PeerUpdate(added, deleted)
    return ({"nftables": commands} if not update.unchanged else None), update


def verify_delta(kernel: Kernel, delta: PeerDelta, present: set[str], peers: PeerSets) -> None:
    """Read back what ``delta`` changed; raise ApplyFailed if the kernel holds otherwise."""
    for field, (name, is_map) in FIELDS.items():
        if name not in present:
            continue
        added, deleted = delta.added.get(field, ()), delta.deleted.get(field, ())
        keys = [e[0] if is_map else e for e in added]
        gone = sorted(set(deleted) - set(keys))
        if len(keys) + len(gone) > ELEMENT_READBACK_MAX:
            live = kernel.nft_set(name)
            wanted = peers.set_elements()[name]
            if element_keys(live or [], interval=False) != element_keys(wanted):
                raise ApplyFailed(f"peer set {name}: the kernel holds other elements than sent")
            continue
        # A map element's value is not asked here (the kernel matches keys alone); it came
        # in the same committed batch as its key, and the drift check compares values.
        if keys and not kernel.nft_holds(name, keys, held=True):
            raise ApplyFailed(f"peer set {name}: an element added is not in the kernel")
        if gone and not kernel.nft_holds(name, gone, held=False):
            raise ApplyFailed(f"peer set {name}: an element deleted is still in the kernel")


def update_peer_sets(
    kernel: Kernel, store: StateStore, peers: PeerSets, change: PeerChange | None = None
) -> PeerUpdate:
    """Bring the applied plan's peer sets to ``peers`` in place, verify, and record it.

    ``change``, from the incremental compiler, carries the delta from the sets it started
    from: used when those are the applied ones (the same object the store holds), else the
    delta is found by comparing the sets."""
    with store.locked():
        state = store.load()
        if state is None:
            raise NotFound("no persona is applied, so there are no peer sets to update")
        present = {
            obj[kind]["name"]
            for obj in state.plan.nftables
            for kind in obj
            if kind in ("set", "map")
        }
        applied = state.plan.peer_sets
        if change is not None and change.before is applied and change.after is peers:
            delta = change.delta
        else:
            delta = peer_delta(applied, peers)
        batch, update = delta_batch(delta, present)
        if batch is not None:
            kernel.nft_load(batch)
            verify_delta(kernel, delta, present, peers)
        if not delta.empty:
            store.save_peers(state, peers, delta)
        return update
