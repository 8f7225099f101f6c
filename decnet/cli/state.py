"""`decnet-ttp state get|set|clear|list`: operator state of rules in the database store."""

from __future__ import annotations

import enum
import getpass
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import orjson
import typer
from rich.table import Table
from rich.text import Text

from decnet.cli.common import (
    BadInput,
    cli_errors,
    console,
    db_url,
    err_console,
    run,
    safe_text,
)
from decnet.cli.durations import format_remaining, parse_duration, parse_moment
from decnet.ttp.constants import ENV_DB_URL, MAX_STATE_BY_CHARS, MAX_STATE_REASON_BYTES
from decnet.ttp.errors import InvalidStateError
from decnet.ttp.store.codec import state_to_dict
from decnet.ttp.store.factory import database_store
from decnet.vocabulary import RuleState, StateName, iso, utcnow, validate_rule_id

if TYPE_CHECKING:
    from decnet.ttp.store.database import DatabaseRuleStore

T = TypeVar("T")

app = typer.Typer(help="Operator state of rules: enable, disable, clip, with an optional TTL.",
                  no_args_is_help=True)

DbOption = Annotated[str | None, typer.Option(
    "--db", help=f"Database URL [env {ENV_DB_URL}; default sqlite+aiosqlite:///decnet-ttp.db]",
    show_default=False)]
RuleArg = Annotated[str, typer.Argument(help="Rule id, e.g. R0007", show_default=False)]


class StateChoice(enum.StrEnum):
    enabled = "enabled"
    disabled = "disabled"
    clipped = "clipped"


def _default_user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:
        return "unknown"


def _who(by: str | None) -> str:
    """`--by`, else `$USER`; refused (exit 2) when the database column cannot hold it."""
    who = by or _default_user()
    _utf8("--by", who)
    if len(who) > MAX_STATE_BY_CHARS:
        raise BadInput(f"--by is {len(who):,} characters long; at most {MAX_STATE_BY_CHARS}")
    return who


def _utf8(option: str, text: str) -> bytes:
    """`text` as the database will store it; `BadInput` when it is not valid Unicode."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of argv, kept as lone surrogates
        raise BadInput(f"{option} is not valid UTF-8") from None


def _with_store(url: str, action: Callable[..., Awaitable[T]]) -> T:
    """Run `action(store)` against a database store (errors: see `cli_errors`)."""
    async def go() -> T:
        store = database_store(url)
        try:
            return await action(store)
        finally:
            await store.stop()

    return run(go())


def _iso(moment: datetime | None) -> str:
    return iso(moment, "seconds") or ""


def _describe(rule_id: str, state: RuleState) -> str:
    text = f"{rule_id}: {state.state.value}"
    if state.confidence_max is not None:
        text += f" (confidence ≤ {state.confidence_max:g})"
    if state.expires_at is not None:
        text += f", until {_iso(state.expires_at)} ({format_remaining(state.expires_at)})"
    if state.reason:
        text += f" — {state.reason}"
    if state.set_by:
        text += f" [set by {state.set_by} at {_iso(state.set_at)}]"
    return safe_text(text)


@app.command()
def get(
    rule: RuleArg,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Show the state of one rule (enabled when nothing is set)."""
    with cli_errors():
        rule_id = validate_rule_id(rule)
        state = _with_store(db_url(db), lambda store: store.read_state(rule_id))
    if as_json:
        console.print_json(orjson.dumps({"rule_id": rule_id, **state_to_dict(state)}).decode(),
                           ensure_ascii=True)
    else:
        console.print(_describe(rule_id, state), highlight=False, markup=False)


@app.command("set")
def set_state(
    rule: RuleArg,
    state: Annotated[StateChoice, typer.Argument(help="enabled, disabled or clipped",
                                                 show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Why (shown to other operators)",
                                        show_default=False)],
    by: Annotated[str | None, typer.Option("--by", help="Who sets it [default: $USER]",
                                           show_default=False)] = None,
    for_: Annotated[str | None, typer.Option(
        "--for", help="TTL: 90s, 30m, 4h, 1d, 1h30m; the state reverts after it",
        show_default=False)] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="Revert at this ISO 8601 time, e.g. 2026-12-01T00:00Z",
        show_default=False)] = None,
    confidence_max: Annotated[float | None, typer.Option(
        "--confidence-max", help="Ceiling in [0, 1] of a clipped rule's confidence",
        show_default=False)] = None,
    db: DbOption = None,
) -> None:
    """Set a rule's state, e.g. `state set R0007 disabled --for 4h --reason "noisy"`."""
    with cli_errors():
        rule_id = validate_rule_id(rule)
        wanted = _wanted_state(state, reason, for_, until, confidence_max)
        who = _who(by)
        stored, known = _with_store(db_url(db), lambda store: _set(store, rule_id, wanted, who))
    if not known:
        err_console.print(Text(f"warning: no rule {rule_id} is stored yet; the state applies "
                               "when it appears", style="yellow"), highlight=False)
    console.print(_describe(rule_id, stored), highlight=False, markup=False)


def _wanted_state(state: StateChoice, reason: str, for_: str | None, until: str | None,
                  confidence_max: float | None) -> RuleState:
    """The state `set` asked for; `BadInput` or `InvalidStateError` when it cannot be."""
    if for_ is not None and until is not None:
        raise BadInput("give --for or --until, not both")
    expires_at = None
    if for_ is not None:
        expires_at = utcnow() + parse_duration(for_)
    elif until is not None:
        expires_at = parse_moment(until)
    if not reason.strip():
        raise BadInput("--reason must say why")
    size = len(_utf8("--reason", reason))
    if size > MAX_STATE_REASON_BYTES:
        raise BadInput(f"--reason is {size:,} bytes long; at most {MAX_STATE_REASON_BYTES:,}")
    try:
        return RuleState(StateName(state.value), confidence_max=confidence_max,
                         expires_at=expires_at, reason=reason)
    except InvalidStateError as exc:
        hint = " (use --confidence-max with clipped)" if state is StateChoice.clipped else ""
        raise BadInput(f"{exc}{hint}") from None


async def _set(store: DatabaseRuleStore, rule_id: str, wanted: RuleState,
               who: str) -> tuple[RuleState, bool]:
    await store.set_state(rule_id, wanted, who)
    known = await store.rule_exists(rule_id)
    return await store.read_state(rule_id), known


@app.command()
def clear(
    rule: RuleArg,
    by: Annotated[str | None, typer.Option("--by", help="Who clears it [default: $USER]",
                                           show_default=False)] = None,
    db: DbOption = None,
) -> None:
    """Return a rule to the default state (enabled, no TTL)."""
    with cli_errors():
        rule_id = validate_rule_id(rule)
        who = _who(by)
        _with_store(db_url(db), lambda store: store.clear_state(rule_id, who))
    console.print(safe_text(f"{rule_id}: enabled (cleared by {who})"), highlight=False,
                  markup=False)


@app.command("list")
def list_states(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Every rule with a state set, and when it expires."""
    with cli_errors():
        states: dict[str, RuleState] = _with_store(db_url(db),
                                                   lambda store: store.list_states())
    if as_json:
        body = [{"rule_id": rule_id, **state_to_dict(s)} for rule_id, s in states.items()]
        console.print_json(orjson.dumps(body).decode(), ensure_ascii=True)
        return
    now = utcnow()
    table = Table()
    for column in ("rule", "state", "ceiling", "expires", "reason", "set by", "set at"):
        table.add_column(column, overflow="fold")
    for rule_id, state in states.items():
        ceiling = f"{state.confidence_max:g}" if state.confidence_max is not None else ""
        expires = f"{_iso(state.expires_at)} ({format_remaining(state.expires_at, now=now)})" \
            if state.expires_at is not None else "never"
        table.add_row(*(Text(safe_text(cell)) for cell in (
            rule_id, state.state.value, ceiling, expires, state.reason or "",
            state.set_by or "", _iso(state.set_at))))
    console.print(table)
    console.print(f"{len(states)} rule(s) with a state set", highlight=False)
