"""``when:`` conditions in CEL (the Common Expression Language, github.com/google/cel-spec).

Expressions are compiled once, when the policy is, by the CEL C++ implementation through
``cel-expr-python``. Its type checker runs at compile time against declared variables, so a
reference to an unknown field (``threat_lvl``), an unknown function (``startWith``), a type
mismatch (``threat_level == 3``) or a non-boolean result is an error at save time, not a
surprise at evaluation time.

The variables a condition may use:

    name         string               the instance name
    addresses    list(string)         its addresses (without prefix length)
    subnets      list(string)         the networks of its interface addresses, e.g. 10.0.1.0/24
    interfaces   list(string)         its interface names
    labels       map(string, string)  its labels; use ``has(labels.app)`` or
                                      ``labels.?app.orValue("")`` for a label that may be absent
    <context>    string               every context key the policy declares, by name

Which variables a condition reads is found by a conservative scan of its identifiers: a
variable can only be read if its name appears in the source, so the scan may over-count
(a string literal that spells a variable name) but never misses one. Likewise the label keys
it reads: when every ``labels`` is followed by a field or a string index, those keys; any other
use (``labels.exists(...)``, ``labels[name]``, ``size(labels)``) counts as reading them all.
The engine uses these scans to evaluate context-only conditions once per context rather than
once per instance, and to know which conditions a change can affect; parsing, checking and
evaluation are the library's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cel_expr_python import cel  # type: ignore[import-untyped]
from cel_expr_python.ext import ext_optional, ext_strings  # type: ignore[import-untyped]

from netpersona.errors import ConditionError

__all__ = [
    "INSTANCE_VARIABLES",
    "RESERVED_WORDS",
    "Condition",
    "ConditionCompiler",
    "ConditionError",
]

INSTANCE_VARIABLES = ("name", "addresses", "subnets", "interfaces", "labels")
# CEL's reserved words (cel-spec, "Syntax"): never usable as variable names.
RESERVED_WORDS = frozenset(
    {
        *("true", "false", "null", "in", "as", "break", "const", "continue", "else", "for"),
        *("function", "if", "import", "let", "loop", "package", "namespace", "return", "var"),
        *("void", "while"),
    }
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABELS = re.compile(r"\blabels\b")
# After ``labels``: a field (``.app``, ``.?app``) not followed by a call, or an index by a
# string literal (``["app.kubernetes.io/name"]``); anything else reads the map as a whole.
_LABEL_ACCESS = re.compile(
    r"""\s*(?:\.\s*\??\s*([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()|\[\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\])"""
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_LOCATION = re.compile(r"ERROR: <input>:(\d+:\d+): (.*?)(?: \(in container ''\))?$")


def _instance_types() -> dict[str, Any]:
    t = cel.Type
    strings = t.List(t.STRING)
    return {
        "name": t.STRING,
        "addresses": strings,
        "subnets": strings,
        "interfaces": strings,
        "labels": t.Map(t.STRING, t.STRING),
    }


def _label_keys(source: str) -> frozenset[str] | None:
    """The label keys ``source`` reads, when every use of ``labels`` names its key."""
    keys = set()
    for use in _LABELS.finditer(source):
        access = _LABEL_ACCESS.match(source, use.end())
        if access is None:
            return None
        keys.add(next(g for g in access.groups() if g is not None))
    return frozenset(keys)


def _explain_compile_error(text: str) -> str:
    """The checker's report, one line per problem, without the caret drawings."""
    problems = []
    for line in text.splitlines():
        match = _LOCATION.search(line)
        if match:
            problems.append(f"{match.group(2)} (at {match.group(1)})")
    return "; ".join(problems) or " ".join(text.split())


@dataclass(frozen=True, slots=True)
class Condition:
    source: str
    instance_variables: frozenset[str]
    context_keys: frozenset[str]
    label_keys: frozenset[str] | None  # the labels it reads; None: possibly any
    _expression: Any = field(compare=False, repr=False)

    @property
    def context_only(self) -> bool:
        return not self.instance_variables

    def evaluate(self, variables: Mapping[str, object]) -> tuple[bool, str | None]:
        """(result, None), or (False, why) when evaluation failed (e.g. a missing label).

        A failed condition does not match: a rule whose condition cannot be decided must not
        hand out its persona, and ``explain`` shows the error.
        """
        value = self._expression.eval(data=variables)
        result = value.value()
        if value.type() == cel.Type.BOOL:
            return bool(result), None
        return False, str(result)


class ConditionCompiler:
    """One CEL environment: the instance variables and the policy's declared context keys."""

    def __init__(self, context_keys: Iterable[str]) -> None:
        self.context_keys = frozenset(context_keys)
        types = _instance_types()
        for key in self.context_keys:
            types[key] = cel.Type.STRING
        self._env = cel.NewEnv(
            variables=types, extensions=[ext_strings.ExtStrings(), ext_optional.ExtOptional()]
        )

    def compile(self, source: object) -> Condition:
        if not isinstance(source, str) or not source.strip():
            raise ConditionError("expected a CEL expression (a non-empty string)")
        if _SURROGATE.search(source):
            # The library takes UTF-8; a lone surrogate has no UTF-8 form (and is not text).
            raise ConditionError("holds a lone surrogate, which is not Unicode text")
        try:
            expression = self._env.compile(source)
        except RuntimeError as exc:
            raise ConditionError(f"does not compile: {_explain_compile_error(str(exc))}") from None
        kind = expression.return_type()
        if kind not in (cel.Type.BOOL, cel.Type.DYN):
            raise ConditionError(
                f"must be true or false, but gives a {kind.name().lower()} (compare it with "
                'something, e.g. labels.app == "web")'
            )
        names = set(_IDENTIFIER.findall(source))
        return Condition(
            source=source,
            instance_variables=frozenset(names & set(INSTANCE_VARIABLES)),
            context_keys=frozenset(names & self.context_keys),
            label_keys=_label_keys(source) if "labels" in names else frozenset(),
            _expression=expression,
        )
