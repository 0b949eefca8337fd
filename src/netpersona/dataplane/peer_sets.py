"""Peer changes as in-place set updates (spec section 7).

A peer joining, leaving or changing priority changes only the elements of the peer sets and
maps. They are added and deleted in one nftables transaction; the table, its chains and rules
are not reloaded, so conntrack entries and established flows are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from netpersona.compiler.plan import TABLE_FAMILY, TABLE_NAME, PeerSets
from netpersona.dataplane.kernel import Kernel
from netpersona.dataplane.nftview import element_keys, normalise_listing
from netpersona.dataplane.state import StateStore
from netpersona.errors import ApplyFailed, NotFound
from netpersona.model.jsontree import JSON

__all__ = ["PeerUpdate", "peer_set_batch", "update_peer_sets"]


@dataclass(frozen=True, slots=True)
class PeerUpdate:
    added: int
    deleted: int

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.deleted)


def _key(element: Any) -> str:
    return str(element[0] if isinstance(element, list) else element)


def peer_set_batch(
    old: PeerSets, new: PeerSets, present: set[str]
) -> tuple[JSON | None, PeerUpdate]:
    """The one nftables batch turning ``old``'s elements into ``new``'s, in sets ``present``.

    A map element whose value changes is deleted and added back in the same batch.
    """
    before, after = old.set_elements(), new.set_elements()
    commands: list[JSON] = [{"metainfo": {"json_schema_version": 1}}]
    added = deleted = 0
    for name in sorted(after):
        if name not in present:
            continue
        was = {_key(e): e for e in before.get(name, [])}
        now = {_key(e): e for e in after[name]}
        gone = [key for key, e in was.items() if now.get(key) != e]
        new_elems = [e for key, e in now.items() if was.get(key) != e]
        target = {"family": TABLE_FAMILY, "table": TABLE_NAME, "name": name}
        if gone:
            # A map element is deleted by its key alone.
            commands.append({"delete": {"element": {**target, "elem": gone}}})
            deleted += len(gone)
        if new_elems:
            commands.append({"add": {"element": {**target, "elem": new_elems}}})
            added += len(new_elems)
    update = PeerUpdate(added, deleted)
    return ({"nftables": commands} if not update.unchanged else None), update


def update_peer_sets(kernel: Kernel, store: StateStore, peers: PeerSets) -> PeerUpdate:
    """Bring the applied plan's peer sets to ``peers`` in place, verify, and record it."""
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
        batch, update = peer_set_batch(state.plan.peer_sets, peers, present)
        if batch is not None:
            kernel.nft_load(batch)
        new_plan = replace(state.plan, peer_sets=peers)
        listing = kernel.nft_table()
        live = {
            obj[kind]["name"]: obj[kind].get("elem", [])
            for obj in listing or ()
            for kind in obj
            if kind in ("set", "map")
        }
        for name, elements in peers.set_elements().items():
            if name in present and element_keys(live.get(name, []), interval=False) != (
                element_keys(elements, interval=False)
            ):
                raise ApplyFailed(f"peer set {name}: the kernel holds other elements than sent")
        store.save(
            replace(state, plan=new_plan, nft_listing=tuple(normalise_listing(listing or ())))
        )
        return update
