"""The database store: `store` (the view, compile cache and state), `tail` (a worker
follows the database), `master` (a master projects a rules directory into it)."""

from decnet.ttp.store.database.master import MasterProjection, MasterRole
from decnet.ttp.store.database.store import DatabaseRuleStore
from decnet.ttp.store.database.tail import Tail, TailStats

__all__ = ["DatabaseRuleStore", "MasterProjection", "MasterRole", "Tail", "TailStats"]
