"""Backends the conformance suite runs on: a name and a way to open a started store.

Each opener is an async context manager that yields a started `RuleStore` on
fresh, isolated storage and cleans it up afterwards.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from decnet.ttp.store.base import RuleStore
from decnet.ttp.store.impl.filesystem import FilesystemRuleStore

StoreOpener = Callable[[], contextlib.AbstractAsyncContextManager[RuleStore]]


@dataclass(frozen=True)
class Backend:
    name: str
    open_store: StoreOpener
    marks: tuple[Any, ...] = field(default=())


@contextlib.asynccontextmanager
async def filesystem_store() -> AsyncIterator[RuleStore]:
    with tempfile.TemporaryDirectory(prefix="decnet-ttp-") as directory:
        store = FilesystemRuleStore(directory)
        await store.start()
        try:
            yield store
        finally:
            await store.stop()


BACKENDS: list[Backend] = [
    Backend("filesystem", filesystem_store),
]
