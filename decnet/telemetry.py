"""Public home of tracing (`get_tracer()`); the code lives in `decnet.ttp.telemetry`."""

from decnet.ttp.telemetry import TRACER_NAME, get_tracer, refresh, tracing_enabled

__all__ = ["TRACER_NAME", "get_tracer", "refresh", "tracing_enabled"]
