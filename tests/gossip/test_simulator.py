"""The simulator runs the real core: news reaches every node, fast, even with loss."""

from __future__ import annotations

import pytest

from netpersona.gossip import GossipConfig
from netpersona.gossip.simulator import Simulator


@pytest.mark.parametrize("loss", [0.0, 0.2])
def test_by_default_each_owner_serves_its_change_to_every_node_at_its_cap(loss: float) -> None:
    config = GossipConfig()
    sim = Simulator(100, loss=loss, seed=7)
    sim.run_until(sim.now + 2)
    result = sim.change(origin=17, max_rounds=400)
    assert result.reached == 100
    # Only the owner hands over its certificate, so its cap sets the pace: about one
    # datagram of certificate per receiver, at `bandwidth` bytes a second, plus the burst.
    token = sim.nodes[17].own
    assert token is not None
    per_receiver = len(token.token) + 6 + 28
    floor = (99 * per_receiver - config.bandwidth_burst) / config.bandwidth
    assert result.seconds_to_all is not None
    assert floor * 0.8 <= result.seconds_to_all <= floor * (1.5 if loss == 0 else 4.0) + 10
    assert result.peak_bytes_per_s_per_node <= config.bandwidth_burst + config.bandwidth
    assert [name for name in result.rejects if name.startswith("reject_")] in (
        [],
        ["reject_duplicate"],
    )


@pytest.mark.parametrize("loss", [0.0, 0.2])
def test_with_relaying_one_change_reaches_every_node_in_a_few_rounds(loss: float) -> None:
    sim = Simulator(300, loss=loss, seed=7, config=GossipConfig(relay=True))
    sim.run_until(sim.now + 2)
    result = sim.change(origin=17)
    assert result.reached == 300
    assert result.rounds_to_all is not None
    assert result.rounds_to_999 is not None
    assert result.rounds_to_999 <= result.rounds_to_all <= (12 if loss == 0 else 30)
    # Lazy push: each node pays for one certificate plus a few digests, not one per rumour.
    assert 400 < result.bytes_per_node < 3000
    config = sim.config
    assert result.peak_bytes_per_s_per_node <= config.bandwidth_burst + config.bandwidth
    assert not any(name.startswith("reject_") for name in result.rejects)


def test_runs_are_reproducible_from_the_seed() -> None:
    first = Simulator(100, loss=0.1, seed=3)
    second = Simulator(100, loss=0.1, seed=3)
    assert first.change(origin=5) == second.change(origin=5)


def test_anti_entropy_alone_repairs_a_node_that_missed_the_rumours() -> None:
    # Relays never rumour (news_window < 0) and the origin's own rumour reaches only a few
    # peers: push-pull summaries must carry the change to everyone else.
    config = GossipConfig(news_window=-1.0, push_pull_interval=5.0)
    sim = Simulator(50, config=config, seed=11)
    sim.run_until(sim.now + 6)
    result = sim.change(origin=3, max_rounds=120)
    assert result.reached == 50
    assert result.rounds_to_all is not None
    assert result.rounds_to_all > 5


def test_background_traffic_without_news_is_small() -> None:
    sim = Simulator(200, seed=5)
    sim.run_until(sim.now + 40)
    assert 0 < sim.background(30.0) < 50
