"""A rule's query template: checking it is PromQL that can work, and turning a label
selector into matchers in its `<<.LabelMatchers>>` placeholders."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import promql_parser

from forecaster.selector import EVERYTHING, LabelSelector, Op

PLACEHOLDER = "<<.LabelMatchers>>"
"""Where a rule's query receives the request's label selector (and namespace) as matchers."""

_ANY_PLACEHOLDER = re.compile(r"<<\s*\.?\s*(\w*)\s*>>")
_PLACED = re.compile(r"(,\s*)?" + re.escape(PLACEHOLDER) + r"(\s*,)?")
_CLOSES = re.compile(r"[ ,]*[}A-Za-z_]")
_KEEPING = {"topk", "bottomk", "limitk", "limit_ratio"}
_SENTINEL = '__scaleahead_placeholder__="1"'
_REGEX_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")

_GROUP_BY = (
    "write the labels each series keeps, e.g. sum by (namespace, service) (...): "
    "the query yields every series at once and the HPA's selector picks among them"
)
_ADAPTER_PLACEHOLDERS = {
    "Series": "write the metric name itself, e.g. http_requests_total{<<.LabelMatchers>>}: "
    "a rule is one query for all its series, not a template per discovered series",
    "GroupBy": _GROUP_BY,
    "GroupBySlice": _GROUP_BY,
}

_OUTSIDE = (
    f"{PLACEHOLDER} must stand inside a selector's braces, e.g. "
    f'http_requests_total{{{PLACEHOLDER}}} or http_requests_total{{code!~"5..",{PLACEHOLDER}}}'
)


class QueryError(ValueError):
    """A query template that cannot work; the message says why and what to write."""


def string_literal(value: str) -> str:
    """A PromQL double-quoted string literal whose content is exactly `value`."""
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


def _regex_alternatives(values: tuple[str, ...]) -> str:
    return "|".join(_REGEX_SPECIAL.sub(r"\\\1", v) for v in values)


def matchers(selector: LabelSelector) -> str:
    """Comma-separated PromQL label matchers equivalent to the selector."""
    out = []
    for r in selector.requirements:
        if r.op is Op.EQ:
            out.append(f"{r.key}={string_literal(r.values[0])}")
        elif r.op is Op.NE:
            out.append(f"{r.key}!={string_literal(r.values[0])}")
        elif r.op is Op.IN:
            out.append(f"{r.key}=~{string_literal(_regex_alternatives(r.values))}")
        elif r.op is Op.NOT_IN:
            out.append(f"{r.key}!~{string_literal(_regex_alternatives(r.values))}")
        elif r.op is Op.EXISTS:
            out.append(f'{r.key}!=""')
        else:
            out.append(f'{r.key}=""')
    return ",".join(out)


def render(template: str, selector: LabelSelector) -> str:
    """The rule's query with the selector's matchers in place of every placeholder (an
    empty selector takes a comma beside its placeholder with it)."""
    text = matchers(selector)

    def fill(m: re.Match[str]) -> str:
        before, after = m.group(1) or "", m.group(2) or ""
        if text:
            return before + text + after
        return "," if before and after else ""

    return _PLACED.sub(fill, template)


def _nodes(expr: promql_parser.Expr) -> list[object]:
    found: list[object] = []
    promql_parser.walk(expr, lambda node: found.append(node))
    return found


def _selector_name(node: promql_parser.VectorSelector) -> str | None:
    if node.name:
        return str(node.name)
    for m in node.matchers.matchers:
        if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal:
            return str(m.value)
    return None


def _value_type(expr: object) -> str:
    """'vector', 'matrix', 'scalar' or 'string': what evaluating `expr` yields."""
    if isinstance(expr, promql_parser.ParenExpr | promql_parser.UnaryExpr):
        return _value_type(expr.expr)
    if isinstance(expr, promql_parser.VectorSelector | promql_parser.AggregateExpr):
        return "vector"
    if isinstance(expr, promql_parser.MatrixSelector | promql_parser.SubqueryExpr):
        return "matrix"
    if isinstance(expr, promql_parser.StringLiteral):
        return "string"
    if isinstance(expr, promql_parser.Call):
        return str(expr.func.return_type).rsplit(".", 1)[-1].lower()
    if isinstance(expr, promql_parser.BinaryExpr):
        sides = {_value_type(expr.lhs), _value_type(expr.rhs)}
        return "vector" if "vector" in sides else "scalar"
    return "scalar"


def _parse(query: str, what: str) -> promql_parser.Expr:
    try:
        return promql_parser.parse(query)
    except ValueError as err:
        raise QueryError(f"{what} is not valid PromQL: {err}") from None


@dataclass(frozen=True)
class TemplateShape:
    """What can be told of a query template's result before running it."""

    metrics: tuple[str, ...]  # metric names its selectors name
    dropped: frozenset[str]  # labels its outermost aggregation surely removes (sum by, without)
    keeps_only: frozenset[str] | None  # the labels of a `by (...)` aggregation, else None
    warmup: int = 0  # seconds a new series' values are still filling their range windows


def _warmup(expr: promql_parser.Expr) -> float:
    """Seconds of samples the query reads back from each evaluation: its longest range
    (a subquery's range plus what its inner query reads)."""
    longest = 0.0
    for node in _nodes(expr):
        if isinstance(node, promql_parser.MatrixSelector):
            longest = max(longest, node.range.total_seconds())
        elif isinstance(node, promql_parser.SubqueryExpr):
            reach = node.range.total_seconds() if node.range else 0.0
            longest = max(longest, reach + _warmup(node.expr))
    return longest


def _outermost(expr: promql_parser.Expr) -> promql_parser.Expr:
    while isinstance(expr, promql_parser.ParenExpr):
        expr = expr.expr
    return expr


def check_template(template: str) -> TemplateShape:
    """Raise QueryError unless `template` is PromQL yielding an instant vector with every
    placeholder inside a selector's braces; describe what it selects and keeps."""
    for m in _ANY_PLACEHOLDER.finditer(template):
        if m.group(0) == PLACEHOLDER:
            continue
        advice = _ADAPTER_PLACEHOLDERS.get(m.group(1))
        if advice:
            raise QueryError(
                f"{m.group(0)} is a prometheus-adapter placeholder scaleahead does not fill: "
                f"{advice}"
            )
        raise QueryError(f"unknown placeholder {m.group(0)}: the only one is {PLACEHOLDER}")
    wanted = template.count(PLACEHOLDER)
    if not wanted:
        raise QueryError(
            f"expected {PLACEHOLDER} inside the braces of the selector that picks the "
            "series, e.g. 'sum by (namespace, service) "
            f"(rate(http_requests_total{{{PLACEHOLDER}}}[2m]))'"
        )
    for m in re.finditer(re.escape(PLACEHOLDER), template):
        before = template[: m.start()]
        inside = before.rfind("{") > before.rfind("}")  # an open brace before it...
        if not inside or not _CLOSES.match(template, m.end()):  # ...closed or a matcher after
            raise QueryError(_OUTSIDE)
    marked = _parse(template.replace(PLACEHOLDER, _SENTINEL), "the query")
    selectors = [n for n in _nodes(marked) if isinstance(n, promql_parser.VectorSelector)]
    placed = sum(
        1 for n in selectors for m in n.matchers.matchers if m.name == "__scaleahead_placeholder__"
    )
    if placed != wanted:
        raise QueryError(_OUTSIDE)
    everything = render(template, EVERYTHING)
    parsed = _parse(everything, f"with an empty selector the query ({everything})")
    kind = _value_type(parsed)
    if kind != "vector":
        hint = " (wrap the range in rate(...))" if kind == "matrix" else ""
        raise QueryError(f"the query must yield an instant vector, not a {kind}{hint}")
    metrics = tuple(dict.fromkeys(name for n in selectors if (name := _selector_name(n))))
    warmup = math.ceil(_warmup(parsed))
    top = _outermost(parsed)
    if not isinstance(top, promql_parser.AggregateExpr):
        return TemplateShape(metrics, frozenset(), None, warmup)
    modifier = top.modifier
    if modifier is None:  # sum(...) keeps no label; topk(...) keeps them all
        kept = None if str(top.op) in _KEEPING else frozenset[str]()
        return TemplateShape(metrics, frozenset(), kept, warmup)
    labels = frozenset(str(label) for label in modifier.labels)
    if modifier.type == promql_parser.AggModifierType.By:
        return TemplateShape(metrics, frozenset(), labels, warmup)
    return TemplateShape(metrics, labels, None, warmup)
