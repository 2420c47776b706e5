"""The configuration: its schema (types and defaults), the rules' timing as pure
functions, the loader and the wording of its errors. Validated once at start."""

from forecaster.config.errors import ConfigError, describe_validation_error
from forecaster.config.floors import Event, Floor, Schedule
from forecaster.config.loader import load_config, parse_config, read_yaml
from forecaster.config.rule import DEFAULT_POD_MINUTES, Rule
from forecaster.config.schema import (
    BasicAuth,
    Config,
    CurrentConfig,
    ForwardConfig,
    PrometheusConfig,
)
from forecaster.config.types import QUANTILE_RANGE, Duration, check_quantile

__all__ = [
    "DEFAULT_POD_MINUTES",
    "QUANTILE_RANGE",
    "BasicAuth",
    "Config",
    "ConfigError",
    "CurrentConfig",
    "Duration",
    "Event",
    "Floor",
    "ForwardConfig",
    "PrometheusConfig",
    "Rule",
    "Schedule",
    "check_quantile",
    "describe_validation_error",
    "load_config",
    "parse_config",
    "read_yaml",
]
