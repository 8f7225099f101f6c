"""Change publication shared by every store: local subscribers first, then the bus."""

from __future__ import annotations

from decnet.bus.base import Bus
from decnet.bus.topics import ttp_rule_reloaded, ttp_rule_state
from decnet.ttp.constants import BUS_OUTBOX_BOUND
from decnet.ttp.store.codec import change_to_bytes
from decnet.ttp.store.fanout import ChangeFanout, Subscription
from decnet.ttp.store.outbox import BusOutbox
from decnet.ttp.telemetry import get_tracer
from decnet.vocabulary import RESYNC, SCOPED, STATE, RuleChange


def topic_for(change: RuleChange) -> str:
    if change.change_kind is STATE or change.change_kind is SCOPED:
        return ttp_rule_state(change.rule_id)
    return ttp_rule_reloaded(change.rule_id)


class ChangeAnnouncer:
    """Announces each `RuleChange` to local subscribers and, when wired, to a bus.

    Local delivery is synchronous and never blocks. Bus messages go through a bounded
    outbox (`BusOutbox`), so a slow or absent bus never delays a committed change;
    failures and overflow are logged and counted, never raised.
    """

    def __init__(self, bus: Bus | None = None, *, outbox_bound: int = BUS_OUTBOX_BOUND) -> None:
        self.fanout = ChangeFanout()
        self.bus = bus
        self.outbox = None if bus is None else BusOutbox(bus, bound=outbox_bound)

    @property
    def outbox_bound(self) -> int:
        """Bus messages that may wait unsent; past it a change is counted, not queued."""
        return 0 if self.outbox is None else self.outbox.bound

    @outbox_bound.setter
    def outbox_bound(self, bound: int) -> None:
        if self.outbox is not None:
            self.outbox.bound = bound

    @property
    def bus_published(self) -> int:
        return 0 if self.outbox is None else self.outbox.published

    @property
    def bus_failures(self) -> int:
        return 0 if self.outbox is None else self.outbox.failures

    def subscribe(self) -> Subscription:
        return self.fanout.subscribe()

    def announce(self, change: RuleChange) -> None:
        if change.change_kind is RESYNC:
            self.fanout.publish(change)
            return
        with get_tracer().start_as_current_span(
            "ttp.rule.publish",
            attributes={"ttp.rule_id": change.rule_id, "ttp.change_kind": change.change_kind},
        ):
            self.fanout.publish(change)
            if self.outbox is not None:
                self.outbox.send(topic_for(change), change_to_bytes(change))

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until the bus outbox is empty (for tests and clean shutdown)."""
        if self.outbox is not None:
            await self.outbox.flush(timeout)

    async def close(self) -> None:
        if self.outbox is not None:
            await self.outbox.close()
        self.fanout.close()
