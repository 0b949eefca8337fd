"""``netpersona agent``: the VM agent (see :mod:`netpersona.agent.runner`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import click

from netpersona.agent.config import check_metrics_textfile, metadata_urls, parse_metrics_listen
from netpersona.agent.runner import Agent, AgentConfig
from netpersona.cli.log_options import log_options
from netpersona.cli.params import PATH, option
from netpersona.dataplane.kernel import LinuxKernel
from netpersona.facts import DEFAULT_CONTROL_PORT
from netpersona.gossip.config import GossipConfig
from netpersona.logs import LogFormat, configure_logging

__all__ = ["register"]

DEFAULT_URL = "http://169.254.169.254"
DEFAULT_STATE_DIR = Path("/var/lib/netpersona")
_GOSSIP_DEFAULTS = GossipConfig()


def register(app: click.Group) -> None:
    @app.command()
    @option(
        "--metadata-url",
        envvar="NETPERSONA_METADATA_URL",
        multiple=True,
        help="The metadata service. Replicas: give it again, or a comma-separated list"
        " (so can NETPERSONA_METADATA_URL); the agent fails over in that order and"
        " tries the first again after 5 minutes.",
    )
    @option(
        "--state-dir",
        envvar="NETPERSONA_STATE_DIR",
        type=PATH,
        default=DEFAULT_STATE_DIR,
        help="Where the agent keeps what it applied.",
    )
    @option("--once", is_flag=True, help="One pass, then exit (0: in force).")
    @option("--control-port", default=DEFAULT_CONTROL_PORT, help="The control channel's UDP port.")
    @option("--watch-timeout", default=300.0, help="Seconds a long-poll may wait.")
    @option(
        "--drift-interval",
        default=30.0,
        help="Seconds between checks for changes made behind its back.",
    )
    @option(
        "--gossip/--no-gossip",
        default=True,
        help="Run the control channel (persona certificates over UDP).",
    )
    @option(
        "--gossip-interval",
        default=_GOSSIP_DEFAULTS.interval,
        type=float,
        help="Seconds per gossip round on the control channel.",
    )
    @option(
        "--gossip-bandwidth",
        default=_GOSSIP_DEFAULTS.bandwidth,
        type=int,
        help="The control channel's cap in bytes/s (headers included).",
    )
    @option(
        "--metrics-listen",
        help="Serve Prometheus metrics on IP:PORT (e.g. 127.0.0.1:9477) at /metrics."
        " Off by default.",
    )
    @option(
        "--metrics-textfile",
        type=PATH,
        help="Write Prometheus metrics to this .prom file (replaced atomically), for"
        " node_exporter's textfile collector. Off by default.",
    )
    @option(
        "--metrics-interval",
        type=click.FloatRange(min=1.0),
        default=15.0,
        help="Seconds between rewrites of --metrics-textfile.",
    )
    @log_options
    def agent(
        metadata_url: tuple[str, ...],
        state_dir: Path,
        once: bool,
        control_port: int,
        watch_timeout: float,
        drift_interval: float,
        gossip: bool,
        gossip_interval: float,
        gossip_bandwidth: int,
        metrics_listen: str | None,
        metrics_textfile: Path | None,
        metrics_interval: float,
        log_level: str,
        log_format: LogFormat | None,
    ) -> None:
        """Query this VM's persona, apply it, keep watching, and report to the service."""
        configure_logging(log_level, log_format)
        urls = metadata_urls(list(metadata_url) or [DEFAULT_URL])
        config = AgentConfig(
            metadata_url=urls[0],
            metadata_fallbacks=urls[1:],
            state_dir=state_dir,
            control_port=control_port,
            watch_timeout=watch_timeout,
            drift_interval=drift_interval,
            gossip=gossip,
            gossip_config=GossipConfig(interval=gossip_interval, bandwidth=gossip_bandwidth),
            metrics_listen=None if metrics_listen is None else parse_metrics_listen(metrics_listen),
            metrics_textfile=(
                None if metrics_textfile is None else check_metrics_textfile(metrics_textfile)
            ),
            metrics_interval=metrics_interval,
        )
        the_agent = Agent(config, LinuxKernel())
        if once:
            ok = asyncio.run(the_agent.run_once())
            raise click.exceptions.Exit(0 if ok else 1)
        asyncio.run(_run_until_signalled(the_agent))


async def _run_until_signalled(the_agent: Agent) -> None:
    """Run until SIGTERM or SIGINT. Stopping leaves the persona in force: the VM stays as it is."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(the_agent.run())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
