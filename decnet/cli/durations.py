"""Operator input for TTLs: durations (`4h`, `30m`, `90s`, `1d`, `1h30m`) and ISO 8601 times."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Final

from decnet.cli.common import BadInput
from decnet.vocabulary import as_utc, utcnow

_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE: Final = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
#: Longest TTL an operator may set: past this, a permanent state is what was meant.
MAX_DURATION: Final = timedelta(days=366)
#: Shortest TTL: a state that expires before it is read back was a typo.
MIN_DURATION: Final = timedelta(seconds=1)


class InputError(BadInput):
    """A duration or time an operator typed that cannot be used; the message says why."""


def parse_duration(text: str) -> timedelta:
    """`4h`, `30m`, `90s`, `1d`, `2w`, `1h30m`, `1.5h` -> a positive timedelta."""
    compact = text.strip().lower().replace(" ", "")
    if not compact or not _WHOLE.fullmatch(compact):
        raise InputError(f"invalid duration {text!r}: use a number and a unit s, m, h, d or w "
                         "(e.g. 90s, 30m, 4h, 1d, 1h30m)")
    seconds = sum(float(value) * _UNIT_SECONDS[unit] for value, unit in _PART.findall(compact))
    if seconds < MIN_DURATION.total_seconds():
        raise InputError(f"invalid duration {text!r}: must be at least "
                         f"{MIN_DURATION.total_seconds():g} second")
    # compared before a timedelta is built: a huge number would overflow it
    if seconds > MAX_DURATION.total_seconds():
        raise InputError(f"duration {text!r} is longer than {MAX_DURATION.days} days; "
                         "set the state without a TTL instead")
    return timedelta(seconds=seconds)


def parse_moment(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time with an offset (`2026-12-01T00:00Z`, `…+02:00`), in the future."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"invalid time {text!r}: use ISO 8601 with an offset, "
                         "e.g. 2026-12-01T00:00Z or 2026-12-01T09:30+02:00") from None
    if moment.tzinfo is None:
        raise InputError(f"time {text!r} has no UTC offset: add Z (UTC) or one like +02:00")
    try:
        moment = as_utc(moment)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00 is past the last UTC datetime
        raise InputError(f"time {text!r} is out of range") from None
    now = now or utcnow()
    if moment <= now:
        raise InputError(f"time {text!r} is in the past")
    if moment - now < MIN_DURATION:
        raise InputError(f"time {text!r} is less than {MIN_DURATION.total_seconds():g} "
                         "second away")
    if moment - now > MAX_DURATION:
        raise InputError(f"time {text!r} is more than {MAX_DURATION.days} days away; "
                         "set the state without a TTL instead")
    return moment


def format_remaining(moment: datetime, *, now: datetime | None = None) -> str:
    """`in 3h 59m`, `in 42s`, `expired`."""
    seconds = int((moment - (now or utcnow())).total_seconds())
    if seconds <= 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours:
        parts.append(f"{hours}h")
    if minutes and not days:
        parts.append(f"{minutes}m")
    if not parts:
        parts.append(f"{secs}s")
    return "in " + " ".join(parts)
