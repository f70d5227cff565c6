"""Schedules: cron validation, next runs, and daylight-saving changes.

America/Chicago moves from CST (UTC-6) to CDT (UTC-5) at 02:00 local on
2026-03-08, and back at 02:00 CDT on 2026-11-01, so 01:00-01:59 occurs twice.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from postroom.errors import InvalidInputError
from postroom.schedule.cron import (
    CronSchedule,
    OnceSchedule,
    check_time_zone,
    describe_cron,
    normalize_cron,
    upcoming,
)
from tests.schedule.helpers import utc

CHICAGO = ZoneInfo("America/Chicago")


def utc_times(expression: str, after: datetime, count: int) -> list[datetime]:
    return [
        item.utc for item in upcoming(CronSchedule(expression, CHICAGO), after, count)
    ]


def test_croniter_repeats_autumn_wall_time() -> None:
    # Why the scheduler maps wall times itself: croniter's own time-zone
    # support runs 01:30 twice on the autumn change.
    start = datetime(2026, 10, 31, 12, 0, tzinfo=CHICAGO)
    iterator = croniter("30 1 * * *", start)
    first = iterator.get_next(datetime)
    second = iterator.get_next(datetime)

    assert first.date() == second.date()


def test_spring_gap_runs_once_after_change() -> None:
    runs = upcoming(CronSchedule("30 2 * * *", CHICAGO), utc(2026, 3, 7, 12, 0), 3)

    assert [run.utc for run in runs] == [
        utc(2026, 3, 8, 8, 0),
        utc(2026, 3, 9, 7, 30),
        utc(2026, 3, 10, 7, 30),
    ]
    assert runs[0].local.strftime("%H:%M %Z") == "03:00 CDT"
    assert runs[0].note is not None
    assert "02:30 does not exist on 2026-03-08" in runs[0].note
    assert runs[1].note is None


def test_autumn_repeat_runs_first_occurrence() -> None:
    runs = upcoming(CronSchedule("30 1 * * *", CHICAGO), utc(2026, 10, 31, 12, 0), 3)

    assert [run.utc for run in runs] == [
        utc(2026, 11, 1, 6, 30),
        utc(2026, 11, 2, 7, 30),
        utc(2026, 11, 3, 7, 30),
    ]
    assert runs[0].local.strftime("%H:%M %Z") == "01:30 CDT"
    assert runs[0].note is not None
    assert "first occurrence" in runs[0].note


def test_autumn_second_pass_is_not_run() -> None:
    # From inside the repeated hour's second pass, today's 01:30 is done.
    assert utc_times("30 1 * * *", utc(2026, 11, 1, 7, 10), 1) == [
        utc(2026, 11, 2, 7, 30)
    ]


@pytest.mark.parametrize(
    ("expression", "step"),
    [("*/15 * * * *", timedelta(minutes=15)), ("0 * * * *", timedelta(hours=1))],
)
@pytest.mark.parametrize(
    "start", [utc(2026, 3, 8, 5, 0), utc(2026, 11, 1, 4, 0)], ids=["spring", "autumn"]
)
def test_interval_keeps_real_interval(
    expression: str, step: timedelta, start: datetime
) -> None:
    times = utc_times(expression, start, int(timedelta(hours=5) / step))

    gaps = {later - earlier for earlier, later in itertools.pairwise(times)}
    assert gaps == {step}


def test_interval_runs_both_passes_of_autumn_hour() -> None:
    runs = upcoming(CronSchedule("*/30 * * * *", CHICAGO), utc(2026, 11, 1, 5, 50), 5)

    local = [run.local.strftime("%H:%M %Z") for run in runs]
    assert local == ["01:00 CDT", "01:30 CDT", "01:00 CST", "01:30 CST", "02:00 CST"]


def test_interval_from_first_pass_finds_second() -> None:
    # 06:50 UTC is 01:50 CDT; the next quarter hour is 01:00 CST, 07:00 UTC.
    assert utc_times("*/15 * * * *", utc(2026, 11, 1, 6, 50), 2) == [
        utc(2026, 11, 1, 7, 0),
        utc(2026, 11, 1, 7, 15),
    ]


def test_hour_steps_are_wall_clock() -> None:
    # Every other hour is not an interval schedule: 02:00 does not exist on
    # the spring change and runs right after it, at 03:00 CDT.
    runs = upcoming(CronSchedule("0 */2 * * *", CHICAGO), utc(2026, 3, 8, 5, 30), 3)

    local = [run.local.strftime("%H:%M %Z") for run in runs]
    assert local == ["00:00 CST", "03:00 CDT", "04:00 CDT"]


def test_once_in_gap_runs_after_change() -> None:
    once = OnceSchedule(datetime(2026, 3, 8, 2, 30), CHICAGO)

    assert once.at().utc == utc(2026, 3, 8, 8, 0)
    assert once.next_after(utc(2026, 3, 8, 8, 0)) is None


def test_once_in_repeat_runs_first() -> None:
    once = OnceSchedule(datetime(2026, 11, 1, 1, 30), CHICAGO)

    assert once.at().utc == utc(2026, 11, 1, 6, 30)


def test_leap_day_waits_for_leap_year() -> None:
    assert utc_times("0 0 29 2 *", utc(2026, 1, 1, 0, 0), 2) == [
        utc(2028, 2, 29, 6, 0),
        utc(2032, 2, 29, 6, 0),
    ]


def test_day_fields_combine_with_or() -> None:
    # Both day fields restricted: cron runs on the 1st and on every Monday.
    times = utc_times("0 12 1 * mon", utc(2026, 6, 1, 0, 0), 3)

    assert [time.date().isoformat() for time in times] == [
        "2026-06-01",
        "2026-06-08",
        "2026-06-15",
    ]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("@daily", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("0 7 * * mon-fri", "0 7 * * mon-fri"),
        ("0 7 * JUL WED", "0 7 * JUL WED"),
        ("0   7 *  * 1-5", "0 7 * * 1-5"),
        ("0 0 * * 7", "0 0 * * 7"),
    ],
)
def test_standard_syntax_accepted(expression: str, expected: str) -> None:
    assert normalize_cron(expression) == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 0 30 2 *", "never fires: February has no day 30"),
        ("0 0 31 4,6,9,11 *", "never fires: April or June or September or November"),
        ("0 0 0 1 1 *", "six fields"),
        ("0 7 * * 1-5 2026", "six fields"),
        ("0 7 * *", "has 4 fields"),
        ("0 0 L * *", "'L' (last day)"),
        ("0 9 1W * *", "'W' (nearest weekday)"),
        ("0 0 * * 5#3", "'#' (nth weekday of the month)"),
        ("0 0 ? * 1", "'?' (no specific value)"),
        ("H * * * *", "'H' (hashed value)"),
        ("5-1 * * * *", "runs backwards"),
        ("*/0 * * * *", "a step of 0"),
        ("61 * * * *", "61 is out of range"),
        ("0 24 * * *", "24 is out of range"),
        ("x * * * *", "'x' is not a number"),
        ("0 0 */2 * 1", "cron implementations disagree"),
        ("@reboot", "@reboot is not supported"),
        ("@sometimes", "not a known shorthand"),
        ("", "is required"),
    ],
)
def test_unusable_expression_rejected(expression: str, reason: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        normalize_cron(expression)

    assert caught.value.field == "cron"
    assert reason in caught.value.message


def test_describe_in_words() -> None:
    assert describe_cron("0 7 * * 1-5") == "At 07:00, Monday through Friday"
    assert describe_cron("*/15 * * * *") == "Every 15 minutes"


def test_unknown_time_zone_suggests_name() -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_time_zone("America/Chicgo")

    assert caught.value.field == "time_zone"
    assert "did you mean America/Chicago?" in caught.value.message


def test_offset_is_not_a_time_zone() -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_time_zone("UTC+2")

    assert "is not an IANA time zone name" in caught.value.message
