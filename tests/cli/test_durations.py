"""Duration and time parsing of the operator commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from decnet.cli.durations import InputError, format_remaining, parse_duration, parse_moment

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", timedelta(seconds=90)),
    ("30m", timedelta(minutes=30)),
    ("4h", timedelta(hours=4)),
    ("1d", timedelta(days=1)),
    ("2w", timedelta(weeks=2)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("1.5h", timedelta(hours=1, minutes=30)),
    (" 4H ", timedelta(hours=4)),
    ("1d 2h", timedelta(days=1, hours=2)),
])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "4", "h", "4x", "-4h", "4h-", "0s", "0h0m", "4 hours",
                                  "1e3s", "367d", "PT4H", "0.0000001s", "0.5s", "0.999s"])
def test_bad_durations_say_why(text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_duration(text)
    assert repr(text.strip()) in str(caught.value) or repr(text) in str(caught.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-01T00:00Z", datetime(2026, 12, 1, tzinfo=UTC)),
    ("2026-12-01T00:00:00+00:00", datetime(2026, 12, 1, tzinfo=UTC)),
    ("2026-12-01T09:30+02:00", datetime(2026, 12, 1, 7, 30, tzinfo=UTC)),
])
def test_moments(text: str, expected: datetime) -> None:
    assert parse_moment(text, now=NOW) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("tomorrow", "invalid time"),
    ("2026-13-01T00:00Z", "invalid time"),
    ("2026-12-01T00:00", "no UTC offset"),
    ("2026-11-25T11:00Z", "in the past"),
    ("2026-11-25T12:00:00.5Z", "less than 1 second away"),
    ("2027-11-27T12:00Z", "more than 366 days away"),
    ("9999-12-31T00:00Z", "more than 366 days away"),
])
def test_bad_moments_say_why(text: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        parse_moment(text, now=NOW)


def test_the_shortest_and_longest_ttls_are_accepted() -> None:
    assert parse_duration("1s") == timedelta(seconds=1)
    assert parse_moment("2026-11-25T12:00:01Z", now=NOW) == NOW + timedelta(seconds=1)
    assert parse_moment("2027-11-26T12:00Z", now=NOW) == NOW + timedelta(days=366)


def test_remaining_time_is_readable() -> None:
    assert format_remaining(NOW + timedelta(hours=3, minutes=59, seconds=30), now=NOW) == \
        "in 3h 59m"
    assert format_remaining(NOW + timedelta(seconds=42), now=NOW) == "in 42s"
    assert format_remaining(NOW + timedelta(days=5, hours=5), now=NOW) == "in 5d 5h"
    assert format_remaining(NOW - timedelta(seconds=1), now=NOW) == "expired"
