"""Label selectors: parsing and validation."""

from __future__ import annotations

import re

import pytest

from forecaster.selector import (
    MAX_LENGTH,
    MAX_REQUIREMENTS,
    MAX_VALUES,
    Op,
    Requirement,
    SelectorError,
    parse_selector,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("a=b", (Requirement("a", Op.EQ, ("b",)),)),
        ("a==b, c!=d", (Requirement("a", Op.EQ, ("b",)), Requirement("c", Op.NE, ("d",)))),
        ("a in (x, y),!b", (Requirement("a", Op.IN, ("x", "y")), Requirement("b", Op.NOT_EXISTS))),
        ("a notin (x),b", (Requirement("a", Op.NOT_IN, ("x",)), Requirement("b", Op.EXISTS))),
        ("a=", (Requirement("a", Op.EQ, ("",)),)),
    ],
)
def test_parse(text, expected):
    assert parse_selector(text).requirements == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a in (x", "unclosed"),
        ("a in x", "expected '('"),
        ("a in ()", "empty value set"),
        ("=b", "expected a label key"),
        ("a=b,", "trailing ','"),
        ("a=b c=d", "expected ','"),
        ("app.kubernetes.io/name=x", "not a Prometheus label name"),
        ('a=x"y', "not a valid Kubernetes label value"),
        ("a=" + "x" * 64, "not a valid Kubernetes label value"),
        ("a>1", "not a Prometheus label name"),
        ("a b", "expected an operator"),
    ],
)
def test_malformed(text, needle):
    with pytest.raises(SelectorError, match=re.escape(needle)):
        parse_selector(text)


def test_a_selector_beyond_its_bounds_is_refused_naming_the_limit():
    many = ",".join(f"s{i}" for i in range(MAX_VALUES + 1))
    with pytest.raises(SelectorError, match=f"more than {MAX_VALUES} values in one set"):
        parse_selector(f"service notin ({many})")
    long = "a=" + "b" * MAX_LENGTH
    with pytest.raises(SelectorError, match=f"at most {MAX_LENGTH} are accepted") as err:
        parse_selector(long)
    assert len(str(err.value)) < 200  # the message does not echo what it refuses
    requirements = ",".join(f"k{i}=v" for i in range(MAX_REQUIREMENTS + 1))
    with pytest.raises(SelectorError, match=f"more than {MAX_REQUIREMENTS} requirements"):
        parse_selector(requirements)
    at_bounds = ",".join(f"s{i}" for i in range(MAX_VALUES))
    assert len(parse_selector(f"service in ({at_bounds})").requirements[0].values) == MAX_VALUES


def test_set_requirements_match_by_set_membership():
    selector = parse_selector("service in (a,b,c),zone notin (x,y)")
    assert selector.matches({"service": "b", "zone": "z"})
    assert not selector.matches({"service": "b", "zone": "y"})
    assert not selector.matches({"service": "d"})
    assert selector.requirements[0].value_set == frozenset({"a", "b", "c"})
    assert selector == parse_selector("service in (a,b,c),zone notin (x,y)")
