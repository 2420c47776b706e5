"""How a configuration error reads: `FILE: key.path: what was expected`, in our words."""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from forecaster.config.floors import Event, Schedule
from forecaster.config.rule import Rule
from forecaster.config.schema import (
    BasicAuth,
    Config,
    CurrentConfig,
    ForwardConfig,
    PrometheusConfig,
)


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file, the key and the problem."""


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_WORDING = {
    "less_than": "expected a number below {lt}",
    "less_than_equal": "expected at most {le}",
    "greater_than": "expected a number above {gt}",
    "greater_than_equal": "expected at least {ge}",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "string_type": "expected text",
    "string_too_short": "must not be empty",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "list_type": "expected a list (a YAML sequence)",
    "too_short": "expected at least {min_length} item(s)",
    "model_type": "expected a mapping of keys to values",
    "model_attributes_type": "expected a mapping of keys to values",
    "dict_type": "expected a mapping of keys to values",
    "path_type": "expected a file path",
    "timezone_aware": (
        "expected a time with its UTC offset (RFC 3339), e.g. 2026-11-27T06:00:00+01:00"
    ),
    "datetime_parsing": "expected an RFC 3339 time, e.g. 2026-11-27T06:00:00+01:00",
    "datetime_from_date_parsing": "expected an RFC 3339 time, e.g. 2026-11-27T06:00:00+01:00",
    "datetime_type": "expected an RFC 3339 time, e.g. 2026-11-27T06:00:00+01:00",
    "missing": "required key is missing",
}


def _keys(model: type[BaseModel]) -> dict[str, Any]:
    """The model's fields by the key a file spells them with (its alias, if it has one)."""
    return {f.alias or name: f for name, f in model.model_fields.items()}


def _model_at(loc: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The model whose keys sit at `loc` under `root` (None if not a model)."""
    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = _keys(model).get(str(part))
        if field is None:
            return None
        nested = [
            t
            for t in (field.annotation, *typing.get_args(field.annotation))
            for t in (t, *typing.get_args(t))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if not nested:
            return None
        model = nested[0]
    return model


def _unknown_key(loc: tuple[Any, ...], root: type[BaseModel]) -> str:
    model = _model_at(loc[:-1], root)
    known = sorted(_keys(model)) if model else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; expected one of: {', '.join(known)}" if known else "unknown key"


def _describe(e: Any, root: type[BaseModel]) -> str:
    loc = tuple(e["loc"])
    if e["type"] == "extra_forbidden":
        return _unknown_key(loc, root)
    wording = _WORDING.get(e["type"])
    if wording is None:
        return str(e["msg"]).removeprefix("Value error, ")
    if loc == ("rules",) and e["type"] == "too_short":
        return "expected at least one rule"
    text = wording.format(**e.get("ctx", {}))
    value = e.get("input")
    if e["type"] not in ("missing", "string_too_short") and isinstance(
        value, str | int | float | bool | None
    ):
        text += f", got {value!r}"
    return text


_MODELS: dict[str, type[BaseModel]] = {
    m.__name__: m
    for m in (
        Config,
        Rule,
        Schedule,
        Event,
        PrometheusConfig,
        CurrentConfig,
        BasicAuth,
        ForwardConfig,
    )
}


def describe_validation_error(source: str, err: ValidationError) -> str:
    """One line per problem: 'FILE: key.path: what was expected', in our own words."""
    root = _MODELS.get(err.title, Config)
    lines = []
    for e in err.errors():
        e["loc"] = tuple(p for p in e["loc"] if not str(p).startswith("function-"))
        model = _model_at(e["loc"], root)
        key, sep, rest = str(e["msg"]).removeprefix("Value error, ").partition(": ")
        if e["type"] == "value_error" and model and sep and key in _keys(model):
            e["loc"], e["msg"] = (*e["loc"], key), rest  # a cross-check names its key
        lines.append(f"{source}: {_key_path(e['loc'])}: {_describe(e, root)}")
    return "\n".join(lines)
