"""Rule stores: the contract, the factory and the backends."""

from decnet.ttp.store.base import (
    DEFAULT_STATE,
    DEFINITION,
    DELETED,
    RESYNC,
    STATE,
    RuleChange,
    RuleState,
    RuleStore,
    RuleWriter,
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
    "STATE",
    "RuleChange",
    "RuleState",
    "RuleStore",
    "RuleWriter",
    "StateName",
    "Subscription",
    "SyncStats",
    "get_rule_store",
]
