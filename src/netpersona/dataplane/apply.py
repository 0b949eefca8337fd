"""Make a plan true in the kernel, all or nothing (spec section 7).

An apply is: snapshot what the agent owns -> change it step by step, recording how to undo each
step -> read the kernel back and compare with the plan -> on any failure, undo in reverse
order and read back again to verify the previous state is in force. Steps, in order:

    links (MTU, MULTICAST)  -> sysctls -> tc (HTB per uplink) -> routes (table 7480)
    -> rules (prefs 7480..) -> nftables (the whole table, one kernel transaction)

Remove is the same machinery with the VM's originals as the target. The originals are recorded
on disk before the first change, field by field as a plan first touches them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

from netpersona.compiler.incremental import PeerChange
from netpersona.compiler.plan import (
    TABLE_FAMILY,
    TABLE_NAME,
    TC_HANDLE,
    LinkSetting,
    PeerSets,
    Plan,
    Route,
    RoutingRule,
    TcClass,
    TcQdisc,
    replace_table_batch,
)
from netpersona.dataplane.kernel import Kernel
from netpersona.dataplane.link_ipv6 import (
    IPV6_MIN_MTU,
    LinkIPv6,
    ipv6_settings_prefix,
    restore_link_ipv6,
)
from netpersona.dataplane.nftview import table_mismatches
from netpersona.dataplane.originals import originals_target, plan_target, record_originals
from netpersona.dataplane.peer_sets import PeerUpdate, update_peer_sets
from netpersona.dataplane.port_sets import PortChange, port_change, update_ports_in_place
from netpersona.dataplane.snapshot import (
    KernelSnapshot,
    Target,
    read_snapshot,
    reread,
    show_route,
    show_rule,
    target_mismatches,
)
from netpersona.dataplane.state import AppliedState, StateStore, without_peer_elements
from netpersona.dataplane.transaction import ApplyReport, Transaction, restore_table_text
from netpersona.errors import ApplyFailed, ApplyRolledBack, Conflict, NetpersonaError
from netpersona.model.jsontree import JSON

__all__ = ["ApplyReport", "Applier", "ApplyRolledBack", "plan_target", "restore_table_text"]

TcItem = TcQdisc | TcClass
T = TypeVar("T", Route, RoutingRule)


class Applier:
    """Applies plans to one kernel, keeping its records in one state directory."""

    def __init__(
        self, kernel: Kernel, store: StateStore, clock: Callable[[], float] = time.time
    ) -> None:
        self.kernel = kernel
        self.store = store
        self.clock = clock

    # --- public operations
    def apply(self, plan: Plan, persona: str) -> ApplyReport:
        """Make ``plan`` the kernel's owned state; raise :class:`ApplyRolledBack` if it fails."""
        with self.store.locked():
            started = time.monotonic()
            ports = update_ports_in_place(self.kernel, self.store, plan, persona, self.clock)
            if ports is not None:
                return ApplyReport(
                    "apply", persona, (ports.description,), seconds=time.monotonic() - started
                )
            return self._apply(plan, persona)

    def remove(self) -> ApplyReport:
        """Restore what the VM had before the first apply, and forget the state."""
        with self.store.locked():
            return self._remove()

    def update_peers(self, peers: PeerSets, change: PeerChange | None = None) -> PeerUpdate:
        """Change only the peer sets' elements, in place (no table reload); ``change`` is the
        incremental compiler's, whose delta is used if it starts from the applied sets."""
        return update_peer_sets(self.kernel, self.store, peers, change)

    def _apply(self, plan: Plan, persona: str) -> ApplyReport:
        started = time.monotonic()
        previous = self.store.load()
        originals = self.store.load_originals()
        target = plan_target(plan, originals)
        before = read_snapshot(self.kernel, target.sysctl_keys, target.link_names)
        self._check_ownership(target, before)
        first = not self.store.originals_path.exists()
        recorded = record_originals(originals, target, before, first=first)
        if first or recorded != originals:
            self.store.save_originals(recorded)
        # The table is current only if it holds exactly this plan's objects: the structural
        # comparison in _converge cannot see a changed port inside a rule.
        same_table = (
            previous is not None and previous.plan.nftables_objects() == plan.nftables_objects()
        )
        # A plan that differs from the applied one only in the port sets' elements changes
        # those elements in place, if the kernel still holds the applied table.
        ports = (
            port_change(previous.plan.nftables, plan.nftables)
            if previous is not None and not same_table and previous.plan.peer_sets == plan.peer_sets
            else None
        )
        listing = previous.nft_listing if previous is not None and (same_table or ports) else None

        def commit(after: KernelSnapshot, txn: Transaction) -> None:
            same = (
                not txn.steps
                and previous is not None
                and previous.persona == persona
                and previous.plan == plan
                and previous.pending is None
            )
            if not same:
                self.store.save(
                    AppliedState(
                        persona=persona,
                        plan=plan,
                        applied_at=self.clock(),
                        nft_listing=after.nft or (),
                    )
                )

        return self._transact(
            "apply",
            persona,
            target,
            before,
            known_listing=listing,
            ports=ports,
            against="the plan",
            commit=commit,
            started=started,
        )

    def _remove(self) -> ApplyReport:
        started = time.monotonic()
        originals = self.store.load_originals()
        target = originals_target(originals)
        before = read_snapshot(self.kernel, target.sysctl_keys, target.link_names)
        return self._transact(
            "remove",
            None,
            target,
            before,
            known_listing=None,
            against="the originals",
            commit=lambda _after, _txn: self.store.clear(),
            started=started,
        )

    def _transact(
        self,
        action: str,
        persona: str | None,
        target: Target,
        before: KernelSnapshot,
        *,
        known_listing: tuple[JSON, ...] | None,
        ports: PortChange | None = None,
        against: str,
        commit: Callable[[KernelSnapshot, Transaction], None],
        started: float,
    ) -> ApplyReport:
        """Converge to ``target``, read back, ``commit``; on any failure undo and verify."""
        txn = Transaction()
        try:
            self._converge(target, before, txn, known_listing=known_listing, ports=ports)
            # The readback reads again what the steps changed (with nothing changed, the
            # snapshot just taken is the readback).
            after = reread(self.kernel, before, txn.parts, target.sysctl_keys, target.link_names)
            problems = target_mismatches(target, after)
            if problems:
                raise ApplyFailed(f"readback differs from {against}: " + "; ".join(problems))
            commit(after, txn)
        except NetpersonaError as exc:
            raise self._rolled_back(
                action,
                persona=persona,
                txn=txn,
                before=before,
                target=target,
                exc=exc,
                started=started,
            ) from exc
        return ApplyReport(
            action,
            persona,
            txn.descriptions,
            unchanged=not txn.steps,
            seconds=time.monotonic() - started,
        )

    def check(self, plan: Plan) -> list[str]:
        """What applying ``plan`` would change (the live kernel against the plan)."""
        target = plan_target(plan, self.store.load_originals())
        live = read_snapshot(self.kernel, target.sysctl_keys, target.link_names)
        return target_mismatches(target, live)

    # --- internals
    def _check_ownership(self, target: Target, before: KernelSnapshot) -> None:
        for dev in sorted(target.tc):
            root = before.root(dev)
            if root is None:
                raise ApplyFailed(f"tc: device {dev!r} does not exist")
            if not root.is_kernel_default and root.handle != TC_HANDLE:
                raise Conflict(
                    f"tc: {dev} has a root qdisc {root.kind} {root.handle} that netpersona "
                    "does not own; it is left alone, so the persona's egress QoS cannot be "
                    "applied there"
                )
        # A link whose MTU rises from below 1280 gets its IPv6 settings with the new MTU.
        rising = tuple(
            ipv6_settings_prefix(link.ifname)
            for link in before.links
            if _regains_ipv6(link.mtu, target.links[link.ifname].mtu)
        )
        live = dict(before.sysctls)
        missing = [k for k in target.sysctl_keys if k not in live and not k.startswith(rising)]
        if missing:
            raise ApplyFailed(f"sysctl: the kernel has no {', '.join(missing)}")

    def _converge(
        self,
        target: Target,
        before: KernelSnapshot,
        txn: Transaction,
        *,
        known_listing: tuple[JSON, ...] | None,
        ports: PortChange | None = None,
    ) -> None:
        k = self.kernel
        self._converge_links(target, before, txn)
        # A link step can add or remove a link's IPv6 settings: read them again after one.
        live_sysctls = k.sysctls(target.sysctl_keys) if txn.steps else dict(before.sysctls)
        for key, value in sorted(target.sysctls.items()):
            old = live_sysctls.get(key)
            if old is None:
                raise ApplyFailed(f"sysctl: the kernel has no {key}")
            if old != value:
                txn.step(
                    f"sysctl {key}: {old} -> {value}",
                    partial(k.sysctl_set, key, value),
                    partial(k.sysctl_set, key, old),
                )
        self._converge_tc(target, before, txn)
        _converge_set(
            txn, "route", before.routes, target.routes, show_route, k.route_add, k.route_delete
        )
        _converge_set(txn, "rule", before.rules, target.rules, show_rule, k.rule_add, k.rule_delete)
        table = {"family": TABLE_FAMILY, "name": TABLE_NAME}
        if target.nft is not None:
            # The listing kept leaves out the peer sets' elements; the plan comparison that
            # follows checks those.
            if (
                known_listing is not None
                and before.nft is not None
                and without_peer_elements(before.nft) == known_listing
            ):
                problems = table_mismatches(list(target.nft), list(before.nft_raw or ()) or None)
                if not problems:
                    return
                # The kernel holds the applied table: if the plan differs from it only in
                # port sets' elements, change those elements in one transaction.
                if ports is not None and all(_about(p, ports.sets) for p in problems):
                    batch, undo = ports.batch, ports.undo
                    txn.step(
                        ports.description, partial(k.nft_load, batch), partial(k.nft_load, undo)
                    )
                    return
            what, batch = "replace", replace_table_batch(list(target.nft))
        elif before.nft is not None:
            what, batch = "delete", {"nftables": [{"delete": {"table": table}}]}
        else:
            return
        # The kernel's own listing, reloadable as is, is what an undo puts back. It is read
        # just before the table changes (no earlier step touches it), and only if it will.
        listing_text = k.nft_table_text() if before.nft is not None else None
        restore = partial(k.nft_load_text, restore_table_text(listing_text))
        txn.step(f"nftables: {what} table inet netpersona", partial(k.nft_load, batch), restore)

    def _converge_links(self, target: Target, before: KernelSnapshot, txn: Transaction) -> None:
        live_links = {link.ifname: link for link in before.links}
        for name, want in sorted(target.links.items()):
            have = live_links[name]
            if want.mtu is not None and want.mtu != have.mtu:
                # Below 1280 the kernel takes IPv6 off the link, and setting the MTU back does
                # not return it: the undo restores what was read before (link_ipv6.py).
                txn.step(
                    f"link {name}: mtu {have.mtu} -> {want.mtu}",
                    partial(_set_mtu, self.kernel, have, want.mtu, target.ipv6.get(name)),
                    partial(
                        _set_mtu,
                        self.kernel,
                        LinkSetting(name, mtu=want.mtu),
                        have.mtu,
                        before.ipv6_of(name),
                    ),
                )
            if want.multicast is not None and want.multicast != have.multicast:
                txn.step(
                    f"link {name}: multicast {_onoff(have.multicast)} -> {_onoff(want.multicast)}",
                    partial(self.kernel.link_set, LinkSetting(name, multicast=want.multicast)),
                    partial(self.kernel.link_set, LinkSetting(name, multicast=have.multicast)),
                )

    def _converge_tc(self, target: Target, before: KernelSnapshot, txn: Transaction) -> None:
        k = self.kernel
        for dev in sorted({item.dev for item in before.tc} - set(target.tc)):
            old = before.tc_on(dev)
            txn.step(
                f"tc: delete qdisc {TC_HANDLE} on {dev}",
                partial(k.qdisc_delete, dev),
                partial(_recreate_tc, k, old),
            )
        for dev, items in sorted(target.tc.items()):
            old_items = before.tc_on(dev)
            ours = bool(old_items)
            old_qdisc = next((i for i in old_items if isinstance(i, TcQdisc)), None)
            old_classes = {c.classid: c for c in old_items if isinstance(c, TcClass)}
            for item in items:
                if isinstance(item, TcQdisc):
                    if old_qdisc is None:
                        txn.step(
                            f"tc: add qdisc {item.handle} htb on {dev}",
                            partial(k.qdisc_replace, item),
                            partial(k.qdisc_delete, dev),
                        )
                    elif old_qdisc.default_class.lstrip("0") != item.default_class.lstrip("0"):
                        txn.step(
                            f"tc: change qdisc {item.handle} on {dev}",
                            partial(k.qdisc_replace, item),
                            partial(k.qdisc_replace, old_qdisc),
                        )
                    continue
                was = old_classes.get(item.classid)
                if was is None:
                    # A class made under a qdisc this apply created goes with that qdisc.
                    undo = partial(k.class_delete, dev, item.classid) if ours else None
                    txn.step(
                        f"tc: add class {item.classid} on {dev}",
                        partial(k.class_replace, item),
                        undo,
                    )
                elif _class_differs(was, item):
                    txn.step(
                        f"tc: change class {item.classid} on {dev}",
                        partial(k.class_replace, item),
                        partial(k.class_replace, was),
                    )
            wanted = {i.classid for i in items if isinstance(i, TcClass)}
            extra = [c for c in old_classes.values() if c.classid not in wanted]
            # Children before parents: a class with children cannot be deleted.
            for cls in sorted(extra, key=lambda c: c.parent == TC_HANDLE):
                txn.step(
                    f"tc: delete class {cls.classid} on {dev}",
                    partial(k.class_delete, dev, cls.classid),
                    partial(k.class_replace, cls),
                )

    def _rolled_back(
        self,
        action: str,
        *,
        persona: str | None,
        txn: Transaction,
        before: KernelSnapshot,
        target: Target,
        exc: NetpersonaError,
        started: float,
    ) -> ApplyRolledBack:
        problems = txn.rollback()
        try:
            now = read_snapshot(self.kernel, target.sysctl_keys, target.link_names)
            problems += before.differences(now)
        except NetpersonaError as read_exc:
            problems.append(f"readback after rollback failed: {read_exc}")
        return ApplyRolledBack(
            ApplyReport(
                action,
                persona,
                txn.descriptions,
                failed=str(exc),
                rollback_held=not problems,
                rollback_problems=tuple(problems),
                seconds=time.monotonic() - started,
            )
        )


def _converge_set(
    txn: Transaction,
    what: str,
    have: Sequence[T],
    want: Sequence[T],
    show: Callable[[T], str],
    add: Callable[[T], None],
    delete: Callable[[T], None],
) -> None:
    """Routes or rules: delete the ones not wanted, then add the missing ones."""
    for item in sorted(set(have) - set(want)):
        txn.step(f"{what} delete {show(item)}", partial(delete, item), partial(add, item))
    for item in sorted(set(want) - set(have)):
        txn.step(f"{what} add {show(item)}", partial(add, item), partial(delete, item))


def _about(problem: str, sets: tuple[str, ...]) -> bool:
    """Whether a readback ``problem`` is only that one of ``sets`` holds other elements."""
    return any(problem.startswith(f"nftables: set {name} holds ") for name in sets)


def _onoff(flag: bool | None) -> str:
    return "on" if flag else "off"


def _set_mtu(kernel: Kernel, have: LinkSetting, mtu: int | None, ipv6: LinkIPv6 | None) -> None:
    """Set a link's MTU (do or undo). Raising it from below 1280 gives the link a fresh IPv6
    device with default settings, so ``ipv6``, what it had before, is put back after it."""
    kernel.link_set(LinkSetting(have.ifname, mtu=mtu))
    if ipv6 is not None and _regains_ipv6(have.mtu, mtu):
        restore_link_ipv6(kernel, ipv6)


def _regains_ipv6(old: int | None, new: int | None) -> bool:
    return old is not None and new is not None and old < IPV6_MIN_MTU <= new


def _class_differs(old: TcClass, new: TcClass) -> bool:
    return (old.parent, old.rate, old.ceil, old.prio) != (
        new.parent,
        new.rate,
        new.ceil,
        new.prio,
    ) or (new.burst is not None and old.burst != new.burst)


def _recreate_tc(kernel: Kernel, items: list[TcItem]) -> None:
    """Put an owned HTB tree back as it was read (qdisc first, parents before children)."""
    for item in items:
        if isinstance(item, TcQdisc):
            kernel.qdisc_replace(item)
    classes = [c for c in items if isinstance(c, TcClass)]
    done = {TC_HANDLE}
    while classes:
        ready = [c for c in classes if c.parent in done] or classes
        for cls in ready:
            kernel.class_replace(cls)
            done.add(cls.classid)
            classes.remove(cls)
