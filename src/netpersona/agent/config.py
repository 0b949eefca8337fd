"""How the agent is told to run (``netpersona agent``'s options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

import httpx

from netpersona.errors import UsageError
from netpersona.facts import DEFAULT_CONTROL_PORT, Endpoint
from netpersona.gossip.config import GossipConfig

__all__ = ["AgentConfig", "metadata_endpoint", "metadata_urls"]


@dataclass(frozen=True, slots=True)
class AgentConfig:
    metadata_url: str  # the metadata service, or the first of its replicas
    state_dir: Path
    control_port: int = DEFAULT_CONTROL_PORT
    watch_timeout: float = 300.0
    drift_interval: float = 30.0
    backoff_cap: float = 30.0
    gossip: bool = True
    gossip_config: GossipConfig = field(default_factory=GossipConfig)
    # Replicas to fail over to, in order, when metadata_url does not answer.
    metadata_fallbacks: tuple[str, ...] = ()

    @property
    def metadata_urls(self) -> tuple[str, ...]:
        return (self.metadata_url, *self.metadata_fallbacks)


def metadata_urls(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``--metadata-url`` given once or more, each maybe a comma-separated list (as
    ``NETPERSONA_METADATA_URL`` is): every URL once, in the order given, each checked."""
    urls: list[str] = []
    for value in values:
        for part in value.split(","):
            url = part.strip()
            if not url:
                raise UsageError(f"--metadata-url {value!r}: an empty URL in the list")
            parsed = httpx.URL(url)
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise UsageError(f"--metadata-url {url!r}: expected http://ADDRESS[:PORT]")
            metadata_endpoint(url)
            if url not in urls:
                urls.append(url)
    if not urls:
        raise UsageError("--metadata-url: at least one URL is needed")
    return tuple(urls)


def metadata_endpoint(url: str) -> Endpoint:
    parsed = httpx.URL(url)
    try:
        address = ip_address(parsed.host)
    except ValueError:
        raise UsageError(
            f"--metadata-url {url!r}: the host must be an IP address (the firewall keeps it open)"
        ) from None
    return Endpoint(address, parsed.port or (443 if parsed.scheme == "https" else 80))
