"""`get_rule_store()` reads DECNET_TTP_RULE_STORE_TYPE."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from decnet.ttp.constants import DEFAULT_DB_URL
from decnet.ttp.errors import ConfigError
from decnet.ttp.store import get_rule_store
from decnet.ttp.store.impl.database import DatabaseRuleStore
from decnet.ttp.store.impl.filesystem import FilesystemRuleStore


def test_default_is_the_filesystem_store(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.delenv("DECNET_TTP_RULE_STORE_TYPE", raising=False)
    monkeypatch.setenv("DECNET_TTP_RULES_DIR", str(tmp_path))
    store = get_rule_store()
    assert isinstance(store, FilesystemRuleStore)
    assert store.directory == tmp_path


def test_unknown_type_lists_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECNET_TTP_RULE_STORE_TYPE", "etcd")
    with pytest.raises(ConfigError) as caught:
        get_rule_store()
    assert "'etcd'" in str(caught.value)
    assert "database" in str(caught.value) and "filesystem" in str(caught.value)


def test_database_type_defaults_to_the_documented_sqlite_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DECNET_TTP_DB_URL: the same database the CLI uses, not a private in-memory one."""
    monkeypatch.chdir(tmp_path)  # a relative SQLite file would land here, never in the repo
    monkeypatch.setenv("DECNET_TTP_RULE_STORE_TYPE", "database")
    monkeypatch.delenv("DECNET_TTP_DB_URL", raising=False)
    store = get_rule_store()
    assert isinstance(store, DatabaseRuleStore)
    assert store.repo.url == make_url(DEFAULT_DB_URL)
    assert DEFAULT_DB_URL == "sqlite+aiosqlite:///decnet-ttp.db"
    assert not store.repo.is_memory


def test_database_type_reads_the_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'rules.db'}"
    monkeypatch.setenv("DECNET_TTP_RULE_STORE_TYPE", "database")
    monkeypatch.setenv("DECNET_TTP_DB_URL", url)
    store = get_rule_store()
    assert isinstance(store, DatabaseRuleStore)
    assert store.repo.url == make_url(url)
