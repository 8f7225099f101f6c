"""Fixtures of the database store's NATS tests."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import nats
import nats.js.errors
import pytest

from decnet.ttp.store.database.jetstream import NatsNames
from tests.services import require_service

NATS_URL = os.environ.get("DECNET_TTP_NATS_URL") or "nats://127.0.0.1:4222"


@pytest.fixture
async def names() -> AsyncIterator[NatsNames]:
    """Names of a deployment of its own on the shared NATS; its change stream deleted after."""
    parsed = urlparse(NATS_URL)
    require_service("NATS", parsed.hostname or "127.0.0.1", parsed.port or 4222)
    names = NatsNames(f"t{uuid.uuid4().hex[:12]}")
    yield names
    nc = await nats.connect(NATS_URL)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(names.stream)
    finally:
        await nc.close()
