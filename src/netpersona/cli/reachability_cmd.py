"""``netpersona admin can A B tcp/5432`` and ``netpersona admin reachability``: ask the service.

``can`` exits 0 when A reaches B, 1 when it does not, and prints why either way: the persona,
field and rule that decided, and the drop counter that would count a dropped packet.
``reachability`` prints the matrix of a selection of instances, one column per receiver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from netpersona.cli.connection import admin_client
from netpersona.cli.output import OutputFormat, emit, json_alias, output_option, pick, print_table
from netpersona.cli.params import PATH, option
from netpersona.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["label_changes_option", "proposed_policy_option", "reachability_lines", "register"]

# What-if label changes, the same on the service (admin policy diff) and offline (policy diff).
# ``@label_changes_option`` gives ``label: tuple[str, ...]``.
label_changes_option = option(
    "--label",
    multiple=True,
    help="A proposed label change: INSTANCE:KEY=VALUE, or INSTANCE:KEY- to remove (repeatable).",
)
# The policy a what-if proposes: `--to-policy` in both diffs (`--policy` is kept on the admin
# one, where it was first spelled so). ``@proposed_policy_option`` gives
# ``to_policy: Path | None``.
proposed_policy_option = option(
    "--to-policy", "--policy", "to_policy", type=PATH, help="A proposed policy document."
)


def reachability_lines(answer: dict[str, Any]) -> list[str]:
    """The connectivity part of a what-if answer, one line per pair that changes."""
    note = answer.get("connectivity_note") or ""
    if answer.get("connectivity") is None:
        return [f"connectivity not compared: {note}"] if note else []
    lines = [c["line"] for c in answer["connectivity"]]
    if note:
        lines.append(note)
    count = answer.get("connectivity_count", len(lines))
    lines.append(
        f"{count} (from, to, service) pair(s) would gain or lose reachability"
        if count
        else "no reachability would change"
    )
    return lines


def _print_verdict(out: Console, answer: dict[str, Any]) -> None:
    from rich.markup import escape  # noqa: PLC0415  (rich only for the table form)

    verdict = answer["verdict"]
    out.print(
        ("[green]yes[/green] " if answer["reachable"] else "[red]no[/red] ")
        + escape(answer["summary"])
    )
    for reason in verdict["reasons"]:
        mark = "ok  " if reason["allowed"] else "DROP"
        field = f" [{reason['field']}]" if reason["field"] else ""
        counter = f" -> {reason['counter']}" if reason["counter"] else ""
        out.print(
            escape(
                f"  {mark} {reason['vm']} ({reason['persona'] or 'no persona'}) {reason['side']}"
                f"{field}: {reason['rule']}{counter}"
            )
        )


def register(admin: click.Group) -> None:
    @admin.command("can")
    @click.argument("src", help="The sending instance.")
    @click.argument("dst", help="The receiving instance.")
    @click.argument("proto", help="tcp/5432, udp/53, icmp, postgres, ...")
    @option("--broadcast", is_flag=True, help="Sent to the subnet broadcast address.")
    @option("--group", help="Sent to this multicast group.")
    @output_option
    @json_alias
    @click.pass_context
    def can(
        ctx: click.Context,
        src: str,
        dst: str,
        proto: str,
        broadcast: bool,
        group: str | None,
        output: OutputFormat,
        as_json: bool,
    ) -> None:
        """Can SRC reach DST with PROTO? Exit 0 yes, 1 no; prints the rule that decides."""
        if broadcast and group:
            raise UsageError("--broadcast and --group exclude each other")
        params: dict[str, Any] = {"from": src, "to": dst, "proto": proto}
        if broadcast:
            params["via"] = "broadcast"
        if group:
            params.update(via="multicast", group=group)
        answer = admin_client(ctx).request("GET", "/v1/admin/reachability", params=params)
        emit(pick(output, as_json), answer, lambda c: _print_verdict(c, answer))
        raise click.exceptions.Exit(0 if answer["reachable"] else 1)

    @admin.command("reachability")
    @option("--instance", "-i", multiple=True, help="An instance (repeatable).")
    @option("--label", "-l", multiple=True, help="KEY=VALUE (repeatable).")
    @option("--persona", help="Only instances holding it.")
    @option("--service", "-s", multiple=True, help="A service (repeatable).")
    @output_option
    @json_alias
    @click.pass_context
    def reachability(
        ctx: click.Context,
        instance: tuple[str, ...],
        label: tuple[str, ...],
        persona: str | None,
        service: tuple[str, ...],
        output: OutputFormat,
        as_json: bool,
    ) -> None:
        """The reachability matrix of a selection (default: the whole fleet, at most 100)."""
        params: dict[str, Any] = {
            "instance": list(instance),
            "label": list(label),
            "service": list(service),
        }
        if persona:
            params["persona"] = persona
        answer = admin_client(ctx).request("GET", "/v1/admin/reachability/matrix", params=params)
        emit(pick(output, as_json), answer, lambda c: _print_matrix(c, answer))


def _print_matrix(out: Console, answer: dict[str, Any]) -> None:
    from rich.markup import escape  # noqa: PLC0415  (rich only for the table form)
    from rich.table import Table  # noqa: PLC0415

    names = [i["id"] for i in answer["instances"]]
    reach: dict[tuple[str, str], list[str]] = {}
    for cell in answer["cells"]:
        if cell["reachable"]:
            reach.setdefault((cell["from"], cell["to"]), []).append(cell["service"])
    table = Table(title="services that get through (rows send, columns receive)")
    table.add_column("from\\to", style="bold")
    for name in names:
        table.add_column(escape(name))
    for src in names:
        row = [escape(src)]
        for dst in names:
            row.append("·" if src == dst else escape(" ".join(reach.get((src, dst), [])) or "-"))
        table.add_row(*row)
    print_table(out, table)
    out.print(f"services: {escape(', '.join(answer['services']))}")
