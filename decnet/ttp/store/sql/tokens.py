"""The admin API's bearer tokens in `ttp_api_token`: created, found, revoked, listed.

Only a token's SHA-256 is stored; tokens are 256 random bits, so a plain digest is
enough (no password stretching needed) and a lookup by digest is one indexed read.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from decnet.ttp.errors import StoreError
from decnet.ttp.store.sql.models import TokenRow
from decnet.ttp.store.sql.repository import RuleRepository


class TokenExists(StoreError):
    """A token of that name exists already (revoked ones too: names are never reused)."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed: never the token itself."""

    name: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def is_valid(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _info(row: Any) -> TokenInfo:
    return TokenInfo(row.name, row.role, row.created_at, row.expires_at, row.revoked_at)


class TokenTable:
    """Token reads and writes on the database of `repo` (its error boundary)."""

    def __init__(self, repo: RuleRepository) -> None:
        self.repo = repo

    async def create(self, name: str, role: str, token: str,
                     expires_at: datetime | None) -> TokenInfo:
        now = self.repo.clock()

        def write(conn: Connection) -> None:
            with conn.begin():
                conn.execute(insert(TokenRow).values(
                    name=name, role=role, token_sha256=digest(token), created_at=now,
                    expires_at=expires_at, revoked_at=None))

        try:
            await self.repo.guarded("creating a token", write)
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise TokenExists(f"a token named {name!r} exists already") from None
            raise
        return TokenInfo(name, role, now, expires_at, None)

    async def revoke(self, name: str) -> bool:
        now = self.repo.clock()

        def write(conn: Connection) -> bool:
            with conn.begin():
                return bool(conn.execute(
                    update(TokenRow).where(TokenRow.name == name,
                                           TokenRow.revoked_at.is_(None))
                    .values(revoked_at=now)).rowcount)

        return await self.repo.guarded("revoking a token", write)

    async def list_tokens(self) -> list[TokenInfo]:
        def read(conn: Connection) -> list[TokenInfo]:
            return [_info(row) for row in conn.execute(
                select(TokenRow).order_by(TokenRow.name))]

        return await self.repo.guarded("listing the tokens", read)

    async def find(self, token: str) -> TokenInfo | None:
        """The valid token equal to `token` (compared in constant time), or None."""
        wanted = digest(token)

        def read(conn: Connection) -> tuple[TokenInfo, str] | None:
            row = conn.execute(select(TokenRow).where(TokenRow.token_sha256 == wanted)).first()
            return None if row is None else (_info(row), row.token_sha256)

        found = await self.repo.guarded("reading a token", read)
        if found is None or not hmac.compare_digest(found[1], wanted):
            return None
        info = found[0]
        return info if info.is_valid(self.repo.clock()) else None
