"""Sysctls and link settings (spec sections 4 and 5)."""

from __future__ import annotations

from netpersona.compiler.plan import LinkSetting, Sysctl
from netpersona.compiler.routing import steering_uplink
from netpersona.errors import FieldError, InvalidDocument
from netpersona.facts import HostFacts
from netpersona.model.persona import CommunicationMode, Persona, SecurityProfile
from netpersona.model.protocols import L4

__all__ = ["IPV6_MIN_MTU", "RP_FILTER", "compile_links", "compile_sysctls", "sysctl_ifname"]

# Spec section 4's reverse-path filtering is done by nftables (ruleset.RPF_STRICT: loose in
# medium, strict in high), which counts what it drops. The sysctl stays for the kernel's own
# check, which runs after it and drops silently; ip-sysctl.rst: 0 none, 1 strict, 2 loose, and
# the kernel uses max(conf/all, conf/<uplink>). 2 on the uplink makes that check loose whatever
# conf/all says, so it never drops what the nftables check let through, except section 3
# traffic (exempt from the nftables check) whose source has no route back at all. Low keeps 0:
# the host's conf/all, if set, still applies there (docs/dataplane.md).
RP_FILTER = {SecurityProfile.LOW: "0", SecurityProfile.MEDIUM: "2", SecurityProfile.HIGH: "2"}
# RFC 8200 section 5. Below it the kernel removes IPv6 from the link altogether (addresses,
# routes, and its per-interface settings), so such an MTU is refused on an uplink using IPv6.
IPV6_MIN_MTU = 1280
MTU_POINTER = "/qos_parameters/mtu"


def sysctl_ifname(name: str) -> str:
    """sysctl(8) separates with dots, so a dot inside an interface name is written '/'."""
    return name.replace(".", "/")


def compile_sysctls(persona: Persona, facts: HostFacts) -> tuple[Sysctl, ...]:
    profile = persona.security_profile
    # Below 1280 the uplink has no IPv6, nor its net.ipv6.conf.<uplink> settings, to set.
    below_ipv6 = persona.qos.mtu is not None and persona.qos.mtu < IPV6_MIN_MTU
    out: list[Sysctl] = []
    for uplink in facts.uplinks:
        dev = sysctl_ifname(uplink.name)
        out.append(Sysctl(f"net.ipv4.conf.{dev}.rp_filter", RP_FILTER[profile]))
        if profile is not SecurityProfile.LOW:
            # ip-sysctl.rst: a redirect is accepted if conf/all or conf/<if> allows it (with
            # forwarding off) and sent if either allows it, so both must say no.
            for scope in (dev, "all"):
                out.append(Sysctl(f"net.ipv4.conf.{scope}.accept_redirects", "0"))
                out.append(Sysctl(f"net.ipv4.conf.{scope}.send_redirects", "0"))
                if scope == "all" or not below_ipv6:
                    out.append(Sysctl(f"net.ipv6.conf.{scope}.accept_redirects", "0"))
    if persona.communication_mode is CommunicationMode.BROADCAST:
        icmp = any(rule.l4 is L4.ICMP for rule in persona.rules)
        out.append(Sysctl("net.ipv4.icmp_echo_ignore_broadcasts", "0" if icmp else "1"))
    return tuple(sorted(set(out)))


def compile_links(persona: Persona, facts: HostFacts) -> tuple[LinkSetting, ...]:
    mtu = persona.qos.mtu
    if mtu is not None:
        _check_mtu(mtu, facts)
    multicast_dev = None
    if persona.communication_mode is CommunicationMode.MULTICAST and facts.uplinks:
        steer = steering_uplink(persona, facts)
        multicast_dev = (steer or sorted(facts.uplinks, key=lambda u: u.name)[0]).name
    links = []
    for uplink in sorted(facts.uplinks, key=lambda u: u.name):
        multicast = True if uplink.name == multicast_dev else None
        if mtu is not None or multicast is not None:
            links.append(LinkSetting(uplink.name, mtu=mtu, multicast=multicast))
    return tuple(links)


def _check_mtu(mtu: int, facts: HostFacts) -> None:
    """Refuse an MTU that would take IPv6 away from an uplink that has it (the persona's own
    floor, 68, is the IPv4 minimum and stays right for IPv4-only VMs)."""
    if mtu >= IPV6_MIN_MTU:
        return
    errors = []
    for uplink in sorted(facts.uplinks, key=lambda u: u.name):
        ipv6 = [str(a) for a in uplink.addresses if a.version == 6]
        if ipv6:
            errors.append(
                FieldError(
                    MTU_POINTER,
                    f"{mtu} is below {IPV6_MIN_MTU}, the smallest MTU IPv6 allows, and uplink "
                    f"{uplink.name} has IPv6 ({', '.join(ipv6)}): the kernel would remove IPv6 "
                    "from it",
                )
            )
    if errors:
        raise InvalidDocument(errors)
