"""`decnet-ttp master|worker` argument handling (no process started)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from decnet.cli.app import app
from tests.swarm.harness import cli_command

runner = CliRunner()


@pytest.mark.parametrize("args", [
    ["worker", "--db", "not a url", "--http", "127.0.0.1:0"],
    ["worker", "--db", "oracle://db/x", "--http", "127.0.0.1:0"],
    ["master", "--db", "oracle://db/x", "--rules", "."],
    ["worker", "--db", "postgresql+psycopg2://db.invalid/x", "--http", "127.0.0.1:0"],
    ["worker", "--db", "mysql+pymysql://db.invalid/x", "--http", "127.0.0.1:0"],
    ["master", "--db", "postgresql+psycopg2://db.invalid/x", "--rules", "."],
])
def test_unusable_database_url_is_one_line_and_exit_2(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "--db" in result.output
    assert "Traceback" not in result.output
    assert "ModuleNotFoundError" not in result.output


@pytest.mark.parametrize("http", ["8080", "host:", "host:port", "127.0.0.1:99999"])
def test_bad_http_address_exits_2(http: str) -> None:
    result = runner.invoke(app, ["worker", "--db", "sqlite+aiosqlite:///x.db", "--http", http])
    assert result.exit_code == 2
    assert "--http" in result.output


def test_help_names_the_environment_variables() -> None:
    master = runner.invoke(app, ["master", "--help"], terminal_width=200)
    worker = runner.invoke(app, ["worker", "--help"], terminal_width=200)
    assert master.exit_code == worker.exit_code == 0
    assert "DECNET_TTP_RULES_DIR" in master.output and "DECNET_TTP_DB_URL" in master.output
    assert "--poll-interval" in worker.output and "--no-listen" in worker.output


def _worker_process(http: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command("worker", "--http", http,
                    "--db", f"sqlite+aiosqlite:///{tmp_path / 'rules.db'}"),
        capture_output=True, text=True, timeout=60, check=False)


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = _worker_process(f"127.0.0.1:{port}", tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: --http 127.0.0.1:{port}: cannot listen")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_an_unresolvable_host_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _worker_process("no-such-host.invalid:0", tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: --http no-such-host.invalid:0: cannot resolve")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
