"""`decnet-ttp fleet status`: which worker runs which revision, and who is behind."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from decnet.cli.common import EXIT_FAILURE, cli_errors, console, db_url, fail, run, safe_text
from decnet.cli.swarm import DbOption, NatsPrefixOption, check_prefix
from decnet.ttp.constants import ENV_NATS_URL, FLEET_STALE_AFTER, NATS_DEFAULT_PREFIX

app = typer.Typer(help="The fleet of workers: what each one runs.", no_args_is_help=True)

NatsRequired = Annotated[str | None, typer.Option(
    "--nats", envvar=ENV_NATS_URL, show_envvar=True,
    help="NATS server the workers report to (nats://host:4222).")]


@app.command()
def status(
    db: DbOption = None,
    nats: NatsRequired = None,
    nats_prefix: NatsPrefixOption = NATS_DEFAULT_PREFIX,
    stale_after: Annotated[float, typer.Option(
        "--stale-after", min=0.0,
        help="A report older than this many seconds is silent (default 3 report intervals).")
    ] = FLEET_STALE_AFTER,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """List the workers' reports: revision, lag behind the database, age, status."""
    from nats.errors import Error as NatsError

    from decnet.swarm.fleet import read_fleet
    from decnet.ttp.store.database.jetstream import NatsNames, NatsUnavailable

    check_prefix(nats_prefix)
    if not nats:
        fail(f"fleet status needs --nats (or {ENV_NATS_URL}): workers report through it", 2)

    with cli_errors("--db"):
        try:
            fleet = run(read_fleet(db_url(db), nats, NatsNames(nats_prefix),
                                   stale_after=stale_after))
        except (NatsUnavailable, NatsError) as exc:
            fail(f"--nats: {exc or type(exc).__name__}")
    if as_json:
        print(json.dumps(fleet.as_json()))
    else:
        console.print(f"head revision {fleet.head_revision}; {len(fleet.workers)} worker(s)")
        for w in fleet.workers:
            console.print(safe_text(
                f"{w.worker_id:<24} {w.status:<8} revision {w.revision} lag {w.lag} "
                f"age {w.age_s:.1f}s {w.host} {w.http} {w.ruleset_sha256[:12]}"),
                highlight=False)
    if any(w.status != "ok" for w in fleet.workers):
        raise typer.Exit(EXIT_FAILURE)
