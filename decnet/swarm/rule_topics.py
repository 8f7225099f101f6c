"""The master's announcements on the bus's rule topics (DESIGN "Bus topics").

With `--nats`, each revision the master's publisher puts in the change stream is also
announced on `ttp.rule.reloaded.{rule_id}` (a definition, a deletion) or
`ttp.rule.state.{rule_id}` (a state, a scoped state, an expiry's revert), so other
DECNET components can follow the rules without reading the database. On the wire the
topics carry the deployment's prefix (`{prefix}.ttp.rule.state.R0001`: see `NatsBus`'s
namespace) and the stream `{prefix}_bus` keeps the last `NATS_STREAM_MAX_MSGS`.

Announcing never waits: messages go through a bounded outbox (`BusOutbox`); while the
bus is not connected yet (NATS down at start) they are dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from decnet.bus.errors import BusError
from decnet.bus.nats import NatsBus
from decnet.bus.topics import ttp_rule_reloaded, ttp_rule_state
from decnet.ttp.constants import NATS_RETRY, NATS_STREAM_MAX_MSGS
from decnet.ttp.loops import Backoff, Outage, raise_if_cancelled
from decnet.ttp.store.codec import scoped_to_dict, state_to_dict
from decnet.ttp.store.database.jetstream import NatsNames
from decnet.ttp.store.outbox import BusOutbox
from decnet.ttp.store.sql.rows import LogEntry
from decnet.vocabulary import DEFAULT_STATE, DEFINITION, DELETED, SCOPED

log = logging.getLogger(__name__)


def entry_message(identity: str, entry: LogEntry) -> tuple[str, bytes]:
    """The topic and JSON body announcing one change-log entry (ids, revision and state,
    never the rule's text). ValueError when its rule id cannot name a topic."""
    body: dict[str, Any] = {"change_kind": entry.change_kind.value, "rule_id": entry.rule_id,
                            "revision": entry.revision, "database": identity}
    if entry.change_kind is DEFINITION:
        if entry.rule is not None:
            body["rule_version"] = entry.rule.rule_version
        return ttp_rule_reloaded(entry.rule_id), orjson.dumps(body)
    if entry.change_kind is DELETED:
        return ttp_rule_reloaded(entry.rule_id), orjson.dumps(body)
    if entry.change_kind is SCOPED:
        states = () if entry.scoped is None else entry.scoped.states
        body["scopes"] = [scoped_to_dict(item) for item in states]
    else:  # a state; none stored is the revert to the default
        body["state"] = state_to_dict(DEFAULT_STATE if entry.state is None
                                      else entry.state.state)
    return ttp_rule_state(entry.rule_id), orjson.dumps(body)


class RuleTopics:
    """Connects the bus (retrying until it answers) and announces each entry given."""

    def __init__(self, url: str, names: NatsNames) -> None:
        self.url = url
        self.names = names
        self.outbox: BusOutbox | None = None
        #: Entries not announced: no bus yet, or a rule id no topic can carry.
        self.dropped = 0

    def __call__(self, identity: str, entry: LogEntry) -> None:
        if self.outbox is None:
            self.dropped += 1
            return
        try:
            topic, data = entry_message(identity, entry)
        except ValueError as exc:
            self.dropped += 1
            log.warning("not announced on the bus: %s", exc)
            return
        self.outbox.send(topic, data)

    async def run(self) -> None:
        """Hold the bus connection until cancelled (NatsBus reconnects by itself)."""
        backoff = Backoff(*NATS_RETRY)
        outage = Outage(log, "connecting the bus (rule topics)")
        bus: NatsBus | None = None
        try:
            while bus is None:
                try:
                    bus = await NatsBus.connect(
                        self.url, stream=self.names.bus_stream, namespace=self.names.prefix,
                        max_msgs=NATS_STREAM_MAX_MSGS, name="decnet-ttp master")
                except BusError as exc:
                    outage.failed(exc, "changes are not announced on the bus meanwhile")
                    await asyncio.sleep(backoff.failed())
            raise_if_cancelled()  # connect's wait_for may have swallowed a cancel
            outage.recovered()
            self.outbox = BusOutbox(bus)
            await asyncio.Event().wait()
        finally:
            outbox, self.outbox = self.outbox, None
            if outbox is not None:
                await outbox.close()
            if bus is not None:
                await bus.close()
