"""The bus contract: publish bytes on a topic, subscribe with NATS-style wildcards."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BusMessage:
    topic: str
    data: bytes


class Bus(ABC):
    """Topics are dot-separated tokens; `*` matches one token, a final `>` the rest."""

    @abstractmethod
    async def publish(self, topic: str, data: bytes) -> None:
        """Send `data` on `topic`; raises when the bus cannot take it."""

    @abstractmethod
    async def subscribe(self, pattern: str) -> AsyncIterator[BusMessage]:
        """Registered when this returns; iterate for messages, `aclose()` to stop."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; later publishes raise."""
