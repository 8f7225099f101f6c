"""Tracing: OpenTelemetry spans when `DECNET_DEVELOPER_TRACING` is on, nothing otherwise.

The tracer is looked up at every call, so a test (or an application) can install a
tracer provider after import; when tracing is off the no-op tracer costs nothing.
"""

from __future__ import annotations

import os
from typing import Final

from opentelemetry import trace

from decnet.ttp.constants import ENV_TRACING

TRACER_NAME: Final = "decnet.ttp"
_NOOP: Final = trace.NoOpTracer()
_TRUTHY: Final = frozenset({"1", "true", "yes", "on"})


def tracing_enabled() -> bool:
    return os.environ.get(ENV_TRACING, "").strip().lower() in _TRUTHY


def get_tracer() -> trace.Tracer:
    """The package tracer when tracing is on, else a no-op tracer."""
    if tracing_enabled():
        return trace.get_tracer(TRACER_NAME)
    return _NOOP
