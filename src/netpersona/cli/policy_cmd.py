"""``netpersona policy validate | test | explain | diff``: the policy engine, offline, on files.

A policy file, a directory of persona files (each ``NAME.yaml`` is persona NAME), an inventory
file of instances and a context file (a mapping of context key to value). Nothing is stored and
nothing touches the host: these commands read files and print.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import click

from netpersona.cli.output import OutputFormat, data_text, json_alias, output_option, pick
from netpersona.cli.params import PATH, option
from netpersona.cli.plan_cmd import error_lines, read_document
from netpersona.cli.reachability_cmd import (
    label_changes_option,
    proposed_policy_option,
    reachability_lines,
)
from netpersona.errors import FieldError, InvalidDocument, UsageError
from netpersona.model.labels import check_label_key, check_label_value
from netpersona.model.limits import PERSONA_LIMITS, POLICY_LIMITS, DocumentLimits
from netpersona.policy import (
    Change,
    ContextChanged,
    LabelsChanged,
    Policy,
    PolicyChanged,
    PolicyEngine,
    parse_inventory,
    parse_policy,
    parse_policy_tests,
    run_policy_tests,
)
from netpersona.reachability import blast_radius, persona_edits
from netpersona.records import Instance, PersonaVersion

__all__ = ["load_personas", "register"]

personas_option = option(
    "--personas",
    type=PATH,
    required=True,
    help="Directory of persona files; NAME.yaml (or .yml, .json) is persona NAME.",
)
inventory_option = option(
    "--inventory",
    type=PATH,
    required=True,
    help="Inventory file: {instances: [{id, name, ...}]}.",
)
context_option = option("--context", type=PATH, help="Context file: a mapping of key to value.")


def _load(path: Path, limits: DocumentLimits = POLICY_LIMITS) -> object:
    """Every file these commands read is a document within the policy limits (a persona file
    within the persona limits)."""
    return read_document(path, limits)


def _with_source(path: Path, exc: InvalidDocument) -> InvalidDocument:
    return InvalidDocument(exc.errors, str(path))


def load_personas(directory: Path) -> dict[str, PersonaVersion]:
    """Every persona file directly in ``directory`` (version 1 each: files have no history)."""
    if not directory.is_dir():
        raise UsageError(f"--personas {directory}: not a directory")
    personas = {}
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        document = _load(path, PERSONA_LIMITS)
        body = document.get("network_persona") if isinstance(document, Mapping) else None
        if not isinstance(body, Mapping):
            raise InvalidDocument([FieldError("/network_persona", "is required")], str(path))
        personas[path.stem] = PersonaVersion.of(path.stem, 1, body)
    return personas


def _policy(path: Path, personas: Mapping[str, PersonaVersion]) -> Policy:
    try:
        return parse_policy(_load(path), personas)
    except InvalidDocument as exc:
        raise _with_source(path, exc) from None


def _inventory(path: Path) -> tuple[Instance, ...]:
    try:
        return parse_inventory(_load(path))
    except InvalidDocument as exc:
        raise _with_source(path, exc) from None


def _context(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    document = _load(path)
    if not isinstance(document, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in document.items()
    ):
        raise InvalidDocument(
            [FieldError("", "expected a mapping of context key to string value")], str(path)
        )
    return dict(document)


def _engine(policy: Path, personas: Path, inventory: Path, context: Path | None) -> PolicyEngine:
    catalog = load_personas(personas)
    the_policy = _policy(policy, catalog)
    values = _context(context)
    problems = [
        FieldError(f"/{k}", problem)
        for k, v in values.items()
        if (problem := the_policy.context_problem(k, v))
    ]
    if problems:
        raise InvalidDocument(problems, str(context))
    return PolicyEngine(the_policy, catalog, values, _inventory(inventory))


def _write(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _assignment(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"{option} {text!r}: expected KEY=VALUE")
    return key, value


def _label_change(engine: PolicyEngine, text: str) -> LabelsChanged:
    """``INSTANCE:KEY=VALUE`` sets a label, ``INSTANCE:KEY-`` removes it (as kubectl label)."""
    instance_id, sep, change = text.partition(":")
    if not sep or instance_id not in engine.instances:
        raise UsageError(f"--label {text!r}: expected INSTANCE:KEY=VALUE with a known instance")
    labels = dict(engine.instances[instance_id].labels)
    if change.endswith("-") and "=" not in change:
        labels.pop(change[:-1], None)
    else:
        key, value = _assignment(change, "--label")
        problem = check_label_key(key) or check_label_value(value)
        if problem:
            raise UsageError(f"--label {text!r}: {problem}")
        labels[key] = value
    return LabelsChanged(instance_id, labels)


def _persona_changes(engine: PolicyEngine, texts: Sequence[str]) -> list[Change]:
    """``NAME=FILE``: the persona NAME as the file has it, as a proposed new version."""
    documents = {}
    for text in texts:
        name, sep, file = text.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"--set-persona {text!r}: expected NAME=FILE")
        documents[name] = _load(Path(file))
    try:
        return persona_edits(engine, documents)
    except InvalidDocument as exc:
        raise InvalidDocument(exc.errors, "--set-persona") from None


def register(app: click.Group) -> None:
    @app.group("policy", no_args_is_help=True)
    def policy_app() -> None:
        """Assign personas by policy: validate, test, explain and diff, offline on files."""

    @policy_app.command("validate")
    @click.argument("policy", type=PATH, help="Policy file (YAML or JSON).")
    @personas_option
    def validate(policy: Path, personas: Path) -> None:
        """Check a policy: one line per error (pointer and message), exit 1 if invalid."""
        catalog = load_personas(personas)
        try:
            parsed = parse_policy(_load(policy), catalog)
        except InvalidDocument as exc:
            _write("\n".join(error_lines(policy, exc)))
            raise click.exceptions.Exit(exc.exit_code) from None
        _write(
            f"{policy}: ok ({len(parsed.rules)} rules, {len(parsed.overlays)} overlays, "
            f"default {parsed.default or 'none'})"
        )

    @policy_app.command("test")
    @click.argument("policy", type=PATH, help="Policy file.")
    @click.argument("tests", type=PATH, help="Policy tests file.")
    @personas_option
    @inventory_option
    def test(policy: Path, tests: Path, personas: Path, inventory: Path) -> None:
        """Check the expected assignments of a tests file; exit 1 if any fails."""
        catalog = load_personas(personas)
        the_policy = _policy(policy, catalog)
        fleet = {i.id: i for i in _inventory(inventory)}
        try:
            cases = parse_policy_tests(_load(tests), fleet)
        except InvalidDocument as exc:
            raise _with_source(tests, exc) from None
        results = run_policy_tests(the_policy, catalog, cases)
        for result in results:
            _write(f"{'PASS' if result.passed else 'FAIL'} {result.test.name}")
            for failure in result.failures:
                _write(f"  {tests}:{failure.pointer}: {failure.message}")
        failed = sum(not r.passed for r in results)
        _write(f"{len(results) - failed} passed, {failed} failed")
        raise click.exceptions.Exit(1 if failed else 0)

    @policy_app.command("explain")
    @click.argument("policy", type=PATH, help="Policy file.")
    @personas_option
    @inventory_option
    @click.argument("instances", nargs=-1, help="Instance ids (default: every instance).")
    @context_option
    @output_option
    @json_alias
    def explain(
        policy: Path,
        personas: Path,
        inventory: Path,
        instances: tuple[str, ...],
        context: Path | None,
        output: OutputFormat,
        as_json: bool,
    ) -> None:
        """Why each instance has its persona: the deciding rule, earlier rules, overlays."""
        engine = _engine(policy, personas, inventory, context)
        wanted = list(instances) or sorted(engine.instances)
        unknown = [i for i in wanted if i not in engine.instances]
        if unknown:
            raise UsageError(f"not in the inventory: {', '.join(unknown)}")
        explanations = [engine.explain(i) for i in wanted]
        output = pick(output, as_json)
        if output is not OutputFormat.TABLE:
            sys.stdout.write(data_text([e.to_json() for e in explanations], output))
            return
        _write("\n".join("\n".join(e.lines()) for e in explanations))

    @policy_app.command("diff")
    @click.argument("policy", type=PATH, help="The policy in force.")
    @personas_option
    @inventory_option
    @context_option
    @proposed_policy_option
    @option("--set-context", multiple=True, help="A proposed context value, KEY=VALUE.")
    @label_changes_option
    @option("--set-persona", multiple=True, help="A proposed persona document, NAME=FILE.")
    @output_option
    @json_alias
    def diff(
        policy: Path,
        personas: Path,
        inventory: Path,
        context: Path | None,
        to_policy: Path | None,
        set_context: tuple[str, ...],
        label: tuple[str, ...],
        set_persona: tuple[str, ...],
        output: OutputFormat,
        as_json: bool,
    ) -> None:
        """What-if: every instance whose persona would change, and how, and every (from, to,
        service) pair that would gain or lose reachability; commits nothing."""
        engine = _engine(policy, personas, inventory, context)
        changes: list[Change] = []
        target = engine.policy
        if to_policy is not None:
            target = _policy(to_policy, engine.personas)
            changes.append(PolicyChanged(target))
        for text in set_context or ():
            key, value = _assignment(text, "--set-context")
            problem = target.context_problem(key, value)
            if problem:
                raise UsageError(f"--set-context {text!r}: {problem}")
            changes.append(ContextChanged(key, value))
        changes += [_label_change(engine, text) for text in label or ()]
        changes += _persona_changes(engine, set_persona or ())
        if not changes:
            raise UsageError(
                "nothing proposed: give --to-policy, --set-context, --label or --set-persona"
            )
        radius = blast_radius(engine, changes)
        output = pick(output, as_json)
        if output is not OutputFormat.TABLE:
            sys.stdout.write(data_text(radius.to_json(), output))
            return
        for change in radius.decisions:
            _write("\n".join(change.lines()))
        for line in reachability_lines(radius.to_json()):
            _write(line)
        _write(f"{len(radius.decisions)} of {len(engine.instances)} instances would change")
