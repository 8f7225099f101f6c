"""`BaseRuleStore`: the behaviour every backend shares, written once.

Backends supply storage (`_read_state`, `_write_state`, `_revert_if_expired`);
this class supplies stamping, tracing, expiry timers and change announcement.
"""

from __future__ import annotations

import socket
from abc import abstractmethod
from datetime import datetime

from decnet.bus.base import Bus
from decnet.ttp.constants import EXPIRY_RETRY_INITIAL, EXPIRY_RETRY_MAX
from decnet.ttp.errors import InvalidRuleId
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.store.announcer import ChangeAnnouncer
from decnet.ttp.store.base import RuleStore
from decnet.ttp.store.expiry import ExpiryScheduler
from decnet.ttp.store.fanout import Subscription
from decnet.ttp.telemetry import get_tracer
from decnet.vocabulary import (
    DEFAULT_STATE,
    DEFINITION,
    DELETED,
    SCOPED,
    STATE,
    Audit,
    Clock,
    HistoryAction,
    RuleChange,
    RuleState,
    Scope,
    ScopedState,
    utcnow,
    validate_rule_id,
)


def default_via() -> str:
    """The `via` of a change made in this process: the host name."""
    return socket.gethostname() or "localhost"


def scope_timer_key(rule_id: str, scope_key: str) -> str:
    return f"{rule_id}\n{scope_key}"


class BaseRuleStore(RuleStore):
    """A backend: `bus` receives every change when given; `clock` stamps `set_at` and
    decides expiry; a failed expiry revert is retried after `expiry_retry` = (first,
    longest) seconds."""

    def __init__(self, *, bus: Bus | None = None, clock: Clock = utcnow,
                 expiry_retry: tuple[float, float] = (EXPIRY_RETRY_INITIAL,
                                                      EXPIRY_RETRY_MAX)) -> None:
        self.clock = clock
        self._announcer = ChangeAnnouncer(bus)
        self._expiry = ExpiryScheduler(self._expire, clock=clock,
                                       retry_initial=expiry_retry[0],
                                       retry_max=expiry_retry[1])
        self._scoped_expiry = ExpiryScheduler(self._expire_scoped, clock=clock,
                                              retry_initial=expiry_retry[0],
                                              retry_max=expiry_retry[1])
        #: Recorded as `via` in the history when a write names none.
        self.via = default_via()

    async def with_source(self, rule: CompiledRule) -> CompiledRule:
        """`rule` with its YAML text (`source_yaml`), for showing it. This store keeps
        the text already; the database store reads it from the row."""
        return rule

    # storage, per backend -------------------------------------------------

    @abstractmethod
    async def _read_state(self, rule_id: str) -> RuleState:
        """The stored state of `rule_id`, expired or not; default when none."""

    @abstractmethod
    async def _write_state(self, rule_id: str, state: RuleState,
                           audit: Audit) -> bool | None:
        """Persist `state` (the default state removes it); raise on failure.

        Return False when nothing is to be announced here: nothing changed (a clear of
        a state that was not set), or the change was announced already (a database
        tail saw the committed row first). Anything else announces.
        """

    async def _has_state(self, rule_id: str) -> bool:
        """Whether `rule_id` has a stored state (expired or not).

        `set_state` asks before clearing: clearing a state that is not set writes and
        announces nothing. A backend whose write answers that atomically (and returns
        False from `_write_state`) overrides this to return True.
        """
        return await self._read_state(rule_id) != DEFAULT_STATE

    @abstractmethod
    async def _revert_if_expired(self, rule_id: str, expires_at: datetime,
                                 audit: Audit) -> bool:
        """Remove the state of `rule_id` if it still expires at `expires_at`."""

    @abstractmethod
    async def _read_scoped(self, rule_id: str) -> dict[str, ScopedState]:
        """The stored scoped states of `rule_id` by scope key, expired or not."""

    @abstractmethod
    async def _write_scoped(self, rule_id: str, scope: Scope, state: RuleState,
                            audit: Audit) -> tuple[ScopedState, ...] | None:
        """Persist (the default state removes) one scoped state and record `audit`; the
        rule's scoped states to announce, or None when there is nothing to announce."""

    @abstractmethod
    async def _revert_scoped_if_expired(self, rule_id: str, scope_key: str,
                                        expires_at: datetime,
                                        audit: Audit) -> tuple[ScopedState, ...] | None:
        """Remove that scoped state if it still expires at `expires_at`; as `_write_scoped`."""

    # the contract ---------------------------------------------------------

    def subscribe_changes(self) -> Subscription:
        return self._announcer.subscribe()

    async def get_state(self, rule_id: str) -> RuleState:
        try:
            validate_rule_id(rule_id)
        except InvalidRuleId:
            return DEFAULT_STATE
        state = await self._read_state(rule_id)
        if state.expires_at is not None and state.is_expired(self.clock()):
            await self._expire(rule_id, state.expires_at)
            return DEFAULT_STATE
        return state

    async def set_state(self, rule_id: str, state: RuleState, set_by: str, *,
                        via: str | None = None, reason: str | None = None) -> None:
        """As the contract; `via` (host or token) and, for a clear, `reason` go to the
        history."""
        validate_rule_id(rule_id)
        stamped = DEFAULT_STATE if state.is_default else state.stamped(set_by, self.clock())
        audit = Audit(HistoryAction.CLEAR if stamped.is_default else HistoryAction.SET,
                      set_by, reason if stamped.is_default else stamped.reason,
                      via or self.via)
        tracer = get_tracer()
        with tracer.start_as_current_span(
            "ttp.rule.state.change",
            attributes={"ttp.rule_id": rule_id, "ttp.state": stamped.state.value},
        ):
            with tracer.start_as_current_span("ttp.store.write_state",
                                              attributes={"ttp.rule_id": rule_id}):
                if stamped.is_default and not await self._has_state(rule_id):
                    announce: bool | None = False  # nothing to clear: no write, no news
                else:
                    announce = await self._write_state(rule_id, stamped, audit)
            if announce is not False:
                self.state_changed(rule_id, stamped)

    async def clear_state(self, rule_id: str, set_by: str, *, reason: str | None = None,
                          via: str | None = None) -> None:
        await self.set_state(rule_id, DEFAULT_STATE, set_by, via=via, reason=reason)

    async def set_scoped_state(self, rule_id: str, scope: Scope, state: RuleState,
                               set_by: str, *, via: str | None = None,
                               reason: str | None = None) -> None:
        validate_rule_id(rule_id)
        stamped = DEFAULT_STATE if state.is_default else state.stamped(set_by, self.clock())
        audit = Audit(HistoryAction.CLEAR if stamped.is_default else HistoryAction.SET,
                      set_by, reason if stamped.is_default else stamped.reason,
                      via or self.via)
        with get_tracer().start_as_current_span(
            "ttp.rule.state.change",
            attributes={"ttp.rule_id": rule_id, "ttp.state": stamped.state.value,
                        "ttp.scope": scope.key},
        ):
            announced = await self._write_scoped(rule_id, scope, stamped, audit)
        if announced is not None:
            self.scoped_changed(rule_id, announced)
        self._scoped_expiry.schedule(scope_timer_key(rule_id, scope.key), stamped.expires_at)

    async def clear_scoped_state(self, rule_id: str, scope: Scope, set_by: str, *,
                                 reason: str | None = None, via: str | None = None) -> None:
        await self.set_scoped_state(rule_id, scope, DEFAULT_STATE, set_by, via=via,
                                    reason=reason)

    async def scoped_states(self, rule_id: str) -> tuple[ScopedState, ...]:
        try:
            validate_rule_id(rule_id)
        except InvalidRuleId:
            return ()
        now = self.clock()
        return tuple(scoped for _key, scoped in sorted((await self._read_scoped(rule_id)).items())
                     if not scoped.state.is_expired(now))

    # shared plumbing for backends -----------------------------------------

    def scoped_changed(self, rule_id: str, scoped: tuple[ScopedState, ...]) -> None:
        """The scoped states of a rule took effect: arm their timers, announce them."""
        for item in scoped:
            self._scoped_expiry.schedule(scope_timer_key(rule_id, item.scope.key),
                                         item.state.expires_at)
        self._announcer.announce(RuleChange(SCOPED, rule_id, scoped))

    def arm_scoped_expiry(self, scoped: dict[str, tuple[ScopedState, ...]]) -> None:
        for rule_id, items in scoped.items():
            for item in items:
                self._scoped_expiry.schedule(scope_timer_key(rule_id, item.scope.key),
                                             item.state.expires_at)

    async def _expire_scoped(self, key: str, expires_at: datetime) -> None:
        rule_id, _, scope_key = key.partition("\n")
        audit = Audit(HistoryAction.EXPIRED, "expiry", None, self.via)
        announced = await self._revert_scoped_if_expired(rule_id, scope_key, expires_at, audit)
        if announced is not None:
            self._scoped_expiry.schedule(key, None)
            self._announcer.announce(RuleChange(SCOPED, rule_id, announced))

    def state_changed(self, rule_id: str, state: RuleState) -> None:
        """A state took effect (written here or seen from elsewhere): arm, announce."""
        self._expiry.schedule(rule_id, state.expires_at)
        self._announcer.announce(RuleChange(STATE, rule_id, state))

    def definition_changed(self, rule: CompiledRule) -> None:
        self._announcer.announce(RuleChange(DEFINITION, rule.rule_id, rule))

    def rule_deleted(self, rule_id: str) -> None:
        self._announcer.announce(RuleChange(DELETED, rule_id, None))

    def arm_expiry(self, states: dict[str, RuleState]) -> None:
        for rule_id, state in states.items():
            self._expiry.schedule(rule_id, state.expires_at)

    async def _expire(self, rule_id: str, expires_at: datetime) -> None:
        audit = Audit(HistoryAction.EXPIRED, "expiry", None, self.via)
        if await self._revert_if_expired(rule_id, expires_at, audit):
            self._expiry.schedule(rule_id, None)
            self._announcer.announce(RuleChange(STATE, rule_id, DEFAULT_STATE))

    async def close_shared(self) -> None:
        await self._expiry.close()
        await self._scoped_expiry.close()
        await self._announcer.close()

    @property
    def announcer(self) -> ChangeAnnouncer:
        return self._announcer
