"""Reading Prometheus' JSON answers: a range query's matrix read out series by series, so
that an answer is never held decoded whole."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

Points = tuple[dict[str, str], np.ndarray, np.ndarray]
"""One series of a matrix: its labels (without __name__), timestamps (int64) and values
(float64, NaN where Prometheus wrote something that is not a number)."""

_DECODER = json.JSONDecoder()
_RESULT = '"result":'


def read_answer(body: bytes) -> Any:
    """The decoded answer, with a matrix's result as a list of `Points` (read one series
    at a time: decoded whole, a 250,000-point answer costs about 50 MB in Python objects,
    its arrays 4 MB). Raise ValueError if the body is not JSON."""
    text = body.decode()
    at = text.find(_RESULT)  # a key: never inside a string, where quotes are escaped
    i = _skip(text, at + len(_RESULT))
    if at < 0 or '"matrix"' not in text[:at] or text[i : i + 1] != "[":
        return _whole(text)
    series: list[Points] = []
    i = _skip(text, i + 1)
    while text[i : i + 1] != "]":
        item, i = _DECODER.raw_decode(text, i)
        series.append(points(item))
        i = _skip(text, i)
        if text[i : i + 1] == ",":
            i = _skip(text, i + 1)
        elif text[i : i + 1] != "]":
            raise ValueError(f"expected , or ] at {i} of a matrix answer")
    answer = json.loads(text[:at] + _RESULT + "[]" + text[i + 1 :])
    answer["data"]["result"] = series
    return answer


def _whole(text: str) -> Any:
    """The answer decoded whole (not a matrix, or its result before its resultType), a
    matrix's result then read out as `Points` too."""
    answer = json.loads(text)
    data = answer.get("data") if isinstance(answer, dict) else None
    if isinstance(data, dict) and data.get("resultType") == "matrix":
        data["result"] = [points(item) for item in data.get("result") or []]
    return answer


def points(item: dict[str, Any]) -> Points:
    """A matrix series (`{"metric": ..., "values": [[t, "v"], ...]}`) as `Points`."""
    pairs = item["values"]
    ts = np.fromiter((round(float(p[0])) for p in pairs), np.int64, len(pairs))
    vs = np.fromiter((parse_value(p[1]) for p in pairs), np.float64, len(pairs))
    return labels(item["metric"]), ts, vs


def parse_value(text: str) -> float:
    """A sample value as Prometheus writes it ("1.5", "NaN", "+Inf"); NaN if not a number."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def labels(metric: dict[str, str]) -> dict[str, str]:
    """A series' labels without its metric name."""
    return {k: v for k, v in metric.items() if k != "__name__"}


def _skip(text: str, i: int) -> int:
    """The first index from i that is not JSON whitespace."""
    while text[i : i + 1] in (" ", "\t", "\n", "\r"):
        i += 1
    return i
