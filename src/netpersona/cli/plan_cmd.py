"""``netpersona plan | validate | schema | protocols``: the persona and its plan, offline.

None of these touch the host: they read files and print.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import click

from netpersona.cli.output import OutputFormat, emit, output_option, print_table
from netpersona.cli.params import PATH, EnumChoice, option
from netpersona.compiler import compile_plan, replace_table_batch
from netpersona.compiler.plan import LinkSetting, Plan, Route, RoutingRule, TcClass, TcQdisc
from netpersona.errors import InvalidDocument, UsageError
from netpersona.facts import HostFacts, parse_facts
from netpersona.model import Persona, load_document, parse_persona_text
from netpersona.model.limits import PERSONA_LIMITS, POLICY_LIMITS, DocumentLimits
from netpersona.model.protocols import SERVICES
from netpersona.model.schema import persona_schema
from netpersona.model.units import format_rate
from netpersona.nftables.render import render_batch

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["error_lines", "load_facts", "load_persona", "read_document", "register"]


class PlanFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    NFT = "nft"


def read_bytes(path: Path, limits: DocumentLimits) -> bytes:
    """A file's bytes (``-``: stdin's), never more than one past the limit: the loader names
    the size, and a huge file is not read whole to be refused."""
    if str(path) == "-":
        return sys.stdin.buffer.read(limits.max_input_bytes + 1)
    try:
        with path.open("rb") as file:
            return file.read(limits.max_input_bytes + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def read_document(path: Path, limits: DocumentLimits = POLICY_LIMITS) -> object:
    """A YAML or JSON file as data; problems are :class:`InvalidDocument` naming the file."""
    return load_document(read_bytes(path, limits), str(path), limits=limits)


def load_persona(path: Path) -> Persona:
    return parse_persona_text(read_bytes(path, PERSONA_LIMITS), str(path))


def load_facts(path: Path | None) -> HostFacts:
    if path is None:
        return HostFacts()
    document = read_document(path)
    try:
        return parse_facts(document)
    except InvalidDocument as exc:
        raise InvalidDocument(exc.errors, str(path)) from None


def error_lines(source: object, exc: InvalidDocument) -> list[str]:
    """``FILE:POINTER: message``, one line per error (FieldError escapes what would break it)."""
    return [f"{source}:{error}" for error in exc.errors]


def nft_script(plan: Plan) -> str:
    """The plan's nftables part as the nft script that replaces the table in one transaction."""
    return render_batch(replace_table_batch(plan.nftables_objects()))


def _text(console: Console, persona: Persona, plan: Plan) -> None:
    from rich.markup import escape  # noqa: PLC0415  (rich only for this human form)

    console.print(
        f"[bold]persona[/bold] mode={persona.communication_mode} "
        f"profile={persona.security_profile} priority={persona.priority} dscp={persona.dscp}"
    )
    console.print(f"[bold]plan[/bold] {plan.digest}  (ruleset {plan.ruleset_digest[:16]})")
    sections: list[tuple[str, list[str]]] = [
        ("tc", [_tc_line(op) for op in plan.tc]),
        ("routes", [_route_line(r) for r in plan.routes]),
        ("rules", [_rule_line(r) for r in plan.rules]),
        ("sysctls", [f"{s.key} = {s.value}" for s in plan.sysctls]),
        ("links", [_link_line(link) for link in plan.links]),
    ]
    peers = plan.peer_sets
    sections.append(
        (
            "peer sets",
            [
                f"peer_addrs_v4 {', '.join(peers.addrs_v4) or '(empty)'}",
                f"peer_addrs_v6 {', '.join(peers.addrs_v6) or '(empty)'}",
                *(f"peer_dscp {addr} -> {dscp}" for addr, dscp in peers.dscp_v4 + peers.dscp_v6),
            ],
        )
    )
    for title, lines in sections:
        console.print(f"\n[bold]{title}[/bold]")
        for line in lines or ["(none)"]:
            console.print(f"  {escape(line)}")
    console.print("\n[bold]nftables[/bold] (inet netpersona, replaced in one transaction)")
    console.print(escape(nft_script(plan)), end="")


def _tc_line(op: TcQdisc | TcClass) -> str:
    if isinstance(op, TcQdisc):
        return f"qdisc {op.kind} {op.handle} dev {op.dev} {op.parent} default {op.default_class}"
    burst = f" burst {op.burst}b" if op.burst else ""
    return (
        f"class htb {op.classid} dev {op.dev} parent {op.parent} rate {format_rate(op.rate)} "
        f"ceil {format_rate(op.ceil)}{burst} prio {op.prio}"
    )


def _route_line(route: Route) -> str:
    via = f" via {route.gateway}" if route.gateway else ""
    src = f" src {route.src}" if route.src else ""
    kind = "multicast " if route.kind == "multicast" else ""
    return f"-{route.family} {kind}{route.dst}{via} dev {route.dev}{src} table {route.table}"


def _rule_line(rule: RoutingRule) -> str:
    to = f" to {rule.dst}" if rule.dst else ""
    suppress = (
        f" suppress_prefixlength {rule.suppress_prefixlength}"
        if rule.suppress_prefixlength is not None
        else ""
    )
    return f"-{rule.family} pref {rule.priority}{to} lookup {rule.table}{suppress}"


def _link_line(link: LinkSetting) -> str:
    parts = [f"dev {link.ifname}"]
    if link.mtu is not None:
        parts.append(f"mtu {link.mtu}")
    if link.multicast is not None:
        parts.append(f"multicast {'on' if link.multicast else 'off'}")
    return " ".join(parts)


def register(app: click.Group) -> None:
    @app.command()
    @click.argument("persona", type=PATH, help="Persona document (YAML or JSON); - for stdin.")
    @option(
        "--facts",
        type=PATH,
        help="Host facts file (YAML or JSON): uplinks, metadata, peers.",
    )
    @option(
        "--format",
        "-f",
        "format",
        type=EnumChoice(PlanFormat),
        default=PlanFormat.TEXT,
        help="text, json, or nft.",
    )
    def plan(persona: Path, facts: Path | None, format: PlanFormat) -> None:
        """Print what PERSONA would do to a VM's kernel. Touches nothing."""
        the_persona = load_persona(persona)
        the_plan = compile_plan(the_persona, load_facts(facts))
        if format is PlanFormat.JSON:
            body = {
                "digest": the_plan.digest,
                "ruleset_digest": the_plan.ruleset_digest,
                **the_plan.to_json(),
            }
            sys.stdout.write(json.dumps(body, indent=2, sort_keys=True) + "\n")
        elif format is PlanFormat.NFT:
            sys.stdout.write(nft_script(the_plan))
        else:
            from rich.console import Console  # noqa: PLC0415

            _text(Console(highlight=False, soft_wrap=True), the_persona, the_plan)

    @app.command()
    @click.argument(
        "personas", type=PATH, nargs=-1, required=True, help="Persona documents to check."
    )
    def validate(personas: tuple[Path, ...]) -> None:
        """Check persona documents: one line per error, exit 1 if any is invalid."""
        failed = False
        for path in personas:
            try:
                load_persona(path)
            except InvalidDocument as exc:
                failed = True
                sys.stdout.write("".join(f"{line}\n" for line in error_lines(path, exc)))
        raise click.exceptions.Exit(1 if failed else 0)

    @app.command()
    def schema() -> None:
        """Print the JSON Schema of a persona document."""
        sys.stdout.write(json.dumps(persona_schema(), indent=2) + "\n")

    @app.command()
    @output_option
    def protocols(output: OutputFormat) -> None:
        """List the built-in service names usable in allowed_protocols."""
        services = sorted(SERVICES.items())
        data = [{"service": name, "means": [str(r) for r in rules]} for name, rules in services]

        def table(console: Console) -> None:
            from rich.table import Table  # noqa: PLC0415

            table = Table("service", "means")
            for name, rules in services:
                table.add_row(name, ", ".join(str(r) for r in rules))
            print_table(console, table)

        emit(output, data, table)
