"""When a job runs: cron expressions and one-off times in an IANA time zone.

Cron matching is done on wall-clock times without a zone, where croniter is
plain calendar arithmetic. This module then maps each matching wall time to
an instant and applies the daylight-saving rules itself:

- A wall time that the spring change skips runs once, right after the gap
  (02:30 on the day clocks jump from 02:00 to 03:00 runs at 03:00).
- A wall time that the autumn change repeats runs once, at its first
  occurrence.
- An interval schedule, one that fires in every hour (``*/15 * * * *``,
  ``0 * * * *``), runs at every wall time that exists, including both
  occurrences of a repeated one. Across a one-hour change this keeps its real
  interval: 01:45 CST is followed by 03:00 CDT, fifteen minutes later.

croniter's own time-zone support is not used because it runs a repeated wall
time twice (croniter 7.0: ``30 1 * * *`` in America/Chicago yields 01:30 CDT
and 01:30 CST on 2026-11-01).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cron_descriptor import ExpressionDescriptor, Options
from croniter import CroniterBadDateError, croniter

from postroom.errors import InvalidInputError

# cron's shorthands, expanded to five fields. @reboot has no meaning for a
# scheduler that runs continuously and is rejected.
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_FIELD_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        [
            "jan",
            "feb",
            "mar",
            "apr",
            "may",
            "jun",
            "jul",
            "aug",
            "sep",
            "oct",
            "nov",
            "dec",
        ],
        start=1,
    )
}
_DAY_NAMES = {
    name: number
    for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
_ELEMENT = re.compile(
    r"^(?:(?P<star>\*)|(?P<start>[0-9a-z]+)(?:-(?P<end>[0-9a-z]+))?)"
    r"(?:/(?P<step>[0-9]+))?$"
)
# Characters of extended cron dialects (Quartz, Jenkins, croniter) whose
# meaning differs between implementations.
_EXTENSIONS = {
    "L": "'L' (last day)",
    "W": "'W' (nearest weekday)",
    "#": "'#' (nth weekday of the month)",
    "?": "'?' (no specific value)",
    "H": "'H' (hashed value)",
    "R": "'R' (random value)",
}
_SYNTAX_HELP = (
    "use numbers, names (JAN-DEC, SUN-SAT), ranges (1-5), lists (1,15) and steps (*/15)"
)

# The widest daylight-saving shift in the tz database is two hours
# (Antarctica/Troll); a repeated hour never spans more than this.
_MAX_SHIFT = timedelta(hours=3)


@dataclass(frozen=True)
class Occurrence:
    """One run time: the instant in UTC, the wall time, and any DST note."""

    utc: datetime
    local: datetime
    note: str | None = None


def check_time_zone(name: str, field: str = "time_zone") -> ZoneInfo:
    """Return the IANA zone ``name``; reject offsets and unknown names."""
    name = name.strip()
    if not name:
        raise InvalidInputError(
            "is required; use an IANA name such as America/Chicago or UTC",
            field=field,
        )
    if name not in _zone_names():
        suggestion = _closest_zone(name)
        hint = f"; did you mean {suggestion}?" if suggestion else ""
        raise InvalidInputError(
            f"{name!r} is not an IANA time zone name, such as America/Chicago or "
            f"Europe/Berlin{hint}",
            field=field,
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInputError(
            f"time zone {name!r} cannot be loaded: {exc}", field=field
        ) from exc


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def _closest_zone(name: str) -> str | None:
    import difflib

    matches = difflib.get_close_matches(name, sorted(_zone_names()), n=1)
    if matches:
        return matches[0]
    lowered = {zone.lower(): zone for zone in _zone_names()}
    return lowered.get(name.lower())


class CronSchedule:
    """A five-field cron expression evaluated in a time zone."""

    def __init__(self, expression: str, zone: ZoneInfo) -> None:
        self.expression = normalize_cron(expression)
        self.zone = zone
        fields = self.expression.split()
        expanded, _ = croniter.expand(self.expression)
        hours = expanded[1]
        # Fires in every hour: DST changes are treated as real time passing.
        self.interval = hours == ["*"] or len(hours) == 24
        self._fields = fields

    def describe(self) -> str:
        return describe_cron(self.expression)

    def next_after(self, after: datetime) -> Occurrence:
        """Return the first run strictly after ``after`` (an aware datetime).

        Raises InvalidInputError when the expression never fires, or when the
        next run falls outside the years 1 to 9999, which datetime cannot hold.
        """
        try:
            return self._next_after(after)
        except (OverflowError, ValueError) as exc:
            # datetime raises OverflowError, and croniter (through dateutil)
            # ValueError "year 10000 is out of range", at the calendar's ends.
            raise InvalidInputError(
                f"no run of {self.expression!r} can be computed after "
                f"{after.isoformat()}: it would fall outside the years 1 to "
                f"{MAXYEAR}; give an earlier time",
                field="after",
            ) from exc

    def _next_after(self, after: datetime) -> Occurrence:
        wall = after.astimezone(self.zone)
        start = wall.replace(tzinfo=None)
        if (
            _offset(start, 0, self.zone) > _offset(start, 1, self.zone)
            and not wall.fold
        ):
            # ``after`` is in the first pass of a repeated hour: a wall time
            # earlier than it still comes later, in the second pass.
            start -= _MAX_SHIFT
        # croniter returns times strictly after its start; a start one minute
        # early lets a run exactly at ``start`` be considered too.
        iterator = croniter(self.expression, start - timedelta(minutes=1), day_or=True)
        best: Occurrence | None = None
        while True:
            try:
                candidate = iterator.get_next(datetime)
            except CroniterBadDateError as exc:
                raise InvalidInputError(
                    f"{self.expression!r} never fires", field="cron"
                ) from exc
            occurrences = _occurrences(candidate, self.zone, interval=self.interval)
            if not occurrences:
                continue
            # First-pass instants never decrease from one wall time to the
            # next, so nothing later can come before the best found so far.
            if best is not None and occurrences[0].utc >= best.utc:
                return best
            for occurrence in occurrences:
                if occurrence.utc > after and (
                    best is None or occurrence.utc < best.utc
                ):
                    best = occurrence


class OnceSchedule:
    """A single wall-clock time in a time zone."""

    def __init__(self, run_at: datetime, zone: ZoneInfo) -> None:
        self.run_at = run_at.replace(tzinfo=None, microsecond=0)
        self.zone = zone
        self.interval = False

    def describe(self) -> str:
        return f"Once, on {self.run_at:%Y-%m-%d} at {self.run_at:%H:%M}"

    def at(self) -> Occurrence:
        try:
            return _occurrences(self.run_at, self.zone, interval=False)[0]
        except OverflowError as exc:
            raise InvalidInputError(
                f"{self.run_at:%Y-%m-%dT%H:%M} in {self.zone.key} falls outside the "
                f"years 1 to {MAXYEAR} in UTC; give a time within them",
                field="run_at",
            ) from exc

    def next_after(self, after: datetime) -> Occurrence | None:
        occurrence = self.at()
        return occurrence if occurrence.utc > after else None


Schedule = CronSchedule | OnceSchedule


def upcoming(schedule: Schedule, after: datetime, count: int) -> list[Occurrence]:
    """Return the next ``count`` runs after ``after``, fewer for a one-off job."""
    result: list[Occurrence] = []
    cursor = after
    while len(result) < count:
        occurrence = schedule.next_after(cursor)
        if occurrence is None:
            break
        result.append(occurrence)
        cursor = occurrence.utc
    return result


def _offset(naive: datetime, fold: int, zone: ZoneInfo) -> timedelta:
    offset = naive.replace(tzinfo=zone, fold=fold).utcoffset()
    assert offset is not None
    return offset


def _occurrences(
    naive: datetime, zone: ZoneInfo, *, interval: bool
) -> list[Occurrence]:
    """Map a matching wall time to the instants it runs at (zero, one or two)."""
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    first_offset = _offset(naive, 0, zone)
    second_offset = _offset(naive, 1, zone)

    if first_offset < second_offset:
        # In a gap: this wall time does not exist today (PEP 495 gives the
        # offset from before the change for fold=0 and after it for fold=1).
        if interval:
            return []
        # NOTE: a slot moved to the end of the gap merges with a slot already
        # there: "0 2,3 * * *" runs once, at 03:00, on the spring change day.
        end = _gap_end(naive, zone)
        local = end.astimezone(zone)
        note = (
            f"{naive:%H:%M} does not exist on {naive:%Y-%m-%d} because clocks "
            f"move forward; runs at {local:%H:%M %Z}, right after the change"
        )
        return [Occurrence(utc=end, local=local, note=note)]

    if first_offset > second_offset:
        # Repeated by the autumn change.
        first_utc = first.astimezone(UTC)
        second_utc = second.astimezone(UTC)
        if interval:
            note = (
                f"{naive:%H:%M} occurs twice on {naive:%Y-%m-%d} because clocks "
                "move back; this interval schedule runs at both"
            )
            return [
                Occurrence(utc=first_utc, local=first_utc.astimezone(zone), note=note),
                Occurrence(
                    utc=second_utc, local=second_utc.astimezone(zone), note=note
                ),
            ]
        local = first_utc.astimezone(zone)
        note = (
            f"{naive:%H:%M} occurs twice on {naive:%Y-%m-%d} because clocks move "
            f"back; runs once, at the first occurrence ({local:%Z})"
        )
        return [Occurrence(utc=first_utc, local=local, note=note)]

    utc = first.astimezone(UTC)
    return [Occurrence(utc=utc, local=utc.astimezone(zone))]


def _gap_end(naive: datetime, zone: ZoneInfo) -> datetime:
    """Return the instant the clocks moved forward over ``naive``, in UTC."""
    # Interpreted with the new offset, the wall time lies before the change;
    # with the old offset, after it. The change is between, to the second.
    low = int(naive.replace(tzinfo=zone, fold=1).timestamp())
    high = int(naive.replace(tzinfo=zone, fold=0).timestamp())
    after_offset = datetime.fromtimestamp(high, zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == after_offset:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def normalize_cron(expression: str) -> str:
    """Return the expression with macros expanded; raise InvalidInputError if unusable.

    Accepts standard five-field cron only: what every cron implementation
    reads the same way, so the scheduler can honour it exactly.
    """
    text = " ".join(expression.split())
    if not text:
        raise InvalidInputError(
            "is required, for example '0 7 * * 1-5' (07:00 on weekdays)", field="cron"
        )
    if text.startswith("@"):
        macro = text.lower()
        if macro == "@reboot":
            raise InvalidInputError(
                "@reboot is not supported: a job runs on a schedule, not when a "
                "process starts",
                field="cron",
            )
        if macro not in _MACROS:
            raise InvalidInputError(
                f"{text!r} is not a known shorthand; use one of "
                f"{', '.join(sorted(_MACROS))} or five fields",
                field="cron",
            )
        text = _MACROS[macro]

    fields = text.split(" ")
    if len(fields) == 6:
        raise InvalidInputError(
            f"{text!r} has six fields; Postroom schedules to the minute, so a "
            "seconds (or year) field cannot be honoured. Use five fields: minute "
            "hour day-of-month month day-of-week",
            field="cron",
        )
    if len(fields) != 5:
        raise InvalidInputError(
            f"{text!r} has {len(fields)} fields; use five: minute hour "
            "day-of-month month day-of-week, for example '0 7 * * 1-5'",
            field="cron",
        )

    for index, value in enumerate(fields):
        _check_field(index, value)
    _check_day_fields(fields[2], fields[4])
    _check_can_fire(text, fields)
    return text


def _check_field(index: int, value: str) -> None:
    name = _FIELD_NAMES[index]
    names = _names(index)
    # Month and day names contain letters such as L (JUL) and W (WED) that
    # extended dialects use as operators; only the rest is checked for them.
    without_names = re.sub(
        r"[a-z]{3}", lambda word: "" if word[0] in names else word[0], value.lower()
    )
    for char, meaning in _EXTENSIONS.items():
        if char in without_names.upper():
            raise InvalidInputError(
                f"{name} field {value!r} uses {meaning}, which cron implementations "
                f"read differently and Postroom does not support; {_SYNTAX_HELP}",
                field="cron",
            )
    low, high = _FIELD_BOUNDS[index]
    for element in value.split(","):
        match = _ELEMENT.match(element.lower())
        if match is None:
            raise InvalidInputError(
                f"{name} field {value!r} is not valid cron syntax; {_SYNTAX_HELP}",
                field="cron",
            )
        if match["star"] is None:
            start = _number(index, match["start"], value)
            end = _number(index, match["end"], value) if match["end"] else start
            for number in (start, end):
                if not low <= number <= high:
                    raise InvalidInputError(
                        f"{name} field {value!r}: {number} is out of range; the "
                        f"{name} must be between {low} and {high}",
                        field="cron",
                    )
            if end < start:
                raise InvalidInputError(
                    f"{name} field {value!r}: the range {element} runs backwards, "
                    "and cron implementations disagree on whether it wraps; "
                    "write it as two ranges or a list",
                    field="cron",
                )
        if match["step"] is not None and int(match["step"]) == 0:
            raise InvalidInputError(
                f"{name} field {value!r}: a step of 0 never advances; use 1 or more",
                field="cron",
            )


def _names(index: int) -> dict[str, int]:
    if index == 3:
        return _MONTH_NAMES
    if index == 4:
        return _DAY_NAMES
    return {}


def _number(index: int, token: str, value: str) -> int:
    if token.isdigit():
        return int(token)
    names = _names(index)
    if token in names:
        return names[token]
    raise InvalidInputError(
        f"{_FIELD_NAMES[index]} field {value!r}: {token!r} is not a number"
        + (" or a name" if names else ""),
        field="cron",
    )


def _check_day_fields(day_of_month: str, day_of_week: str) -> None:
    if day_of_month == "*" or day_of_week == "*":
        return
    if day_of_month.startswith("*") or day_of_week.startswith("*"):
        # Vixie cron treats a field starting with '*' as unrestricted when it
        # combines the two day fields (AND), croniter as restricted (OR).
        raise InvalidInputError(
            f"day of month {day_of_month!r} and day of week {day_of_week!r} are "
            "both restricted and one starts with '*'; cron implementations "
            "disagree on whether such a job runs when both match or when either "
            "does. List the days without '*', or use two jobs",
            field="cron",
        )


def _check_can_fire(text: str, fields: list[str]) -> None:
    # With any day of the month, or with both day fields restricted (cron
    # then runs when either matches, and every weekday occurs every month),
    # some day always matches.
    if fields[2] == "*" or fields[4] != "*":
        return
    expanded, _ = croniter.expand(text)
    days = [int(day) for day in expanded[2] if day != "*"] or list(range(1, 32))
    months = [int(month) for month in expanded[3] if month != "*"] or list(range(1, 13))
    # February counts with 29 days: a job on the 29th runs in leap years.
    if any(day <= _longest_month(month) for month in months for day in days):
        return
    month_names = " or ".join(calendar.month_name[month] for month in months)
    day_list = " or ".join(str(day) for day in days)
    raise InvalidInputError(
        f"{text!r} never fires: {month_names} has no day {day_list}; "
        "check the day-of-month and month fields",
        field="cron",
    )


def _longest_month(month: int) -> int:
    return 29 if month == 2 else calendar.monthrange(2025, month)[1]


def describe_cron(expression: str) -> str:
    """Return the schedule in words, for example 'At 07:00, Monday through Friday'."""
    options = Options()
    options.use_24hour_time_format = True
    options.verbose = False
    try:
        return str(ExpressionDescriptor(expression, options).get_description())
    except Exception:
        # cron-descriptor cannot describe every valid expression; the
        # expression itself is then the best description.
        return expression
