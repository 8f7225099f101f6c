"""Public home of the database store (`DatabaseRuleStore`, `sync_from_filesystem`,
`tail_db`) for code written against it; the code lives in `decnet.ttp.store.database`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from decnet.ttp.constants import TAIL_POLL_INTERVAL
from decnet.ttp.store.database import (
    DatabaseRuleStore,
    MasterProjection,
    MasterRole,
    Tail,
    TailStats,
)
from decnet.ttp.store.database.listen import notified_revision
from decnet.ttp.store.sql.repository import RuleRepository

if TYPE_CHECKING:
    from decnet.ttp.store.impl.filesystem import FilesystemRuleStore

__all__ = ["DatabaseRuleStore", "MasterProjection", "MasterRole", "RuleRepository", "Tail",
           "TailStats", "notified_revision", "sync_from_filesystem", "tail_db"]


async def tail_db(store: DatabaseRuleStore, poll_interval: float = TAIL_POLL_INTERVAL) -> None:
    """`store.tail_db(poll_interval)`: follow the database until cancelled."""
    await store.tail_db(poll_interval)


async def sync_from_filesystem(store: DatabaseRuleStore, fs_store: FilesystemRuleStore, *,
                               updated_by: str = "master") -> None:
    """`store.sync_from_filesystem(fs_store)`: the master's loop, until cancelled."""
    await store.sync_from_filesystem(fs_store, updated_by=updated_by)
