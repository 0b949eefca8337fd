"""The agent without a kernel: backoff, what it makes of the service's answers, its record."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from netpersona.agent.answers import parse_instance
from netpersona.agent.backoff import Backoff
from netpersona.agent.runner import Agent, AgentConfig
from netpersona.agent.view import MalformedAnswer, parse_peer_view, parse_persona_answer
from netpersona.dataplane.kernel import LinuxKernel
from netpersona.facts import Tier


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(base=0.5, cap=8.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(12)]
    ceilings = [min(8.0, 0.5 * 2**n) for n in range(12)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[6:]) <= 8.0
    assert len(set(delays)) == len(delays)  # jitter: no two waits alike
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_persona_answer_without_persona_means_remove() -> None:
    answer = parse_persona_answer(
        {"assigned": False, "name": None, "version": None, "overlays": [], "network_persona": None}
    )
    assert answer.document is None


def test_persona_answer_without_version_is_garbage() -> None:
    with pytest.raises(MalformedAnswer):
        parse_persona_answer(
            {
                "assigned": True,
                "name": "web",
                "overlays": [],
                "digest": "d1",
                "network_persona": {"priority": 1},
            }
        )


def test_peer_view_entries_become_peer_infos() -> None:
    peers = parse_peer_view(
        {
            "peers": [
                {
                    "instance": "vm7",
                    "addresses": ["10.0.0.7"],
                    "persona": "api",
                    "priority": 5,
                    "labels": {"app": "api"},
                }
            ]
        }
    )
    assert peers[0].persona == "api"
    assert peers[0].priority == 5
    assert str(peers[0].addresses[0]) == "10.0.0.7"
    assert peers[0].labels == (("app", "api"),)


@pytest.mark.parametrize(
    "body", [{}, {"peers": "x"}, {"peers": [{"addresses": ["not an ip"]}]}, {"peers": [3]}]
)
def test_malformed_peer_views_are_refused_whole(body: dict[str, object]) -> None:
    with pytest.raises(MalformedAnswer):
        parse_peer_view(body)


def test_uplink_tiers_come_from_instance_interfaces() -> None:
    instance = {
        "id": "vm1",
        "interfaces": [{"name": "eth0", "tier": "premium"}, {"name": "eth1", "tier": None}],
    }
    assert parse_instance(instance).tiers == {"eth0": Tier.PREMIUM}


def test_a_second_wake_for_the_same_change_keeps_saying_applied(tmp_path: Path) -> None:
    """Two watchers may wake the reconciler for one change: the pass that finds nothing left to
    do must not turn the status the operator reads from "applied" into "unchanged"."""

    def agent() -> Agent:
        config = AgentConfig(metadata_url="http://169.254.169.254", state_dir=tmp_path)
        return Agent(config, LinuxKernel())

    first = agent()
    first.reconciler._set_result("web", 2, "d2", "applied", None)
    # The second wake comes with a later answer (another ETag): the record follows it.
    first.reconciler.persona_etag = '"e2"'
    first.reconciler._unchanged("web", 2, "d2")
    assert first.record.result == "applied"
    assert first.record.persona_etag == '"e2"'
    # A newer version whose plan is the same digest is news of its own.
    first.reconciler._unchanged("web", 3, "d2")
    assert first.record.result == "unchanged"
    # A restarted agent that finds its plan in force says so.
    restarted = agent()
    restarted.reconciler._unchanged("web", 2, "d2")
    assert restarted.record.result == "unchanged"
