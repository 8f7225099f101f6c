"""Correlation windows as rules write them: `90s`, `5m`, `1h`, `1d`, or plain seconds."""

from __future__ import annotations

import math
import re
from typing import Any, Final

from decnet.ttp.constants import CORRELATION_MAX_TIMESPAN

_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TIMESPAN: Final = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)\s*([smhd])")


def parse_timespan(value: Any) -> float:
    """Seconds of a window: a positive number, or a number with a unit s, m, h or d.

    Raises `ValueError` naming the accepted forms (pydantic reports it with the field).
    """
    if isinstance(value, bool):
        raise ValueError("timespan must be a duration such as 90s, 5m, 1h or 1d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (found := _TIMESPAN.fullmatch(value.strip().lower())):
        seconds = float(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    else:
        raise ValueError("timespan must be a duration such as 90s, 5m, 1h or 1d")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("timespan must be longer than zero")
    if seconds > CORRELATION_MAX_TIMESPAN:
        raise ValueError(f"timespan is longer than {CORRELATION_MAX_TIMESPAN / 86400:g} days")
    return seconds
