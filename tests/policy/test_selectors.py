"""Label selectors: Kubernetes semantics, and an implication the shadowing check can trust."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netpersona.policy.selectors import Operator, Requirement, Selector

IN, NOT_IN, EXISTS, ABSENT = (
    Operator.IN,
    Operator.NOT_IN,
    Operator.EXISTS,
    Operator.DOES_NOT_EXIST,
)


@pytest.mark.parametrize(
    ("requirement", "labels", "expected"),
    [
        (Requirement("app", IN, frozenset({"web", "api"})), {"app": "web"}, True),
        (Requirement("app", IN, frozenset({"web"})), {}, False),
        (Requirement("app", NOT_IN, frozenset({"web"})), {}, True),  # absent counts as not in
        (Requirement("app", NOT_IN, frozenset({"web"})), {"app": "web"}, False),
        (Requirement("app", EXISTS), {"app": ""}, True),
        (Requirement("app", ABSENT), {"app": ""}, False),
        (Requirement("app", ABSENT), {"other": "x"}, True),
    ],
)
def test_requirement_semantics(
    requirement: Requirement, labels: dict[str, str], expected: bool
) -> None:
    assert requirement.matches(labels) is expected


KEYS = st.sampled_from(["a", "b"])
VALUES = st.frozensets(st.sampled_from(["x", "y", "z"]), min_size=1, max_size=2)
REQUIREMENTS = st.builds(
    lambda key, op, values: Requirement(key, op, values if op.takes_values else frozenset()),
    KEYS,
    st.sampled_from(list(Operator)),
    VALUES,
)
SELECTORS = st.builds(lambda rs: Selector(tuple(rs)), st.lists(REQUIREMENTS, max_size=3))
LABELS = st.dictionaries(KEYS, st.sampled_from(["x", "y", "z", "w"]), max_size=2)


@given(SELECTORS, SELECTORS, st.lists(LABELS, min_size=1, max_size=20))
def test_implication_is_never_wrong(
    a: Selector, b: Selector, samples: list[dict[str, str]]
) -> None:
    if a.implies(b):
        for labels in samples:
            if a.matches(labels):
                assert b.matches(labels), (a, b, labels)


@given(SELECTORS, st.lists(LABELS, min_size=1, max_size=30))
def test_a_contradiction_matches_nothing(selector: Selector, samples: list[dict[str, str]]) -> None:
    if selector.contradiction() is not None:
        assert not any(selector.matches(labels) for labels in samples)


def test_implication_covers_the_common_shapes() -> None:
    web = Selector((Requirement("app", IN, frozenset({"web"})),))
    web_or_api = Selector((Requirement("app", IN, frozenset({"web", "api"})),))
    web_prod = Selector((*web.requirements, Requirement("env", IN, frozenset({"prod"}))))
    assert web.implies(web_or_api)
    assert web_prod.implies(web)
    assert not web_or_api.implies(web)
    assert web.implies(Selector(()))


def test_contradiction_is_explained() -> None:
    selector = Selector(
        (Requirement("app", IN, frozenset({"web"})), Requirement("app", NOT_IN, frozenset({"web"})))
    )
    assert selector.contradiction() == "no value of app meets app=web and app NotIn [web]"
