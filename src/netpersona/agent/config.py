"""How the agent is told to run (``netpersona agent``'s options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

import httpx

from netpersona.errors import UsageError
from netpersona.facts import DEFAULT_CONTROL_PORT, Endpoint
from netpersona.gossip.config import GossipConfig

__all__ = [
    "AgentConfig",
    "check_metrics_textfile",
    "metadata_endpoint",
    "metadata_urls",
    "parse_metrics_listen",
]


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
    # Metrics (docs/observability.md): off unless one of the two is given.
    metrics_listen: tuple[str, int] | None = None
    metrics_textfile: Path | None = None
    metrics_interval: float = 15.0
    # Replicas to fail over to, in order, when metadata_url does not answer.
    metadata_fallbacks: tuple[str, ...] = ()

    @property
    def metadata_urls(self) -> tuple[str, ...]:
        return (self.metadata_url, *self.metadata_fallbacks)

    @property
    def metrics(self) -> bool:
        return self.metrics_listen is not None or self.metrics_textfile is not None


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


def parse_metrics_listen(text: str) -> tuple[str, int]:
    """``--metrics-listen``: ``HOST:PORT`` or ``[V6ADDR]:PORT``, HOST an IP address."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        ip_address(host)
    except ValueError:
        host = ""
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(
            f"--metrics-listen {text!r}: expected IP:PORT, e.g. 127.0.0.1:9477 (the metrics"
            " tell whoever reaches them about this VM's traffic: keep it on localhost or a"
            " management address)"
        )
    return host, int(port)


def check_metrics_textfile(path: Path) -> Path:
    """``--metrics-textfile``: a ``.prom`` file (the only ones node_exporter's textfile
    collector reads) in a directory that exists."""
    if path.suffix != ".prom":
        raise UsageError(
            f"--metrics-textfile {str(path)!r}: node_exporter's textfile collector reads only"
            " files whose name ends in .prom"
        )
    if not path.parent.is_dir():
        raise UsageError(
            f"--metrics-textfile {str(path)!r}: directory {str(path.parent)!r} does not exist"
        )
    return path
