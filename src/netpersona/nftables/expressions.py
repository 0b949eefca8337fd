"""nft syntax for the expressions and statements of libnftables JSON (libnftables-json(5)).

Every function takes a JSON value and the RFC 6901 pointer to it, and returns nft text or
raises :class:`ValueError` naming that pointer: what cannot be written so that ``nft -f``
builds exactly what ``nft -j -f`` builds is refused, never approximated.

Strings are the subtle part. The JSON parser turns every string immediate into a *symbol*
that the left side's datatype resolves later; in nft text only a quoted string is guaranteed
to become the same symbol (a bare word may be lexed as a keyword, a number, a prefix or a
range). So strings are quoted, except canonical IP addresses and the symbolic constants in
:data:`SYMBOLIC_CONSTANTS`, which nft itself prints bare and which a kernel test reads back.
"""

from __future__ import annotations

import ipaddress
import json
import re
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, NoReturn

__all__ = [
    "SYMBOLIC_CONSTANTS",
    "at",
    "fail",
    "fields",
    "name",
    "optional_parts",
    "quoted",
    "set_elements",
    "single",
    "statement",
    "uint",
    "word",
]

# Symbolic constants written bare, by the datatype that defines them (nft describe ...).
SYMBOLIC_CONSTANTS: Mapping[str, tuple[str, ...]] = {
    group: tuple(words.split())
    for group, words in {
        "ct state": "invalid new established related untracked",
        "ct direction": "original reply",
        "meta nfproto": "ipv4 ipv6",
        "meta l4proto": "tcp udp udplite sctp dccp icmp ipv6-icmp igmp gre esp ah",
        "meta pkttype": "host unicast broadcast multicast other",
        "fib type": "unspec unicast local broadcast anycast multicast blackhole unreachable"
        " prohibit",
        "dscp": "cs0 cs1 cs2 cs3 cs4 cs5 cs6 cs7 df be lephb va ef af11 af12 af13 af21 af22"
        " af23 af31 af32 af33 af41 af42 af43",
        "icmp type": "echo-reply destination-unreachable source-quench redirect echo-request"
        " router-advertisement router-solicitation time-exceeded parameter-problem"
        " timestamp-request timestamp-reply",
        "icmpv6 type": "destination-unreachable packet-too-big time-exceeded parameter-problem"
        " echo-request echo-reply mld-listener-query mld-listener-report mld-listener-done"
        " nd-router-solicit nd-router-advert nd-neighbor-solicit nd-neighbor-advert nd-redirect"
        " mld2-listener-report",
        "tcp flags": "fin syn rst psh ack urg ecn cwr",
    }.items()
}
_BARE = frozenset(w for words in SYMBOLIC_CONSTANTS.values() for w in words)

# The nft scanner's identifier token, without the rarely used '/': names cannot be quoted in
# nft 1.0.6 (`add chain inet t "x"` is a syntax error), so anything else is refused.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_WORD = re.compile(r"[a-z][a-z0-9_-]*\Z")
_CT_KEY = re.compile(r"([a-z][a-z0-9-]* )?[a-z][a-z0-9-]*\Z")

_MATCH_OPS = {"==": "==", "!=": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "in": ""}
_VERDICTS = frozenset({"accept", "drop", "continue", "return"})
_RATE_UNITS = frozenset({"packets", "bytes", "kbytes", "mbytes"})
_BYTE_UNITS = frozenset({"bytes", "kbytes", "mbytes"})
_TIME_UNITS = frozenset({"second", "minute", "hour", "day", "week"})
_LOG_LEVELS = frozenset(
    {"emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit"}
)
_LOG_FLAGS = frozenset({"tcp sequence", "tcp options", "ip options", "skuid", "ether", "all"})
_LEFT_KINDS = frozenset({"payload", "meta", "ct", "fib", "socket", "numgen", "concat"})
_PER_ELEMENT_STATEMENTS = frozenset({"limit", "counter", "ct count"})


# -- plumbing shared with the object renderer -------------------------------------------------


def at(path: str, key: str | int) -> str:
    """The JSON pointer of ``key`` under ``path`` (RFC 6901 escaping)."""
    token = str(key).replace("~", "~0").replace("/", "~1")
    return f"{path}/{token}"


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."


def fail(path: str, message: str) -> NoReturn:
    raise ValueError(f"{path or '/'}: {message}")


def single(value: object, path: str) -> tuple[str, Any]:
    """The one key and its value of a ``{"kind": body}`` object."""
    if not isinstance(value, Mapping) or len(value) != 1:
        fail(path, f"expected an object with exactly one property, got {_show(value)}")
    ((key, body),) = value.items()
    return str(key), body


def fields(
    body: object, path: str, required: Collection[str], optional: Collection[str] = ()
) -> Mapping[str, Any]:
    """``body`` as an object holding every ``required`` and only known properties."""
    if not isinstance(body, Mapping):
        fail(path, f"expected an object, got {_show(body)}")
    for key in sorted(body):
        if key not in required and key not in optional:
            fail(at(path, key), "property not supported by the nft renderer")
    for key in required:
        if key not in body:
            fail(path, f'missing property "{key}"')
    return body


def uint(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        fail(path, f"expected a non-negative integer, got {_show(value)}")
    return value


def word(value: object, path: str, allowed: Collection[str] | None = None) -> str:
    """A keyword of nft syntax (a type, hook, protocol, field...), checked, never quoted."""
    if not isinstance(value, str) or not _WORD.match(value):
        fail(path, f"expected an nft keyword, got {_show(value)}")
    if allowed is not None and value not in allowed:
        fail(path, f"{_show(value)} is not one of {', '.join(sorted(allowed))}")
    return value


def name(value: object, path: str) -> str:
    """A table, chain, set or object name: nft text has no quoting for these."""
    if not isinstance(value, str) or not _NAME.match(value):
        fail(path, f"{_show(value)} cannot be written as an nft name (letters, digits, _ . -)")
    return value


def quoted(value: object, path: str) -> str:
    """An nft quoted string: nft has no escapes, so '"' and control characters are refused."""
    if not isinstance(value, str):
        fail(path, f"expected a string, got {_show(value)}")
    if '"' in value or any(unicodedata.category(ch) == "Cc" for ch in value):
        fail(path, f"{_show(value)} cannot be written in nft syntax (a quote or control character)")
    return f'"{value}"'


def optional_parts(
    body: Mapping[str, Any],
    path: str,
    options: Sequence[tuple[str, str, Callable[[object, str], object]]],
) -> list[str]:
    """For each (key, template, check) whose key is in ``body``: the template filled with the
    checked value, in the order given."""
    return [
        template.format(check(body[key], at(path, key)))
        for key, template, check in options
        if key in body
    ]


def _one_or_many(value: object, path: str) -> list[tuple[object, str]]:
    """The items of an ``X | [X, ...]`` property, each with its pointer; never empty."""
    if not isinstance(value, list):
        return [(value, path)]
    if not value:
        fail(path, "an empty list cannot be written in nft syntax")
    return [(item, at(path, i)) for i, item in enumerate(value)]


def _seconds(value: object, path: str) -> str:
    return f"{uint(value, path)}s"


# -- expressions -------------------------------------------------------------------------------


def _is_canonical_ip(text: str) -> bool:
    try:
        return str(ipaddress.ip_address(text)) == text and "%" not in text
    except ValueError:
        return False


def _immediate(value: object, path: str, *, bare_words: bool = True) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        fail(path, f"unsupported immediate {_show(value)}")
    if isinstance(value, int):
        return str(uint(value, path))
    if value.startswith("@"):
        return "@" + name(value[1:], path)
    if value == "*":
        return "*"
    if _is_canonical_ip(value) or (bare_words and value in _BARE):
        return value
    return quoted(value, path)


def _payload(body: object, path: str) -> str:
    if isinstance(body, Mapping) and "base" in body:
        raw = fields(body, path, ("base", "offset", "len"))
        base = word(raw["base"], at(path, "base"), ("ll", "nh", "th"))
        return (
            f"@{base},{uint(raw['offset'], at(path, 'offset'))},{uint(raw['len'], at(path, 'len'))}"
        )
    b = fields(body, path, ("protocol", "field"))
    return f"{word(b['protocol'], at(path, 'protocol'))} {word(b['field'], at(path, 'field'))}"


def _meta(body: object, path: str) -> str:
    return f"meta {word(fields(body, path, ('key',))['key'], at(path, 'key'))}"


def _ct(body: object, path: str) -> str:
    # "family" is left out on purpose: nft 1.0.6's JSON parser ignores it (the kernel then
    # refuses the rule), and the key may carry it instead ("ip saddr"), as nft lists it.
    b = fields(body, path, ("key",), ("dir",))
    key = b["key"]
    if not isinstance(key, str) or not _CT_KEY.match(key):
        fail(at(path, "key"), f"expected a ct key, got {_show(key)}")
    if "dir" in b:
        return f"ct {word(b['dir'], at(path, 'dir'), ('original', 'reply'))} {key}"
    return f"ct {key}"


def _fib(body: object, path: str) -> str:
    b = fields(body, path, ("result", "flags"))
    allowed = ("saddr", "daddr", "mark", "iif", "oif")
    keys = [word(f, fpath, allowed) for f, fpath in _one_or_many(b["flags"], at(path, "flags"))]
    result = word(b["result"], at(path, "result"), ("oif", "oifname", "type"))
    return f"fib {' . '.join(keys)} {result}"


def _socket(body: object, path: str) -> str:
    key = fields(body, path, ("key",))["key"]
    return f"socket {word(key, at(path, 'key'), ('transparent', 'mark', 'wildcard'))}"


def _numgen(body: object, path: str) -> str:
    b = fields(body, path, ("mode", "mod"), ("offset",))
    mode = word(b["mode"], at(path, "mode"), ("inc", "random"))
    text = f"numgen {mode} mod {uint(b['mod'], at(path, 'mod'))}"
    offset = uint(b.get("offset", 0), at(path, "offset"))
    return f"{text} offset {offset}" if offset else text


def _concat(body: object, path: str) -> str:
    if not isinstance(body, list) or len(body) < 2:
        fail(path, "a concatenation needs a list of at least two expressions")
    return " . ".join(expression(item, at(path, i)) for i, item in enumerate(body))


def _prefix(body: object, path: str) -> str:
    b = fields(body, path, ("addr", "len"))
    if not isinstance(b["addr"], str):
        fail(at(path, "addr"), f"expected an address, got {_show(b['addr'])}")
    return f"{_immediate(b['addr'], at(path, 'addr'))}/{uint(b['len'], at(path, 'len'))}"


def _range(body: object, path: str) -> str:
    if not isinstance(body, list) or len(body) != 2:
        fail(path, "a range needs a list of exactly two values")
    # Quote symbolic bounds: `cs1-cs3` would be lexed as one word.
    low, high = (_immediate(v, at(path, i), bare_words=False) for i, v in enumerate(body))
    return f"{low}-{high}"


def _anonymous_set(body: object, path: str) -> str:
    return set_elements(body, path, mapping=None)


def _map_source(value: object, path: str) -> str:
    """The data side of a map lookup or verdict map: a named map or an anonymous one."""
    if isinstance(value, str) and value.startswith("@"):
        return _immediate(value, path)
    kind, body = single(value, path)
    if kind != "set":
        fail(path, 'expected "@mapname" or {"set": [[key, value], ...]}')
    return set_elements(body, at(path, "set"), mapping=True)


def _map(body: object, path: str) -> str:
    b = fields(body, path, ("key", "data"))
    return f"{expression(b['key'], at(path, 'key'))} map {_map_source(b['data'], at(path, 'data'))}"


_EXPRESSIONS: dict[str, Callable[[object, str], str]] = {
    "payload": _payload,
    "meta": _meta,
    "ct": _ct,
    "fib": _fib,
    "socket": _socket,
    "numgen": _numgen,
    "concat": _concat,
    "prefix": _prefix,
    "range": _range,
    "set": _anonymous_set,
    "map": _map,
}


def expression(value: object, path: str) -> str:
    if not isinstance(value, Mapping):
        if isinstance(value, list):
            fail(path, "a list is only supported as the right side of a match")
        return _immediate(value, path)
    kind, body = single(value, path)
    render = _EXPRESSIONS.get(kind)
    if render is None:
        fail(at(path, kind), f'expression "{kind}" is not supported by the nft renderer')
    return render(body, at(path, kind))


def _element_key(value: object, path: str) -> str:
    """A set element: an expression, or {"elem": {"val", "timeout", "expires", "comment"}}."""
    if not (isinstance(value, Mapping) and set(value) == {"elem"}):
        return expression(value, path)
    epath = at(path, "elem")
    b = fields(value["elem"], epath, ("val",), ("timeout", "expires", "comment"))
    options = (
        ("timeout", "timeout {}", _seconds),
        ("expires", "expires {}", _seconds),
        ("comment", "comment {}", quoted),
    )
    return " ".join([expression(b["val"], at(epath, "val")), *optional_parts(b, epath, options)])


def _map_value(value: object, path: str) -> str:
    """The value of a map element: an expression or a verdict (verdict maps)."""
    if isinstance(value, Mapping) and len(value) == 1:
        kind = next(iter(value))
        if kind in _VERDICTS or kind in ("jump", "goto"):
            return _verdict(kind, value[kind], at(path, kind))
    return expression(value, path)


def set_elements(value: object, path: str, *, mapping: bool | None) -> str:
    """``{ a, b }`` from SET_ELEMENTS; ``mapping`` None takes [key, value] pairs as they come."""
    rendered = []
    for item, ipath in _one_or_many(value, path):
        if isinstance(item, list):
            if mapping is False:
                fail(ipath, "a [key, value] pair is only valid in a map")
            if len(item) != 2:
                fail(ipath, "a map element must be a [key, value] pair")
            key = _element_key(item[0], at(ipath, 0))
            rendered.append(f"{key} : {_map_value(item[1], at(ipath, 1))}")
        else:
            if mapping is True:
                fail(ipath, "a map element must be a [key, value] pair")
            rendered.append(_element_key(item, ipath))
    return "{ " + ", ".join(rendered) + " }"


# -- statements --------------------------------------------------------------------------------


def _verdict(kind: str, body: object, path: str) -> str:
    if kind in _VERDICTS:
        if body is not None:
            fail(path, f"expected null, got {_show(body)}")
        return kind
    target = fields(body, path, ("target",))["target"]
    return f"{kind} {name(target, at(path, 'target'))}"


def _match(body: object, path: str) -> str:
    b = fields(body, path, ("op", "left", "right"))
    op = b["op"]
    if op not in _MATCH_OPS:
        fail(at(path, "op"), f"operator {_show(op)} is not one of {', '.join(_MATCH_OPS)}")
    left = b["left"]
    if not (isinstance(left, Mapping) and len(left) == 1 and next(iter(left)) in _LEFT_KINDS):
        fail(at(path, "left"), f"unsupported left side {_show(left)}")
    right, rpath = b["right"], at(path, "right")
    if isinstance(right, bool):
        # `fib ... oif missing` / `exists`: nft lists the presence of an interface as a bool.
        if next(iter(left)) != "fib" or op not in ("==", "!="):
            fail(rpath, 'true and false only compare with "==" or "!=" to a fib interface')
        present = right if op == "==" else not right
        return f"{expression(left, at(path, 'left'))} {'exists' if present else 'missing'}"
    if isinstance(right, list):
        # A flag list: "in" tests for any of the flags (ct state established,related), "=="
        # and "!=" compare with all of them together, in JSON and in text alike.
        if op not in ("in", "==", "!=") or not right:
            fail(rpath, 'a list is only supported with "in", "==" and "!="')
        rendered = ",".join(_immediate(v, at(rpath, i)) for i, v in enumerate(right))
    else:
        rendered = expression(right, rpath)
    # "in" is nft's implicit operator: no operator in the text (libnftables-json(5), MATCH).
    # Against a set, implicit and "==" are the same lookup; leave it out, as nft lists it.
    lookup = (isinstance(right, str) and right.startswith("@")) or (
        isinstance(right, Mapping) and set(right) == {"set"}
    )
    shown = "" if lookup and op == "==" else _MATCH_OPS[op]
    parts = [expression(left, at(path, "left")), shown, rendered]
    return " ".join(p for p in parts if p)


def _counter(body: object, path: str) -> str:
    if body is None:
        return "counter"
    if isinstance(body, str):
        return f"counter name {quoted(body, path)}"
    # nft 1.0.6's JSON parser takes an anonymous counter's values both or not at all (null).
    b = fields(body, path, ("packets", "bytes"))
    packets, octets = uint(b["packets"], at(path, "packets")), uint(b["bytes"], at(path, "bytes"))
    return f"counter packets {packets} bytes {octets}"


def _limit(body: object, path: str) -> str:
    if isinstance(body, str):
        fail(path, "named limit objects are not supported by the nft renderer")
    # "per" is required: nft 1.0.6's JSON parser takes a limit without it for a named limit.
    b = fields(body, path, ("rate", "per"), ("rate_unit", "burst", "burst_unit", "inv"))
    rate = uint(b["rate"], at(path, "rate"))
    unit = word(b.get("rate_unit", "packets"), at(path, "rate_unit"), _RATE_UNITS)
    per = word(b["per"], at(path, "per"), _TIME_UNITS)
    burst = uint(b.get("burst", 0), at(path, "burst"))
    burst_unit = word(b.get("burst_unit", "bytes"), at(path, "burst_unit"), _BYTE_UNITS)
    inv = b.get("inv", False)
    if not isinstance(inv, bool):
        fail(at(path, "inv"), f"expected true or false, got {_show(inv)}")
    parts = ["limit rate", "over" if inv else ""]
    if unit == "packets":
        # A packet burst of 0 is the default in JSON and in text; nft text refuses to spell it.
        parts += [f"{rate}/{per}", f"burst {burst} packets" if burst else ""]
    else:
        parts += [f"{rate} {unit}/{per}", f"burst {burst} {burst_unit}" if burst else ""]
    return " ".join(p for p in parts if p)


def _mangle(body: object, path: str) -> str:
    b = fields(body, path, ("key", "value"))
    key = b["key"]
    if not (
        isinstance(key, Mapping) and len(key) == 1 and next(iter(key)) in {"payload", "meta", "ct"}
    ):
        fail(at(path, "key"), f"unsupported mangle key {_show(key)}")
    return f"{expression(key, at(path, 'key'))} set {expression(b['value'], at(path, 'value'))}"


def _stateful(value: object, path: str) -> str:
    kind, _ = single(value, path)
    if kind not in _PER_ELEMENT_STATEMENTS:
        fail(at(path, kind), f'"{kind}" is not supported inside a set or meter statement')
    return statement(value, path)


def _set_statement(body: object, path: str) -> str:
    b = fields(body, path, ("op", "elem", "set"), ("stmt",))
    op = word(b["op"], at(path, "op"), ("add", "update", "delete"))
    target = b["set"]
    if not isinstance(target, str) or not target.startswith("@"):
        fail(at(path, "set"), f'expected "@setname", got {_show(target)}')
    inner = [_element_key(b["elem"], at(path, "elem"))]
    stmts = b.get("stmt", [])
    if not isinstance(stmts, list):
        fail(at(path, "stmt"), "expected a list of statements")
    inner += [_stateful(s, at(at(path, "stmt"), i)) for i, s in enumerate(stmts)]
    return f"{op} {_immediate(target, at(path, 'set'))} {{ {' '.join(inner)} }}"


def _meter(body: object, path: str) -> str:
    b = fields(body, path, ("name", "key", "stmt"), ("size",))
    head = f"meter {name(b['name'], at(path, 'name'))}"
    if "size" in b:
        head += f" size {uint(b['size'], at(path, 'size'))}"
    key = _element_key(b["key"], at(path, "key"))
    return f"{head} {{ {key} {_stateful(b['stmt'], at(path, 'stmt'))} }}"


def _ct_count(body: object, path: str) -> str:
    b = fields(body, path, ("val",), ("inv",))
    over = b.get("inv", False)
    if not isinstance(over, bool):
        fail(at(path, "inv"), f"expected true or false, got {_show(over)}")
    return f"ct count {'over ' if over else ''}{uint(b['val'], at(path, 'val'))}"


def _log(body: object, path: str) -> str:
    if body is None:
        return "log"
    b = fields(body, path, (), ("prefix", "level", "group", "snaplen", "queue-threshold", "flags"))
    parts = ["log"]
    if "prefix" in b:
        prefix = b["prefix"]
        # nft text expands $variables inside a log prefix; JSON takes it literally.
        if isinstance(prefix, str) and "$" in prefix:
            fail(at(path, "prefix"), f"{_show(prefix)}: '$' cannot be written in an nft log prefix")
        parts.append(f"prefix {quoted(prefix, at(path, 'prefix'))}")
    if "level" in b:
        parts.append(f"level {word(b['level'], at(path, 'level'), _LOG_LEVELS)}")
    for key in ("group", "snaplen", "queue-threshold"):
        if key in b:
            parts.append(f"{key} {uint(b[key], at(path, key))}")
    if "flags" in b:
        for flag, fpath in _one_or_many(b["flags"], at(path, "flags")):
            if flag not in _LOG_FLAGS:
                fail(fpath, f"unsupported log flag {_show(flag)}")
            parts.append(f"flags {flag}")
    return " ".join(parts)


def _vmap(body: object, path: str) -> str:
    b = fields(body, path, ("key", "data"))
    return (
        f"{expression(b['key'], at(path, 'key'))} vmap {_map_source(b['data'], at(path, 'data'))}"
    )


_STATEMENTS: dict[str, Callable[[object, str], str]] = {
    "match": _match,
    "counter": _counter,
    "limit": _limit,
    "mangle": _mangle,
    "set": _set_statement,
    "meter": _meter,
    "ct count": _ct_count,
    "log": _log,
    "vmap": _vmap,
}


def statement(value: object, path: str) -> str:
    kind, body = single(value, path)
    if kind in _VERDICTS or kind in ("jump", "goto"):
        return _verdict(kind, body, at(path, kind))
    render = _STATEMENTS.get(kind)
    if render is None:
        fail(at(path, kind), f'statement "{kind}" is not supported by the nft renderer')
    return render(body, at(path, kind))
