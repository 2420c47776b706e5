"""The simulated HPA follows the Kubernetes controller's rules."""

from __future__ import annotations

import numpy as np

from forecaster.evaluation.hpa_sim import HPASettings, simulate

S = HPASettings(
    target_per_pod=10.0, capacity_per_pod=10.0, startup=60, min_replicas=1, max_replicas=100
)


def run(metric, demand=None, s=S, step=60):
    metric = np.asarray(metric, dtype=float)
    demand = metric if demand is None else np.asarray(demand, dtype=float)
    return simulate(0, step, demand, metric, s)


def test_within_tolerance_nothing_changes():
    r = run([100.0] * 3 + [108.0] * 5)  # 10 pods; 108 is within 10% of 100
    assert set(r.replicas.tolist()) == {10}
    r = run([100.0] * 3 + [112.0] * 5)  # beyond the tolerance: ceil(11.2) = 12
    assert r.replicas[-1] == 12


def test_scale_up_is_limited_by_the_policies():
    r = run([20.0] + [1000.0] * 3)  # from 2 pods toward 100
    # From 2 pods: max(+4 pods, +100%) per 15 s, i.e. 2 -> 6 -> 12 -> 24 -> 48.
    assert r.replicas[4:8].tolist() == [6, 12, 24, 48]


def test_scale_up_limit_counts_from_the_start_of_its_period():
    from dataclasses import replace

    s = replace(S, scale_up_period=60)
    r = run([20.0] + [1000.0] * 3, s=s)
    # From 2 pods: +4 at once (max(4, 100% of 2)), then nothing more until that scale-up
    # is a full period old, then +100% of 6.
    assert r.replicas[4:9].tolist() == [6, 6, 6, 6, 12]


def test_scale_down_waits_for_the_stabilization_window():
    metric = [100.0] * 5 + [20.0] * 10
    r = run(metric)
    ticks = r.times - r.times[0]
    drop = ticks[np.argmax(r.replicas < 10)]
    # The last 10-pod recommendation is made at 285 s (the last tick of the high stretch);
    # Kubernetes keeps only recommendations newer than now - 300 s: it ages out at 585 s.
    assert drop == 585
    assert r.replicas[-1] == 2


def test_new_pods_serve_only_after_startup():
    r = run([10.0] * 2 + [50.0] * 4)
    first_up = int(np.argmax(r.replicas > 1))
    assert r.ready[first_up] < r.replicas[first_up]  # added, not Ready yet
    ready_at = r.times[first_up] + S.startup
    assert r.ready[r.times >= ready_at][0] == r.replicas[first_up]
    assert r.beyond_capacity_share > 0  # demand rose before the pods were Ready


def test_a_missing_metric_holds_replicas():
    r = run([50.0, np.nan, np.nan, np.nan], demand=[50.0] * 4)
    assert set(r.replicas.tolist()) == {5}


def test_cpu_alone_settles_at_its_target_utilization():
    demand = np.full(30, 70.0)  # 7 pods' capacity
    r = simulate(0, 60, demand, None, S, cpu_target=0.7)
    assert r.replicas[-1] == 10  # 70 req/s at 70 % of 10 req/s per pod
    # A step up saturates the Ready pods at 100 % of their CPU: each round grows them by
    # at most 1 / 0.7 (the CPU HPA's known lag), however large the jump.
    jump = np.concatenate([demand, np.full(30, 400.0)])
    r = simulate(0, 60, jump, None, S, cpu_target=0.7)
    k = 30 * 4  # the first tick of the jump
    grown = r.replicas[k + 1]
    assert grown == 15  # ceil(10 pods at 100 % / 0.7), not ceil(400 / 7) = 58
    assert r.replicas[-1] == 58  # it gets there, rounds of start-up later
    assert r.beyond_capacity_share > 0.05


def test_the_layered_hpa_takes_the_larger_recommendation():
    demand = np.concatenate([np.full(30, 70.0), np.full(30, 400.0)])
    # The External metric knew the jump a step early: the forecast's pods are Ready.
    ahead = np.concatenate([np.full(29, 70.0), np.full(31, 400.0)])
    layered = simulate(0, 60, demand, ahead, S, cpu_target=0.7)
    cpu = simulate(0, 60, demand, None, S, cpu_target=0.7)
    external = simulate(0, 60, demand, ahead, S)
    assert layered.replicas[29 * 4 - 1] == 10  # CPU's 10 above the External metric's 7
    assert external.replicas[29 * 4 - 1] == 7
    assert layered.replicas[-1] == 58  # 400 / 7 (CPU) above 400 / 10 (External)
    assert np.all(layered.replicas >= external.replicas)
    assert layered.beyond_capacity_share < cpu.beyond_capacity_share
    # With the External metric unavailable, CPU still scales up, never down.
    gone = np.full(60, np.nan)
    held = simulate(0, 60, demand[::-1], gone, S, cpu_target=0.7)
    assert held.replicas[-1] == held.replicas.max()


def test_a_stabilization_window_of_zero_scales_down_at_the_next_sync():
    """`stabilizationWindowSeconds: 0`, as users set it to scale down at once: the first
    tick of the low stretch already recommends 2 pods, and nothing older holds them."""
    from dataclasses import replace

    metric = [100.0] * 5 + [20.0] * 10
    r = run(metric, s=replace(S, scale_down_stabilization=0))
    ticks = r.times - r.times[0]
    assert ticks[np.argmax(r.replicas < 10)] == 300  # the low stretch's first tick
    assert r.replicas[-1] == 2
