"""``netpersona apply | confirm | remove | status``: the persona in this VM's kernel.

Every command takes ``--state-dir`` (default /var/lib/netpersona, or NETPERSONA_STATE_DIR; give
each network namespace its own) and ``--netns`` (act on a named network namespace instead of the
current one), and prints with ``-o table|json|yaml``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from netpersona.agent.status import RECORD_FILE
from netpersona.cli.output import (
    OutputFormat,
    data_text,
    escape,
    json_alias,
    message_console,
    output_option,
    pick,
)
from netpersona.cli.params import PATH, option
from netpersona.cli.plan_cmd import load_facts, load_persona
from netpersona.compiler import DROP_COUNTERS, compile_plan
from netpersona.dataplane.apply import Applier, ApplyReport
from netpersona.dataplane.drift import detect_drift, drop_counters
from netpersona.dataplane.host_probe import gather_facts
from netpersona.dataplane.kernel import LinuxKernel
from netpersona.dataplane.state import DEFAULT_STATE_DIR, StateStore
from netpersona.dataplane.trial import confirm, start_trial
from netpersona.errors import FieldError, InvalidDocument
from netpersona.facts import DEFAULT_CONTROL_PORT, DEFAULT_METADATA, HostFacts, Tier, parse_facts

__all__ = ["CHECK_DIFFERS", "register"]

# `apply --check` exit status when the kernel differs from the plan (0 when it matches).
CHECK_DIFFERS = 10

state_dir_option = option(
    "--state-dir",
    type=PATH,
    default=DEFAULT_STATE_DIR,
    envvar="NETPERSONA_STATE_DIR",
    help="Where the applied plan and the VM's originals are kept.",
)
netns_option = option("--netns", help="Act on this network namespace instead of the current one.")


def _tiers(values: list[str]) -> dict[str, Tier]:
    tiers: dict[str, Tier] = {}
    for value in values:
        name, _, tier = value.partition("=")
        try:
            tiers[name] = Tier(tier)
        except ValueError:
            raise InvalidDocument(
                [FieldError("/tier", f"{value!r} is not IFNAME=premium or IFNAME=standard")]
            ) from None
    return tiers


def _facts(
    source: str, kernel: LinuxKernel, metadata: str | None, control_port: int, tiers: list[str]
) -> HostFacts:
    if source != "auto":
        return load_facts(Path(source))
    endpoint = (
        parse_facts({"metadata": _endpoint_text(metadata)}).metadata
        if metadata
        else DEFAULT_METADATA
    )
    return gather_facts(kernel, metadata=endpoint, control_port=control_port, tiers=_tiers(tiers))


def _endpoint_text(metadata: str) -> str:
    """``http://ADDR[:PORT]`` (the agent's --metadata-url) or ``ADDR[:PORT]`` as ``ADDR:PORT``."""
    if "://" not in metadata:
        return metadata
    try:
        url = urlsplit(metadata)
        host, port = url.hostname, url.port
    except ValueError as exc:
        raise InvalidDocument([FieldError("/metadata", f"{metadata!r}: {exc}")]) from None
    if not host:
        raise InvalidDocument([FieldError("/metadata", f"{metadata!r} names no host")])
    port = port or (443 if url.scheme == "https" else 80)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _print_report(report: ApplyReport, output: OutputFormat) -> None:
    if output is not OutputFormat.TABLE:
        sys.stdout.write(data_text(report.to_json(), output))
        return
    if report.unchanged:
        message_console().print(f"{report.action}: nothing to change")
        return
    for step in report.steps:
        message_console().print(f"  {escape(step)}")
    what = f" {report.persona}" if report.persona else ""
    message_console().print(
        f"{report.action}{what}: {len(report.steps)} changes in {report.seconds:.2f}s"
    )


def read_agent_record(state_dir: Path) -> dict[str, Any] | None:
    """What the agent (``netpersona agent``) last wrote about itself, if it runs here."""
    try:
        record: dict[str, Any] = json.loads((state_dir / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record


def _clock(when: object) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when if isinstance(when, int | float) else 0))


def _print_agent(agent: dict[str, Any]) -> None:
    """What the agent holds, the service's state, and every watch that is failing and why."""
    message_console().print(
        f"agent: {agent.get('instance')} holds {agent.get('persona')} "
        f"v{agent.get('version')} ({agent.get('result')}); metadata service "
        f"{agent.get('service')} since {_clock(agent.get('service_since'))}"
    )
    watches = agent.get("watches")
    for name, watch in sorted(watches.items() if isinstance(watches, dict) else ()):
        if not isinstance(watch, dict) or watch.get("state") != "failing":
            continue
        error = watch.get("error") or {}
        message_console().print(
            f"  [red]{escape(str(name))}: failing since {_clock(watch.get('since'))}[/red] "
            f"({watch.get('failures')} in a row): {escape(str(error.get('code')))}: "
            f"{escape(str(error.get('message')))}",
            markup=True,
        )
    if agent.get("retry_at"):
        message_console().print(f"  the failed plan is tried again at {_clock(agent['retry_at'])}")
    if agent.get("gossip"):
        rejects = {
            k.removeprefix("reject_"): v
            for k, v in (agent.get("gossip_counters") or {}).items()
            if k.startswith("reject_") and v
        }
        message_console().print(
            f"control channel: {agent['gossip']}, {agent.get('gossip_peers', 0)} peers "
            f"learned; rejected: {rejects or 'none'}"
        )
    # A refused answer's error is the failing watch's, printed above.
    if agent.get("error") and agent.get("result") != "refused":
        message_console().print(
            f"  [red]last error[/red]: {escape(str(agent['error']))}", markup=True
        )


def register(app: click.Group) -> None:
    @app.command()
    @click.argument("persona", type=PATH, help="Persona document (YAML or JSON).")
    @option(
        "--facts",
        default="auto",
        help="'auto' (read this host) or a host facts file (YAML or JSON).",
    )
    @state_dir_option
    @netns_option
    @option("--name", help="Name to record the persona under (default: file stem).")
    @option(
        "--metadata-url",
        "metadata",
        envvar="NETPERSONA_METADATA_URL",
        help="The metadata service (URL, or ADDR:PORT) the firewall keeps open, with"
        f" --facts auto [{DEFAULT_METADATA}].",
    )
    @option(
        "--control-port",
        default=DEFAULT_CONTROL_PORT,
        help="Control channel UDP port with --facts auto.",
    )
    @option("--tier", multiple=True, help="IFNAME=premium|standard, with --facts auto; repeatable.")
    @option(
        "--check",
        is_flag=True,
        help=f"Print how the kernel differs from the plan; change nothing. "
        f"Exit 0 if it matches, {CHECK_DIFFERS} if not.",
    )
    @option(
        "--confirm-timeout",
        type=click.FloatRange(min=1),
        help="Revert to the previous persona after SECONDS unless "
        "`netpersona confirm` is run first.",
    )
    @output_option
    @json_alias
    def apply(
        persona: Path,
        facts: str,
        state_dir: Path,
        netns: str | None,
        name: str | None,
        metadata: str | None,
        control_port: int,
        tier: tuple[str, ...],
        check: bool,
        confirm_timeout: float | None,
        output: OutputFormat,
        as_json: bool,
    ) -> None:
        """Apply PERSONA to this VM's kernel, all or nothing, verified by reading it back."""
        kernel = LinuxKernel(netns)
        the_persona = load_persona(persona)
        the_plan = compile_plan(
            the_persona, _facts(facts, kernel, metadata, control_port, list(tier))
        )
        applier = Applier(kernel, StateStore(state_dir))
        output = pick(output, as_json)
        if check:
            diff = applier.check(the_plan)
            if output is not OutputFormat.TABLE:
                sys.stdout.write(data_text({"differences": diff}, output))
            else:
                for line in diff:
                    message_console().print(escape(line))
                message_console().print(
                    "the kernel matches the plan" if not diff else f"{len(diff)} differences"
                )
            raise click.exceptions.Exit(CHECK_DIFFERS if diff else 0)
        persona_name = name or persona.stem
        if confirm_timeout is None:
            _print_report(applier.apply(the_plan, persona_name), output)
            return
        report, pending = start_trial(applier, the_plan, persona_name, confirm_timeout, netns=netns)
        _print_report(report, output)
        if output is OutputFormat.TABLE:
            deadline = time.strftime("%H:%M:%S", time.localtime(pending.deadline))
            message_console().print(
                f"run `netpersona confirm` before {deadline} to keep it; else it reverts"
            )

    @app.command(name="confirm")
    @state_dir_option
    def confirm_command(state_dir: Path) -> None:
        """Keep the persona applied with --confirm-timeout."""
        state = confirm(StateStore(state_dir))
        message_console().print(f"confirmed {state.persona}")

    @app.command()
    @state_dir_option
    @netns_option
    @output_option
    @json_alias
    def remove(state_dir: Path, netns: str | None, output: OutputFormat, as_json: bool) -> None:
        """Remove the persona and restore what the VM had before the first apply."""
        report = Applier(LinuxKernel(netns), StateStore(state_dir)).remove()
        _print_report(report, pick(output, as_json))

    @app.command()
    @state_dir_option
    @netns_option
    @output_option
    @json_alias
    def status(state_dir: Path, netns: str | None, output: OutputFormat, as_json: bool) -> None:
        """What is applied, drop counters by reason, and what drifted since apply."""
        store = StateStore(state_dir)
        kernel = LinuxKernel(netns)
        state = store.load()
        body: dict[str, Any] = {"applied": state is not None}
        agent = read_agent_record(state_dir)
        if agent is not None:
            body["agent"] = agent
        if state is not None:
            counters = drop_counters(kernel)
            body |= {
                "persona": state.persona,
                "digest": state.plan.digest,
                "applied_at": state.applied_at,
                "pending_confirm_until": state.pending.deadline if state.pending else None,
                "drops": {
                    reason: {"packets": counters[reason][0], "bytes": counters[reason][1]}
                    for reason in (*DROP_COUNTERS, *sorted(set(counters) - set(DROP_COUNTERS)))
                    if reason in counters
                },
                "drift": detect_drift(kernel, state, store.load_originals()),
            }
        output = pick(output, as_json)
        if output is not OutputFormat.TABLE:
            sys.stdout.write(data_text(body, output))
            return
        if agent is not None:
            _print_agent(agent)
        if state is None:
            message_console().print("no persona applied")
            return
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.applied_at))
        message_console().print(
            f"persona {state.persona}  plan {state.plan.digest[:16]}  applied {when}"
        )
        if state.pending:
            until = time.strftime("%H:%M:%S", time.localtime(state.pending.deadline))
            message_console().print(f"on trial: reverts at {until} unless confirmed")
        message_console().print("drops:")
        for reason, count in body["drops"].items():
            message_console().print(
                f"  {reason.removeprefix('drop_'):<14} {count['packets']:>10} packets"
            )
        if body["drift"]:
            message_console().print(
                f"[red]drift[/red]: {len(body['drift'])} differences", markup=True
            )
            for line in body["drift"]:
                message_console().print(f"  {escape(line)}")
        else:
            message_console().print("drift: none")
