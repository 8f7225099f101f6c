"""The schema versions this package ships: Alembic's script directory is the one list."""

from __future__ import annotations

import functools
import re
from importlib.resources import files
from typing import TYPE_CHECKING, Final

from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory


def alembic_config() -> Config:
    """Alembic configuration pointing at the migrations shipped in this package."""
    from alembic.config import Config  # Alembic loads only where migrations are needed

    config = Config()
    config.set_main_option("script_location",
                           str(files("decnet.ttp.store.sql") / "migrations"))
    return config


@functools.cache
def script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory  # as above: not on a worker's hot start

    return ScriptDirectory.from_config(alembic_config())


#: A migration file: `NNNN_name.py` holds revision `NNNN` (tested against Alembic's list).
_MIGRATION_FILE: Final = re.compile(r"(\d{4})_\w+\.py")


@functools.cache
def schema_revisions() -> tuple[str, ...]:
    """Alembic revisions of the shipped migrations, oldest first; the last is the head.

    Read from the migration files' names: checking a worker's schema must not import
    Alembic (it cost a worker's start 0.3 s and 11 MB).
    """
    versions = files("decnet.ttp.store.sql.migrations") / "versions"
    return tuple(sorted(found.group(1) for entry in versions.iterdir()
                        if (found := _MIGRATION_FILE.fullmatch(entry.name))))


def alembic_revisions() -> tuple[str, ...]:
    """The same list as Alembic walks it (for the test that keeps the two equal)."""
    return tuple(reversed([rev.revision for rev in script_directory().walk_revisions()]))


def schema_head() -> str:
    """The schema revision this version of decnet-ttp needs."""
    return schema_revisions()[-1]


def upgrade_hint(url: URL | str) -> str:
    """The command that creates or upgrades the schema of `url` (password hidden)."""
    shown = make_url(url).render_as_string(hide_password=True) if url else "URL"
    return f"decnet-ttp db upgrade --db {shown}"
