"""Turning a label selector into PromQL matchers inside a rule's query template."""

from __future__ import annotations

import re

from forecaster.config import PLACEHOLDER
from forecaster.selector import LabelSelector, Op

_REGEX_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


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
    """The rule's query with the selector's matchers in place of the placeholder."""
    return template.replace(PLACEHOLDER, matchers(selector))
