"""The one way a document's text becomes data: bounded, JSON-valued, never an exception but
:class:`~netpersona.errors.InvalidDocument`.

Text (or bytes) is checked before YAML sees it: its size, that it is UTF-8 (not UTF-16 or
UTF-32, no NUL, no byte order mark but a leading one). YAML is then composed into its node
graph with the nesting depth and node count bounded as it is read, and the graph is measured
as if every alias were expanded (once per node: a bomb of a few hundred bytes costs a few
hundred steps) before any value is built. Only JSON's values are built: a date stays a string,
``!!binary``, ``!!set`` and the like are refused, and an integer is never parsed from more
than 19 digits. Limits: :mod:`netpersona.model.limits`.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import MappingStartEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from netpersona.errors import FieldError, InvalidDocument
from netpersona.model.checks import escape_pointer
from netpersona.model.limits import MAX_INT_DIGITS, POLICY_LIMITS, DocumentLimits

__all__ = ["load_document"]

_TAG = "tag:yaml.org,2002:"
# The tags whose values JSON has; everything else (timestamp, binary, set, omap, pairs) is
# refused rather than turned into a value no JSON consumer can take.
_JSON_TAGS = frozenset(_TAG + t for t in ("null", "bool", "int", "float", "str", "seq", "map"))
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Refused(Exception):
    """Stops reading: the problems are in ``errors``."""

    def __init__(self, *errors: FieldError) -> None:
        self.errors = errors


def _line_of(text: str | bytes, offset: int) -> int:
    newline = "\n" if isinstance(text, str) else b"\n"
    return text.count(newline, 0, offset) + 1  # type: ignore[arg-type]


def _decode(data: bytes, limits: DocumentLimits) -> str:
    if len(data) > limits.max_input_bytes:
        raise _Refused(FieldError("", limits.too_large()))
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise _Refused(
                FieldError(
                    "",
                    f"is {encoding} (it starts with a {encoding} byte order mark); "
                    "save it as UTF-8",
                )
            )
    data = data.removeprefix(codecs.BOM_UTF8)
    nul = data.find(b"\0")
    if nul >= 0:
        raise _Refused(
            FieldError(
                "",
                f"contains a NUL byte at line {_line_of(data, nul)} (byte {nul}); "
                "is it UTF-16 or not text? save it as UTF-8",
            )
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused(
            FieldError(
                "",
                f"is not UTF-8: byte 0x{data[exc.start]:02x} at line "
                f"{_line_of(data, exc.start)} (byte {exc.start}) cannot be decoded; "
                "save it as UTF-8",
            )
        ) from None
    return _check_text(text, limits)


def _check_text(text: str, limits: DocumentLimits) -> str:
    if len(text) > limits.max_input_bytes:
        raise _Refused(FieldError("", limits.too_large()))
    text = text.removeprefix("\ufeff")
    for char, problem in (("\0", "a NUL character"), ("\ufeff", "a byte order mark (U+FEFF)")):
        at = text.find(char)
        if at >= 0:
            raise _Refused(
                FieldError("", f"contains {problem} at line {_line_of(text, at)}, not text")
            )
    surrogate = _SURROGATE.search(text)
    if surrogate:
        line = _line_of(text, surrogate.start())
        raise _Refused(FieldError("", f"contains a lone surrogate at line {line}, not Unicode"))
    if len(text.encode("utf-8")) > limits.max_input_bytes:
        raise _Refused(FieldError("", limits.too_large()))
    return text


class _JsonResolver(Resolver):
    """YAML 1.1's implicit types without timestamps: ``2024-01-01`` is a string, as in JSON."""

    yaml_implicit_resolvers = {  # noqa: RUF012 (PyYAML's own class attribute)
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TAG + "timestamp"]
        for first, resolvers in Resolver.yaml_implicit_resolvers.items()
    }


# What a scalar must look like to be built as its tag says (``!!int abc`` is refused).
_SCALAR_FORMS: dict[str, list[re.Pattern[str]]] = {}
for _resolvers in Resolver.yaml_implicit_resolvers.values():
    for _tag, _regexp in _resolvers:
        if _tag in (_TAG + "bool", _TAG + "int", _TAG + "float"):
            _SCALAR_FORMS.setdefault(_tag, []).append(_regexp)


_SCALAR_NAMES = {_TAG + "bool": "a boolean", _TAG + "int": "an integer", _TAG + "float": "a number"}


def _digits(text: str) -> int:
    body = text.replace("_", "").lstrip("+-")
    if body[:2].lower() in ("0x", "0o", "0b"):
        body = body[2:]
    return sum(char.isalnum() for char in body)


class _JsonConstructor(SafeConstructor):
    def construct_undefined(self, node: Node) -> Any:
        raise ConstructorError(
            None,
            None,
            f"the tag {node.tag} is not allowed (a document holds JSON values only)",
            node.start_mark,
        )

    def construct_scalar(self, node: Node) -> Any:
        value = super().construct_scalar(node)  # type: ignore[arg-type]
        forms = _SCALAR_FORMS.get(node.tag)
        if forms and not any(form.match(value) for form in forms):
            raise ConstructorError(
                None, None, f"{value!r} is not {_SCALAR_NAMES[node.tag]}", node.start_mark
            )
        if node.tag == _TAG + "int" and _digits(value) > MAX_INT_DIGITS:
            raise ConstructorError(
                None, None, f"an integer of more than {MAX_INT_DIGITS} digits", node.start_mark
            )
        return value

    def construct_yaml_str(self, node: Node) -> Any:
        value = self.construct_scalar(node)
        if _SURROGATE.search(value):
            # YAML spells a character outside the BMP as two \u escapes, as JSON does; join
            # the pairs. A lone one is left for the document's checks to name.
            with contextlib.suppress(UnicodeDecodeError):
                value = value.encode("utf-16", "surrogatepass").decode("utf-16")
        return value

    yaml_constructors: ClassVar[dict[Any, Any]] = {
        **{t: f for t, f in SafeConstructor.yaml_constructors.items() if t in _JSON_TAGS},
        None: construct_undefined,
        _TAG + "str": construct_yaml_str,
    }


@dataclass
class _Size:
    nodes: int
    depth: int
    chars: int


@dataclass
class _Measure:
    """The expanded size of a node graph, each node measured once."""

    limits: DocumentLimits
    done: dict[int, _Size] = field(default_factory=dict)
    active: set[int] = field(default_factory=set)
    errors: list[FieldError] = field(default_factory=list)

    def node(self, node: Node, at: str, depth: int) -> _Size:
        known = self.done.get(id(node))
        if known is not None:
            if depth + known.depth > self.limits.max_depth:
                raise _Refused(FieldError(at, self.limits.too_deep()))
            return known
        if id(node) in self.active:
            raise _Refused(FieldError(at, "an alias refers to the node it is inside of"))
        if isinstance(node, ScalarNode):
            size = self.scalar(node, at)
        else:
            self.active.add(id(node))
            size = self.collection(node, at, depth)
            self.active.discard(id(node))
        self.done[id(node)] = size
        return size

    def scalar(self, node: ScalarNode, at: str) -> _Size:
        if node.tag == _TAG + "int" and _digits(node.value) > MAX_INT_DIGITS:
            self.errors.append(
                FieldError(
                    at,
                    f"an integer of {_digits(node.value):,} digits is too large "
                    f"(at most {MAX_INT_DIGITS} digits; no field takes one that large)",
                )
            )
        return _Size(1, 0, len(node.value))

    def collection(self, node: Node, at: str, depth: int) -> _Size:
        if depth + 1 > self.limits.max_depth:
            raise _Refused(FieldError(at, self.limits.too_deep()))
        total = _Size(1, 1, 0)
        for key, child in self.children(node, at):
            size = self.node(child, key, depth + 1)
            total.nodes += size.nodes
            total.chars += size.chars
            total.depth = max(total.depth, size.depth + 1)
            if total.nodes > self.limits.max_nodes:
                raise _Refused(FieldError("", self.limits.too_many()))
            if total.chars > self.limits.max_input_bytes:
                raise _Refused(FieldError("", self.limits.too_large_expanded()))
        return total

    @staticmethod
    def children(node: Node, at: str) -> list[tuple[str, Node]]:
        if isinstance(node, SequenceNode):
            return [(f"{at}/{index}", child) for index, child in enumerate(node.value)]
        assert isinstance(node, MappingNode)
        pairs = []
        for key, value in node.value:
            token = key.value if isinstance(key, ScalarNode) else "?"
            pairs += [(at, key), (f"{at}/{escape_pointer(token)}", value)]
        return pairs


class _Loader(Reader, Scanner, Parser, Composer, _JsonConstructor, _JsonResolver):
    """PyYAML's safe loader, but composing within the limits (the composer recurses)."""

    def __init__(self, text: str, limits: DocumentLimits) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _JsonConstructor.__init__(self)
        _JsonResolver.__init__(self)
        self.limits = limits
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise _Refused(FieldError("", self.limits.too_many()))
        opens = self.check_event(MappingStartEvent, SequenceStartEvent)
        if opens and self.depth >= self.limits.max_depth:
            line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
            raise _Refused(FieldError("", f"{self.limits.too_deep()} (at line {line})"))
        self.depth += opens
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= opens


def _yaml_problem(exc: yaml.YAMLError) -> FieldError:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return FieldError("", f"not valid YAML or JSON{where}: {' '.join(str(problem).split())}")


def _load(text: str, limits: DocumentLimits) -> object:
    try:
        loader = _Loader(text, limits)  # the reader checks every character here
    except yaml.YAMLError as exc:
        raise _Refused(_yaml_problem(exc)) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        measure = _Measure(limits)
        measure.node(node, "", 0)
        if measure.errors:
            raise _Refused(*measure.errors)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _Refused(_yaml_problem(exc)) from None
    finally:
        loader.dispose()


def load_document(
    data: str | bytes, source: str | None = None, *, limits: DocumentLimits = POLICY_LIMITS
) -> object:
    """YAML (a superset of JSON) text or bytes -> plain JSON-shaped data.

    Raises :class:`InvalidDocument` for anything that is not a document within ``limits``;
    the values are then checked by the document's own parser (a persona, a policy, facts).
    """
    try:
        text = _decode(data, limits) if isinstance(data, bytes) else _check_text(data, limits)
        return _load(text, limits)
    except _Refused as exc:
        raise InvalidDocument(exc.errors, source) from None
