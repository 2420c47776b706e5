"""Kubernetes label selectors ("a=b,c!=d,e in (x,y),!f"): parsing, validation and matching.

Keys must be Prometheus label names and values Kubernetes label values, so that a parsed
selector can always be turned into PromQL matchers (see forecaster.promql).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")
_TOKEN = re.compile(r"\s*(==|!=|=|\(|\)|,|!|[^\s=!(),]+)")


MAX_LENGTH = 4096
"""Characters a selector may have. A request's selector is parsed and matched on the API
server's event loop, so what one request can cost is bounded here (an HPA's selector is
a few labels; a URL of tens of kilobytes is no selector anyone writes)."""
MAX_VALUES = 256
"""Values one `in` or `notin` set may list."""
MAX_REQUIREMENTS = 32
"""Requirements one selector may hold."""


class SelectorError(ValueError):
    """A label selector that is malformed or cannot be expressed as Prometheus matchers."""


class Op(Enum):
    EQ = "="
    NE = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    NOT_EXISTS = "!"


@dataclass(frozen=True)
class Requirement:
    """One clause of a selector: a label key, an operator and its values."""

    key: str
    op: Op
    values: tuple[str, ...] = ()
    # The values as a set: matching costs the same however many are listed.
    value_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "value_set", frozenset(self.values))

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key, "")
        if self.op is Op.EQ:
            return value == self.values[0]
        if self.op is Op.NE:
            return value != self.values[0]
        if self.op is Op.IN:
            return value != "" and value in self.value_set
        if self.op is Op.NOT_IN:
            return value not in self.value_set or value == ""
        if self.op is Op.EXISTS:
            return value != ""
        return value == ""


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def keys(self) -> set[str]:
        """The label keys the selector constrains."""
        return {r.key for r in self.requirements}

    def with_equals(self, key: str, value: str) -> LabelSelector:
        """This selector plus the requirement key=value (validated like any other)."""
        _check_value(value)
        return LabelSelector((*self.requirements, Requirement(key, Op.EQ, (value,))))

    def __str__(self) -> str:
        parts = []
        for r in self.requirements:
            if r.op in (Op.EQ, Op.NE):
                parts.append(f"{r.key}{r.op.value}{r.values[0]}")
            elif r.op in (Op.IN, Op.NOT_IN):
                parts.append(f"{r.key} {r.op.value} ({','.join(r.values)})")
            elif r.op is Op.EXISTS:
                parts.append(r.key)
            else:
                parts.append(f"!{r.key}")
        return ",".join(parts)


def is_label_name(name: str) -> bool:
    """Whether `name` is a valid Prometheus label name."""
    return _LABEL_NAME.match(name) is not None


def is_label_value(value: str) -> bool:
    """Whether `value` is a valid Kubernetes label value (empty included)."""
    return len(value) <= 63 and _LABEL_VALUE.match(value) is not None


def _check_key(key: str) -> str:
    if key.startswith("__"):
        raise SelectorError(
            f"label key {key!r} is reserved: keys starting with '__' are Prometheus' own "
            "(such as __name__), not labels of a served series"
        )
    if not is_label_name(key):
        raise SelectorError(
            f"label key {key!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        )
    return key


def _check_value(value: str) -> str:
    if not is_label_value(value):
        raise SelectorError(
            f"label value {value!r} is not a valid Kubernetes label value "
            "(at most 63 characters: alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric)"
        )
    return value


def parse_selector(text: str | None) -> LabelSelector:
    """Parse a Kubernetes label selector string; raise SelectorError naming the problem
    (and the limit, for one beyond MAX_LENGTH, MAX_VALUES or MAX_REQUIREMENTS)."""
    if text is None or not text.strip():
        return LabelSelector()
    if len(text) > MAX_LENGTH:
        raise SelectorError(
            f"a selector of {len(text)} characters: at most {MAX_LENGTH} are accepted"
        )
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            if text[pos:].strip() == "":
                break
            raise SelectorError(f"unexpected character at position {pos} in {text!r}")
        tokens.append(m.group(1))
        pos = m.end()
    reqs: list[Requirement] = []
    i = 0

    def expect_value_list() -> tuple[str, ...]:
        nonlocal i
        if i >= len(tokens) or tokens[i] != "(":
            raise SelectorError(f"expected '(' after 'in'/'notin' in {text!r}")
        i += 1
        values: list[str] = []
        while True:
            if i >= len(tokens):
                raise SelectorError(f"unclosed '(' in {text!r}")
            tok = tokens[i]
            if tok == ")" and not values:
                raise SelectorError(f"empty value set in {text!r}")
            if tok in "(),=!" or tok in ("==", "!="):
                raise SelectorError(f"expected a value, found {tok!r} in {text!r}")
            values.append(_check_value(tok))
            if len(values) > MAX_VALUES:
                raise SelectorError(f"more than {MAX_VALUES} values in one set of {text!r}")
            i += 1
            if i >= len(tokens):
                raise SelectorError(f"unclosed '(' in {text!r}")
            if tokens[i] == ",":
                i += 1
                continue
            if tokens[i] == ")":
                i += 1
                return tuple(values)
            raise SelectorError(f"expected ',' or ')' in value set of {text!r}")

    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            if i + 1 >= len(tokens):
                raise SelectorError(f"expected a label key after '!' in {text!r}")
            reqs.append(Requirement(_check_key(tokens[i + 1]), Op.NOT_EXISTS))
            i += 2
        elif tok in ("(", ")", ",", "=", "==", "!="):
            raise SelectorError(f"expected a label key, found {tok!r} in {text!r}")
        else:
            key = tok
            i += 1
            nxt = tokens[i] if i < len(tokens) else ","
            if nxt == ",":
                reqs.append(Requirement(_check_key(key), Op.EXISTS))
            elif nxt in ("=", "==", "!="):
                i += 1
                # An empty value ("a=") is legal in Kubernetes selectors.
                value = "" if i >= len(tokens) or tokens[i] == "," else tokens[i]
                if value:
                    i += 1
                op = Op.NE if nxt == "!=" else Op.EQ
                reqs.append(Requirement(_check_key(key), op, (_check_value(value),)))
            elif nxt in ("in", "notin"):
                i += 1
                op = Op.IN if nxt == "in" else Op.NOT_IN
                reqs.append(Requirement(_check_key(key), op, expect_value_list()))
            elif nxt.startswith((">", "<")) or key.endswith((">", "<")):
                raise SelectorError(f"numeric comparisons are not supported in {text!r}")
            else:
                raise SelectorError(f"expected an operator after {key!r}, found {nxt!r}")
        if i < len(tokens):
            if tokens[i] != ",":
                raise SelectorError(f"expected ',' between requirements, found {tokens[i]!r}")
            i += 1
            if len(reqs) >= MAX_REQUIREMENTS:
                raise SelectorError(f"more than {MAX_REQUIREMENTS} requirements in {text!r}")
            if i >= len(tokens):
                raise SelectorError(f"trailing ',' in {text!r}")
    return LabelSelector(tuple(reqs))


EVERYTHING = LabelSelector()
"""The empty selector (matches every series); immutable, so safe as a default argument."""
