"""What a backtest's figures say: which method dominates which, and one plain sentence
on the default against reactive scaling."""

from __future__ import annotations

from typing import Any


def dominated(point: dict[str, Any], curve: list[dict[str, Any]]) -> str | None:
    """The first point of `curve` that drops no more requests beyond capacity than
    `point` with no more pod-minutes, one of them fewer (None: no such point)."""
    b, m = point["beyond_capacity_share"], point["pod_minutes"]
    for c in curve:
        cb, cm = c["beyond_capacity_share"], c["pod_minutes"]
        if cb <= b and cm <= m and (cb < b or cm < m):
            return str(c["method"])
    return None


def verdict(data: dict[str, Any]) -> str:
    """One plain sentence on what the default does on this traffic against reactive
    scaling, and what to do about it."""
    by = {m["method"]: m for m in data["methods"]}
    ours, reactive = by.get("scaleahead"), by.get("reactive")
    if ours is None or reactive is None:
        return ""
    ours_dropped, their_dropped = ours["beyond_capacity_share"], reactive["beyond_capacity_share"]
    extra = ours["pod_minutes"] / reactive["pod_minutes"] - 1 if reactive["pod_minutes"] else 0.0
    cost = f"{abs(extra):.0%} {'more' if extra >= 0 else 'fewer'} pod-minutes"
    if their_dropped == 0:
        return (
            f"On this traffic reactive scaling drops nothing, and the default costs {cost}: "
            "no gain; keep scaling on the current rate."
        )
    said = (
        f"On this traffic the default drops {ours_dropped / their_dropped:.0%} of what reactive "
        f"scaling drops ({ours_dropped:.2%} of requests against {their_dropped:.2%}), "
        f"for {cost}."
    )
    better = [
        m
        for m in data["methods"]
        if m["method"] not in ("scaleahead", "perfect foresight")
        and dominated(ours, [m]) is not None
    ]
    if better:
        best = min(better, key=lambda m: m["beyond_capacity_share"])
        return (
            f"{said} Not recommended as it is: {best['method']} drops "
            f"{best['beyond_capacity_share']:.2%} for {best['pod_minutes']:.0f} pod-minutes, "
            f"no more on either count (against {ours['pod_minutes']:.0f})."
        )
    if ours_dropped >= their_dropped:
        return f"{said} No gain: keep scaling on the current rate."
    return f"{said} Recommended: it scales ahead of this traffic at that cost."
