"""Reachability of the external services some tests need (NATS, PostgreSQL, MariaDB)."""

from __future__ import annotations

import os
import socket

import pytest


def require_service(name: str, host: str, port: int) -> None:
    """Skip the test unless `host:port` accepts a TCP connection within 1 s.

    With `CI=true` in the environment the test fails instead: a CI run must not
    pass by skipping what it was meant to exercise.
    """
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        message = f"{name} not reachable at {host}:{port}: {exc}"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
