"""A rule's forecasts as one replica lends them to another: JSON lines, a head naming the
rule and its fingerprint, then one line a series; decoded only for the same rule and
checked field by field. Each line is its own (de)coding call: one call over 10,000
series would hold the interpreter, and the server's event loop, for 90-140 ms."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from forecaster.config import Rule
from forecaster.forecast import SeriesForecast
from forecaster.sources.base import SeriesKey, series_key

MEDIA_TYPE = "application/vnd.scaleahead.forecasts.v1+jsonl"
"""What a lender answers with; a borrower takes nothing else."""
MAX_STEPS = 10_000
"""More grid points ahead than any rule forecasts: a longer series is refused."""


class WireError(ValueError):
    """A body that is not a lendable snapshot of this rule."""


def fingerprint(rule: Rule) -> str:
    """What a lender's rule must hash to: forecasts of another query, lead window or
    horizon are not this rule's, even under its name."""
    return hashlib.sha256(rule.model_dump_json().encode()).hexdigest()


def encode(rule: Rule, forecasts: Mapping[SeriesKey, SeriesForecast]) -> bytes:
    """The body a lender answers with."""
    head = json.dumps({"rule": rule.name, "fingerprint": fingerprint(rule)})
    return "\n".join([head, *(_item(f) for f in forecasts.values())]).encode()


def _item(f: SeriesForecast) -> str:
    return json.dumps(
        {
            "labels": f.labels,
            "origin": f.origin,
            "last_actual": f.last_actual,
            "ds": f.ds.tolist(),
            "point": f.point.tolist(),
            "upper": f.upper.tolist(),
            "model": f.model,
            "recent_error": f.recent_error,
            "quantile": f.quantile,
            "headroom": f.headroom,
            "lead": f.lead,
            "scale_down": f.scale_down,
        },
        separators=(",", ":"),
    )


def decode(rule: Rule, body: bytes) -> dict[SeriesKey, SeriesForecast]:
    """The forecasts a lender's `body` holds, as the store holds them; WireError naming
    what is wrong when it is not a snapshot of `rule` as this code writes one."""
    lines = body.split(b"\n")
    if len(lines) - 1 > rule.max_series:
        raise WireError(f"{len(lines) - 1} forecasts, more than max_series ({rule.max_series})")
    head = _json(lines[0], "head")
    if not isinstance(head, dict):
        raise WireError("head: not a JSON object")
    if head.get("rule") != rule.name:
        raise WireError(f"forecasts of rule {head.get('rule')!r}, not {rule.name!r}")
    if head.get("fingerprint") != fingerprint(rule):
        raise WireError("the lender's rule is configured differently (another fingerprint)")
    out: dict[SeriesKey, SeriesForecast] = {}
    for i, line in enumerate(lines[1:]):
        try:
            forecast = _forecast(_json(line, f"forecasts[{i}]"))
        except (KeyError, TypeError, ValueError) as err:
            raise WireError(f"forecasts[{i}]: {err}") from None
        out[series_key(forecast.labels)] = forecast
    return out


def _json(line: bytes, what: str) -> Any:
    try:
        return json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WireError(f"{what}: not JSON: {err}") from None


def _forecast(item: Any) -> SeriesForecast:
    if not isinstance(item, dict):
        raise TypeError("not an object")
    labels = item["labels"]
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise TypeError("labels: not an object of strings")
    raw_ds = item["ds"]
    if not isinstance(raw_ds, list) or not all(_is_int(t) for t in raw_ds):
        raise TypeError("ds: not a list of grid points (integers)")
    ds = np.asarray(raw_ds, dtype=np.int64)
    point, upper = _array(item["point"], "point"), _array(item["upper"], "upper")
    if not (len(ds) == len(point) == len(upper)) or not 0 < len(ds) <= MAX_STEPS:
        raise ValueError("ds, point and upper differ in length, or are empty or too long")
    if np.any(np.diff(ds) <= 0):
        raise ValueError("ds: not increasing")
    if not _is_int(item["origin"]):
        raise TypeError("origin: not an integer")
    return SeriesForecast(
        labels=dict(labels),
        origin=item["origin"],
        last_actual=_number(item["last_actual"], "last_actual"),
        ds=ds,
        point=point,
        upper=upper,
        model=_string(item["model"], "model"),
        recent_error=_optional_number(item.get("recent_error"), "recent_error"),
        quantile=_optional_number(item.get("quantile"), "quantile"),
        headroom=_optional_number(item.get("headroom"), "headroom"),
        lead=_integer(item.get("lead"), "lead"),
        scale_down=_integer(item.get("scale_down"), "scale_down"),
    )


def _array(value: Any, name: str) -> np.ndarray:
    if not isinstance(value, list) or not all(_is_number(v) for v in value):
        raise TypeError(f"{name}: not a list of numbers")
    return np.asarray(value, dtype=np.float64)


def _number(value: Any, name: str) -> float:
    if not _is_number(value):
        raise TypeError(f"{name}: not a number")
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _optional_number(value: Any, name: str) -> float | None:
    return None if value is None else _number(value, name)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not _is_int(value):
        raise TypeError(f"{name}: not an integer")
    return int(value)


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: not a string")
    return value
