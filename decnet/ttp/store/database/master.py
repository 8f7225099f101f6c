"""`MasterProjection`: the master keeps `ttp_rule` equal to a rules directory.

Only the holder of the master lease (`ttp_master_lease`) writes; a second master
started by mistake stands by until the first stops or goes silent. Every write of the
holder is fenced by its lease token, so one that lost the lease has its writes refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Literal

from decnet.ttp.constants import MASTER_LEASE_TTL, MASTER_RETRY_INITIAL
from decnet.ttp.errors import MasterLeaseLost, StoreError
from decnet.ttp.loops import Backoff, Outage, cancel_and_wait
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.compiler import rule_id_of_path
from decnet.ttp.rules.stored_form import compiler_id
from decnet.ttp.store.sql.rows import Fence, LeaseInfo, StoredContent
from decnet.vocabulary import DEFINITION, DELETED, RESYNC, RuleChange

if TYPE_CHECKING:
    from decnet.ttp.store.database.store import DatabaseRuleStore
    from decnet.ttp.store.impl.filesystem import FilesystemRuleStore

log = logging.getLogger(__name__)

MasterRole = Literal["idle", "standby", "active"]

#: What a database that went away (or refused a statement) raises through the repository.
_DB_FAILURES = (StoreError, OSError, TimeoutError)


class MasterProjection:
    """Projects `fs_store`'s directory onto `store`'s database while holding the lease.

    `on_role(role)` is called whenever `role` changes ("standby", "active", "idle");
    `on_reconciled(written, deleted)` after each whole-directory reconcile. `lease_ttl`
    is how long a holder may miss heartbeats before another master takes over;
    `monotonic` is the clock those seconds are measured on.
    """

    def __init__(self, store: DatabaseRuleStore, fs_store: FilesystemRuleStore, *,
                 updated_by: str = "master", lease_ttl: float = MASTER_LEASE_TTL,
                 retry_initial: float = MASTER_RETRY_INITIAL,
                 on_role: Callable[[MasterRole], None] | None = None,
                 on_reconciled: Callable[[int, int], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.repo = store.repo
        self.fs_store = fs_store
        self.updated_by = updated_by
        self.lease_ttl = lease_ttl
        self.retry_initial = min(retry_initial, lease_ttl / 4)
        self.on_role = on_role
        self.on_reconciled = on_reconciled
        self.monotonic = monotonic
        self.role: MasterRole = "idle"
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._outage = Outage(log, "the master's rule database")
        self._backoff = Backoff(self.retry_initial, lease_ttl / 4)

    async def run(self) -> None:
        """Keep `ttp_rule` equal to the directory, until cancelled.

        Once holding the lease: the whole directory is reconciled (new, changed and
        deleted rules; a file that exists but does not compile keeps its row), then
        each definition change and deletion of `fs_store` is projected. State changes of
        the filesystem store are not. A database failure never ends this loop: the
        master stands by, retries with a backoff capped at `lease_ttl / 4` (the outage
        logged once), then takes the lease again and reconciles the whole directory, so
        edits made while the database was away land.
        """
        try:
            while True:
                fence = await self._acquire_lease()
                failure: BaseException | None = None
                try:
                    await self._hold(fence)
                except MasterLeaseLost as exc:
                    log.error("master lease lost (%s); standing by", exc)
                    self._set_role("idle")
                except _DB_FAILURES as exc:
                    failure = exc
                    self._set_role("standby")
                finally:
                    try:
                        await self.repo.release_lease(fence)
                    except StoreError as exc:
                        log.debug("releasing the master lease failed: %s", exc)
                if failure is not None:
                    self._outage.failed(failure, "standing by; the whole directory is "
                                                 "reconciled once it is back")
                    await asyncio.sleep(self._backoff.failed())
        finally:
            self._set_role("idle")

    def _set_role(self, role: MasterRole) -> None:
        if role == self.role:
            return
        self.role = role
        if self.on_role is not None:
            try:
                self.on_role(role)
            except Exception:
                log.exception("on_role callback failed")

    async def _acquire_lease(self) -> Fence:
        announced: str | None = None
        seen: LeaseInfo | None = None
        seen_since = self.monotonic()
        ttl = self.lease_ttl
        while True:
            try:
                lease = await self.repo.read_lease()
                stale = False
                if lease.holder is not None:
                    if seen is None or (lease.holder, lease.token, lease.heartbeat) != \
                            (seen.holder, seen.token, seen.heartbeat):
                        seen, seen_since = lease, self.monotonic()
                    stale = self.monotonic() - seen_since >= ttl or \
                        holder_is_dead(lease.holder)
                if lease.holder is None or lease.holder == self.holder or stale:
                    fence = await self.repo.acquire_lease(self.holder, lease)
                    if fence is not None:
                        if lease.holder is not None and lease.holder != self.holder:
                            log.warning("took over the master lease from %s (no heartbeat "
                                        "for %.0f s)", lease.holder,
                                        self.monotonic() - seen_since)
                        log.info("master lease acquired by %s", self.holder)
                        self._set_role("active")
                        return fence
                    continue
                self._outage.recovered()  # reachable: standing by behind another master now
                self._backoff.reset()
                if announced != lease.holder:
                    announced = lease.holder
                    self._set_role("standby")
                    since = lease.acquired_at.isoformat(timespec="seconds") \
                        if lease.acquired_at else "?"
                    log.warning("another master holds the lease: %s (since %s); standing by "
                                "until it stops or misses heartbeats for %.0f s",
                                lease.holder, since, ttl)
            except StoreError as exc:
                self._set_role("standby")
                self._outage.failed(exc, "standing by")
                await asyncio.sleep(self._backoff.failed())
                continue
            await asyncio.sleep(ttl / 4)

    async def _hold(self, fence: Fence) -> None:
        """While holding the lease: reconcile, then project every change."""
        loop = asyncio.get_running_loop()
        lost = asyncio.Event()
        heartbeat = loop.create_task(self._heartbeat(fence, lost), name="decnet-ttp-lease")
        changes = self.fs_store.subscribe_changes()
        next_change: asyncio.Task[RuleChange] | None = None
        lost_wait: asyncio.Task[bool] | None = None
        try:
            await self.reconcile(fence=fence)
            if self._outage.recovered("; the rules directory is reconciled"):
                self._backoff.reset()
            lost_wait = loop.create_task(lost.wait())
            while True:
                next_change = loop.create_task(_next(changes))
                await asyncio.wait({next_change, lost_wait},
                                   return_when=asyncio.FIRST_COMPLETED)
                if lost.is_set():
                    raise MasterLeaseLost(f"{fence.holder} missed its heartbeats")
                change, next_change = next_change.result(), None
                await self._project(change, fence)
        finally:
            await cancel_and_wait(next_change, lost_wait, heartbeat, logger=log)
            await changes.aclose()

    async def _heartbeat(self, fence: Fence, lost: asyncio.Event) -> None:
        ttl = self.lease_ttl
        last_ok = self.monotonic()
        outage = Outage(log, "the master lease heartbeat")
        while True:
            await asyncio.sleep(ttl / 4)
            try:
                if not await self.repo.heartbeat_lease(fence):
                    log.error("master lease of %s was taken over", fence.holder)
                    lost.set()
                    return
                last_ok = self.monotonic()
                outage.recovered()
            except StoreError as exc:
                outage.failed(exc, f"the lease is given up after {ttl:.0f} s without one")
                if self.monotonic() - last_ok >= ttl:
                    lost.set()
                    return

    async def _project(self, change: RuleChange, fence: Fence) -> None:
        try:
            if change.change_kind is DEFINITION and isinstance(change.new_value, CompiledRule):
                rule = change.new_value
                await self.store.write_definition(rule, source_path=file_name(rule),
                                                  updated_by=self.updated_by, fence=fence)
            elif change.change_kind is DELETED:
                await self.store.remove_definition(change.rule_id, fence=fence)
            elif change.change_kind is RESYNC:
                await self.reconcile(fence=fence)
        except _DB_FAILURES:
            raise  # the master stands by, then reconciles in full (`run`)
        except Exception:
            log.exception("projecting %s of %s onto the database failed; reconciling",
                          change.change_kind, change.rule_id)
            await self.reconcile(fence=fence)

    async def reconcile(self, *, fence: Fence | None = None) -> tuple[int, int]:
        """Make `ttp_rule` equal the directory once: (rules written, rules deleted).

        Unchanged files cause no write. A rule whose file exists but does not compile
        (listed in `fs_store.problems`) keeps its row, whatever its last good version.
        """
        fs_store = self.fs_store
        wanted = {rule.rule_id: rule for rule in await fs_store.load_compiled()}
        broken = {rule_id_of_path(name) for name in fs_store.problems}
        stored = await self.repo.rule_contents()
        written = deleted = 0
        for rule_id, rule in sorted(wanted.items()):
            if stored.get(rule_id) == StoredContent(rule.rule_version, rule.source_yaml,
                                                    compiler_id()):
                continue  # unchanged, with a stored form from this compiler
            if await self.store.write_definition(rule, source_path=file_name(rule),
                                                 updated_by=self.updated_by, fence=fence):
                written += 1
        for rule_id in sorted(set(stored) - set(wanted)):
            if rule_id in broken:
                log.warning("rule %s: its file does not compile; the stored version stays",
                            rule_id)
                continue
            if await self.store.remove_definition(rule_id, fence=fence):
                deleted += 1
        log.info("reconciled %d rule file(s) with the database: %d written, %d deleted",
                 len(wanted), written, deleted)
        if self.on_reconciled is not None:
            try:
                self.on_reconciled(written, deleted)
            except Exception:
                log.exception("on_reconciled callback failed")
        return written, deleted


async def _next(changes: AsyncIterator[RuleChange]) -> RuleChange:
    return await anext(changes)


def file_name(rule: CompiledRule) -> str:
    """The rule's file name (not the master's path: the row is read on other hosts)."""
    return os.path.basename(rule.source_path) if rule.source_path else f"{rule.rule_id}.yaml"


def holder_is_dead(holder: str) -> bool:
    """A holder on this host whose process is gone (a master killed and restarted)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
