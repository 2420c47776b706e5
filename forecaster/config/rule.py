"""One rule: an external metric, the PromQL of its actual rate, and how to forecast it."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    field_validator,
    model_validator,
)

from forecaster.config import timing
from forecaster.config.floors import Event, Schedule
from forecaster.config.types import Duration, Strict, check_quantile
from forecaster.promql import check_template
from forecaster.schedules import Calendar, Definition
from forecaster.selector import is_label_name
from forecaster.times import DAY, format_duration, grid_ceil, grid_floor, parse_duration

DEFAULT_POD_MINUTES = 1.1
"""A rule with neither `quantile` nor `max_pod_minutes` may cost 10 % more pod-minutes
than perfect foresight: each series is held at the quantile its backtest says that buys."""

_METRIC_NAME = re.compile(r"^[a-z_][a-z0-9_:.-]{0,252}$")


class Rule(Strict):
    """One served external metric: the PromQL for its actual rate and how to forecast it.
    Left out, `lead` is timing.default_lead(step) and `horizon` timing.default_horizon."""

    name: str
    query: str
    step: Duration = 60
    history: Duration = 15 * DAY
    horizon: Duration = timing.DEFAULT_HORIZON
    lead: Duration = timing.DEFAULT_LEAD
    quantile: float | None = None  # a fixed q; by default chosen per series under a budget
    max_pod_minutes: float | None = None  # DEFAULT_POD_MINUTES unless quantile is set
    interval: Duration = 60
    phase: Duration = 0  # grid points fall this far past multiples of step (see grid_floor)
    forecast_ttl: Duration | None = None
    namespace_label: str | None = "namespace"
    lead_min: Duration | None = None  # bounds of a lead measured from the workload's pods
    lead_max: Duration | None = None
    max_series: int = Field(default=1000, ge=1)
    drop_after: Duration = 3600
    schedules: list[Schedule] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)

    _horizon_derived: bool = PrivateAttr(default=False)
    _warmup: int = PrivateAttr(default=0)
    _calendar: Calendar | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _derive_times(cls, data: Any, handler: ModelWrapValidatorHandler[Rule]) -> Rule:
        """Fill in the lead and the horizon left out, from the times given."""
        if isinstance(data, dict) and data.get("lead") is None:
            with contextlib.suppress(ValueError):  # the field validators say what is wrong
                step = parse_duration(data.get("step", 60))
                if step > 0:
                    data = {**data, "lead": format_duration(timing.default_lead(step))}
        derive = isinstance(data, dict) and data.get("horizon") is None
        if derive:
            try:
                step, lead, interval = (
                    parse_duration(data.get(k, default))
                    for k, default in (
                        ("step", 60),
                        ("lead", timing.DEFAULT_LEAD),
                        ("interval", 60),
                    )
                )
                if data.get("lead_max") is not None:
                    lead = max(lead, parse_duration(data["lead_max"]))
                if min(step, interval) > 0:
                    horizon = timing.default_horizon(step, lead, interval)
                    data = {**data, "horizon": format_duration(horizon)}
            except ValueError:
                pass  # the field validators say what is wrong
        rule = handler(data)
        rule._horizon_derived = derive
        return rule

    @property
    def horizon_derived(self) -> bool:
        """Whether the horizon was derived (no `horizon` key) rather than configured."""
        return self._horizon_derived

    @field_validator("name")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        if not _METRIC_NAME.match(value):
            if value.lower() != value and _METRIC_NAME.match(value.lower()):
                raise ValueError(
                    f"{value!r} has upper-case letters: the HPA controller lowercases external "
                    "metric names before asking (kubernetes/kubernetes#72996), so it could never "
                    f"be requested; name it {value.lower()!r}"
                )
            raise ValueError(
                "expected a lowercase metric name of letters, digits and _ : . - "
                f"starting with a letter or _, got {value!r}"
            )
        return value

    @field_validator("query")
    @classmethod
    def _query_can_work(cls, value: str) -> str:
        check_template(value)  # a QueryError is a ValueError: pydantic reports it on the key
        return value

    @field_validator("quantile")
    @classmethod
    def _a_quantile(cls, value: float | None) -> float | None:
        return None if value is None else check_quantile(value)

    @field_validator("max_pod_minutes")
    @classmethod
    def _a_budget(cls, value: float | None) -> float | None:
        if value is not None and not 0.5 <= value <= 10.0:
            raise ValueError(
                "expected how many times perfect foresight's pod-minutes the rule may cost, "
                f"at least 0.5 and at most 10, e.g. 1.1 for 10 % more; got {value}"
            )
        return value

    @field_validator("namespace_label")
    @classmethod
    def _label_name(cls, value: str | None) -> str | None:
        if value is not None and not is_label_name(value):
            raise ValueError(f"expected a Prometheus label name, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_quantile_rule(self) -> Rule:
        if self.quantile is not None and self.max_pod_minutes is not None:
            raise ValueError(
                "quantile: give either quantile (the same q for every series) or "
                "max_pod_minutes (a q per series, chosen to fit that cost), not both"
            )
        return self

    @model_validator(mode="after")
    def _query_shape(self) -> Rule:
        shape = check_template(self.query)
        self._warmup = shape.warmup
        label = self.namespace_label
        if label is None:
            return self
        if label in shape.dropped or (
            shape.keeps_only is not None and label not in shape.keeps_only
        ):
            raise ValueError(
                f"query: its outermost aggregation drops the {label!r} label, yet every "
                f"request is for one namespace (namespace_label: {label}), so none could "
                f"match: keep {label} in the by (...) list, or set namespace_label: null for "
                "series that belong to no namespace"
            )
        return self

    @model_validator(mode="after")
    def _consistent_times(self) -> Rule:
        timing.check(
            step=self.step,
            interval=self.interval,
            phase=self.phase,
            history=self.history,
            horizon=self.horizon,
            lead=self.lead,
            forecast_ttl=self.forecast_ttl,
            drop_after=self.drop_after,
            lead_min=self.lead_min,
            lead_max=self.lead_max,
        )
        return self

    @model_validator(mode="after")
    def _distinct_definitions(self) -> Rule:
        seen: dict[str, str] = {}
        timings: dict[tuple[object, ...], str] = {}
        kinds: tuple[tuple[str, list[Schedule] | list[Event]], ...] = (
            ("schedules", self.schedules),
            ("events", self.events),
        )
        for kind, items in kinds:
            for i, d in enumerate(items):
                key = f"{kind}[{i}]"
                if d.name in seen:
                    raise ValueError(
                        f"{kind}: {key} is named {d.name!r} like {seen[d.name]}; each "
                        "schedule and event needs its own name (it labels /metrics)"
                    )
                seen[d.name] = key
                same = (kind, *d.windows.timing(), str(d.label_selector))
                if same in timings:
                    raise ValueError(
                        f"{kind}: {key} ({d.name!r}) has the same windows and selector as "
                        f"{timings[same]}: define them once, with one floor"
                    )
                timings[same] = f"{key} ({d.name!r})"
        definitions: list[Definition] = [*self.schedules, *self.events]
        self._calendar = Calendar(definitions) if definitions else None
        return self

    def changed(self, **changes: Any) -> Rule:
        """This rule with some keys set otherwise, validated as a file's would be (a horizon
        that was derived is derived again)."""
        derived = {"horizon"} if self.horizon_derived else set()
        return Rule.model_validate({**self.model_dump(exclude=derived, by_alias=True), **changes})

    # What the times above imply (forecaster.config.timing) --------------------------

    def grid_floor(self, t: float) -> int:
        """The rule's newest grid point at or before t."""
        return grid_floor(t, self.step, self.phase)

    def grid_ceil(self, t: float) -> int:
        """The rule's oldest grid point at or after t."""
        return grid_ceil(t, self.step, self.phase)

    @property
    def budget(self) -> float | None:
        """Pod-minutes over perfect foresight's that each series' quantile is chosen to
        cost; None when the rule fixes `quantile`."""
        if self.quantile is not None:
            return None
        return DEFAULT_POD_MINUTES if self.max_pod_minutes is None else self.max_pod_minutes

    @property
    def quantile_setting(self) -> str:
        """How the rule sets its quantile, in words: "q 0.9", or its budget."""
        if self.budget is None:
            return f"q {self.quantile}"
        return f"q per series for at most {self.budget:g}x perfect foresight's pod-minutes"

    @property
    def calendar(self) -> Calendar | None:
        """The rule's schedules and events, or None when it has neither."""
        return self._calendar

    @property
    def lead_bounds(self) -> tuple[int, int]:
        """The least and most lead a measurement of the workload's pods may set."""
        return timing.lead_bounds(
            self.step, self.lead, self.horizon, self.interval, self.lead_min, self.lead_max
        )

    def bounded_lead(self, measured: float) -> int:
        """A measured start-up time as this rule's lead (see timing.bounded_lead)."""
        return timing.bounded_lead(measured, self.step, self.lead_bounds)

    @property
    def warmup(self) -> int:
        """Seconds after a series appears (or returns from a gap) during which its values
        still ramp up: the query's longest range window is not yet full of samples."""
        return self._warmup

    @property
    def history_steps(self) -> int:
        """Steps of history each series keeps."""
        return self.history // self.step

    @property
    def history_bytes(self) -> int:
        """Memory the history of max_series series takes (4 bytes a step and series)."""
        return self.max_series * self.history_steps * 4

    @property
    def warmup_steps(self) -> int:
        """Grid points from a series' first one that lie in its warm-up."""
        return -(-self.warmup // self.step)

    @property
    def refresh(self) -> int:
        """Seconds between forecasts built on newer data (timing.refresh)."""
        return timing.refresh(self.interval, self.step)

    @property
    def min_ttl(self) -> int:
        """The shortest TTL that survives one late or failed cycle."""
        return timing.min_ttl(self.interval, self.step)

    @property
    def ttl(self) -> int:
        """Seconds after which a forecast is no longer served (reactive fallback instead)."""
        if self.forecast_ttl is not None:
            return self.forecast_ttl
        return timing.max_ttl(self.horizon, self.lead, self.step)

    @property
    def horizon_steps(self) -> int:
        return self.horizon // self.step
