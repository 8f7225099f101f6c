"""`get_rule_store()` reads DECNET_TTP_RULE_STORE_TYPE."""

from __future__ import annotations

from pathlib import Path

import pytest

from decnet.ttp.errors import ConfigError
from decnet.ttp.store import get_rule_store
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


def test_database_type_gives_the_database_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECNET_TTP_RULE_STORE_TYPE", "database")
    monkeypatch.delenv("DECNET_TTP_DB_URL", raising=False)
    from decnet.ttp.store.impl.database import DatabaseRuleStore

    assert isinstance(get_rule_store(), DatabaseRuleStore)
