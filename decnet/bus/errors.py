"""Errors raised by the message buses."""

from __future__ import annotations


class BusError(Exception):
    """Base of every error a bus raises on purpose."""


class BusClosedError(BusError):
    """The bus was closed: it takes no more publishes or subscriptions."""


class BusUnavailableError(BusError):
    """The bus cannot take the message now (e.g. the broker is unreachable)."""


class InvalidTopicError(BusError, ValueError):
    """A topic or subscription pattern that is malformed or could inject wildcards."""
