"""`get_rule_store()`: the store named by `DECNET_TTP_RULE_STORE_TYPE`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from decnet.ttp.constants import DEFAULT_DB_URL, ENV_DB_URL, ENV_RULE_STORE_TYPE
from decnet.ttp.errors import ConfigError
from decnet.ttp.store.base import RuleStore


def _filesystem() -> RuleStore:
    from decnet.ttp.store.impl.filesystem import FilesystemRuleStore

    return FilesystemRuleStore()


def _database() -> RuleStore:
    """`DECNET_TTP_DB_URL`, else the SQLite file the CLI uses (`DEFAULT_DB_URL`)."""
    from decnet.ttp.store.database import DatabaseRuleStore

    return DatabaseRuleStore(os.environ.get(ENV_DB_URL) or DEFAULT_DB_URL)


STORE_TYPES: Final[dict[str, Callable[[], RuleStore]]] = {
    "filesystem": _filesystem,
    "database": _database,
}


def get_rule_store(store_type: str | None = None) -> RuleStore:
    """A new, unstarted store of the configured type (default: filesystem)."""
    name = (store_type or os.environ.get(ENV_RULE_STORE_TYPE) or "filesystem").strip().lower()
    try:
        make = STORE_TYPES[name]
    except KeyError:
        known = ", ".join(sorted(STORE_TYPES))
        raise ConfigError(f"{ENV_RULE_STORE_TYPE}={name!r} is not a store type; known: {known}")\
            from None
    return make()
