"""Message bus: contract, topics, in-process and NATS implementations."""

from decnet.bus.base import Bus, BusMessage
from decnet.bus.topics import RULE_TOPICS, ttp_rule_reloaded, ttp_rule_state

__all__ = ["RULE_TOPICS", "Bus", "BusMessage", "ttp_rule_reloaded", "ttp_rule_state"]
