"""``netpersona agent``: the VM agent (see :mod:`netpersona.agent.runner`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Annotated

import typer

from netpersona.agent.config import check_metrics_textfile, metadata_urls, parse_metrics_listen
from netpersona.agent.runner import Agent, AgentConfig
from netpersona.cli.log_options import LogFormatOption, LogLevelOption
from netpersona.dataplane.kernel import LinuxKernel
from netpersona.facts import DEFAULT_CONTROL_PORT
from netpersona.gossip.config import GossipConfig
from netpersona.logs import configure_logging

__all__ = ["register"]

DEFAULT_URL = "http://169.254.169.254"
DEFAULT_STATE_DIR = Path("/var/lib/netpersona")
_GOSSIP_DEFAULTS = GossipConfig()


def register(app: typer.Typer) -> None:
    @app.command()
    def agent(
        metadata_url: Annotated[
            list[str] | None,
            typer.Option(
                envvar="NETPERSONA_METADATA_URL",
                help="The metadata service. Replicas: give it again, or a comma-separated list"
                " (so can NETPERSONA_METADATA_URL); the agent fails over in that order and"
                " tries the first again after 5 minutes.",
            ),
        ] = None,
        state_dir: Annotated[
            Path,
            typer.Option(
                envvar="NETPERSONA_STATE_DIR", help="Where the agent keeps what it applied."
            ),
        ] = DEFAULT_STATE_DIR,
        once: Annotated[
            bool, typer.Option("--once", help="One pass, then exit (0: in force).")
        ] = False,
        control_port: Annotated[int, typer.Option(help="The control channel's UDP port.")] = (
            DEFAULT_CONTROL_PORT
        ),
        watch_timeout: Annotated[float, typer.Option(help="Seconds a long-poll may wait.")] = 300.0,
        drift_interval: Annotated[
            float, typer.Option(help="Seconds between checks for changes made behind its back.")
        ] = 30.0,
        gossip: Annotated[
            bool,
            typer.Option(help="Run the control channel (persona certificates over UDP)."),
        ] = True,
        gossip_interval: Annotated[
            float, typer.Option(help="Seconds per gossip round on the control channel.")
        ] = _GOSSIP_DEFAULTS.interval,
        gossip_bandwidth: Annotated[
            int, typer.Option(help="The control channel's cap in bytes/s (headers included).")
        ] = _GOSSIP_DEFAULTS.bandwidth,
        metrics_listen: Annotated[
            str | None,
            typer.Option(
                help="Serve Prometheus metrics on IP:PORT (e.g. 127.0.0.1:9477) at /metrics."
                " Off by default.",
            ),
        ] = None,
        metrics_textfile: Annotated[
            Path | None,
            typer.Option(
                help="Write Prometheus metrics to this .prom file (replaced atomically), for"
                " node_exporter's textfile collector. Off by default.",
            ),
        ] = None,
        metrics_interval: Annotated[
            float, typer.Option(min=1.0, help="Seconds between rewrites of --metrics-textfile.")
        ] = 15.0,
        log_level: LogLevelOption = "info",
        log_format: LogFormatOption = None,
    ) -> None:
        """Query this VM's persona, apply it, keep watching, and report to the service."""
        configure_logging(log_level, log_format)
        urls = metadata_urls(metadata_url or [DEFAULT_URL])
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
            raise typer.Exit(0 if ok else 1)
        asyncio.run(_run_until_signalled(the_agent))


async def _run_until_signalled(the_agent: Agent) -> None:
    """Run until SIGTERM or SIGINT. Stopping leaves the persona in force: the VM stays as it is."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(the_agent.run())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
