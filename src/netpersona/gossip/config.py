"""The control channel's protocol parameters (docs/propagation.md says why each is what it is)."""

from __future__ import annotations

from dataclasses import dataclass

from netpersona.errors import UsageError
from netpersona.gossip.wire import MAX_DATAGRAM

__all__ = ["IP_UDP_OVERHEAD", "GossipConfig"]

# IPv4 + UDP headers: counted against the bandwidth cap, since they cross the wire too.
IP_UDP_OVERHEAD = 28


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Protocol parameters; docs/propagation.md says why each default is what it is."""

    interval: float = 1.0
    fanout: int = 3
    push_pull_interval: float = 30.0
    retransmit_mult: int = 4
    news_window: float = 120.0
    bandwidth: int = 2048
    bandwidth_burst: int = 4096
    source_rate: float = 20.0
    source_burst: float = 40.0
    max_sources: int = 4096
    max_certs: int = 16384
    max_seeds: int = 64
    max_rumors: int = 4096
    summary_branches: int = 4
    max_replies: int = 8

    def __post_init__(self) -> None:
        positive = {
            "interval": self.interval,
            "fanout": self.fanout,
            "push_pull_interval": self.push_pull_interval,
            "retransmit_mult": self.retransmit_mult,
            "bandwidth": self.bandwidth,
            "source_rate": self.source_rate,
            "max_sources": self.max_sources,
            "max_certs": self.max_certs,
            "max_rumors": self.max_rumors,
            "summary_branches": self.summary_branches,
            "max_replies": self.max_replies,
        }
        for name, value in positive.items():
            if not value > 0:
                raise UsageError(f"gossip {name}: {value!r} must be positive")
        if self.bandwidth_burst < MAX_DATAGRAM + IP_UDP_OVERHEAD:
            raise UsageError(
                f"gossip bandwidth_burst: {self.bandwidth_burst} is below one full datagram "
                f"({MAX_DATAGRAM + IP_UDP_OVERHEAD} bytes)"
            )
        if self.source_burst < 1:
            raise UsageError(f"gossip source_burst: {self.source_burst!r} must be at least 1")
