"""Database URLs: the async drivers this project ships, and nothing else."""

from __future__ import annotations

import pytest

from decnet.ttp.errors import ConfigError
from decnet.ttp.store.sql.engines import async_url


@pytest.mark.parametrize(("url", "drivername"), [
    ("postgresql://u@db/x", "postgresql+asyncpg"),
    ("postgres://u@db/x", "postgresql+asyncpg"),
    ("postgresql+asyncpg://u@db/x", "postgresql+asyncpg"),
    ("mysql://root@db/x", "mysql+asyncmy"),
    ("mariadb://root@db/x", "mariadb+asyncmy"),
    ("mysql+asyncmy://root@db/x", "mysql+asyncmy"),
    ("sqlite:///rules.db", "sqlite+aiosqlite"),
    ("sqlite+aiosqlite:///rules.db", "sqlite+aiosqlite"),
])
def test_plain_urls_get_the_shipped_async_driver(url: str, drivername: str) -> None:
    mapped = async_url(url)
    assert mapped.drivername == drivername
    assert mapped.database == url.rsplit("/", 1)[1]


@pytest.mark.parametrize("url", [
    "postgresql+psycopg2://db/x", "postgresql+psycopg://db/x", "postgresql+pg8000://db/x",
    "mysql+pymysql://db/x", "mysql+mysqldb://db/x", "mariadb+mariadbconnector://db/x",
    "sqlite+pysqlite:///x.db", "oracle://db/x", "not a url",
])
def test_any_other_driver_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        async_url(url)
