"""How the agent is told to run (``netpersona agent``'s options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

import httpx

from netpersona.errors import UsageError
from netpersona.facts import DEFAULT_CONTROL_PORT, Endpoint
from netpersona.gossip.config import GossipConfig

__all__ = ["AgentConfig", "metadata_endpoint"]


@dataclass(frozen=True, slots=True)
class AgentConfig:
    metadata_url: str
    state_dir: Path
    control_port: int = DEFAULT_CONTROL_PORT
    watch_timeout: float = 300.0
    drift_interval: float = 30.0
    backoff_cap: float = 30.0
    gossip: bool = True
    gossip_config: GossipConfig = field(default_factory=GossipConfig)


def metadata_endpoint(url: str) -> Endpoint:
    parsed = httpx.URL(url)
    try:
        address = ip_address(parsed.host)
    except ValueError:
        raise UsageError(
            f"--metadata-url {url!r}: the host must be an IP address (the firewall keeps it open)"
        ) from None
    return Endpoint(address, parsed.port or (443 if parsed.scheme == "https" else 80))
