"""The bus contract: publish bytes on a topic, subscribe with NATS-style wildcards."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Self


@dataclass(frozen=True, slots=True)
class BusMessage:
    topic: str
    data: bytes


class BusSubscription(AsyncIterator[BusMessage]):
    """What `Bus.subscribe` returns: iterate for messages; `aclose()` (or leaving an
    `async with` block) unsubscribes."""

    @abstractmethod
    async def aclose(self) -> None:
        """Unsubscribe. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class Bus(ABC):
    """Topics are dot-separated tokens; `*` matches one token, a final `>` the rest."""

    @abstractmethod
    async def publish(self, topic: str, data: bytes) -> None:
        """Send `data` on `topic`; raises when the bus cannot take it."""

    @abstractmethod
    async def subscribe(self, pattern: str) -> BusSubscription:
        """Registered when this returns; iterate for messages, `aclose()` to stop."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; later publishes raise."""
