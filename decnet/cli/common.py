"""Shared CLI plumbing: consoles, option defaults, running coroutines."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.logging import RichHandler

from decnet.ttp.constants import DEFAULT_DB_URL, DEFAULT_RULES_DIR, ENV_DB_URL, ENV_RULES_DIR

T = TypeVar("T")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=False)],
        force=True,
    )


def rules_dir(option: Path | None) -> Path:
    """`--rules`, else `DECNET_TTP_RULES_DIR`, else `./rules/ttp`."""
    return option or Path(os.environ.get(ENV_RULES_DIR) or DEFAULT_RULES_DIR)


def db_url(option: str | None) -> str:
    """`--db`, else `DECNET_TTP_DB_URL`, else a SQLite file in the current directory."""
    return option or os.environ.get(ENV_DB_URL) or DEFAULT_DB_URL


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)
