"""The kernel seam: every read and every change the applier makes, as one small Protocol.

:class:`Kernel` is what the applier talks to; :class:`LinuxKernel` implements it with iproute2
(``ip -j``, ``tc``) and ``sysctl``, all through the one command chokepoint
(:func:`netpersona.system.command.run`), and with nftables through libnftables in this process
(:mod:`netpersona.dataplane.nftlib`; the ``nft`` program if the library is missing). The
host's links, addresses and default gateways (:meth:`Kernel.host_view`, read on every agent
pass) come in-process over rtnetlink (:mod:`netpersona.dataplane.netlink`). Every method takes
effect in one network namespace: the current one, or the one named at construction (``ip -n``
/ ``ip netns exec``, or a thread that joined it), so tests target a throwaway namespace
without the test process ever leaving its own.

Methods listed in :data:`MUTATIONS` change the kernel; everything else only reads. The
fault-injection wrapper of the tests counts exactly these.
"""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, Protocol

from netpersona.compiler.plan import (
    TABLE_FAMILY,
    TABLE_NAME,
    LinkSetting,
    Route,
    RoutingRule,
    TcClass,
    TcQdisc,
)
from netpersona.dataplane.iproute_output import (
    Family,
    parse_htb_classes,
    parse_route,
    parse_rule,
    parse_tc_rate,
    parse_tc_size,
    sysctl_value,
)
from netpersona.dataplane.link_ipv6 import (
    LinkAddress,
    LinkIPv6,
    LinkRoute,
    address_argv,
    parse_link_addresses,
    parse_link_routes,
    parse_sysctl_listing,
    route_argv,
)
from netpersona.dataplane.netlink import HostView, read_host
from netpersona.dataplane.nftlib import NftResult, NftRunner, nft_runner
from netpersona.errors import CommandFailed, KernelError
from netpersona.model.jsontree import JSON
from netpersona.system.command import in_netns, run

__all__ = [
    "MUTATIONS",
    "Kernel",
    "LinuxKernel",
    "RootQdisc",
    "parse_htb_classes",
    "parse_tc_rate",
    "parse_tc_size",
]

# The methods of Kernel that change state, in no particular order.
MUTATIONS = (
    "nft_load",
    "nft_load_text",
    "qdisc_replace",
    "qdisc_delete",
    "class_replace",
    "class_delete",
    "route_add",
    "route_delete",
    "rule_add",
    "rule_delete",
    "sysctl_set",
    "link_set",
    "address_add",
    "link_route_add",
)

# The peer maps (address : verdict); a create needs a value, any verdict will do.
_VERDICT_MAPS = frozenset({"peer_dscp_v4", "peer_dscp_v6"})

# What an nftables set name may be (nft(8) identifiers), checked before it is put in a command.
_NFT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


@dataclass(frozen=True, slots=True)
class RootQdisc:
    """The root qdisc of one device: ``handle`` "0:" is the kernel's own default."""

    dev: str
    kind: str
    handle: str
    default_class: str | None = None

    @property
    def is_kernel_default(self) -> bool:
        return self.handle == "0:"


class Kernel(Protocol):
    """What the applier needs from a Linux network stack."""

    # --- reads
    def nft_table(self) -> list[JSON] | None:
        """The objects of ``inet netpersona`` as ``nft -j`` lists them, or None if absent."""
        ...

    def nft_table_text(self) -> str | None:
        """The table in nft's own syntax (reloadable with ``nft -f``), or None if absent."""
        ...

    def nft_counters(self) -> list[JSON] | None:
        """The table's named counters as ``nft -j`` lists them (not the rest of the table, whose
        sets may hold 100k elements), or None if the table is absent."""
        ...

    def nft_set(self, name: str) -> list[Any] | None:
        """The elements of the table's set or map ``name`` as ``nft -j`` lists them (this one
        set, not the table), or None if there is no such set."""
        ...

    def nft_holds(self, name: str, keys: Sequence[str], *, held: bool) -> bool:
        """Whether the table's set or map ``name`` holds every one of ``keys`` (addresses)
        (``held``), or none of them (not ``held``), as the kernel says for these keys alone."""
        ...

    def root_qdiscs(self) -> list[RootQdisc]: ...

    def htb_classes(self, dev: str) -> list[TcClass]: ...

    def routes(self, family: Family, table: int) -> list[Route]: ...

    def rules(self, family: Family) -> list[RoutingRule]: ...

    def sysctls(self, keys: Sequence[str]) -> dict[str, str]:
        """Current values; a key the kernel does not have is left out."""
        ...

    def link(self, ifname: str) -> LinkSetting:
        """The link's MTU and MULTICAST flag (both always set)."""
        ...

    def addresses(self) -> list[JSON]:
        """``ip -j address show``: every link with its addresses."""
        ...

    def link_ipv6(self, ifname: str) -> LinkIPv6:
        """The link's IPv6 addresses, ``net.ipv6.conf.<link>`` settings and IPv6 routes."""
        ...

    def default_routes(self, family: Family) -> list[JSON]:
        """``ip -j route show default`` in the main table."""
        ...

    def host_view(self) -> HostView:
        """Links, their global addresses and the main table's default gateways, in one
        netlink session (what :func:`~netpersona.dataplane.host_probe.gather_facts` reads)."""
        ...

    # --- changes
    def nft_load(self, document: JSON) -> None:
        """Load one libnftables JSON batch: the kernel commits all of it or none."""
        ...

    def nft_load_text(self, text: str) -> None: ...

    def qdisc_replace(self, qdisc: TcQdisc) -> None: ...

    def qdisc_delete(self, dev: str) -> None:
        """Delete the root qdisc of ``dev`` (the kernel puts its default back)."""
        ...

    def class_replace(self, cls: TcClass) -> None: ...

    def class_delete(self, dev: str, classid: str) -> None: ...

    def route_add(self, route: Route) -> None: ...

    def route_delete(self, route: Route) -> None: ...

    def rule_add(self, rule: RoutingRule) -> None: ...

    def rule_delete(self, rule: RoutingRule) -> None: ...

    def sysctl_set(self, key: str, value: str) -> None: ...

    def link_set(self, setting: LinkSetting) -> None:
        """Set the fields of ``setting`` that are not None."""
        ...

    def address_add(self, ifname: str, address: LinkAddress) -> None: ...

    def link_route_add(self, ifname: str, route: LinkRoute) -> None: ...


class LinuxKernel:
    """:class:`Kernel` over iproute2, nft and sysctl, in ``netns`` or the current namespace."""

    def __init__(self, netns: str | None = None, *, nft: NftRunner | None = None) -> None:
        self.netns = netns
        # libnftables in this process when it loads, else the nft program (nftlib.py).
        self._nft_runner = nft if nft is not None else nft_runner(netns)

    def __repr__(self) -> str:
        return f"LinuxKernel(netns={self.netns!r})"

    # --- plumbing
    def _ip(self, *args: str) -> list[str]:
        return ["ip", *(["-n", self.netns] if self.netns else []), *args]

    def _tc(self, *args: str) -> list[str]:
        return ["tc", *(["-n", self.netns] if self.netns else []), *args]

    def _exec(self, argv: Sequence[str]) -> list[str]:
        return in_netns(self.netns, argv)

    # --- nftables
    def _nft(self, command: str, *, json: bool = False, check: bool = False) -> NftResult:
        return self._nft_runner.run(command, json=json, check=check)

    def _nft_listing(self, command: str, *, json: bool) -> str | None:
        """What ``command`` (a listing) prints, or None if what it lists does not exist."""
        done = self._nft_runner.run(command, json=json, listing=True)
        if done.returncode != 0:
            if "No such file or directory" in done.stderr:
                return None
            raise CommandFailed(done.argv, done.returncode, done.stderr)
        return done.stdout

    def nft_table(self) -> list[JSON] | None:
        out = self._nft_listing(f"list table {TABLE_FAMILY} {TABLE_NAME}", json=True)
        if out is None:
            return None
        return [obj for obj in json.loads(out)["nftables"] if "metainfo" not in obj]

    def nft_table_text(self) -> str | None:
        return self._nft_listing(f"list table {TABLE_FAMILY} {TABLE_NAME}", json=False)

    def nft_counters(self) -> list[JSON] | None:
        out = self._nft_listing(f"list counters table {TABLE_FAMILY} {TABLE_NAME}", json=True)
        if out is None:
            return None
        return [obj for obj in json.loads(out)["nftables"] if "counter" in obj]

    def nft_set(self, name: str) -> list[Any] | None:
        if not _NFT_NAME.fullmatch(name):
            raise KernelError(f"{name!r} is not an nftables set name")
        out = self._nft_listing(f"list set {TABLE_FAMILY} {TABLE_NAME} {name}", json=True)
        if out is None:
            return None
        for obj in json.loads(out)["nftables"]:
            for kind in ("set", "map"):
                if kind in obj:
                    elements: list[Any] = obj[kind].get("elem", [])
                    return elements
        return None

    def nft_holds(self, name: str, keys: Sequence[str], *, held: bool) -> bool:
        if not _NFT_NAME.fullmatch(name):
            raise KernelError(f"{name!r} is not an nftables set name")
        try:
            found = self._nft_runner.lookup(TABLE_FAMILY, TABLE_NAME, name, keys)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.EPROTONOSUPPORT):
                raise KernelError(f"nftables set {name}: element lookup failed: {exc}") from exc
            return self._nft_holds_checked(name, keys, held=held)
        return all(found) if held else not any(found)

    def _nft_holds_checked(self, name: str, keys: Sequence[str], *, held: bool) -> bool:
        # For a kernel that does not look elements up by key: asked in a batch it checks and
        # aborts (nft --check): deleting keys that are all there succeeds, else ENOENT;
        # creating keys none of which is there succeeds, else EEXIST. Either costs what one
        # element does (and an RCU grace period), where `nft get element` (nft 1.0) and a
        # listing read the whole set: a second or more at 100k elements.
        # Keys are addresses, checked as such before they reach nft's parser.
        spelled = [str(ip_address(key)) for key in keys]
        if not held and name in _VERDICT_MAPS:
            spelled = [f"{key} : accept" for key in spelled]
        verb = "delete" if held else "create"
        line = f"{verb} element {TABLE_FAMILY} {TABLE_NAME} {name} {{ {', '.join(spelled)} }}\n"
        done = self._nft(line, check=True)
        if done.returncode == 0:
            return True
        if ("No such file or directory" if held else "File exists") in done.stderr:
            return False
        raise CommandFailed(done.argv, done.returncode, done.stderr)

    def nft_load(self, document: JSON) -> None:
        self._nft_checked(json.dumps(document), json=True)

    def nft_load_text(self, text: str) -> None:
        self._nft_checked(text)

    def _nft_checked(self, command: str, *, json: bool = False) -> None:
        done = self._nft(command, json=json)
        if done.returncode != 0:
            raise CommandFailed(done.argv, done.returncode, done.stderr or done.stdout)

    # --- tc
    def root_qdiscs(self) -> list[RootQdisc]:
        out = run(self._tc("-j", "qdisc", "show")).stdout
        roots = []
        for q in json.loads(out or "[]"):
            if not q.get("root"):
                continue
            default = q.get("options", {}).get("default")
            if isinstance(default, str) and default.startswith("0x"):
                default = format(int(default, 16), "x")
            roots.append(
                RootQdisc(
                    dev=q["dev"],
                    kind=q["kind"],
                    handle=q["handle"],
                    default_class=str(default) if default is not None else None,
                )
            )
        return roots

    def htb_classes(self, dev: str) -> list[TcClass]:
        # iproute2 6.1 prints HTB classes as text even with -j, so the text is parsed.
        return parse_htb_classes(dev, run(self._tc("class", "show", "dev", dev)).stdout)

    def qdisc_replace(self, qdisc: TcQdisc) -> None:
        argv = ["qdisc", "replace", "dev", qdisc.dev]
        argv += ["root"] if qdisc.parent == "root" else ["parent", qdisc.parent]
        argv += ["handle", qdisc.handle, qdisc.kind, "default", qdisc.default_class]
        if qdisc.r2q is not None:
            argv += ["r2q", str(qdisc.r2q)]
        run(self._tc(*argv))

    def qdisc_delete(self, dev: str) -> None:
        run(self._tc("qdisc", "del", "dev", dev, "root"))

    def class_replace(self, cls: TcClass) -> None:
        argv = ["class", "replace", "dev", cls.dev, "parent", cls.parent, "classid", cls.classid]
        argv += ["htb", "rate", f"{cls.rate}bit", "ceil", f"{cls.ceil}bit", "prio", str(cls.prio)]
        if cls.burst is not None:
            argv += ["burst", f"{cls.burst}b"]
        run(self._tc(*argv))

    def class_delete(self, dev: str, classid: str) -> None:
        run(self._tc("class", "del", "dev", dev, "classid", classid))

    # --- routes and rules
    def routes(self, family: Family, table: int) -> list[Route]:
        done = run(self._ip(f"-{family}", "-j", "route", "show", "table", str(table)), check=False)
        if done.returncode != 0:
            if "table does not exist" in done.stderr:
                return []
            raise CommandFailed(done.args, done.returncode, done.stderr)
        return [parse_route(family, table, r) for r in json.loads(done.stdout or "[]")]

    def _route_argv(self, verb: str, route: Route) -> list[str]:
        argv = [f"-{route.family}", "route", verb]
        if route.kind != "unicast":
            argv.append(route.kind)
        argv += [route.dst, "dev", route.dev]
        if route.gateway:
            argv += ["via", route.gateway]
        if route.src and verb == "add":
            argv += ["src", route.src]
        argv += ["table", str(route.table)]
        return self._ip(*argv)

    def route_add(self, route: Route) -> None:
        run(self._route_argv("add", route))

    def route_delete(self, route: Route) -> None:
        run(self._route_argv("del", route))

    def rule_add(self, rule: RoutingRule) -> None:
        run(self._rule_argv("add", rule))

    def rule_delete(self, rule: RoutingRule) -> None:
        run(self._rule_argv("del", rule))

    def rules(self, family: Family) -> list[RoutingRule]:
        out = run(self._ip(f"-{family}", "-j", "rule", "show")).stdout
        return [parse_rule(family, r) for r in json.loads(out or "[]")]

    def _rule_argv(self, verb: str, rule: RoutingRule) -> list[str]:
        argv = [f"-{rule.family}", "rule", verb, "pref", str(rule.priority)]
        if rule.dst:
            argv += ["to", rule.dst]
        argv += ["lookup", str(rule.table)]
        if rule.suppress_prefixlength is not None:
            argv += ["suppress_prefixlength", str(rule.suppress_prefixlength)]
        return self._ip(*argv)

    # --- sysctls and links
    def sysctls(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        done = run(self._exec(["sysctl", "-n", *keys]), check=False)
        lines = done.stdout.splitlines()
        if done.returncode == 0 and len(lines) == len(keys):
            return {key: sysctl_value(line) for key, line in zip(keys, lines, strict=True)}
        # Some key is missing: ask one by one so the others still answer.
        values = {}
        for key in keys:
            one = run(self._exec(["sysctl", "-n", key]), check=False)
            if one.returncode == 0:
                values[key] = sysctl_value(one.stdout.rstrip("\n"))
        return values

    def sysctl_set(self, key: str, value: str) -> None:
        run(self._exec(["sysctl", "-q", "-w", f"{key}={value}"]))

    def link(self, ifname: str) -> LinkSetting:
        out = run(self._ip("-j", "link", "show", "dev", ifname)).stdout
        info = json.loads(out)[0]
        return LinkSetting(ifname, mtu=int(info["mtu"]), multicast="MULTICAST" in info["flags"])

    def link_set(self, setting: LinkSetting) -> None:
        argv = ["link", "set", "dev", setting.ifname]
        if setting.mtu is not None:
            argv += ["mtu", str(setting.mtu)]
        if setting.multicast is not None:
            argv += ["multicast", "on" if setting.multicast else "off"]
        run(self._ip(*argv))

    def addresses(self) -> list[JSON]:
        out = run(self._ip("-j", "address", "show")).stdout
        return list(json.loads(out or "[]"))

    def default_routes(self, family: Family) -> list[JSON]:
        out = run(self._ip(f"-{family}", "-j", "route", "show", "default")).stdout
        return list(json.loads(out or "[]"))

    def host_view(self) -> HostView:
        return read_host(self.netns)

    def link_ipv6(self, ifname: str) -> LinkIPv6:
        links = json.loads(run(self._ip("-j", "address", "show", "dev", ifname)).stdout or "[]")
        routes = run(self._ip("-6", "-j", "route", "show", "table", "all", "dev", ifname)).stdout
        # sysctl -a exits non-zero for a key it cannot read (stable_secret); the rest is there.
        pattern = "^" + re.escape(f"net.ipv6.conf.{ifname.replace('.', '/')}.")
        listing = run(self._exec(["sysctl", "-a", "-r", pattern]), check=False).stdout
        return LinkIPv6(
            ifname,
            addresses=parse_link_addresses(links),
            settings=parse_sysctl_listing(listing),
            routes=parse_link_routes(json.loads(routes or "[]")),
        )

    def address_add(self, ifname: str, address: LinkAddress) -> None:
        argv = ["-6", "address", "add", address.address, "dev", ifname]
        run(self._ip(*argv, *address_argv(address)))

    def link_route_add(self, ifname: str, route: LinkRoute) -> None:
        run(self._ip("-6", "route", "add", *route_argv(route), "dev", ifname))
