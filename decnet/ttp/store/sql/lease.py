"""The master lease (`ttp_master_lease`): who may write definitions, proven by a fence.

Each function is one synchronous operation over a `Connection`, run by the repository
(which gives it its error boundary). Heartbeats are counters, never clocks: a standby
master judges a holder stale by how long the counter has not moved on its own clock.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from decnet.ttp.errors import MasterLeaseLost
from decnet.ttp.store.sql import statements as sql
from decnet.ttp.store.sql.rows import Fence, LeaseInfo


def read(conn: Connection) -> LeaseInfo:
    row = conn.execute(sql.LEASE_READ).one()
    return LeaseInfo(row.holder, row.token, row.heartbeat, row.acquired_at, row.heartbeat_at)


def acquire(conn: Connection, holder: str, seen: LeaseInfo, now: datetime) -> Fence | None:
    """Take the lease if the row is still exactly as `seen`; the fence, or None."""
    with conn.begin():
        taken = conn.execute(sql.LEASE_ACQUIRE, {
            "b_token": seen.token, "b_heartbeat": seen.heartbeat, "holder": holder,
            "acquired_at": now, "heartbeat_at": now}).rowcount == 1
    return Fence(holder, seen.token + 1) if taken else None


def heartbeat(conn: Connection, fence: Fence, now: datetime) -> bool:
    """Count a heartbeat; False when `fence` no longer holds the lease."""
    with conn.begin():
        try:
            check_fence(conn, fence, now)
        except MasterLeaseLost:
            return False
        return True


def release(conn: Connection, fence: Fence) -> bool:
    with conn.begin():
        return conn.execute(sql.LEASE_RELEASE, {"b_holder": fence.holder,
                                                "b_token": fence.token}).rowcount == 1


def check_fence(conn: Connection, fence: Fence, now: datetime) -> None:
    """Inside a write: prove `fence` still holds the lease (and count a heartbeat)."""
    result = conn.execute(sql.LEASE_CHECK, {"b_holder": fence.holder, "b_token": fence.token,
                                            "heartbeat_at": now})
    if result.rowcount != 1:
        raise MasterLeaseLost(f"{fence.holder} no longer holds the master lease")
