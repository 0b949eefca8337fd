"""The nftables part of the plan: the table ``inet netpersona`` (spec sections 3-7).

Chain layout (every drop passes a named counter that says why; base chains accept by policy so
a missing rule can never silently cut a VM off):

    prerouting (filter, hook prerouting, prio -300; uplinks only) reverse path of the control
             channel (drop_rpf) -> lockout_in -> reverse path
             (medium loose, high strict: drop_rpf) -> multicast the persona refuses
             (drop_multicast) -> listed UDP group nobody receives (drop_mcast_unjoined)
    input    (filter, hook input, prio 0)   lo -> lockout_in -> ingress policing -> echo limit ->
             established/related -> invalid -> broadcast -> multicast -> peer check -> in_new
    in_new                                  connection limit -> allowed protocols -> drop_protocol
    output   (filter, hook output, prio 0)  lo -> lockout_out -> established/related -> invalid ->
             broadcast -> multicast -> peer check / profile -> out_proto
    out_proto                               allowed protocols -> drop_protocol
    forward  (filter, hook forward, prio 0) only in the high profile: drop_forward
    mark_out (filter, hook output, prio -150) DSCP of spec section 6; control traffic to the top
             HTB class through skb->priority when the uplink is shaped
    lockout_in / lockout_out                spec section 3, always first

Choices the spec leaves open, documented in docs/dataplane.md:
- The reverse-path check and the multicast checks sit in prerouting because the kernel drops
  what fails its own rp_filter, and multicast to a group no socket joined, in the routing
  decision between prerouting and input, where no counter sees it. Checked first, such a packet
  is dropped and counted by nftables instead (the kernel would have dropped it anyway).
- Outbound broadcast and multicast (in the modes that allow them) are checked against
  allowed_protocols only: their destination is a segment or a group, not a peer.
- ARP is not seen by an ``inet`` table at all, so it is never filtered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from netpersona.compiler import nftjson as j
from netpersona.compiler.plan import (
    CONTROL_CLASS,
    PORT_SETS,
    TABLE_FAMILY,
    TABLE_NAME,
    dscp_chain,
)
from netpersona.facts import HostFacts
from netpersona.model.dscp import PEER_DSCP_CODES
from netpersona.model.jsontree import JSON
from netpersona.model.persona import CidrSelector, CommunicationMode, Persona, SecurityProfile
from netpersona.model.protocols import L4, ProtocolRule

__all__ = ["DROP_COUNTERS", "ECHO_BURST", "ECHO_RATE", "RPF_STRICT", "compile_ruleset"]

IPNetwork = IPv4Network | IPv6Network

# Every reason a packet can be dropped, in the order `netpersona status` lists them.
DROP_COUNTERS = (
    "drop_not_peer",
    "drop_protocol",
    "drop_broadcast",
    "drop_multicast",
    "drop_invalid",
    "drop_rate_limit",
    "drop_conn_limit",
    "drop_ingress_rate",
    "drop_forward",
    "drop_rpf",
    "drop_mcast_unjoined",
)
# Spec section 4, reverse-path filtering on uplinks (RFC 3704): None = off, else strict or not.
RPF_STRICT: dict[SecurityProfile, bool | None] = {
    SecurityProfile.LOW: None,
    SecurityProfile.MEDIUM: False,
    SecurityProfile.HIGH: True,
}
# Before conntrack (-200), so a spoofed packet never makes a conntrack entry (nft(8): raw).
PREROUTING_PRIO = -300
# Spec section 4: inbound echo requests per source address in the medium and high profiles.
ECHO_RATE = 10  # per second
ECHO_BURST = 20  # packets
# Ingress policing burst when the persona gives none: 100 ms at the policed rate, at least ten
# full-size frames so a single TCP window does not trip it.
MIN_POLICE_BURST = 15_000
# Sources tracked per meter. A meter never forgets a source (nft 1.0.6 meters take no
# timeout); past this many sources, new ones go unmetered rather than being refused.
METER_SIZE = 65535

# RFC 4861 neighbour discovery, router solicitation/advertisement, and MLD (RFC 2710, 3810).
ICMPV6_LOCKOUT = [
    "nd-router-solicit",
    "nd-router-advert",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "mld-listener-query",
    "mld-listener-report",
    "mld-listener-done",
    "mld2-listener-report",
]
IPV4_MULTICAST = "224.0.0.0/4"
IPV6_MULTICAST = "ff00::/8"
# The transports whose destination ports are matched against a named set (plan.PORT_SETS).
PORT_TRANSPORTS = (L4.TCP, L4.UDP, L4.SCTP)


@dataclass
class _Table:
    objects: list[JSON] = field(default_factory=list)

    def _base(self) -> JSON:
        return {"family": TABLE_FAMILY, "table": TABLE_NAME}

    def table(self) -> None:
        self.objects.append({"table": {"family": TABLE_FAMILY, "name": TABLE_NAME}})

    def counter(self, name: str) -> None:
        self.objects.append({"counter": {**self._base(), "name": name}})

    def set(self, name: str, type_: str, **extra: Any) -> None:
        self.objects.append({"set": {**self._base(), "name": name, "type": type_, **extra}})

    def map(self, name: str, type_: str, data: str) -> None:
        self.objects.append({"map": {**self._base(), "name": name, "type": type_, "map": data}})

    def chain(self, name: str, hook: str | None = None, prio: int = 0) -> None:
        body: JSON = {**self._base(), "name": name}
        if hook is not None:
            body.update({"type": "filter", "hook": hook, "prio": prio, "policy": "accept"})
        self.objects.append({"chain": body})

    def rule(self, chain: str, *expr: JSON, comment: str | None = None) -> None:
        body: JSON = {**self._base(), "chain": chain, "expr": list(expr)}
        if comment:
            body["comment"] = comment
        self.objects.append({"rule": body})


def _drop(reason: str) -> tuple[JSON, JSON]:
    return j.counter(reason), j.DROP


def _ip(version: int) -> str:
    return "ip" if version == 4 else "ip6"


def compile_ruleset(persona: Persona, facts: HostFacts) -> list[JSON]:
    t = _Table()
    profile = persona.security_profile
    t.table()
    for name in DROP_COUNTERS:
        t.counter(name)
    for code in PEER_DSCP_CODES:
        t.chain(dscp_chain(code))
    for name, hook, prio in (
        ("lockout_in", None, 0),
        ("lockout_out", None, 0),
        ("in_new", None, 0),
        ("out_proto", None, 0),
        ("input", "input", 0),
        ("output", "output", 0),
        ("mark_out", "output", -150),
        ("prerouting", "prerouting", PREROUTING_PRIO),
    ):
        t.chain(name, hook, prio)
    if profile is SecurityProfile.HIGH:
        t.chain("forward", "forward", 0)
    # Sets after chains: the peer DSCP map's elements name the dscp_* chains.
    _sets(t, persona, facts)
    for code in PEER_DSCP_CODES:
        _set_dscp(t, dscp_chain(code), code)
    if profile is SecurityProfile.HIGH:
        t.rule("forward", *_drop("drop_forward"), comment="high profile: no forwarding")

    _lockout(t, facts)
    _prerouting(t, persona, facts)
    _input(t, persona)
    _in_new(t, persona)
    _output(t, persona)
    _protocols(t, "out_proto", persona.rules)
    t.rule("out_proto", *_drop("drop_protocol"))
    _mark_out(t, persona, facts)
    return t.objects


def _sets(t: _Table, persona: Persona, facts: HostFacts) -> None:
    nets = _permitted_networks(persona, facts)
    for version, addr_type in ((4, "ipv4_addr"), (6, "ipv6_addr")):
        suffix = f"v{version}"
        elems = [j.prefix(str(n)) for n in nets if n.version == version]
        extra: JSON = {"flags": ["interval"]}
        if elems:
            extra["elem"] = elems
        t.set(f"peer_nets_{suffix}", addr_type, **extra)
        t.set(f"peer_addrs_{suffix}", addr_type)
        t.map(f"peer_dscp_{suffix}", addr_type, "verdict")
        if persona.communication_mode is CommunicationMode.MULTICAST:
            groups = [str(g) for g in persona.multicast_groups if g.version == version]
            t.set(f"mcast_{suffix}", addr_type, **({"elem": groups} if groups else {}))
    for l4 in PORT_TRANSPORTS:
        ports = _port_intervals(persona.rules, l4)
        extra = {"flags": ["interval"]}
        if ports:
            extra["elem"] = [j.port_value(first, last) for first, last in ports]
        t.set(PORT_SETS[l4.value], "inet_service", **extra)


def _port_intervals(rules: tuple[ProtocolRule, ...], l4: L4) -> list[tuple[int, int]]:
    """The destination ports ``rules`` allow for ``l4``, as sorted, disjoint, non-adjacent
    intervals (an interval set refuses overlapping elements); none when every port is."""
    mine = [r for r in rules if r.l4 is l4]
    if any(r.ports is None for r in mine):
        return []
    merged: list[tuple[int, int]] = []
    for first, last in sorted((r.ports.first, r.ports.last) for r in mine if r.ports is not None):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    return merged


def _permitted_networks(persona: Persona, facts: HostFacts) -> list[IPNetwork]:
    """Spec section 4: the cidr selectors, or with no ``peers`` at all, the on-link subnets."""
    if persona.peers:
        nets = {s.network for s in persona.peers if isinstance(s, CidrSelector)}
    else:
        nets = {n for uplink in facts.uplinks for n in uplink.subnets}
    # Interval sets refuse overlapping elements: keep only the outermost networks.
    kept = [n for n in nets if not any(_inside(n, m) for m in nets)]
    return sorted(kept, key=lambda n: (n.version, int(n.network_address), n.prefixlen))


def _inside(inner: IPNetwork, outer: IPNetwork) -> bool:
    if inner == outer or inner.version != outer.version:
        return False
    return int(inner.network_address) >= int(outer.network_address) and int(
        inner.broadcast_address
    ) <= int(outer.broadcast_address)


def _allows(persona: Persona, l4: L4, port: int) -> bool:
    for rule in persona.rules:
        if rule.l4 is l4 and (rule.ports is None or rule.ports.first <= port <= rule.ports.last):
            return True
    return False


def _lockout(t: _Table, facts: HostFacts) -> None:
    for chain, direction in (("lockout_in", "in"), ("lockout_out", "out")):
        incoming = direction == "in"
        t.rule(
            chain,
            j.match(j.payload("icmpv6", "type"), j.anon_set(ICMPV6_LOCKOUT)),
            j.ACCEPT,
            comment="neighbour discovery, router discovery, MLD",
        )
        # DHCP client (RFC 2131 ports 67/68) and DHCPv6 client (RFC 8415 ports 546/547).
        for client, server in ((68, 67), (546, 547)):
            sport, dport = (server, client) if incoming else (client, server)
            t.rule(
                chain,
                j.match(j.payload("udp", "sport"), sport),
                j.match(j.payload("udp", "dport"), dport),
                j.ACCEPT,
                comment="dhcp client",
            )
        addr_field, port_field = ("saddr", "sport") if incoming else ("daddr", "dport")
        for md in facts.metadata_endpoints:
            t.rule(
                chain,
                j.match(j.payload(_ip(md.address.version), addr_field), str(md.address)),
                j.match(j.payload("tcp", port_field), md.port),
                j.ACCEPT,
                comment="metadata service",
            )
        t.rule(
            chain,
            j.match(j.payload("udp", "dport"), facts.control_port),
            j.ACCEPT,
            comment="control channel",
        )


def _prerouting(t: _Table, persona: Persona, facts: HostFacts) -> None:
    """What the kernel would drop between prerouting and input without a trace, on uplinks."""
    c = "prerouting"
    uplinks = sorted(u.name for u in facts.uplinks)
    if not uplinks:
        return
    t.rule(c, j.match(j.meta("iifname"), j.anon_set(uplinks), "!="), j.RETURN)
    strict = RPF_STRICT[persona.security_profile]
    if strict is not None:
        # The control channel is exempt from every filter (lockout_in), not from the reverse
        # path: a peer's datagram arrives from a route back to it, and one with a forged
        # source address should not reach the certificate verifier at all.
        t.rule(
            c,
            j.match(j.payload("udp", "dport"), facts.control_port),
            j.match(j.fib_saddr_oif(strict=strict), False),
            *_drop("drop_rpf"),
            comment="reverse path: control channel",
        )
    t.rule(c, j.jump("lockout_in"))
    if strict is not None:
        # The fib lookup itself lets through loopback, 0.0.0.0 to broadcast or a link-local
        # group (a DHCP discover, an IGMP report), and IPv6 neighbour discovery from ::.
        t.rule(
            c,
            j.match(j.fib_saddr_oif(strict=strict), False),
            *_drop("drop_rpf"),
            comment="reverse path: " + ("strict" if strict else "loose"),
        )
    multicast = persona.communication_mode is CommunicationMode.MULTICAST
    if multicast:
        t.rule(c, j.match(j.meta("l4proto"), "igmp"), j.RETURN, comment="igmp")
    for version, group in ((4, IPV4_MULTICAST), (6, IPV6_MULTICAST)):
        ip = _ip(version)
        refused = [j.match(j.payload(ip, "daddr"), j.prefix(group))]
        if multicast:
            refused.append(j.match(j.payload(ip, "daddr"), f"@mcast_v{version}", "!="))
        t.rule(c, *refused, *_drop("drop_multicast"))
        if multicast:
            # A listed group: the kernel delivers it only if a socket joined the group, and a
            # UDP datagram only to a socket bound to its port. `socket` finds that socket.
            listed = [
                j.match(j.meta("l4proto"), "udp"),
                j.match(j.payload(ip, "daddr"), f"@mcast_v{version}"),
            ]
            t.rule(c, *listed, j.match(j.socket("transparent"), j.anon_set([0, 1])), j.RETURN)
            t.rule(c, *listed, *_drop("drop_mcast_unjoined"), comment="nobody receives")


def _input(t: _Table, persona: Persona) -> None:
    c = "input"
    mode, profile, qos = persona.communication_mode, persona.security_profile, persona.qos
    t.rule(c, j.match(j.meta("iif"), "lo"), j.ACCEPT)
    t.rule(c, j.jump("lockout_in"))
    if qos.ingress_rate is not None:
        rate_bytes = qos.ingress_rate // 8
        burst = qos.burst if qos.burst is not None else max(rate_bytes // 10, MIN_POLICE_BURST)
        t.rule(
            c, j.limit_bytes(rate_bytes, burst), *_drop("drop_ingress_rate"), comment="ingress_rate"
        )
    if profile is not SecurityProfile.LOW and _allows_icmp(persona):
        _echo_limit(t, c)
    _conntrack(t, c, profile)
    # Broadcast (spec section 5): only broadcast mode lets it through, for allowed protocols.
    if mode is not CommunicationMode.BROADCAST:
        _drop_broadcast(t, c, persona, dhcp_port=67, verdict=j.goto("in_new"))
    _multicast(t, c, persona, outbound=False)
    # Spec section 4: `peers` always restricts inbound new flows; high restricts to the
    # permitted peers even without `peers`.
    if persona.peers or profile is SecurityProfile.HIGH:
        _peer_check(t, c, "saddr", j.goto("in_new"))
    else:
        t.rule(c, j.goto("in_new"))


def _drop_broadcast(
    t: _Table, chain: str, persona: Persona, *, dhcp_port: int, verdict: JSON
) -> None:
    """Spec section 5: broadcast dropped, DHCP server traffic aside when ``dhcp`` is allowed
    (client traffic is in the lockout chains)."""
    if _allows(persona, L4.UDP, dhcp_port):
        dport = j.match(j.payload("udp", "dport"), dhcp_port)
        t.rule(chain, _broadcast(), dport, verdict, comment="dhcp server")
    t.rule(chain, _broadcast(), *_drop("drop_broadcast"))


def _broadcast() -> JSON:
    return j.match(j.fib_daddr_type(), "broadcast")


def _echo_limit(t: _Table, chain: str) -> None:
    """Spec section 4: echo requests per source, before conntrack. Requests that share an ICMP
    identifier (ping -f) are one conntrack flow, so a limit placed after the established
    accept would see only the first of them."""
    for version, proto in ((4, "icmp"), (6, "icmpv6")):
        t.rule(
            chain,
            j.match(j.payload(proto, "type"), "echo-request"),
            j.meter(
                f"echo_v{version}",
                j.payload(_ip(version), "saddr"),
                j.limit_packets(ECHO_RATE, ECHO_BURST),
                METER_SIZE,
            ),
            *_drop("drop_rate_limit"),
            comment="echo rate per source",
        )


def _allows_icmp(persona: Persona) -> bool:
    return any(rule.l4 is L4.ICMP for rule in persona.rules)


def _conntrack(t: _Table, chain: str, profile: SecurityProfile) -> None:
    t.rule(chain, j.match(j.ct("state"), ["established", "related"], "in"), j.ACCEPT)
    if profile is SecurityProfile.LOW:
        t.rule(chain, j.match(j.ct("state"), "invalid", "in"), j.ACCEPT)
    else:
        t.rule(chain, j.match(j.ct("state"), "invalid", "in"), *_drop("drop_invalid"))


def _multicast(t: _Table, chain: str, persona: Persona, *, outbound: bool) -> None:
    """Spec section 5: multicast only in multicast mode, only to the listed groups."""
    if persona.communication_mode is CommunicationMode.MULTICAST:
        t.rule(chain, j.match(j.meta("l4proto"), "igmp"), j.ACCEPT, comment="igmp")
        if outbound:
            for version in (4, 6):
                t.rule(
                    chain,
                    j.match(j.payload(_ip(version), "daddr"), f"@mcast_v{version}"),
                    j.goto("out_proto"),
                )
        for version, group in ((4, IPV4_MULTICAST), (6, IPV6_MULTICAST)):
            ip = _ip(version)
            t.rule(
                chain,
                j.match(j.payload(ip, "daddr"), j.prefix(group)),
                j.match(j.payload(ip, "daddr"), f"@mcast_v{version}", "!="),
                *_drop("drop_multicast"),
            )
        return
    for version, group in ((4, IPV4_MULTICAST), (6, IPV6_MULTICAST)):
        t.rule(
            chain,
            j.match(j.payload(_ip(version), "daddr"), j.prefix(group)),
            *_drop("drop_multicast"),
        )


def _peer_check(t: _Table, chain: str, addr: str, verdict: JSON) -> None:
    for version in (4, 6):
        ip = _ip(version)
        for set_name in (f"peer_nets_v{version}", f"peer_addrs_v{version}"):
            t.rule(chain, j.match(j.payload(ip, addr), f"@{set_name}"), verdict)
    t.rule(chain, *_drop("drop_not_peer"))


def _in_new(t: _Table, persona: Persona) -> None:
    limit = persona.qos.max_connections
    if limit is not None:
        for version in (4, 6):
            t.rule(
                "in_new",
                j.match(j.meta("nfproto"), "ipv4" if version == 4 else "ipv6"),
                j.match(j.ct("state"), "new", "in"),
                j.meter(
                    f"connlimit_v{version}",
                    j.payload(_ip(version), "saddr"),
                    j.ct_count_over(limit),
                    METER_SIZE,
                ),
                *_drop("drop_conn_limit"),
                comment="max_connections per source",
            )
    _protocols(t, "in_new", persona.rules)
    t.rule("in_new", *_drop("drop_protocol"))


def _protocols(t: _Table, chain: str, rules: tuple[ProtocolRule, ...]) -> None:
    """One rule per transport naming its port set, then port-less protocols.

    The port rule is there even while its set is empty, so that the first port allowed, or the
    last one removed, is a change of the set's elements alone."""
    for l4 in PORT_TRANSPORTS:
        if any(r.l4 is l4 and r.ports is None for r in rules):
            t.rule(chain, j.match(j.meta("l4proto"), l4.value), j.ACCEPT)
        else:
            port_set = f"@{PORT_SETS[l4.value]}"
            t.rule(chain, j.match(j.payload(l4.value, "dport"), port_set), j.ACCEPT)
    bare = [r.l4.value for r in rules if r.l4 in (L4.IGMP, L4.GRE, L4.ESP, L4.AH)]
    if bare:
        t.rule(chain, j.match(j.meta("l4proto"), j.anon_set(bare)), j.ACCEPT)
    if any(r.l4 is L4.ICMP for r in rules):
        for proto in ("icmp", "icmpv6"):
            t.rule(chain, j.match(j.payload(proto, "type"), "echo-request"), j.ACCEPT)


def _output(t: _Table, persona: Persona) -> None:
    c = "output"
    mode, profile = persona.communication_mode, persona.security_profile
    t.rule(c, j.match(j.meta("oif"), "lo"), j.ACCEPT)
    t.rule(c, j.jump("lockout_out"))
    _conntrack(t, c, profile)
    if mode is CommunicationMode.BROADCAST:
        t.rule(c, _broadcast(), j.goto("out_proto"))
    else:
        _drop_broadcast(t, c, persona, dhcp_port=68, verdict=j.goto("out_proto"))
    _multicast(t, c, persona, outbound=True)
    # Spec sections 4-5: low sends anything, medium only allowed protocols, high only to
    # permitted peers; restricted mode adds "only to permitted peers" whatever the profile.
    after_peer = j.ACCEPT if profile is SecurityProfile.LOW else j.goto("out_proto")
    if mode is CommunicationMode.RESTRICTED or profile is SecurityProfile.HIGH:
        _peer_check(t, c, "daddr", after_peer)
    else:
        t.rule(c, after_peer)


def _mark_out(t: _Table, persona: Persona, facts: HostFacts) -> None:
    c = "mark_out"
    if persona.qos.shapes_egress:
        for match in (
            *(
                [
                    j.match(j.payload(_ip(md.address.version), "daddr"), str(md.address)),
                    j.match(j.payload("tcp", "dport"), md.port),
                ]
                for md in facts.metadata_endpoints
            ),
            [j.match(j.payload("udp", "dport"), facts.control_port)],
        ):
            t.rule(
                c,
                *match,
                j.mangle(j.meta("priority"), CONTROL_CLASS),
                comment="control traffic: top class",
            )
    for version in (4, 6):
        t.rule(
            c,
            j.vmap(j.payload(_ip(version), "daddr"), f"peer_dscp_v{version}"),
            comment="toward a higher-priority peer: its DSCP",
        )
    _set_dscp(t, c, persona.dscp)


def _set_dscp(t: _Table, chain: str, dscp: int) -> None:
    for version in (4, 6):
        t.rule(chain, j.mangle(j.payload(_ip(version), "dscp"), dscp))
