"""Run a child process with a wall clock shifted by N seconds (monotonic time untouched).

A `sitecustomize.py` written into a temp directory put first on the child's
PYTHONPATH replaces `time.time`, `time.time_ns` and `datetime.datetime` (now,
utcnow, today) before any other module is imported. Values stay real
`datetime` instances; `isinstance` against the replaced class still works.
Nothing in the package reads a setting for this: the child simply has a wrong
clock, as a host with a drifting clock would.
"""

from __future__ import annotations

from pathlib import Path

SITECUSTOMIZE = '''\
"""Test-only: this process's wall clock is {skew:+.3f} s off."""
import datetime as _datetime_module
import time as _time

_SKEW = {skew!r}
_SKEW_NS = int(_SKEW * 1_000_000_000)
_real_time, _real_time_ns = _time.time, _time.time_ns
_time.time = lambda: _real_time() + _SKEW
_time.time_ns = lambda: _real_time_ns() + _SKEW_NS

_Real = _datetime_module.datetime
_DELTA = _datetime_module.timedelta(seconds=_SKEW)


class _Meta(type):
    def __instancecheck__(cls, obj):
        return isinstance(obj, _Real)

    def __subclasscheck__(cls, sub):
        return issubclass(sub, _Real)


class datetime(_Real, metaclass=_Meta):
    @classmethod
    def now(cls, tz=None):
        return _Real.now(tz) + _DELTA

    @classmethod
    def utcnow(cls):
        return _Real.utcnow() + _DELTA

    @classmethod
    def today(cls):
        return _Real.today() + _DELTA


datetime.__module__ = "datetime"
_datetime_module.datetime = datetime
'''


def skewed_pythonpath(directory: Path, skew_seconds: float) -> str:
    """A directory holding the clock-shifting `sitecustomize.py`, for PYTHONPATH."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE.format(skew=skew_seconds))
    return str(directory)
