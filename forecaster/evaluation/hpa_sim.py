"""A simulated HorizontalPodAutoscaler fed by a series of metric values.

It follows the Kubernetes controller for an External metric with target type
AverageValue: every sync period the desired replicas are ceil(value / target), unless
value / (target x current) is within the tolerance of 1; scale-ups are limited by the
scale-up policies (the larger of +100% and +4 pods per 15 s by default, counted from
the replicas at the start of the policy period, as Kubernetes does); scale-downs use
the highest recommendation of the stabilization window (300 s by default). A pod added
at time t is Ready, and serves, from t + startup. Demand beyond the Ready pods' capacity
is counted as requests beyond capacity.

It may also have a CPU Resource metric (target type Utilization), beside the External
metric or alone, read from a proxy: a Ready pod's CPU use is the share of its capacity
it served during the previous sync period (at capacity it uses all of its request; pods
not yet Ready report none). The recommendation is ceil(CPU used / target), after the
same tolerance check, and the HPA takes the larger of its metrics' recommendations, as
Kubernetes does; with the External metric unavailable it then only scales up.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass

import numpy as np

from forecaster.models.series_model import DEFAULT_STABILIZATION


@dataclass(frozen=True)
class HPASettings:
    """The HPA spec and the workload, with the Kubernetes defaults where there are any."""

    target_per_pod: float  # AverageValue target (metric units per pod)
    capacity_per_pod: float  # what one Ready pod can serve (same units)
    startup: int = 180  # seconds from scale-up to Ready
    min_replicas: int = 1
    max_replicas: int = 1000
    tolerance: float = 0.1
    sync_period: int = 15
    scale_down_stabilization: int = DEFAULT_STABILIZATION
    scale_up_pods: int = 4  # per scale_up_period
    scale_up_percent: float = 100.0  # per scale_up_period
    scale_up_period: int = 15


@dataclass(frozen=True)
class HPAResult:
    """What the simulated HPA did, per sync tick, and its totals."""

    times: np.ndarray  # tick start (Unix seconds)
    replicas: np.ndarray  # pods (Ready or not) during the tick
    ready: np.ndarray  # Ready pods during the tick
    beyond_capacity_share: float  # requests beyond Ready capacity / all requests
    underprovisioned_share: float  # share of time demand exceeded Ready capacity
    pod_minutes: float


def _totals(
    times: np.ndarray, demand: np.ndarray, replicas: np.ndarray, ready: np.ndarray, s: HPASettings
) -> HPAResult:
    capacity = ready * s.capacity_per_pod
    excess = np.maximum(0.0, demand - capacity)
    total = float(demand.sum())
    return HPAResult(
        times=times,
        replicas=replicas,
        ready=ready,
        beyond_capacity_share=float(excess.sum() / total) if total > 0 else 0.0,
        underprovisioned_share=float(np.mean(demand > capacity + 1e-12)),
        pod_minutes=float(replicas.sum() * s.sync_period / 60.0),
    )


def _recommend(value: float, target: float, current: int, s: HPASettings) -> int:
    """Replicas one metric asks for: ceil(value / target), or `current` within tolerance."""
    ratio = value / (target * current) if current else math.inf
    if abs(ratio - 1.0) <= s.tolerance:
        return current
    return math.ceil(value / target - 1e-9)


def simulate(
    start: int,
    step: int,
    demand: np.ndarray,
    metric: np.ndarray | None,
    s: HPASettings,
    cpu_target: float | None = None,
) -> HPAResult:
    """Run the HPA over the steps [start, start + len(demand) * step).

    `demand[i]` is the request rate during step i; `metric[i]` is the value the HPA reads
    during step i (NaN: no value, the HPA holds its replicas, as Kubernetes does when a
    metric is unavailable; None: the HPA has no External metric). `cpu_target`, a share
    of the CPU request (0.7: 70 %), adds a CPU Resource metric.
    """
    if metric is None and cpu_target is None:
        raise ValueError("an HPA needs a metric: give metric values or a cpu_target")
    ticks_per_step = max(1, step // s.sync_period)
    n_ticks = len(demand) * ticks_per_step
    times = start + s.sync_period * np.arange(n_ticks, dtype=np.int64)
    tick_demand = np.repeat(demand, ticks_per_step)
    first = np.empty(0) if metric is None else metric[np.isfinite(metric)]
    if len(first):
        initial = math.ceil(first[0] / s.target_per_pod)
    elif cpu_target is not None and len(demand):
        initial = math.ceil(demand[0] / (s.capacity_per_pod * cpu_target))
    else:
        initial = s.min_replicas
    replicas = min(max(initial, s.min_replicas), s.max_replicas)
    # Start times, ascending: pods are added at the end and removed newest first.
    pods = [start - s.startup] * replicas
    recommendations: deque[tuple[int, int]] = deque()
    changes: deque[tuple[int, int]] = deque()  # (time, replicas added or removed)
    out_replicas: list[int] = []
    out_ready: list[int] = []
    # Plain Python numbers in the loop: numpy scalars cost several times more per tick.
    demands = tick_demand.tolist()
    values = [math.nan] * len(demand) if metric is None else np.asarray(metric, float).tolist()
    period, startup, window = s.sync_period, s.startup, s.scale_down_stabilization
    # CPU used in the last sync period, in pods' requests
    used = min(demands[0] / s.capacity_per_pod, replicas) if n_ticks else 0.0
    for k in range(n_ticks):
        now = start + period * k
        value = values[k // ticks_per_step]
        current = len(pods)
        wanted: list[int] = []
        if math.isfinite(value):
            wanted.append(_recommend(value, s.target_per_pod, current, s))
        if cpu_target is not None:
            ready_now = bisect_right(pods, now - startup)
            cpu = _recommend(used, cpu_target, ready_now, s) if ready_now else current
            # An unavailable External metric: scale up on CPU, never down.
            wanted.append(cpu if metric is None or math.isfinite(value) else max(cpu, current))
        if wanted:
            desired = min(max(max(wanted), s.min_replicas), s.max_replicas)
            # Kubernetes' window: recommendations newer than now - window, and this one
            # (a window of 0 keeps this one alone: scale down at once).
            while recommendations and recommendations[0][0] <= now - window:
                recommendations.popleft()
            recommendations.append((now, desired))
            if desired < current:
                desired = min(current, max(r for _, r in recommendations))
            elif desired > current:
                while changes and changes[0][0] <= now - s.scale_up_period:
                    changes.popleft()
                base = current - sum(n for _, n in changes)  # replicas when the period began
                limit = base + max(s.scale_up_pods, math.ceil(base * s.scale_up_percent / 100.0))
                desired = max(current, min(desired, limit))
            if desired != current:
                changes.append((now, desired - current))
            while len(pods) < desired:
                pods.append(now)
            while len(pods) > desired:
                pods.pop()  # the newest (least likely Ready) first
        ready = bisect_right(pods, now - startup)
        out_replicas.append(len(pods))
        out_ready.append(ready)
        used = min(demands[k] / s.capacity_per_pod, float(ready))
    return _totals(
        times, tick_demand, np.array(out_replicas, np.int64), np.array(out_ready, np.int64), s
    )
