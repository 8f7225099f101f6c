"""`decnet-ttp master` and `decnet-ttp worker`: the swarm roles."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from decnet.cli.common import (
    EXIT_INPUT,
    cli_errors,
    db_url,
    fail,
    rules_dir,
    run,
    setup_logging,
)
from decnet.ttp.constants import (
    DEFAULT_WORKER_HTTP,
    ENV_DB_URL,
    ENV_RULES_DIR,
    MAX_EVENT_BODY_BYTES,
    TAIL_POLL_INTERVAL,
)

RulesOption = Annotated[Path | None, typer.Option(
    "--rules", envvar=ENV_RULES_DIR, show_envvar=True, file_okay=False,
    help="Rules directory (default ./rules/ttp).")]
DbOption = Annotated[str | None, typer.Option(
    "--db", envvar=ENV_DB_URL, show_envvar=True,
    help="Database URL, e.g. postgresql+asyncpg://decnet@db-host/decnet.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


def daemon_logging(verbose: bool) -> None:
    """Rich logs on a terminal; plain timestamped lines otherwise (journald, files)."""
    verbose = verbose or logging.getLogger().level == logging.DEBUG
    if sys.stderr.isatty():
        setup_logging(verbose)
        return
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr, force=True)


def master(
    rules: RulesOption = None,
    db: DbOption = None,
    by: Annotated[str | None, typer.Option(
        "--by", help="Name recorded as updated_by on every row (default master@HOSTNAME).")
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Project a rules directory into the database, then every edit as it is saved."""
    from decnet.swarm.master import default_updated_by, main_async  # `--help` stays fast

    daemon_logging(verbose)
    with cli_errors("--db"):
        code = run(main_async(rules_dir(rules), db_url(db), by or default_updated_by()))
    raise typer.Exit(code)


def worker(
    db: DbOption = None,
    http: Annotated[str, typer.Option(
        "--http", help="HOST:PORT the HTTP API listens on (port 0: any free port).")
    ] = DEFAULT_WORKER_HTTP,
    poll_interval: Annotated[float, typer.Option(
        "--poll-interval", min=0.01, help="Seconds between polls of the database.")
    ] = TAIL_POLL_INTERVAL,
    listen: Annotated[bool, typer.Option(
        "--listen/--no-listen",
        help="On PostgreSQL, wake on LISTEN/NOTIFY as well as polling (--no-listen behind "
             "a pooler in transaction mode).")
    ] = True,
    max_body: Annotated[int, typer.Option(
        "--max-body", min=1024, help="Largest POST /events body, in bytes.")
    ] = MAX_EVENT_BODY_BYTES,
    verbose: VerboseOption = False,
) -> None:
    """Tail the database, keep an engine in step and serve it over HTTP."""
    from decnet.swarm.process import parse_host_port  # `--help` stays fast (no uvicorn)
    from decnet.swarm.worker import main_async

    daemon_logging(verbose)
    try:
        host, port = parse_host_port(http)
    except ValueError as exc:
        fail(f"--http: {exc}", EXIT_INPUT)
    with cli_errors("--db"):
        code = run(main_async(db_url(db), host, port, poll_interval, listen=listen,
                              max_body_bytes=max_body))
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add `master` and `worker` to the root command."""
    app.command("master")(master)
    app.command("worker")(worker)

