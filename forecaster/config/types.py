"""The value types configuration keys share: durations, files, quantiles, the strict base."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo

from forecaster.times import format_duration, parse_duration


def _duration(value: object, info: ValidationInfo) -> int:
    """Whole seconds from "90s", "1m30s" or "8d"; from a file (context `written`), a bare
    number is refused: `timeout: 10000` would be 10,000 seconds, not what was meant."""
    written = bool(info.context and info.context.get("written"))
    if written and isinstance(value, int | float) and not isinstance(value, bool):
        seconds = parse_duration(value)
        raise ValueError(
            f"{value!r} has no unit: write it with one, e.g. '{seconds}s' "
            f"(that is {format_duration(seconds)}), '1m' or '8d'"
        )
    return parse_duration(value)


Duration = Annotated[int, BeforeValidator(_duration)]
"""Whole seconds, written "90s", "1m30s" or "8d" (a bare number only from code)."""

QUANTILE_RANGE = (0.05, 0.995)
"""The quantiles a band can be calibrated at (its grid of levels spans exactly these)."""


class Strict(BaseModel):
    """Every configuration object: unknown keys are refused, values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def existing_file(value: Path | None) -> Path | None:
    """`value` if it names a file (or is None); ValueError otherwise."""
    if value is not None and not value.is_file():
        raise ValueError(f"no such file: {value}")
    return value


def positive(value: int) -> int:
    """`value` if it is a positive duration; ValueError otherwise."""
    if value <= 0:
        raise ValueError("expected a positive duration")
    return value


def check_quantile(value: float) -> float:
    """`value` if a band can be served at that quantile; ValueError naming the range."""
    lo, hi = QUANTILE_RANGE
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(
            f"expected a share from {lo:g} to {hi:g} (how often the served value should "
            f"cover the lead window's peak), e.g. 0.9; got {value}"
        )
    return value
