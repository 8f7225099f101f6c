"""Fixtures of the swarm tests: a fresh database per test and a `Swarm` that always cleans up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.swarm.databases import DATABASES, database_params
from tests.swarm.harness import ProcessGroup
from tests.swarm.swarm import Swarm

#: Poll interval of the test workers: short, so faults heal quickly.
POLL_INTERVAL = 0.15


@pytest.fixture(params=database_params())
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def db_url(database: str, tmp_path: Path) -> AsyncIterator[str]:
    async with DATABASES[database](tmp_path) as url:
        yield url


@pytest.fixture
async def swarm(db_url: str, tmp_path: Path) -> AsyncIterator[Swarm]:
    group = ProcessGroup(tmp_path)
    fleet = Swarm(group, tmp_path, db_url, POLL_INTERVAL)
    try:
        yield fleet
    finally:
        await fleet.aclose()
