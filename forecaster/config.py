"""The configuration file: Prometheus connection and forecast rules, validated once at start."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import re
import typing
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from forecaster.schedules import Calendar, Cron
from forecaster.selector import (
    EVERYTHING,
    LabelSelector,
    is_label_name,
    is_label_value,
    parse_selector,
)
from forecaster.sources.promql import check_template
from forecaster.times import SETTLE, format_duration, grid_ceil, grid_floor, parse_duration

Duration = Annotated[int, BeforeValidator(parse_duration)]
_METRIC_NAME = re.compile(r"^[a-z_][a-z0-9_:.-]{0,252}$")


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file, the key and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _existing_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"no such file: {value}")
    return value


def _positive(value: int) -> int:
    if value <= 0:
        raise ValueError("expected a positive duration")
    return value


class BasicAuth(_Strict):
    """HTTP basic auth for Prometheus; the password is read from a file, never inlined."""

    username: str = Field(min_length=1)
    password_file: Path

    _check_file = field_validator("password_file")(_existing_file)


class PrometheusConfig(_Strict):
    """Where and how to query Prometheus' HTTP API."""

    url: str
    timeout: Duration = 10
    retries: int = Field(default=2, ge=0, le=10)
    bearer_token_file: Path | None = None
    basic_auth: BasicAuth | None = None
    ca_file: Path | None = None

    _check_files = field_validator("bearer_token_file", "ca_file")(_existing_file)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an http:// or https:// URL")
        if "@" in urlsplit(value).netloc:
            raise ValueError(
                "credentials do not belong in the URL (they would show in errors and logs): "
                "use basic_auth (username and password_file) or bearer_token_file"
            )
        return value.rstrip("/")

    _check_timeout = field_validator("timeout")(_positive)

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusConfig:
        if self.bearer_token_file and self.basic_auth:
            raise ValueError("set bearer_token_file or basic_auth, not both")
        return self


class _Floor(_Strict):
    """What schedules and events share: a name, the series they apply to, and the floor
    they set (a value in the metric's unit, or a multiple of the policy's value)."""

    name: str
    selector: str = ""  # a label selector over the rule's series; empty: every series
    floor: float | None = None
    multiplier: float | None = None

    _selector: LabelSelector = PrivateAttr(default=EVERYTHING)

    @field_validator("name")
    @classmethod
    def _label_value(cls, value: str) -> str:
        if not value or not is_label_value(value):
            raise ValueError(
                "expected a name usable as a label value (at most 63 letters, digits, "
                f"'-', '_' or '.', starting and ending with a letter or digit), got {value!r}"
            )
        return value

    @field_validator("selector")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_selector(value)  # a SelectorError is a ValueError, reported on the key
        return value

    @field_validator("floor")
    @classmethod
    def _positive_rate(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"expected a positive number in the metric's unit, got {value}")
        return value

    @field_validator("multiplier")
    @classmethod
    def _raises(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 1):
            raise ValueError(
                f"expected a number above 1 (a floor never lowers the served value), got {value}"
            )
        return value

    @model_validator(mode="after")
    def _one_floor(self) -> _Floor:
        if (self.floor is None) == (self.multiplier is None):
            raise ValueError(
                "give floor (a value in the metric's unit) or multiplier (of the value the "
                "forecast serves), one of the two"
            )
        self._selector = parse_selector(self.selector)
        return self

    @property
    def label_selector(self) -> LabelSelector:
        return self._selector

    def timing(self) -> tuple[object, ...]:
        """What makes two definitions open the same windows."""
        raise NotImplementedError

    @property
    def duration_seconds(self) -> int:
        """How long each window lasts."""
        raise NotImplementedError

    def openings(self, start: int, end: int) -> list[int]:
        """Unix seconds at which a window opens, for every window opening in [start, end)."""
        raise NotImplementedError


class Schedule(_Floor):
    """A recurring window: it opens at each firing of `cron`, read on the clocks of
    `time_zone`, and lasts `duration`."""

    cron: str
    time_zone: str
    duration: Duration

    _cron: Cron = PrivateAttr()
    _zone: ZoneInfo = PrivateAttr()

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        Cron.parse(value)
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}: expected an IANA name such as Europe/Berlin, "
                "America/New_York or UTC"
            ) from None
        return value

    _check_duration = field_validator("duration")(_positive)

    @model_validator(mode="after")
    def _windows_apart(self) -> Schedule:
        self._cron, self._zone = Cron.parse(self.cron), ZoneInfo(self.time_zone)
        gap = self._cron.shortest_gap()
        if gap is not None and self.duration > gap:
            raise ValueError(
                f"duration: {format_duration(self.duration)} is longer than the "
                f"{format_duration(gap)} between two firings of {self.cron!r}, so its "
                "windows would overlap each other; shorten it or fire less often"
            )
        return self

    @property
    def duration_seconds(self) -> int:
        return self.duration

    def openings(self, start: int, end: int) -> list[int]:
        """Unix seconds of each firing in [start, end)."""
        return self._cron.firings(self._zone, start, end)

    def timing(self) -> tuple[object, ...]:
        """What makes two schedules the same windows (the cron as parsed, not as spelled)."""
        return (dataclasses.replace(self._cron, text=""), self.time_zone, self.duration)


class Event(_Floor):
    """A one-off window from `from` to `to` (RFC 3339 times with their offsets)."""

    start: AwareDatetime = Field(alias="from")
    end: AwareDatetime = Field(alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> Event:
        if self.end <= self.start:
            raise ValueError(
                f"to: {self.end.isoformat()} is not after from ({self.start.isoformat()})"
            )
        return self

    @property
    def duration_seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    def openings(self, start: int, end: int) -> list[int]:
        """The event's start, if it lies in [start, end)."""
        opens = int(self.start.timestamp())
        return [opens] if start <= opens < end else []

    def timing(self) -> tuple[object, ...]:
        return (self.start.timestamp(), self.end.timestamp())


DEFAULT_HORIZON = 600
DEFAULT_LEAD = 180
DEFAULT_POD_MINUTES = 1.1
"""A rule with neither `quantile` nor `max_pod_minutes` may cost 10 % more pod-minutes
than perfect foresight: each series is held at the quantile its backtest says that buys."""


def default_horizon(step: int, lead: int, interval: int) -> int:
    """10 minutes, or the shortest multiple of `step` whose forecasts stay fresh through
    two late or failed cycles in a row, whichever is longer."""
    need = 3 * grid_ceil(interval, step) + SETTLE
    return max(DEFAULT_HORIZON, grid_ceil(lead + step + need, step))


class Rule(_Strict):
    """One served external metric: the PromQL for its actual rate and how to forecast it."""

    name: str
    query: str
    step: Duration = 60
    history: Duration = 15 * 86400
    horizon: Duration = DEFAULT_HORIZON  # or longer: see default_horizon
    lead: Duration = DEFAULT_LEAD  # or the next whole step: see _derive_horizon
    quantile: float | None = None  # a fixed q; by default chosen per series under max_pod_minutes
    max_pod_minutes: float | None = None  # default DEFAULT_POD_MINUTES, unless quantile is set
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
    def _derive_horizon(cls, data: Any, handler: ModelWrapValidatorHandler[Rule]) -> Rule:
        if isinstance(data, dict) and data.get("lead") is None:
            with contextlib.suppress(ValueError):  # the field validators say what is wrong
                step = parse_duration(data.get("step", 60))
                if step > 0:  # the default lead, in whole steps
                    data = {**data, "lead": grid_ceil(DEFAULT_LEAD, step)}
        derive = isinstance(data, dict) and data.get("horizon") is None
        if derive:
            try:
                times = [
                    parse_duration(data.get(k, default))
                    for k, default in (("step", 60), ("lead", DEFAULT_LEAD), ("interval", 60))
                ]
                if data.get("lead_max") is not None:
                    times[1] = max(times[1], parse_duration(data["lead_max"]))
            except ValueError:
                times = []  # the field validators say what is wrong
            if times and min(times[0], times[2]) > 0:
                data = {**data, "horizon": default_horizon(*times)}
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
    def _upper_quantile(cls, value: float | None) -> float | None:
        if value is not None and not 0.5 < value < 1.0:
            raise ValueError(
                "expected a share above 0.5 and below 1 (how often the served value should "
                f"cover the lead window's peak), e.g. 0.9; got {value}"
            )
        return value

    @field_validator("max_pod_minutes")
    @classmethod
    def _a_budget(cls, value: float | None) -> float | None:
        if value is not None and not 1.0 <= value <= 10.0:
            raise ValueError(
                "expected how many times perfect foresight's pod-minutes the rule may cost, "
                f"at least 1 and at most 10, e.g. 1.1 for 10 % more; got {value}"
            )
        return value

    @model_validator(mode="after")
    def _one_quantile_rule(self) -> Rule:
        if self.quantile is not None and self.max_pod_minutes is not None:
            raise ValueError(
                "quantile: give either quantile (the same q for every series) or "
                "max_pod_minutes (a q per series, chosen to fit that cost), not both"
            )
        return self

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

    @field_validator("namespace_label")
    @classmethod
    def _label_name(cls, value: str | None) -> str | None:
        if value is not None and not is_label_name(value):
            raise ValueError(f"expected a Prometheus label name, got {value!r}")
        return value

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
        if self.step <= 0:
            raise ValueError("step: expected a positive duration")
        if self.interval <= 0:
            raise ValueError("interval: expected a positive duration")
        if not 0 <= self.phase < self.step:
            raise ValueError(
                f"phase: expected a duration from 0 up to the step ({format_duration(self.step)})"
                f", got {format_duration(self.phase)}"
            )
        for key in ("history", "horizon", "lead"):
            if getattr(self, key) % self.step:
                raise ValueError(
                    f"{key}: expected a multiple of step ({format_duration(self.step)}), "
                    f"got {format_duration(getattr(self, key))}"
                )
        if self.history < 10 * self.step:
            raise ValueError("history: expected at least 10 steps of history")
        if self.lead + self.step > self.horizon:
            raise ValueError(
                "horizon: must cover lead + one step "
                f"({format_duration(self.lead + self.step)}), got {format_duration(self.horizon)}"
            )
        if self.forecast_ttl is not None and self.forecast_ttl > self.max_ttl:
            raise ValueError(
                f"forecast_ttl: at most horizon - lead - step ({format_duration(self.max_ttl)}), "
                "or an old forecast would not cover the lead time"
            )
        if self.drop_after < self.refresh:
            raise ValueError(
                f"drop_after: expected at least one refresh ({format_duration(self.refresh)}), "
                f"got {format_duration(self.drop_after)}"
            )
        lo, hi = self.lead_bounds
        if lo > hi:
            raise ValueError(
                f"lead_min: {format_duration(lo)} is above lead_max ({format_duration(hi)})"
            )
        covered = self.covered_lead
        if self.lead_max is not None and self.lead_max > covered:
            horizon = grid_ceil(self.lead_max + self.step + self.min_ttl, self.step)
            raise ValueError(
                f"lead_max: a {format_duration(self.horizon)} horizon covers leads up to "
                f"{format_duration(max(0, covered))} with forecasts fresh for "
                f"{format_duration(self.min_ttl)}; make horizon at least "
                f"{format_duration(horizon)} (or leave it out: it is then derived)"
            )
        need = self.min_ttl
        if self.ttl < need:
            why = (
                f"it must stay fresh until the cycle after next ({format_duration(need)}: two "
                f"refreshes of {format_duration(self.refresh)} plus the {SETTLE}s a sample "
                "settles), or a slow or failed cycle drops every series to reactive scaling"
            )
            if self.forecast_ttl is not None:
                raise ValueError(
                    f"forecast_ttl: {format_duration(self.forecast_ttl)} is too short: {why}"
                )
            horizon = self.lead + self.step + grid_ceil(need, self.step)
            raise ValueError(
                f"horizon: with lead {format_duration(self.lead)} and step "
                f"{format_duration(self.step)}, a {format_duration(self.horizon)} forecast is "
                f"fresh for {format_duration(self.ttl)} (horizon - lead - step); {why}. "
                f"Make horizon at least {format_duration(horizon)}, or lead or interval shorter"
            )
        return self

    @model_validator(mode="after")
    def _distinct_definitions(self) -> Rule:
        seen: dict[str, str] = {}
        timings: dict[tuple[object, ...], str] = {}
        definitions: list[Schedule | Event] = [*self.schedules, *self.events]
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
                timing = (kind, *d.timing(), str(d.label_selector))
                if timing in timings:
                    raise ValueError(
                        f"{kind}: {key} ({d.name!r}) has the same windows and selector as "
                        f"{timings[timing]}: define them once, with one floor"
                    )
                timings[timing] = f"{key} ({d.name!r})"
        self._calendar = Calendar(definitions) if definitions else None
        return self

    @property
    def calendar(self) -> Calendar | None:
        """The rule's schedules and events, or None when it has neither."""
        return self._calendar

    @property
    def lead_bounds(self) -> tuple[int, int]:
        """The least and most lead a measurement of the workload's pods may set: by
        default one step, and the longest lead the horizon covers with forecasts fresh
        through a late cycle (at least the configured lead)."""
        lo = self.step if self.lead_min is None else self.lead_min
        if self.lead_max is not None:
            return lo, self.lead_max
        covered = self.covered_lead
        return lo, max(self.lead, covered - covered % self.step)

    @property
    def covered_lead(self) -> int:
        """The longest lead whose window the forecasts still cover while fresh (min_ttl)."""
        return self.horizon - self.step - self.min_ttl

    def bounded_lead(self, measured: float) -> int:
        """A measured start-up time as this rule's lead: rounded up to whole steps,
        within `lead_bounds`."""
        lo, hi = self.lead_bounds
        return int(min(max(grid_ceil(math.ceil(measured), self.step), lo), hi))

    @property
    def warmup(self) -> int:
        """Seconds after a series appears (or returns from a gap) during which its values
        still ramp up: the query's longest range window is not yet full of samples."""
        return self._warmup

    @property
    def warmup_steps(self) -> int:
        """Grid points from a series' first one that lie in its warm-up."""
        return -(-self.warmup // self.step)

    @property
    def refresh(self) -> int:
        """Seconds between forecasts built on newer data: the interval, rounded up to
        whole steps (a cycle finds no new point before the next step ends)."""
        return grid_ceil(self.interval, self.step)

    @property
    def min_ttl(self) -> int:
        """The shortest TTL that survives one late or failed cycle."""
        return 2 * self.refresh + SETTLE

    @property
    def max_ttl(self) -> int:
        """The oldest a forecast can be and still cover every step up to t + lead."""
        return self.horizon - self.lead - self.step

    @property
    def ttl(self) -> int:
        """Seconds after which a forecast is no longer served (reactive fallback instead)."""
        return self.forecast_ttl if self.forecast_ttl is not None else self.max_ttl

    @property
    def horizon_steps(self) -> int:
        return self.horizon // self.step


class CurrentConfig(_Strict):
    """How the current value of every series is kept in memory for the API."""

    interval: Duration = 15  # one instant query per rule this often
    max_age: Duration = 60  # older current values are not served as current

    @model_validator(mode="after")
    def _fresh_enough(self) -> CurrentConfig:
        if self.interval <= 0:
            raise ValueError("interval: expected a positive duration")
        if self.max_age < SETTLE + 2 * self.interval:
            raise ValueError(
                "max_age: expected at least two intervals plus the "
                f"{SETTLE}s a value settles before it is read "
                f"({format_duration(SETTLE + 2 * self.interval)}), so that one slow refresh "
                "does not make every current value stale"
            )
        return self


class ForwardConfig(_Strict):
    """Another external metrics server (KEDA's metrics server, prometheus-adapter) that
    answers for the external metrics no rule serves, when scaleahead owns the APIService.

    scaleahead authenticates to it either as the aggregator does, with a client certificate
    its request-header CA signed, passing the caller in X-Remote-User / X-Remote-Group /
    X-Remote-Extra-*; or with a bearer token (its service account's), as itself."""

    url: str
    ca_file: Path | None = None  # the server's CA; default: the system's
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    bearer_token_file: Path | None = None
    timeout: Duration = 5

    _check_files = field_validator(
        "ca_file", "client_cert_file", "client_key_file", "bearer_token_file"
    )(_existing_file)

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("expected an https:// URL (an external metrics server serves TLS)")
        if "@" in parts.netloc or parts.path.strip("/") or parts.query:
            raise ValueError("expected https://host[:port] only (no credentials, path or query)")
        return value.rstrip("/")

    _check_timeout = field_validator("timeout")(_positive)

    @model_validator(mode="after")
    def _one_identity(self) -> ForwardConfig:
        cert = self.client_cert_file is not None or self.client_key_file is not None
        if cert and (self.client_cert_file is None or self.client_key_file is None):
            raise ValueError("client_cert_file and client_key_file go together")
        if cert == (self.bearer_token_file is not None):
            raise ValueError(
                "give client_cert_file and client_key_file (a front-proxy client "
                "certificate: the caller's identity is passed on) or bearer_token_file "
                "(scaleahead's own identity), one of the two"
            )
        return self


class Config(_Strict):
    """The whole configuration file."""

    prometheus: PrometheusConfig
    rules: list[Rule] = Field(min_length=1)
    current: CurrentConfig = CurrentConfig()
    forward: ForwardConfig | None = None

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} appears twice")
            seen.add(rule.name)
        return rules

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)


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


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate an already-parsed document; raise ConfigError naming source and key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with keys 'prometheus' and 'rules'")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(source, err)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (YAML says keys are
    unique; PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if key in first:
                raise ConfigError(
                    f"line {line}: key {key!r} appears twice in one mapping (first at line "
                    f"{first[key]}); YAML keeps only one, so say it once"
                )
            first[key] = line
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> Any:
    """One YAML document from a file, keys unique; raise ConfigError naming the file (and
    the line) when it cannot be read or parsed."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.MarkedYAMLError as err:
        where = err.problem_mark or err.context_mark
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return data


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML configuration file; raise ConfigError on any problem."""
    return parse_config(read_yaml(path), str(path))
