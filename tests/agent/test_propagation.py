"""The agent's side of propagation without processes: merging the service's peer view with what
gossip learned, and waking the reconciler only when that merged view changes."""

from __future__ import annotations

import time
from ipaddress import ip_address
from pathlib import Path

from netpersona.agent.client import Watched
from netpersona.agent.runner import Agent, AgentConfig
from netpersona.agent.view import merge_peer_views, parse_peer_view
from netpersona.certs import Verifier
from netpersona.dataplane.kernel import LinuxKernel
from netpersona.gossip import GossipNode
from netpersona.gossip.wire import Certs, encode
from netpersona.records import Peer
from netpersona.testing.certs import fixed_key, key_set, make_certificate, signed

B = ip_address("10.0.0.2")
C = ip_address("10.0.0.3")


def served_b_as_api() -> tuple[Peer, ...]:
    return parse_peer_view(
        {
            "peers": [
                {"instance": "vm-b", "addresses": ["10.0.0.2"], "persona": "api", "priority": 3}
            ]
        }
    )


def personas(view: tuple[Peer, ...]) -> dict[str, str | None]:
    return {str(p.addresses[0]): p.persona for p in view}


def test_without_gossip_the_service_view_stands() -> None:
    assert merge_peer_views(served_b_as_api(), 1000.0, []) == served_b_as_api()


def test_a_certificate_newer_than_the_answer_replaces_the_entry_and_adds_peers() -> None:
    b_web = make_certificate("vm-b", ("10.0.0.2",), persona="web", issued_at=1001, seq=5)
    c_api = make_certificate("vm-c", ("10.0.0.3",), persona="api", issued_at=1002, seq=5)
    view = merge_peer_views(served_b_as_api(), 1000.0, [b_web, c_api])
    assert personas(view) == {"10.0.0.2": "web", "10.0.0.3": "api"}
    assert {p.instance for p in view} == {"vm-b", "vm-c"}  # one entry per instance


def test_an_answer_newer_than_the_certificate_wins() -> None:
    # The service answered after these were issued: B is still api, and C (web, not selected
    # by the service any more) is not kept alive by its old certificate.
    b_web = make_certificate("vm-b", ("10.0.0.2",), persona="web", issued_at=990)
    c_api = make_certificate("vm-c", ("10.0.0.3",), persona="api", issued_at=1000)
    view = merge_peer_views(served_b_as_api(), 1000.0, [b_web, c_api])
    assert personas(view) == {"10.0.0.2": "api"}


def test_before_any_answer_gossip_is_all_there_is() -> None:
    c_api = make_certificate("vm-c", ("10.0.0.3",), persona="api", issued_at=5)
    assert personas(merge_peer_views((), None, [c_api])) == {"10.0.0.3": "api"}


def test_entries_are_matched_by_instance_id_not_by_address() -> None:
    # B moved to a new address: its newer certificate replaces the service's entry for vm-b.
    b_moved = make_certificate("vm-b", ("10.0.0.9",), persona="web", issued_at=1001, seq=5)
    view = merge_peer_views(served_b_as_api(), 1000.0, [b_moved])
    assert [(p.instance, personas((p,))) for p in view] == [("vm-b", {"10.0.0.9": "web"})]
    # Another instance now holds B's old address: two instances, both kept (an address is not
    # an identity), and the service's entry for vm-b stands.
    d_on_b = make_certificate("vm-d", ("10.0.0.2",), persona="db", issued_at=1001, seq=5)
    view = merge_peer_views(served_b_as_api(), 1000.0, [d_on_b])
    assert [(p.instance, p.persona) for p in view] == [("vm-b", "api"), ("vm-d", "db")]


def test_per_instance_the_newest_wins_whichever_channel() -> None:
    served = parse_peer_view(
        {
            "peers": [
                {"instance": "vm-b", "addresses": ["10.0.0.2"], "persona": "api", "priority": 3},
                {"instance": "vm-c", "addresses": ["10.0.0.3"], "persona": "api", "priority": 3},
            ]
        }
    )
    b_new = make_certificate("vm-b", ("10.0.0.2",), persona="web", issued_at=1001, seq=9)
    c_old = make_certificate("vm-c", ("10.0.0.3",), persona="web", issued_at=999, seq=9)
    view = merge_peer_views(served, 1000.0, [b_new, c_old])
    assert [(p.instance, p.persona) for p in view] == [("vm-b", "web"), ("vm-c", "api")]


def summary_top() -> tuple[Peer, ...]:
    """The service's priority summary: vm-top (priority 7), not among this VM's peers."""
    entry = {"instance": "vm-top", "addresses": ["10.0.0.7"], "priority": 7, "dscp": None}
    return (Peer.from_json(entry),)


def test_the_summary_joins_the_view_without_persona_or_labels() -> None:
    view = merge_peer_views(served_b_as_api(), 1000.0, [], summary_top())
    top = next(p for p in view if p.instance == "vm-top")
    assert (top.priority, top.persona, top.labels) == (7, None, ())
    # A peers entry of the same instance says more than the summary: it wins.
    both = merge_peer_views(served_b_as_api(), 1000.0, [], (served_b_as_api()[0],))
    assert both == served_b_as_api()


def test_a_vm_dropped_by_the_service_is_not_kept_by_an_old_certificate() -> None:
    # vm-c left the service's answer (peers and summary); its certificate is older than it.
    c_old = make_certificate("vm-c", ("10.0.0.3",), persona="api", priority=7, issued_at=990)
    view = merge_peer_views(served_b_as_api(), 1000.0, [c_old], summary_top())
    assert {p.instance for p in view} == {"vm-b", "vm-top"}
    # An old certificate does not override the summary's priority either.
    top_old = make_certificate("vm-top", ("10.0.0.7",), persona="x", priority=2, issued_at=990)
    view = merge_peer_views((), 1000.0, [top_old], summary_top())
    assert [(p.instance, p.priority) for p in view] == [("vm-top", 7)]
    # A newer one does: the VM's priority changed after the answer.
    top_new = make_certificate("vm-top", ("10.0.0.7",), persona="x", priority=2, issued_at=1001)
    view = merge_peer_views((), 1000.0, [top_new], summary_top())
    assert [(p.instance, p.priority) for p in view] == [("vm-top", 2)]


def agent_with_node(tmp_path: Path, served_at: float) -> Agent:
    """An agent (never touching a kernel here) whose gossip node holds A's own certificate."""
    agent = Agent(
        AgentConfig(metadata_url="http://169.254.169.254", state_dir=tmp_path),
        LinuxKernel(),
    )
    verifier = Verifier(key_set(fixed_key("k1")))
    node = GossipNode(address=ip_address("10.0.0.1"), verifier=verifier, now=time.time())
    own = make_certificate("vm-a", ("10.0.0.1",), persona="front", issued_at=int(time.time()))
    node.set_own_certificate(signed(own), time.time())
    agent.control.node = node
    body = {
        "peers": [{"instance": "vm-b", "addresses": ["10.0.0.2"], "persona": "api", "priority": 3}]
    }
    agent.latest["peers"] = Watched(body, '"e1"', served_at)
    agent.compiled_view = agent.peer_view()
    return agent


def hear(agent: Agent, source: str, persona: str, seq: int, issued_at: int) -> None:
    """A certificate arriving on the control channel from its own VM."""
    assert agent.control.node is not None
    name = {"10.0.0.2": "vm-b", "10.0.0.3": "vm-c"}[source]
    # A renewal keeps the persona version; only seq and the times move.
    cert = make_certificate(
        name, (source,), persona=persona, seq=seq, issued_at=issued_at, persona_version=1
    )
    datagram = encode(Certs((signed(cert).encode(),)))
    step = agent.control.node.receive(datagram, ip_address(source), time.time())
    assert step.learned, agent.control.node.counters
    agent.control.on_gossip(step)


def test_news_that_changes_the_view_wakes_the_reconciler(tmp_path: Path) -> None:
    now = int(time.time())
    agent = agent_with_node(tmp_path, served_at=now - 100)
    assert agent.compiled_view == served_b_as_api()
    hear(agent, "10.0.0.3", "api", seq=2, issued_at=now - 10)
    assert agent.dirty.is_set()
    assert personas(agent.peer_view()) == {"10.0.0.2": "api", "10.0.0.3": "api"}


def test_news_that_says_what_the_view_says_does_not_wake(tmp_path: Path) -> None:
    now = int(time.time())
    agent = agent_with_node(tmp_path, served_at=now - 100)
    # B's certificate, newer than the answer, but saying the same (B holds api).
    hear(agent, "10.0.0.2", "api", seq=2, issued_at=now - 10)
    agent.compiled_view = agent.peer_view()
    agent.dirty.clear()
    hear(agent, "10.0.0.2", "api", seq=3, issued_at=now - 5)  # a renewal
    assert not agent.dirty.is_set()
    hear(agent, "10.0.0.2", "web", seq=4, issued_at=now - 1)  # a change of persona
    assert agent.dirty.is_set()
    assert personas(agent.peer_view()) == {"10.0.0.2": "web"}


def test_a_peers_new_persona_version_alone_does_not_wake(tmp_path: Path) -> None:
    now = int(time.time())
    agent = agent_with_node(tmp_path, served_at=now - 100)
    hear(agent, "10.0.0.2", "api", seq=2, issued_at=now - 10)
    agent.compiled_view = agent.peer_view()
    agent.dirty.clear()
    assert agent.control.node is not None
    # B's persona got a new version that changes nothing this VM compiles from.
    cert = make_certificate(
        "vm-b", ("10.0.0.2",), persona="api", seq=3, issued_at=now - 5, persona_version=2
    )
    step = agent.control.node.receive(encode(Certs((signed(cert).encode(),))), B, time.time())
    assert step.learned
    agent.control.on_gossip(step)
    assert not agent.dirty.is_set()
    assert {p.persona_version for p in agent.peer_view()} == {2}


def test_news_older_than_the_service_answer_does_not_wake(tmp_path: Path) -> None:
    now = int(time.time())
    agent = agent_with_node(tmp_path, served_at=now)
    hear(agent, "10.0.0.3", "api", seq=2, issued_at=now - 30)
    assert not agent.dirty.is_set()


def test_an_expiring_peer_wakes_the_reconciler(tmp_path: Path) -> None:
    now = int(time.time())
    agent = agent_with_node(tmp_path, served_at=now - 100)
    assert agent.control.node is not None
    cert = make_certificate(
        "vm-c", ("10.0.0.3",), persona="api", seq=2, issued_at=now - 50, expires_at=now + 2
    )
    agent.control.node.receive(encode(Certs((signed(cert).encode(),))), C, time.time())
    agent.compiled_view = agent.peer_view()
    agent.dirty.clear()
    step = agent.control.node.tick(now + 3)
    assert step.expired == ("vm-c",)
    agent.control.on_gossip(step)
    assert agent.dirty.is_set()
