"""Label selectors: parsing and validation."""

from __future__ import annotations

import re

import pytest

from forecaster.selector import Op, Requirement, SelectorError, parse_selector


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
