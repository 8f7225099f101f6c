"""Tracing: OpenTelemetry spans when `DECNET_DEVELOPER_TRACING` is on, nothing otherwise.

The tracer is looked up at every call, so a test (or an application) can install a
tracer provider after import. The switch is read from the environment once (the
engine asks on every event); `refresh()` reads it again after a change.
"""

from __future__ import annotations

import os
from typing import Final

from opentelemetry import trace

from decnet.ttp.constants import ENV_TRACING

TRACER_NAME: Final = "decnet.ttp"
_NOOP: Final = trace.NoOpTracer()
_TRUTHY: Final = frozenset({"1", "true", "yes", "on"})


def _read_switch() -> bool:
    return os.environ.get(ENV_TRACING, "").strip().lower() in _TRUTHY


_enabled = _read_switch()


def refresh() -> bool:
    """Re-read `DECNET_DEVELOPER_TRACING`; returns whether tracing is now on."""
    global _enabled
    _enabled = _read_switch()
    return _enabled


def tracing_enabled() -> bool:
    return _enabled


def get_tracer() -> trace.Tracer:
    """The package tracer when tracing is on, else a no-op tracer."""
    if tracing_enabled():
        return trace.get_tracer(TRACER_NAME)
    return _NOOP
