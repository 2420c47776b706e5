"""Known peaks: floors under a rule's served value from recurring schedules (a cron
expression read in a time zone, for a duration) and one-off events (from, to).

A definition is active for a series at t from `lead` before one of its windows opens
until the window closes, so that pods added when it activates are Ready when it opens.
Its floor is a value in the metric's unit, or a multiple of the value the forecast
policy serves. The served value is the largest of the policy's and every active floor.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from forecaster.times import DAY, WEEK, format_duration

if TYPE_CHECKING:
    from forecaster.selector import LabelSelector

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _number(token: str, what: str, lo: int, hi: int, names: Sequence[str], base: int) -> int:
    word = token.lower()
    if word in names:
        return names.index(word) + base
    if not token.isdigit() or not lo <= int(token) <= hi:
        named = f" or a name ({', '.join(names)})" if names else ""
        raise ValueError(f"{what}: {token!r} is not a number from {lo} to {hi}{named}")
    return int(token)


def _field(
    text: str, what: str, lo: int, hi: int, names: Sequence[str] = (), base: int = 0
) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, slash, every = part.partition("/")
        step = 1
        if slash:
            if not every.isdigit() or int(every) == 0:
                raise ValueError(f"{what}: the step in {part!r} is not a positive whole number")
            step = int(every)
        if body == "*":
            first, last = lo, hi
        else:
            a, dash, b = body.partition("-")
            first = _number(a, what, lo, hi, names, base)
            last = _number(b, what, lo, hi, names, base) if dash else (hi if slash else first)
            if first > last:
                raise ValueError(f"{what}: the range {body!r} runs backwards")
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A standard five-field cron expression (minute hour day-of-month month day-of-week,
    with ranges, steps, lists, month and weekday names, 0 or 7 for Sunday, and the @daily
    style macros), read as wall-clock time. As in Vixie cron and Kubernetes CronJobs, a
    day matches either day field when both are restricted, else both."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        """Parse `text`; raise ValueError naming the field that is wrong."""
        fields = _MACROS.get(text.strip().lower(), text).split()
        if len(fields) != 5:
            raise ValueError(
                f"expected five fields (minute hour day-of-month month day-of-week) or a "
                f"macro such as @daily, got {len(fields)} in {text!r}"
            )
        minute, hour, day, month, weekday = fields
        weekdays = _field(weekday, "day of week", 0, 7, _WEEKDAYS)
        return cls(
            text=text,
            minutes=tuple(sorted(_field(minute, "minute", 0, 59))),
            hours=tuple(sorted(_field(hour, "hour", 0, 23))),
            days=_field(day, "day of month", 1, 31),
            months=_field(month, "month", 1, 12, _MONTHS, base=1),
            weekdays=frozenset(d % 7 for d in weekdays),
            any_day=day.startswith("*"),
            any_weekday=weekday.startswith("*"),
        )

    def runs_on(self, day: date) -> bool:
        """Whether the expression fires at all on this calendar day."""
        if day.month not in self.months:
            return False
        dom, dow = day.day in self.days, day.isoweekday() % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def firings(self, zone: tzinfo, start: int, end: int) -> list[int]:
        """Unix seconds of every firing in [start, end), the expression read on `zone`'s
        clocks. A time the clocks skip (02:30 on a spring-forward night) fires when they
        have jumped past it (03:30); a time they repeat fires once, the first time."""
        found: set[int] = set()
        day = datetime.fromtimestamp(start, zone).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end, zone).date() + timedelta(days=1)
        while day <= last:
            if self.runs_on(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                        t = int(wall.timestamp())  # fold=0: a skipped time shifts forward
                        if start <= t < end:
                            found.add(t)
            day += timedelta(days=1)
        return sorted(found)

    def shortest_gap(self) -> int | None:
        """The fewest seconds between two firings on an unchanging clock (UTC) over two
        years or 10,000 firings, whichever comes first; None if it fires at most once."""
        start = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())  # a leap year, a Monday
        times: list[int] = []
        for week in range(0, 105):
            lo = start + week * WEEK
            times += self.firings(UTC, lo, lo + WEEK)
            if len(times) >= 10_000:
                break
        gaps = np.diff(np.asarray(times, dtype=np.int64))
        return int(gaps.min()) if len(gaps) else None


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ValueError naming what was expected."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: expected an IANA name such as Europe/Berlin, "
            "America/New_York or UTC"
        ) from None


class Windows(Protocol):
    """When a definition's windows open, and for how long each stays open."""

    @property
    def duration(self) -> int:
        """Seconds each window lasts."""
        ...

    def openings(self, start: int, end: int) -> list[int]:
        """Unix seconds at which a window opens, for every window opening in [start, end)."""
        ...

    def timing(self) -> tuple[object, ...]:
        """What makes two definitions open the same windows."""
        ...


@dataclass(frozen=True)
class Recurring:
    """A window at each firing of `cron`, read on the clocks of `zone`, `duration` long."""

    cron: Cron
    zone: ZoneInfo
    duration: int

    @classmethod
    def of(cls, cron: str, zone_name: str, duration: int) -> Recurring:
        """The windows a schedule describes; ValueError if they would overlap each other."""
        parsed = Cron.parse(cron)
        gap = parsed.shortest_gap()
        if gap is not None and duration > gap:
            raise ValueError(
                f"duration: {format_duration(duration)} is longer than the "
                f"{format_duration(gap)} between two firings of {cron!r}, so its "
                "windows would overlap each other; shorten it or fire less often"
            )
        return cls(parsed, zone(zone_name), duration)

    def openings(self, start: int, end: int) -> list[int]:
        return self.cron.firings(self.zone, start, end)

    def timing(self) -> tuple[object, ...]:
        """The cron as parsed (not as spelled), the zone and the duration."""
        return (replace(self.cron, text=""), self.zone.key, self.duration)


@dataclass(frozen=True)
class OneOff:
    """One window from `start` to `end` (Unix seconds)."""

    start: int
    end: int

    @property
    def duration(self) -> int:
        return self.end - self.start

    def openings(self, start: int, end: int) -> list[int]:
        return [self.start] if start <= self.start < end else []

    def timing(self) -> tuple[object, ...]:
        return (self.start, self.end)


def next_window(windows: Windows, now: int, within: int = 366 * DAY) -> tuple[int, int] | None:
    """(opens, closes) of the window open at `now`, else of the next one to open within
    `within` seconds; None if there is none."""
    opens = windows.openings(now - windows.duration + 1, now + within)
    return (opens[0], opens[0] + windows.duration) if opens else None


class Definition(Protocol):
    """What the calendar needs of a schedule or an event (see forecaster.config)."""

    @property
    def name(self) -> str: ...
    @property
    def floor(self) -> float | None: ...
    @property
    def multiplier(self) -> float | None: ...
    @property
    def label_selector(self) -> LabelSelector: ...
    @property
    def windows(self) -> Windows: ...


def floor_for(definition: Definition, value: float | np.ndarray) -> float | np.ndarray:
    """The floor `definition` puts under a served value of `value`."""
    if definition.multiplier is not None:
        return definition.multiplier * value
    assert definition.floor is not None
    return definition.floor


@dataclass(frozen=True)
class ActiveFloor:
    """A definition active for a series now, and the floor it sets."""

    name: str
    floor: float


class _Windows:
    """One definition's windows, enumerated for a span of time around the instants asked
    about and kept until an instant falls outside it."""

    def __init__(self, definition: Definition) -> None:
        self.definition = definition
        self._span: tuple[int, int, list[int]] = (0, 0, [])

    def _openings(self, lo: int, hi: int) -> list[int]:
        """Window openings (at least those in [lo, hi)), from the cache when it covers
        them."""
        start, end, opens = self._span  # one read: another thread may replace it
        if not (start <= lo and hi <= end):
            start, end = lo - DAY, hi + 2 * DAY
            opens = self.definition.windows.openings(start, end)
            self._span = (start, end, opens)
        return opens

    def active_at(self, t: int, lead: int) -> bool:
        """Whether t lies in [opening - lead, opening + duration) of a window."""
        duration = self.definition.windows.duration
        opens = self._openings(t - duration, t + lead + 1)
        # The newest window opening by t + lead; an older one closed no later.
        i = bisect_right(opens, t + lead) - 1
        return i >= 0 and t < opens[i] + duration


class Calendar:
    """A rule's schedules and events: which are active for a series at an instant, and
    the floors they set."""

    def __init__(self, definitions: Sequence[Definition]) -> None:
        self._windows = [_Windows(d) for d in definitions]
        # Which definitions are active at (t, lead): the same for every series asked
        # about at one instant, so computed once for all of them.
        self._memo: tuple[tuple[int, int], tuple[bool, ...]] = ((-1, -1), ())

    def _active(self, t: int, lead: int) -> tuple[bool, ...]:
        key, flags = self._memo  # one read: another thread may replace it
        if key != (t, lead):
            flags = tuple(w.active_at(t, lead) for w in self._windows)
            self._memo = ((t, lead), flags)
        return flags

    @property
    def names(self) -> list[str]:
        return [w.definition.name for w in self._windows]

    def floors(
        self, labels: Mapping[str, str], t: float, lead: int, value: float
    ) -> tuple[ActiveFloor, ...]:
        """The definitions selecting this series that are active at t (with the series'
        lead), each with the floor it puts under the policy's value `value`."""
        return tuple(
            ActiveFloor(w.definition.name, float(floor_for(w.definition, value)))
            for w, on in zip(self._windows, self._active(int(t), lead), strict=True)
            if on and w.definition.label_selector.matches(labels)
        )

    def floor_array(
        self, labels: Mapping[str, str], times: np.ndarray, lead: int, values: np.ndarray
    ) -> np.ndarray:
        """Per instant of `times`, the largest floor any active definition puts under
        `values` (the policy's values at those instants); NaN where none is active."""
        out = np.full(len(times), np.nan)
        for w in self._windows:
            if not w.definition.label_selector.matches(labels):
                continue
            on = np.fromiter((w.active_at(int(t), lead) for t in times), bool, len(times))
            out[on] = np.fmax(out[on], floor_for(w.definition, values[on]))
        return out
