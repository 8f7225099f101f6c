"""Rule stores: the contract, the factory and the backends."""

from decnet.ttp.store.base import (
    DEFAULT_STATE,
    DEFINITION,
    DELETED,
    RESYNC,
    SCOPED,
    STATE,
    HistoryAction,
    HistoryEntry,
    RuleChange,
    RuleState,
    RuleStore,
    RuleWriter,
    Scope,
    ScopedState,
    StateName,
    Subscription,
    SyncStats,
)
from decnet.ttp.store.factory import get_rule_store

__all__ = [
    "DEFAULT_STATE",
    "DEFINITION",
    "DELETED",
    "RESYNC",
    "SCOPED",
    "STATE",
    "HistoryAction",
    "HistoryEntry",
    "RuleChange",
    "RuleState",
    "RuleStore",
    "RuleWriter",
    "Scope",
    "ScopedState",
    "StateName",
    "Subscription",
    "SyncStats",
    "get_rule_store",
]
