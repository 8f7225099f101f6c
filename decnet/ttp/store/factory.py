"""Where stores are built: `get_rule_store()` (the store named by
`DECNET_TTP_RULE_STORE_TYPE`), `database_store()` and `filesystem_store()`. The CLI
and the swarm processes build their stores here.

The backends are imported when first built, not with this module: `decnet-ttp tag`
never loads SQLAlchemy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from decnet.ttp.constants import DEFAULT_DB_URL, ENV_DB_URL, ENV_RULE_STORE_TYPE
from decnet.ttp.errors import ConfigError
from decnet.ttp.store.base import RuleStore

if TYPE_CHECKING:
    from decnet.ttp.store.database import DatabaseRuleStore
    from decnet.ttp.store.impl.filesystem import FilesystemRuleStore


def filesystem_store(directory: str | os.PathLike[str] | None = None) -> FilesystemRuleStore:
    """The rules directory `directory`, else `DECNET_TTP_RULES_DIR`, else `./rules/ttp`."""
    from decnet.ttp.store.impl.filesystem import FilesystemRuleStore  # see the module doc

    return FilesystemRuleStore(Path(directory) if directory is not None else None)


def database_store(url: str | None = None) -> DatabaseRuleStore:
    """The database at `url`, else `DECNET_TTP_DB_URL`, else the SQLite file the CLI uses
    (`DEFAULT_DB_URL`)."""
    from decnet.ttp.store.database import DatabaseRuleStore  # see the module doc

    return DatabaseRuleStore(url or os.environ.get(ENV_DB_URL) or DEFAULT_DB_URL)


STORE_TYPES: Final[dict[str, Callable[[], RuleStore]]] = {
    "filesystem": filesystem_store,
    "database": database_store,
}


def configured_store_type(store_type: str | None = None) -> str:
    """`store_type`, else `DECNET_TTP_RULE_STORE_TYPE`, else "filesystem"; `ConfigError`
    when it names no store type."""
    name = (store_type or os.environ.get(ENV_RULE_STORE_TYPE) or "filesystem").strip().lower()
    if name not in STORE_TYPES:
        known = ", ".join(sorted(STORE_TYPES))
        raise ConfigError(f"{ENV_RULE_STORE_TYPE}={name!r} is not a store type; known: {known}")
    return name


def get_rule_store(store_type: str | None = None) -> RuleStore:
    """A new, unstarted store of the configured type (default: filesystem)."""
    return STORE_TYPES[configured_store_type(store_type)]()
