"""Schema migrations, run programmatically: the code path of `decnet-ttp db upgrade`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL

from decnet.ttp.store.sql.repository import RuleRepository
from decnet.ttp.store.sql.schema import alembic_config, schema_head

__all__ = ["alembic_config", "current", "downgrade", "head", "upgrade"]


def head() -> str:
    """The newest schema revision shipped (Alembic's head)."""
    return schema_head()


def _repo(target: RuleRepository | str | URL) -> tuple[RuleRepository, bool]:
    if isinstance(target, RuleRepository):
        return target, False
    return RuleRepository(target, check_schema=False), True


async def _migrate(target: RuleRepository | str | URL, step: Callable[[Config, str], None],
                   revision: str) -> str | None:
    repo, owned = _repo(target)
    config = alembic_config()

    def run(sync_conn: Any) -> None:
        config.attributes["connection"] = sync_conn
        step(config, revision)

    try:
        async with repo.engine.begin() as conn:
            await conn.run_sync(run)
        return await repo.schema_revision()
    finally:
        if owned:
            await repo.dispose()


async def upgrade(target: RuleRepository | str | URL, revision: str = "head") -> str | None:
    """Migrate the database to `revision` (default: the newest); the revision it is at."""
    return await _migrate(target, command.upgrade, revision)


async def downgrade(target: RuleRepository | str | URL, revision: str) -> str | None:
    """Migrate the database back to `revision`; the revision it is at."""
    return await _migrate(target, command.downgrade, revision)


async def current(target: RuleRepository | str | URL) -> str | None:
    """The revision the database is at; None when it has no schema."""
    repo, owned = _repo(target)
    try:
        return await repo.schema_revision()
    finally:
        if owned:
            await repo.dispose()
