"""Kubernetes resource quantities for metric values."""

from __future__ import annotations

import math


def format_quantity(value: float) -> str:
    """The value as a quantity with milli precision, rounded up ("1234567m", "12").

    Rounding up by less than a thousandth errs toward capacity; a value that cannot be
    a request rate (NaN, infinite, negative) raises ValueError instead of being served.
    """
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"refusing to format {value!r} as a metric quantity")
    milli = math.ceil(round(value * 1000, 6))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
