"""nftables in this process (libnftables, nfnetlink) answers as the nft program does."""

from __future__ import annotations

import json
import threading
from ipaddress import IPv4Address

import pytest

from netpersona.dataplane import nftlib
from netpersona.dataplane.kernel import LinuxKernel
from netpersona.dataplane.nftlib import NftLibrary, nft_runner
from netpersona.errors import CommandFailed, KernelError
from netpersona.system.command import run
from netpersona.testing.netns import netns

pytestmark = pytest.mark.kernel

TABLE = """add table inet netpersona
add chain inet netpersona dscp_10
add set inet netpersona peer_addrs_v4 { type ipv4_addr; }
add set inet netpersona peer_addrs_v6 { type ipv6_addr; }
add map inet netpersona peer_dscp_v4 { type ipv4_addr : verdict; }
"""
ELEMENTS = """add element inet netpersona peer_addrs_v4 { 10.0.0.1, 10.0.0.3 }
add element inet netpersona peer_addrs_v6 { fd00::1 }
add element inet netpersona peer_dscp_v4 { 10.0.0.1 : goto dscp_10 }
"""


def _library_or_skip() -> None:
    if not isinstance(nft_runner("nptest-probe"), NftLibrary):
        pytest.skip("libnftables is not installed")
    nftlib.close_runners(["nptest-probe"])


@pytest.mark.parametrize("runner", ["library", "program"])
def test_both_runners_read_write_and_fail_alike(runner: str) -> None:
    if runner == "library":
        _library_or_skip()
    with netns() as ns:
        nft = nft_runner(ns.name, program=runner == "program")
        kernel = LinuxKernel(ns.name, nft=nft)
        assert kernel.nft_table() is None
        kernel.nft_load_text(TABLE)
        kernel.nft_load_text(ELEMENTS)
        # What the kernel holds, read by the other means: the nft program itself.
        listed = json.loads(ns.run(["nft", "-j", "list", "table", "inet", "netpersona"]).stdout)
        assert kernel.nft_table() == [o for o in listed["nftables"] if "metainfo" not in o]
        assert kernel.nft_set("peer_addrs_v4") == ["10.0.0.1", "10.0.0.3"]
        assert kernel.nft_set("nosuch") is None
        text = kernel.nft_table_text()
        assert text is not None
        assert "10.0.0.3" in text
        with pytest.raises(CommandFailed) as failed:
            kernel.nft_load_text("add element inet netpersona nosuch { 1.2.3.4 }\n")
        assert failed.value.argv == ("ip", "netns", "exec", ns.name, "nft", "-f", "-")
        assert failed.value.returncode == 1
        assert "Error: No such file or directory" in failed.value.stderr
        assert "add element inet netpersona nosuch" in str(failed.value)
        # A batch that fails changes nothing, either way.
        with pytest.raises(CommandFailed):
            kernel.nft_load_text(
                "add element inet netpersona peer_addrs_v4 { 10.0.0.9 }\nadd chain inet nosuch c\n"
            )
        assert kernel.nft_set("peer_addrs_v4") == ["10.0.0.1", "10.0.0.3"]
        nftlib.close_runners([ns.name])


@pytest.mark.parametrize("runner", ["library", "program"])
def test_element_lookup_answers_each_key(runner: str) -> None:
    if runner == "library":
        _library_or_skip()
    with netns() as ns:
        kernel = LinuxKernel(ns.name, nft=nft_runner(ns.name, program=runner == "program"))
        kernel.nft_load_text(TABLE)
        kernel.nft_load_text(ELEMENTS)
        holds = kernel.nft_holds
        assert holds("peer_addrs_v4", ["10.0.0.1", "10.0.0.3"], held=True)
        assert not holds("peer_addrs_v4", ["10.0.0.1", "10.0.0.2"], held=True)
        assert holds("peer_addrs_v4", ["10.0.0.2", "10.0.0.4"], held=False)
        assert not holds("peer_addrs_v4", ["10.0.0.2", "10.0.0.3"], held=False)
        assert holds("peer_addrs_v6", ["fd00::1"], held=True)
        assert not holds("peer_addrs_v6", ["fd00::2"], held=True)
        assert holds("peer_dscp_v4", ["10.0.0.1"], held=True)
        assert holds("peer_dscp_v4", ["10.0.0.3"], held=False)
        assert holds("nosuch", ["10.0.0.1"], held=False)
        with pytest.raises(KernelError, match="not an nftables set name"):
            holds("x }; flush ruleset; {", ["10.0.0.1"], held=True)
        # Many keys at once, in a set of thousands, and the checked-batch way agrees.
        many = [str(IPv4Address(0x0A010000 + i)) for i in range(5000)]
        kernel.nft_load(
            {
                "nftables": [
                    {
                        "add": {
                            "element": {
                                "family": "inet",
                                "table": "netpersona",
                                "name": "peer_addrs_v4",
                                "elem": many,
                            }
                        }
                    }
                ]
            }
        )
        asked = [*many[::97], "10.0.0.1"]
        assert holds("peer_addrs_v4", asked, held=True)
        assert kernel._nft_holds_checked("peer_addrs_v4", asked, held=True)
        assert not holds("peer_addrs_v4", [*asked, "10.2.0.0"], held=True)
        nftlib.close_runners([ns.name])


def test_a_namespace_made_again_under_the_same_name_is_the_one_used() -> None:
    _library_or_skip()
    with netns() as ns:
        kernel = LinuxKernel(ns.name)
        kernel.nft_load_text(TABLE)
        kernel.nft_load_text(ELEMENTS)
        assert kernel.nft_holds("peer_addrs_v4", ["10.0.0.1"], held=True)
        # Deleted behind the library's back (not through delete_netns) and made again: the
        # element lookup (first) and the commands ask the new one.
        run(["ip", "netns", "delete", ns.name])
        run(["ip", "netns", "add", ns.name])
        assert not kernel.nft_holds("peer_addrs_v4", ["10.0.0.1"], held=True)
        assert kernel.nft_table() is None
        kernel.nft_load_text(TABLE)
        run(["ip", "netns", "delete", ns.name])
        run(["ip", "netns", "add", ns.name])
        assert kernel.nft_table() is None
    with pytest.raises(KernelError, match="no network namespace"):
        kernel.nft_table()


def test_deleting_a_namespace_ends_the_thread_that_joined_it() -> None:
    _library_or_skip()
    before = {t.ident for t in threading.enumerate()}
    with netns() as ns:
        LinuxKernel(ns.name).nft_load_text(TABLE)
        name = ns.name
        assert any(t.name.startswith(f"nft-{name}") for t in threading.enumerate())
    assert not any(t.name.startswith(f"nft-{name}") for t in threading.enumerate())
    assert {t.ident for t in threading.enumerate()} <= before | {None}
