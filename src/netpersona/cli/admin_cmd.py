"""``netpersona admin ...``: drive a running metadata service through its admin API.

The service is reached at ``--url`` or over ``--admin-socket``, with ``--token`` or
``--token-file`` (each also from its ``NETPERSONA_*`` variable: :mod:`netpersona.cli.connection`).
Every command that shows records takes ``-o table|json|yaml`` (:mod:`netpersona.cli.output`).
Error responses are turned back into the :mod:`netpersona.errors` tree by
their ``code`` (:func:`error_from_answer`), so the CLI prints them (and picks the exit code) the
same way as local errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from netpersona.admin_client import AdminClient, error_from_answer
from netpersona.cli import reachability_cmd
from netpersona.cli.connection import admin_client, connect, connection_options
from netpersona.cli.output import (
    OutputFormat,
    emit,
    escape,
    message_console,
    new_table,
    output_option,
    print_table,
    show_document,
)
from netpersona.cli.params import PATH, option
from netpersona.cli.reachability_cmd import (
    label_changes_option,
    proposed_policy_option,
    reachability_lines,
)
from netpersona.errors import FieldError, InvalidDocument, UsageError
from netpersona.model import load_document, parse_persona

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = ["AdminClient", "error_from_answer", "register"]


def _labels(pairs: Sequence[str]) -> dict[str, str | None]:
    """``key=value`` sets, ``key-`` removes (kubectl's spelling)."""
    changes: dict[str, str | None] = {}
    for pair in pairs:
        if pair.endswith("-") and "=" not in pair:
            changes[pair[:-1]] = None
            continue
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"label {pair!r}: expected KEY=VALUE, or KEY- to remove")
        changes[key] = value
    return changes


def _labels_text(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _instances_table(items: list[dict[str, Any]]) -> Table:
    table = new_table("id", "name", "addresses", "labels", "pin", "rev")
    for i in items:
        table.add_row(
            escape(i["id"]),
            escape(i["name"]),
            "\n".join(i["addresses"]),
            escape(_labels_text(i["labels"])),
            escape(i["pin"] or "-"),
            str(i["revision"]),
        )
    return table


def _show_instances(output: OutputFormat, items: list[dict[str, Any]], one: bool = False) -> None:
    """Instances as a table, or their records (``one``: the record itself, not a list)."""
    emit(output, items[0] if one else items, lambda c: print_table(c, _instances_table(items)))


def _show_record(output: OutputFormat, data: Any) -> None:
    emit(output, data, lambda c: show_document(c, data))


def _show_table(output: OutputFormat, data: Any, table: Callable[[], Table]) -> None:
    emit(output, data, lambda c: print_table(c, table()))


def register(app: click.Group) -> None:
    @app.group("admin")
    @connection_options
    @click.pass_context
    def admin(
        ctx: click.Context, url: str, token: str, token_file: Path | None, admin_socket: Path | None
    ) -> None:
        """Manage a running metadata service (instances, personas, pins)."""
        ctx.obj = connect(ctx, url, token, token_file, admin_socket)

    @admin.command("instances")
    @output_option
    @click.pass_context
    def instances(ctx: click.Context, output: OutputFormat) -> None:
        """List every instance."""
        _show_instances(output, admin_client(ctx).pages("/v1/admin/instances", limit=500))

    @admin.command("add-instance")
    @click.argument("instance_id", help="Instance id, e.g. db1.")
    @option("--address", "-a", multiple=True, required=True, help="An address it calls from.")
    @option("--name", default="", show_default=False, help="A display name.")
    @option("--label", "-l", multiple=True, help="KEY=VALUE (repeatable).")
    @option("--interfaces", type=PATH, help="YAML/JSON list of {name, addresses, tier} interfaces.")
    @output_option
    @click.pass_context
    def add_instance(
        ctx: click.Context,
        instance_id: str,
        address: tuple[str, ...],
        name: str,
        label: tuple[str, ...],
        interfaces: Path | None,
        output: OutputFormat,
    ) -> None:
        """Register an instance (its addresses identify it to the VM-facing API)."""
        body: dict[str, Any] = {
            "id": instance_id,
            "name": name,
            "addresses": list(address),
            "labels": {k: v for k, v in _labels(label).items() if v is not None},
        }
        if interfaces is not None:
            body["interfaces"] = load_document(interfaces.read_text(), str(interfaces))
        made = admin_client(ctx).request("POST", "/v1/admin/instances", json=body)
        _show_instances(output, [made], one=True)

    @admin.command("remove-instance")
    @click.argument("instance_id")
    @click.pass_context
    def remove_instance(ctx: click.Context, instance_id: str) -> None:
        """Delete an instance."""
        admin_client(ctx).request("DELETE", f"/v1/admin/instances/{instance_id}")
        message_console().print(f"deleted {escape(instance_id)}")

    @admin.command("label")
    @click.argument("instance_id")
    @click.argument("labels", nargs=-1, required=True, help="KEY=VALUE to set, KEY- to remove.")
    @output_option
    @click.pass_context
    def label_cmd(
        ctx: click.Context, instance_id: str, labels: tuple[str, ...], output: OutputFormat
    ) -> None:
        """Set or remove labels on an instance."""
        done = admin_client(ctx).request(
            "PATCH", f"/v1/admin/instances/{instance_id}/labels", json=_labels(labels)
        )
        _show_instances(output, [done], one=True)

    @admin.command("pin")
    @click.argument("instance_id")
    @click.argument("persona")
    @output_option
    @click.pass_context
    def pin(ctx: click.Context, instance_id: str, persona: str, output: OutputFormat) -> None:
        """Pin a persona to an instance."""
        done = admin_client(ctx).request(
            "PUT", f"/v1/admin/instances/{instance_id}/pin", json={"persona": persona}
        )
        _show_instances(output, [done], one=True)

    @admin.command("unpin")
    @click.argument("instance_id")
    @output_option
    @click.pass_context
    def unpin(ctx: click.Context, instance_id: str, output: OutputFormat) -> None:
        """Remove an instance's pin."""
        done = admin_client(ctx).request("DELETE", f"/v1/admin/instances/{instance_id}/pin")
        _show_instances(output, [done], one=True)

    @admin.command("apply")
    @click.argument("file", type=PATH, help="Persona document (YAML or JSON).")
    @option("--name", "-n", required=True, help="The persona's name.")
    @click.pass_context
    def apply(ctx: click.Context, file: Path, name: str) -> None:
        """Create a persona or store a new version of it from FILE (checked locally first)."""
        document = load_document(file.read_text(), str(file))
        try:
            parse_persona(document)
        except InvalidDocument as exc:
            raise InvalidDocument(exc.errors, str(file)) from None
        done = admin_client(ctx).request("PUT", f"/v1/admin/personas/{name}", json=document)
        message_console().print(f"persona {escape(done['name'])} is at version {done['version']}")

    @admin.command("personas")
    @output_option
    @click.pass_context
    def personas(ctx: click.Context, output: OutputFormat) -> None:
        """List personas with their current version."""
        items = admin_client(ctx).pages("/v1/admin/personas", limit=500)

        def table() -> Table:
            table = new_table("name", "version", "mode", "profile", "priority", "by")
            for p in items:
                doc = p["network_persona"]
                table.add_row(
                    escape(p["name"]),
                    str(p["version"]),
                    str(doc.get("communication_mode")),
                    str(doc.get("security_profile")),
                    str(doc.get("priority")),
                    escape(p["created_by"]),
                )
            return table

        _show_table(output, items, table)

    @admin.command("show")
    @click.argument("name", help="Persona name.")
    @option("--version", type=int, help="An older version.")
    @output_option
    @click.pass_context
    def show(ctx: click.Context, name: str, version: int | None, output: OutputFormat) -> None:
        """Print a persona (current or a given version)."""
        path = f"/v1/admin/personas/{name}" + (f"/versions/{version}" if version else "")
        _show_record(output, admin_client(ctx).request("GET", path))

    @admin.command("history")
    @click.argument("name")
    @output_option
    @click.pass_context
    def history(ctx: click.Context, name: str, output: OutputFormat) -> None:
        """Every version of a persona, newest first."""
        items = admin_client(ctx).pages(f"/v1/admin/personas/{name}/versions", limit=500)

        def table() -> Table:
            table = new_table("version", "created by", "restored from", "priority", "mode")
            for v in items:
                table.add_row(
                    str(v["version"]),
                    escape(v["created_by"]),
                    str(v["restored_from"] or "-"),
                    str(v["network_persona"].get("priority")),
                    str(v["network_persona"].get("communication_mode")),
                )
            return table

        _show_table(output, items, table)

    @admin.command("restore")
    @click.argument("name")
    @click.argument("version", type=int, help="The version to make current again.")
    @click.pass_context
    def restore(ctx: click.Context, name: str, version: int) -> None:
        """Restore an old version of a persona (as a new version)."""
        done = admin_client(ctx).request(
            "POST", f"/v1/admin/personas/{name}/restore", json={"version": version}
        )
        message_console().print(
            f"persona {escape(name)} is at version {done['version']} (from {version})"
        )

    @admin.command("context")
    @click.argument("assignment", nargs=-1, help="KEY=VALUE to set, KEY- to remove.")
    @output_option
    @click.pass_context
    def context(ctx: click.Context, assignment: tuple[str, ...], output: OutputFormat) -> None:
        """Show the network context, or set/remove keys first."""
        client = admin_client(ctx)
        for key, value in _labels(assignment).items():
            if value is None:
                client.request("DELETE", f"/v1/admin/context/{key}")
            else:
                client.request("PUT", f"/v1/admin/context/{key}", json={"value": value})
        items = client.request("GET", "/v1/admin/context")["items"]

        def table() -> Table:
            table = new_table("key", "value", "rev")
            for e in items:
                table.add_row(escape(e["key"]), escape(e["value"]), str(e["revision"]))
            return table

        _show_table(output, items, table)

    @admin.command("audit")
    @option("--target", help="Only this record, e.g. persona/db, instance/vm1.")
    @option("--limit", default=50, help="How many entries (newest first).")
    @output_option
    @click.pass_context
    def audit(ctx: click.Context, target: str | None, limit: int, output: OutputFormat) -> None:
        """Who changed what, when."""
        params: dict[str, Any] = {"limit": limit}
        if target:
            params["target"] = target
        items = admin_client(ctx).request("GET", "/v1/admin/audit", params=params)["items"]

        def table() -> Table:
            table = new_table("seq", "actor", "action", "target", "change")
            for e in items:
                table.add_row(
                    str(e["seq"]),
                    escape(e["actor"]),
                    e["action"],
                    escape(e["target"]),
                    escape(_diff(e["before"], e["after"])),
                )
            return table

        _show_table(output, items, table)

    @admin.command("status")
    @click.argument("instance_id")
    @output_option
    @click.pass_context
    def status(ctx: click.Context, instance_id: str, output: OutputFormat) -> None:
        """The last status the instance's agent reported, with drop counters."""
        path = f"/v1/admin/instances/{instance_id}/status"
        _show_record(output, admin_client(ctx).request("GET", path))

    _register_policy(admin)
    reachability_cmd.register(admin)


def _register_policy(admin: click.Group) -> None:
    @admin.group("policy")
    def policy() -> None:
        """The service's persona policy: apply, show, explain, what-if."""

    @policy.command("apply")
    @click.argument("file", type=PATH, help="Policy document (YAML or JSON).")
    @option(
        "--tests",
        type=PATH,
        help="Policy tests the service must see pass before it stores this.",
    )
    @click.pass_context
    def apply(ctx: click.Context, file: Path, tests: Path | None) -> None:
        """Store FILE as the policy's new version (the service checks it in full first)."""
        document = load_document(file.read_text(), str(file))
        if not isinstance(document, dict):
            raise InvalidDocument([FieldError("", "expected a mapping (a policy document)")])
        if tests is not None:
            document = {**document, "tests": load_document(tests.read_text(), str(tests))}
        done = admin_client(ctx).request("PUT", "/v1/admin/policy", json=document)
        message_console().print(f"policy is at version {done['version']}")

    @policy.command("show")
    @option("--version", type=int, help="An older version.")
    @output_option
    @click.pass_context
    def show(ctx: click.Context, version: int | None, output: OutputFormat) -> None:
        """Print the policy (current or a given version)."""
        path = "/v1/admin/policy" + (f"/versions/{version}" if version else "")
        _show_record(output, admin_client(ctx).request("GET", path))

    @policy.command("explain")
    @click.argument("instance_id")
    @output_option
    @click.pass_context
    def explain(ctx: click.Context, instance_id: str, output: OutputFormat) -> None:
        """Why an instance has its persona: the deciding rule, earlier rules, overlays."""
        answer = admin_client(ctx).request("GET", f"/v1/admin/instances/{instance_id}/explain")
        emit(output, answer, lambda c: _lines(c, answer["lines"]))

    @policy.command("diff")
    @proposed_policy_option
    @option("--context", multiple=True, help="KEY=VALUE, or KEY- to unset (repeatable).")
    @label_changes_option
    @output_option
    @click.pass_context
    def diff(
        ctx: click.Context,
        to_policy: Path | None,
        context: tuple[str, ...],
        label: tuple[str, ...],
        output: OutputFormat,
    ) -> None:
        """Which instances a proposed change would move, and how. Nothing is committed."""
        body: dict[str, Any] = {"context": _labels(context), "labels": {}}
        if to_policy is not None:
            body["policy"] = load_document(to_policy.read_text(), str(to_policy))
        for item in label:
            instance_id, sep, pair = item.partition(":")
            if not sep or not instance_id:
                raise UsageError(f"--label {item!r}: expected INSTANCE:KEY=VALUE or INSTANCE:KEY-")
            body["labels"].setdefault(instance_id, {}).update(_labels([pair]))
        answer = admin_client(ctx).request("POST", "/v1/admin/policy/diff", json=body)
        emit(output, answer, lambda c: _lines(c, _diff_lines(answer)))


def _lines(console: Console, lines: Sequence[str]) -> None:
    for line in lines:
        console.print(escape(line))


def _diff_lines(answer: dict[str, Any]) -> list[str]:
    lines = [] if answer["changes"] else ["no instance would change"]
    for change in answer["changes"]:
        lines += change["lines"]
    if answer["changes"]:
        lines.append(f"{answer['count']} instance(s) would change")
    return lines + reachability_lines(answer)


def _diff(before: Any, after: Any) -> str:
    """The top-level fields that changed, as ``field: old -> new``."""
    if before is None or after is None:
        return "created" if before is None else "deleted"
    skip = {"revision", "updated_at", "created_at", "version", "created_by", "restored_from"}
    changed = [
        f"{key}: {json.dumps(before.get(key))} -> {json.dumps(after.get(key))}"
        for key in sorted(set(before) | set(after))
        if key not in skip and before.get(key) != after.get(key)
    ]
    return "; ".join(changed) or "-"
