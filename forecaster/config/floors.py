"""The schedules and events of a rule as the configuration file writes them; their
windows and floors behave as `forecaster.schedules` says."""

from __future__ import annotations

import math
from abc import abstractmethod

from pydantic import AwareDatetime, Field, PrivateAttr, field_validator, model_validator

from forecaster.config.types import Duration, Strict, positive
from forecaster.schedules import Cron, OneOff, Recurring, Windows, zone
from forecaster.selector import EVERYTHING, LabelSelector, is_label_value, parse_selector


class Floor(Strict):
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
    def _one_floor(self) -> Floor:
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

    @property
    @abstractmethod
    def windows(self) -> Windows:
        """When the definition's windows open, and how long each lasts."""


class Schedule(Floor):
    """A recurring window: it opens at each firing of `cron`, read on the clocks of
    `time_zone`, and lasts `duration`."""

    cron: str
    time_zone: str
    duration: Duration

    _windows: Recurring = PrivateAttr()

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        Cron.parse(value)
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    _check_duration = field_validator("duration")(positive)

    @model_validator(mode="after")
    def _windows_apart(self) -> Schedule:
        self._windows = Recurring.of(self.cron, self.time_zone, self.duration)
        return self

    @property
    def windows(self) -> Recurring:
        return self._windows


class Event(Floor):
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
    def windows(self) -> OneOff:
        return OneOff(int(self.start.timestamp()), int(self.end.timestamp()))
