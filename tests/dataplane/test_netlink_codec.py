"""Decoding of link messages (the parts a kernel without 802.1Q cannot show the tests)."""

from __future__ import annotations

from netpersona.dataplane.netlink import HostLink, _codecs, _link


def _decoded(attrs: list[tuple[str, object]], flags: int) -> object:
    codec = _codecs().ifinfmsg
    message = codec()
    message["index"] = 5
    message["flags"] = flags
    message["attrs"] = attrs
    message.encode()
    decoded = codec(bytes(message.data))
    decoded.decode()
    return decoded


def test_vlan_link_has_its_id_and_mtu() -> None:
    info = {
        "attrs": [("IFLA_INFO_KIND", "vlan"), ("IFLA_INFO_DATA", {"attrs": [("IFLA_VLAN_ID", 42)]})]
    }
    message = _decoded([("IFLA_IFNAME", "eth0.42"), ("IFLA_MTU", 1300), ("IFLA_LINKINFO", info)], 1)
    assert _link(message, ()) == HostLink(
        "eth0.42", 5, up=True, loopback=False, mtu=1300, vlan_id=42
    )


def test_other_kinds_have_no_vlan_id() -> None:
    info = {"attrs": [("IFLA_INFO_KIND", "veth")]}
    message = _decoded([("IFLA_IFNAME", "v0"), ("IFLA_MTU", 1500), ("IFLA_LINKINFO", info)], 0x8)
    assert _link(message, ()) == HostLink("v0", 5, up=False, loopback=True, mtu=1500)
