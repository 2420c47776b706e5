"""The configuration file: Prometheus connection and forecast rules, validated once at start."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from forecaster.selector import is_label_name
from forecaster.times import SETTLE, format_duration, parse_duration

PLACEHOLDER = "<<.LabelMatchers>>"
"""Where a rule's query receives the request's label selector (and namespace) as matchers."""

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

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("expected a positive duration")
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusConfig:
        if self.bearer_token_file and self.basic_auth:
            raise ValueError("set bearer_token_file or basic_auth, not both")
        return self


class Rule(_Strict):
    """One served external metric: the PromQL for its actual rate and how to forecast it."""

    name: str
    query: str
    step: Duration = 60
    history: Duration = 15 * 86400
    horizon: Duration = 600
    lead: Duration = 180
    quantile: float = Field(default=0.9, gt=0.5, lt=1.0)
    interval: Duration = 60
    forecast_ttl: Duration | None = None
    namespace_label: str | None = "namespace"

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
    def _has_placeholder(cls, value: str) -> str:
        if value.count(PLACEHOLDER) != 1:
            raise ValueError(
                f"expected exactly one {PLACEHOLDER} inside the selector braces, "
                "e.g. 'sum by (namespace, service) "
                f"(rate(http_requests_total{{{PLACEHOLDER}}}[2m]))'"
            )
        return value

    @field_validator("namespace_label")
    @classmethod
    def _label_name(cls, value: str | None) -> str | None:
        if value is not None and not is_label_name(value):
            raise ValueError(f"expected a Prometheus label name, got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent_times(self) -> Rule:
        if self.step <= 0:
            raise ValueError("step: expected a positive duration")
        if self.interval <= 0:
            raise ValueError("interval: expected a positive duration")
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
        return self

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


class Config(_Strict):
    """The whole configuration file."""

    prometheus: PrometheusConfig
    rules: list[Rule] = Field(min_length=1)
    current: CurrentConfig = CurrentConfig()

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


def describe_validation_error(source: str, err: ValidationError) -> str:
    """One line per problem: 'FILE: key.path: what was expected'."""
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not str(p).startswith("function-after"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{source}: {_key_path(loc)}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate an already-parsed document; raise ConfigError naming source and key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with keys 'prometheus' and 'rules'")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(source, err)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML configuration file; raise ConfigError on any problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_config(data, str(path))
