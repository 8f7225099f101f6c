"""`FilesystemRuleStore`: rules from a directory of YAML files, hot-reloaded with inotify."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from decnet.bus.base import Bus
from decnet.ttp.constants import (
    DEFAULT_RULES_DIR,
    DELETE_GRACE_SECONDS,
    ENV_RULES_DIR,
    RULE_FILE_SUFFIXES,
)
from decnet.ttp.errors import RuleError, RuleProblem, RuleSetError, UnsupportedPlatformError
from decnet.ttp.printable import printable
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.compiler import compile_rule, rule_id_of_path
from decnet.ttp.rules.loader import is_rule_file_name, read_rule_bytes
from decnet.ttp.store.backend import BaseRuleStore
from decnet.ttp.store.history import MemoryHistory, check_scoped_room
from decnet.vocabulary import DEFAULT_STATE, Audit, HistoryEntry, RuleState, Scope, ScopedState

if TYPE_CHECKING:
    from decnet.ttp.store.impl.watcher import DirectoryWatcher, WatchEvent

log = logging.getLogger(__name__)


def ensure_linux(platform: str = sys.platform) -> None:
    if not platform.startswith("linux"):
        raise UnsupportedPlatformError(
            f"FilesystemRuleStore needs Linux inotify and this is {platform}; "
            "use the database store instead (DECNET_TTP_RULE_STORE_TYPE=database)"
        )


class FilesystemRuleStore(BaseRuleStore):
    """Rules are `<rule_id>.yaml` files in one directory; state lives in this process.

    A malformed edit is reported (see `problems`) and the last good version of that
    rule stays live. Files are compiled one at a time by a single watcher task.
    """

    def __init__(
        self, directory: str | os.PathLike[str] | None = None, *, bus: Bus | None = None
    ) -> None:
        ensure_linux()
        super().__init__(bus=bus)
        self.directory = Path(directory or os.environ.get(ENV_RULES_DIR) or DEFAULT_RULES_DIR)
        self._dir_str = str(self.directory)
        self._rules: dict[str, CompiledRule] = {}
        self._file_of: dict[str, str] = {}
        self._digests: dict[str, bytes] = {}
        self._rejected_digests: dict[str, bytes] = {}
        self._states: dict[str, RuleState] = {}
        #: rule_id -> scope key -> its scoped state.
        self._scoped: dict[str, dict[str, ScopedState]] = {}
        self._history = MemoryHistory()
        self.problems: dict[str, tuple[RuleError, ...]] = {}
        self.reloads_applied = 0
        self.reloads_rejected = 0
        self._loaded = False
        self._watch_task: asyncio.Task[None] | None = None
        self._watching = asyncio.Event()

    # lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        if self._watch_task is not None:
            return
        from decnet.ttp.store.impl.watcher import DirectoryWatcher  # inotify: Linux, at start

        watcher = DirectoryWatcher(self.directory, is_rule_file_name)
        reason = watcher.open()
        if reason is not None:
            raise RuleSetError([RuleError(RuleProblem(str(self.directory), reason))])
        if self._loaded:
            self._rescan()  # catch edits made between an earlier load and the watch
        else:
            self._ensure_loaded()
        self._watch_task = asyncio.get_running_loop().create_task(self._watch(watcher))
        self._watching.set()

    async def stop(self) -> None:
        task, self._watch_task = self._watch_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.close_shared()

    # the contract ---------------------------------------------------------

    async def load_compiled(self) -> list[CompiledRule]:
        self._ensure_loaded()
        return [rule.with_state(self._effective(rule_id)).with_scoped(self._live_scoped(rule_id))
                for rule_id, rule in sorted(self._rules.items())]

    async def _read_state(self, rule_id: str) -> RuleState:
        return self._states.get(rule_id, DEFAULT_STATE)

    async def _write_state(self, rule_id: str, state: RuleState, audit: Audit) -> None:
        old = self._states.get(rule_id)
        if state.is_default:
            self._states.pop(rule_id, None)
        else:
            self._states[rule_id] = state
        self._history.record(rule_id, None, old, None if state.is_default else state, audit,
                             self.clock())

    async def _revert_if_expired(self, rule_id: str, expires_at: datetime,
                                 audit: Audit) -> bool:
        current = self._states.get(rule_id)
        if current is None or current.expires_at != expires_at:
            return False
        del self._states[rule_id]
        self._history.record(rule_id, None, current, None, audit, self.clock())
        return True

    async def _read_scoped(self, rule_id: str) -> dict[str, ScopedState]:
        return dict(self._scoped.get(rule_id, {}))

    async def _write_scoped(self, rule_id: str, scope: Scope, state: RuleState,
                            audit: Audit) -> tuple[ScopedState, ...] | None:
        states = self._scoped.setdefault(rule_id, {})
        old = states.get(scope.key)
        if state.is_default:
            if old is None:
                return None
            del states[scope.key]
        else:
            check_scoped_room(states, scope)
            states[scope.key] = ScopedState(scope, state)
        self._history.record(rule_id, scope.key, None if old is None else old.state,
                             None if state.is_default else state, audit, self.clock())
        return self._announce_scoped(rule_id)

    async def _revert_scoped_if_expired(self, rule_id: str, scope_key: str,
                                        expires_at: datetime,
                                        audit: Audit) -> tuple[ScopedState, ...] | None:
        states = self._scoped.get(rule_id, {})
        current = states.get(scope_key)
        if current is None or current.state.expires_at != expires_at:
            return None
        del states[scope_key]
        self._history.record(rule_id, scope_key, current.state, None, audit, self.clock())
        return self._announce_scoped(rule_id)

    def _announce_scoped(self, rule_id: str) -> tuple[ScopedState, ...]:
        scoped = self._live_scoped(rule_id)
        if not self._scoped.get(rule_id):
            self._scoped.pop(rule_id, None)
        return scoped

    def _live_scoped(self, rule_id: str) -> tuple[ScopedState, ...]:
        now = self.clock()
        return tuple(item for _key, item in sorted(self._scoped.get(rule_id, {}).items())
                     if not item.state.is_expired(now))

    async def list_scoped_states(self) -> dict[str, tuple[ScopedState, ...]]:
        found = {rule_id: self._live_scoped(rule_id) for rule_id in sorted(self._scoped)}
        return {rule_id: items for rule_id, items in found.items() if items}

    async def history(self, rule_id: str | None = None, *, since: datetime | None = None,
                      limit: int | None = None) -> list[HistoryEntry]:
        return self._history.select(rule_id, since, limit, self.clock())

    async def list_states(self) -> dict[str, RuleState]:
        return {rule_id: state for rule_id, state in sorted(self._states.items())
                if not state.is_expired()}

    def _effective(self, rule_id: str) -> RuleState:
        return self._states.get(rule_id, DEFAULT_STATE).effective()

    # loading --------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            if not self.directory.is_dir():
                raise RuleSetError([RuleError(RuleProblem(
                    str(self.directory), "rules directory does not exist"))])
            self._rescan()
            self._loaded = True

    def _rescan(self) -> None:
        """Bring the in-memory view in line with the directory (start, queue overflow)."""
        names = [n for n in os.listdir(self.directory) if is_rule_file_name(n)]
        stems = {rule_id_of_path(n) for n in names}
        stems.update(self._file_of)
        stems.update(rule_id_of_path(n) for n in self.problems)
        for stem in sorted(stems):
            self._sync_stem(stem)

    def _path(self, name: str) -> str:
        # string joins, not pathlib: pathlib interns every name it sees
        return os.path.join(self._dir_str, name)

    def _files_of(self, stem: str) -> list[str]:
        return [stem + suffix for suffix in RULE_FILE_SUFFIXES
                if os.path.lexists(self._path(stem + suffix))]

    def _sync_stem(self, stem: str) -> None:
        """Decide what rule `stem` is from the files that claim it now.

        The decision is made per rule id, whatever the order of events: no file means
        deleted, two files (`.yaml` and `.yml`) mean a conflict (the last good version
        stays live), one file is compiled.
        """
        files = self._files_of(stem)
        for name in (stem + suffix for suffix in RULE_FILE_SUFFIXES):
            if name not in files:
                self._digests.pop(name, None)
                self._rejected_digests.pop(name, None)
                self.problems.pop(name, None)
        if not files:
            if self._file_of.pop(stem, None) is not None:
                del self._rules[stem]
                if self._loaded:
                    self.rule_deleted(stem)
            return
        if len(files) > 1:
            if not all(n in self.problems for n in files):
                self._reject_conflict(files)
            return
        self._load(files[0])

    def _load(self, name: str) -> None:
        path = self._path(name)
        rule_id = rule_id_of_path(name)
        try:
            raw = read_rule_bytes(path)
        except FileNotFoundError:
            self._sync_stem(rule_id)
            return
        except OSError as exc:
            self._reject(name, [RuleError(RuleProblem(path, f"cannot read: {exc}"))])
            return
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        owned = self._file_of.get(rule_id) == name
        if owned and self._digests.get(name) == digest:
            self.problems.pop(name, None)
            return
        if self._rejected_digests.get(name) == digest and name in self.problems:
            return
        try:
            rule = compile_rule(raw, source=path, expected_rule_id=rule_id)
        except RuleSetError as exc:
            self._reject(name, list(exc.errors))
            self._rejected_digests[name] = digest
            return
        self._rejected_digests.pop(name, None)
        for warning in rule.warnings:
            log.warning("%s: %s", printable(path), warning)
        self._rules[rule_id] = rule
        self._file_of[rule_id] = name
        self._digests[name] = digest
        self.problems.pop(name, None)
        self.reloads_applied += 1
        if self._loaded:
            self.definition_changed(rule.with_state(self._effective(rule_id))
                                    .with_scoped(self._live_scoped(rule_id)))

    def _reject(self, name: str, errors: list[RuleError]) -> None:
        self.reloads_rejected += 1
        self.problems[name] = tuple(errors)
        kept = " (last good version kept)" if rule_id_of_path(name) in self._rules else ""
        for error in errors:
            log.error("rule rejected%s: %s", kept, error)

    def _reject_conflict(self, names: list[str]) -> None:
        rule_id = rule_id_of_path(names[0])
        paths = " and ".join(self._path(n) for n in names)
        error = RuleError(RuleProblem(self._path(names[-1]),
                                      f"rule {rule_id} is defined by two files: {paths}",
                                      "rule_id", rule_id=rule_id))
        self._reject(names[-1], [error])
        for name in names[:-1]:
            self.problems[name] = (error,)

    # watching -------------------------------------------------------------

    async def _watch(self, watcher: DirectoryWatcher) -> None:
        from decnet.ttp.store.impl.watcher import WatchKind  # as in `start`

        loop = asyncio.get_running_loop()
        pending_removals: dict[str, float] = {}
        next_event: asyncio.Task[WatchEvent] | None = None
        try:
            while True:
                timeout = None
                if pending_removals:
                    timeout = max(min(pending_removals.values()) - loop.time(), 0.0)
                if next_event is None:
                    next_event = loop.create_task(watcher.get())
                done, _ = await asyncio.wait({next_event}, timeout=timeout)
                if not done:
                    now = loop.time()
                    for name, due in list(pending_removals.items()):
                        if due <= now:
                            del pending_removals[name]
                            self._guarded(self._sync_stem, rule_id_of_path(name))
                    continue
                event, next_event = next_event.result(), None
                if event.kind is WatchKind.WRITTEN and event.name is not None:
                    pending_removals.pop(event.name, None)
                    self._guarded(self._sync_stem, rule_id_of_path(event.name))
                elif event.kind is WatchKind.REMOVED and event.name is not None:
                    pending_removals[event.name] = loop.time() + DELETE_GRACE_SECONDS
                elif event.kind is WatchKind.OVERFLOW:
                    log.warning("inotify queue overflowed; rescanning %s", self.directory)
                    pending_removals.clear()
                    self._guarded(self._rescan)
                else:
                    log.error("stopped watching %s: %s (rules stay as last loaded)",
                              self.directory, event.reason)
                    return
        finally:
            if next_event is not None:
                next_event.cancel()
            watcher.close()

    def _guarded(self, action: Callable[..., None], *args: str) -> None:
        try:
            action(*args)
        except Exception:
            log.exception("handling a change in %s failed; watcher continues", self.directory)
