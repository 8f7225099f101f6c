"""Shared CLI plumbing: consoles, option defaults, running coroutines, the error policy."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from decnet.ttp.constants import DEFAULT_DB_URL, DEFAULT_RULES_DIR, ENV_DB_URL, ENV_RULES_DIR
from decnet.ttp.errors import (
    ConfigError,
    DecnetTTPError,
    InvalidRuleId,
    InvalidScopeError,
    InvalidStateError,
    StoreError,
)
from decnet.ttp.printable import printable

T = TypeVar("T")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

#: Exit status of bad operator input (a usage error), as click uses it.
EXIT_INPUT: int = 2
#: Exit status of a failure of the database, a file or the network.
EXIT_FAILURE: int = 1


def safe_text(text: object) -> str:
    """`text` as a terminal may show it (`decnet.ttp.printable`): control characters,
    escape sequence introducers and bidi overrides become visible escapes (`\\x1b`).

    Use it on anything of outside origin (events, the database, rule files, error
    messages) before it reaches a terminal; the result is one line.
    """
    return printable(text)


class SafeFormatter(logging.Formatter):
    """A formatter whose messages are `safe_text`; a traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return safe_text(super().formatMessage(record))


class BadInput(ValueError):
    """Operator input a command refuses; the message says why (exits 2 under `cli_errors`)."""


def setup_logging(verbose: bool = False) -> None:
    handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False,
                          markup=False)
    handler.setFormatter(SafeFormatter("%(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        handlers=[handler], force=True)
    quiet_libraries(verbose)


#: Libraries whose INFO lines are their own chatter, not news for an operator.
CHATTY_LOGGERS: Final = ("alembic",)


def quiet_libraries(verbose: bool) -> None:
    """Only warnings of chatty libraries (Alembic's plugin and migration lines) unless -v."""
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)


def rules_dir(option: Path | None) -> Path:
    """`--rules`, else `DECNET_TTP_RULES_DIR`, else `./rules/ttp`."""
    return option or Path(os.environ.get(ENV_RULES_DIR) or DEFAULT_RULES_DIR)


def db_url(option: str | None) -> str:
    """`--db`, else `DECNET_TTP_DB_URL`, else a SQLite file in the current directory."""
    return option or os.environ.get(ENV_DB_URL) or DEFAULT_DB_URL


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def labelled(label: str, style: str, message: str) -> Text:
    """`LABEL message` with a styled label; the message is data: never markup, no emoji,
    no control characters."""
    return Text.assemble((label, style), " ", safe_text(message))


def print_error(message: str) -> None:
    """`error: MESSAGE` on stderr, on one line; the message is data, never markup."""
    err_console.print(labelled("error:", "red", " ".join(message.split())), highlight=False)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print `message` as an error and exit with `code`."""
    print_error(message)
    raise typer.Exit(code)


@contextmanager
def cli_errors(context: str = "") -> Iterator[None]:
    """The CLI's error policy: expected failures become one line on stderr and an exit code.

    Bad input exits 2: `BadInput` (and the duration/time errors deriving from it),
    `ConfigError`, `InvalidRuleId`, `InvalidScopeError`, `InvalidStateError`, and a
    `--db` URL SQLAlchemy
    cannot parse or has no driver for. A failure of the database, a file or the network
    exits 1: `StoreError` (a `SchemaOutdatedError` names `decnet-ttp db upgrade --db URL`),
    any other SQLAlchemy error, `OSError`, and any other error of this package. Nothing
    else is caught: a bug still shows its traceback. `context`, when given, prefixes the
    message (`upgrading URL failed: reason`).

        with cli_errors():
            store = DatabaseRuleStore(url)
            ...
    """
    def explain(code: int, reason: str) -> NoReturn:
        fail(f"{context}: {reason}" if context else reason, code)

    try:
        yield
    except (BadInput, ConfigError, InvalidRuleId, InvalidScopeError,
            InvalidStateError) as exc:
        explain(EXIT_INPUT, str(exc))
    except (StoreError, OSError, DecnetTTPError) as exc:
        # a store that could not open its database because of the URL: still bad input
        code = EXIT_INPUT if _is_sql_error(exc.__cause__, "ArgumentError") else EXIT_FAILURE
        explain(code, str(exc) or type(exc).__name__)
    except Exception as exc:
        if _is_sql_error(exc, "ArgumentError"):
            # a URL it cannot parse, or NoSuchModuleError: no such dialect or driver
            explain(EXIT_INPUT, f"invalid database URL: {exc}")
        if _is_sql_error(exc, "SQLAlchemyError"):
            explain(EXIT_FAILURE, str(exc))
        raise


def _is_sql_error(exc: BaseException | None, name: str) -> bool:
    """`exc` is a `sqlalchemy.exc.<name>`. SQLAlchemy is looked up, not imported: a
    command that never loaded it (`tag`) cannot have raised its errors, and does not pay
    for the import."""
    sql_errors = sys.modules.get("sqlalchemy.exc")
    return (exc is not None and sql_errors is not None
            and isinstance(exc, getattr(sql_errors, name)))
