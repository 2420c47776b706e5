"""The cluster's HPAs as standing requests: every autoscaling/v2 HPA whose External
metric names one of our rules pins the series its namespace and selector pick, so they
are backfilled and forecast before the HPA's first request, with the lead its target's
pods were measured to need (creation to Ready, a high percentile over recent pods,
within the rule's lead bounds) and its scale-down stabilization window, through which a
budget of pod-minutes is costed.

A background thread lists the HPAs, then watches them; each is measured when it appears
or changes and every REMEASURE seconds. The Kubernetes API unreachable or forbidding it
leaves the pins as they were (and their leads), logs once, and tries again later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np

from adapter.cluster.kube import Kube, KubeError
from forecaster.config import Rule
from forecaster.models.series_model import DEFAULT_STABILIZATION
from forecaster.runtime.demand import Pin, SeriesDemand
from forecaster.selector import LabelSelector, SelectorError, parse_selector

log = logging.getLogger(__name__)

REMEASURE = 300
"""Seconds between measurements of every pinned workload's start-up time."""
WATCH_SECONDS = 300
"""How long one watch request lasts before it is renewed."""
RETRY_MAX = 60.0
"""Longest wait (seconds) before listing again after the API failed."""
RECENT_PODS = 50
"""Newest pods of a workload measured."""
MIN_PODS = 3
"""Fewer Ready pods than this: too few to measure; the rule's lead is used."""
PERCENTILE = 90
"""The start-up time used: this percentile of the recent pods' creation-to-Ready times."""


def _time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def startup_seconds(pods: list[dict[str, Any]]) -> list[float]:
    """Creation to Ready of each Ready pod (its Ready condition's last transition), the
    newest RECENT_PODS by creation."""
    out: list[tuple[float, float]] = []
    for pod in pods:
        created = _time(pod.get("metadata", {}).get("creationTimestamp"))
        conditions = pod.get("status", {}).get("conditions") or []
        ready = next(
            (c for c in conditions if c.get("type") == "Ready" and c.get("status") == "True"),
            None,
        )
        became = _time(ready.get("lastTransitionTime")) if ready else None
        if created is not None and became is not None and became >= created:
            out.append((created, became - created))
    out.sort(reverse=True)
    return [seconds for _, seconds in out[:RECENT_PODS]]


def measured_lead(rule: Rule, pods: list[dict[str, Any]]) -> int | None:
    """The rule's lead for a workload with these pods, or None when too few are Ready."""
    times = startup_seconds(pods)
    if len(times) < MIN_PODS:
        return None
    return rule.bounded_lead(float(np.percentile(times, PERCENTILE)))


def scale_down_window(spec: dict[str, Any]) -> int | None:
    """The HPA's `behavior.scaleDown.stabilizationWindowSeconds` (None where it sets none:
    the controller's default applies)."""
    behavior = spec.get("behavior") or {}
    window = (behavior.get("scaleDown") or {}).get("stabilizationWindowSeconds")
    return window if isinstance(window, int) and window >= 0 else None


def metric_selector(selector: dict[str, Any] | None) -> LabelSelector:
    """An HPA metric's metav1.LabelSelector (matchLabels, matchExpressions) as ours."""
    if not selector:
        return LabelSelector()
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise SelectorError(f"unknown operator {op!r} in matchExpressions")
    return parse_selector(",".join(parts))


class WorkloadWatch:
    """Keeps `demand`'s pins in step with the cluster's HPAs that use our rules."""

    def __init__(
        self,
        kube: Kube,
        rules: list[Rule],
        demand: SeriesDemand,
        clock: Callable[[], float],
        pinned: Callable[[Rule], None] = lambda rule: None,
    ) -> None:
        self.kube = kube
        self.rules = {r.name: r for r in rules}
        self.demand = demand
        self.clock = clock
        self.pinned = pinned  # called when a rule gains a pin: run its cycle soon
        self._hpas: dict[str, dict[str, Any]] = {}  # uid -> HPA
        self._pins: dict[str, dict[str, Pin]] = {}  # uid -> its pins, by name
        self._measured: dict[str, float] = {}  # uid -> when its pods were last measured
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self._version = ""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hpa-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                self.resync()
                self._watch()
                delay = 1.0
            except Exception as err:  # the watch must outlive any one bad answer
                if not isinstance(err, KubeError):
                    log.exception("watching HPAs failed")
                elif not self._failing:
                    log.warning(
                        "cannot list or watch HPAs (%s): their series are forecast when asked "
                        "for, at the configured lead; retrying",
                        err,
                    )
                self._failing = True
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX)

    def resync(self) -> None:
        """List every HPA and set the pins to match; raise KubeError."""
        items, self._version = self.kube.list_hpas()
        if self._failing:
            log.info("HPAs readable again (%d)", len(items))
            self._failing = False
        seen = set()
        for hpa in items:
            uid = hpa["metadata"]["uid"]
            seen.add(uid)
            self.apply(hpa)
        for uid in [u for u in self._hpas if u not in seen]:
            self.remove(uid)

    def _watch(self) -> None:
        for kind, obj in self.kube.watch_hpas(self._version, WATCH_SECONDS):
            if self._stop.is_set():
                return
            if kind == "ERROR":  # e.g. 410 Gone: the version is too old; list again
                return
            self._version = obj["metadata"]["resourceVersion"]
            if kind == "DELETED":
                self.remove(obj["metadata"]["uid"])
            else:
                self.apply(obj)
            self._remeasure_due()
        self._remeasure_due()

    def _remeasure_due(self) -> None:
        now = self.clock()
        for uid, hpa in list(self._hpas.items()):
            if now - self._measured.get(uid, 0.0) >= REMEASURE:
                self.apply(hpa, force=True)

    def apply(self, hpa: dict[str, Any], force: bool = False) -> None:
        """Pin the series one HPA's External metrics name (replacing its old pins)."""
        meta, spec = hpa["metadata"], hpa.get("spec") or {}
        uid, ns, name = meta["uid"], meta["namespace"], meta["name"]
        old = self._hpas.get(uid)
        if old is not None and old.get("spec") == spec and not force:
            return
        uses: list[tuple[Rule, LabelSelector]] = []
        for metric in spec.get("metrics") or []:
            if metric.get("type") != "External":
                continue
            ident = (metric.get("external") or {}).get("metric") or {}
            rule = self.rules.get(ident.get("name", ""))
            if rule is None:
                continue
            try:
                uses.append((rule, metric_selector(ident.get("selector"))))
            except (SelectorError, KeyError) as err:
                log.warning("HPA %s/%s: its selector for %s: %s", ns, name, rule.name, err)
        before = self._pins.get(uid, {})
        self._unpin(uid)
        if not uses:
            self._hpas.pop(uid, None)
            return
        self._hpas[uid] = hpa
        self._measured[uid] = self.clock()
        target = spec.get("scaleTargetRef") or {}
        pods = self._pods(ns, target, name)
        pins: dict[str, Pin] = {}
        for i, (rule, selector) in enumerate(uses):
            pin_name = f"HPA {ns}/{name} #{i}"
            if pods is None:  # not readable now: keep what was measured before
                kept = before.get(pin_name)
                lead = kept.lead if kept is not None else None
            else:
                lead = measured_lead(rule, pods)
            window = scale_down_window(spec)
            pins[pin_name] = Pin(rule.name, ns, selector, lead, f"HPA {ns}/{name}", window)
            self.demand.pin(pin_name, pins[pin_name])
            if old is None:
                log.info(
                    "HPA %s/%s scales %s %s on %s {%s}: its series are forecast ahead, lead "
                    "%s, budget costed through a scale-down window of %s",
                    ns,
                    name,
                    target.get("kind"),
                    target.get("name"),
                    rule.name,
                    selector,
                    f"{lead}s (measured)" if lead is not None else f"{rule.lead}s (configured)",
                    f"{window if window is not None else DEFAULT_STABILIZATION}s",
                )
                self.pinned(rule)
        self._pins[uid] = pins

    def _pods(self, ns: str, target: dict[str, Any], hpa: str) -> list[dict[str, Any]] | None:
        """The target's pods; [] for a kind whose pods cannot be found, None on failure."""
        try:
            selector = self.kube.scale_selector(ns, target.get("kind", ""), target.get("name", ""))
            if selector is None:
                log.info(
                    "HPA %s/%s: cannot read the pods of a %s: the configured lead applies",
                    ns,
                    hpa,
                    target.get("kind"),
                )
                return []
            return self.kube.list_pods(ns, selector)
        except KubeError as err:
            log.info("HPA %s/%s: its target's pods not readable (%s)", ns, hpa, err)
            return None

    def remove(self, uid: str) -> None:
        self._unpin(uid)
        self._hpas.pop(uid, None)
        self._measured.pop(uid, None)

    def _unpin(self, uid: str) -> None:
        for pin_name in self._pins.pop(uid, {}):
            self.demand.unpin(pin_name)
