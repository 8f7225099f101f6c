"""Column types that behave the same on SQLite, PostgreSQL and MariaDB/MySQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes, stored naive in UTC with microseconds on every backend.

    MariaDB/MySQL `DATETIME` keeps whole seconds unless declared `DATETIME(6)`;
    PostgreSQL `timestamp` and SQLite's text form keep microseconds already.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite via a raw query
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


def long_text() -> TypeEngine[str]:
    """TEXT, LONGTEXT on MariaDB/MySQL (TEXT there stops at 64 KiB)."""
    return Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def identifier(length: int) -> TypeEngine[str]:
    """VARCHAR compared byte for byte on every database.

    MariaDB/MySQL compare strings with the server's default collation, which is
    case-insensitive (`R0001` would be the same key as `r0001`): there the column is
    declared `utf8mb4` with the binary `utf8mb4_bin` collation. (Not `ascii_bin`: a
    non-ASCII value compared with an ASCII column is an error there, not a miss.)
    PostgreSQL and SQLite compare text exactly already.
    """
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb")
