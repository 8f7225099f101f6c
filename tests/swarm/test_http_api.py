"""The worker's HTTP API, in process, over a filesystem store in a temp directory."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from decnet.swarm.http_api import REVISION_HEADER, create_app
from decnet.swarm.live import LiveRules
from decnet.ttp.store.base import RESYNC, RuleChange, RuleState, Scope, StateName
from decnet.ttp.store.impl.filesystem import FilesystemRuleStore
from tests.waiting import poll

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "ttp"
UNAME = {"source_kind": "command", "source_id": "c1",
         "payload": {"command_text": "uname -a", "user": "root"}}
JSON = {"Content-Type": "application/json"}


class Worker:
    def __init__(self, store: FilesystemRuleStore, live: LiveRules,
                 client: httpx.AsyncClient) -> None:
        self.store = store
        self.live = live
        self.client = client


@contextlib.asynccontextmanager
async def worker(tmp_path: Path, *, start: bool = True,
                 max_body_bytes: int = 1 << 20) -> AsyncIterator[Worker]:
    for name in ("R0001.yaml", "R0002.yaml", "R0003.yaml"):
        shutil.copy(SHIPPED / name, tmp_path / name)
    store = FilesystemRuleStore(tmp_path)
    await store.start()
    live = LiveRules(store)
    app = create_app(live, max_body_bytes=max_body_bytes)
    task = asyncio.get_running_loop().create_task(live.run()) if start else None
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
            if task is not None:
                await asyncio.wait_for(live.wait_ready(), 5)
            yield Worker(store, live, client)
    finally:
        app.state.evaluator.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await store.stop()


async def test_healthz_is_503_until_loaded(tmp_path: Path) -> None:
    async with worker(tmp_path, start=False) as w:
        response = await w.client.get("/healthz")
        assert response.status_code == 503
        assert (await w.client.post("/events", json=UNAME)).status_code == 503
        task = asyncio.get_running_loop().create_task(w.live.run())
        try:
            await asyncio.wait_for(w.live.wait_ready(), 5)
            response = await w.client.get("/healthz")
            assert response.status_code == 200
            assert response.json() == {"status": "ok", "rules": 3}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_rules_lists_the_live_view(tmp_path: Path) -> None:
    async with worker(tmp_path) as w:
        response = await w.client.get("/rules")
        assert response.status_code == 200
        rules = response.json()
        assert [r["rule_id"] for r in rules] == ["R0001", "R0002", "R0003"]
        for entry in rules:
            assert entry["rule_version"] >= 1
            assert entry["state"] == "enabled"
            assert entry["confidence_max"] is None
            assert entry["expires_at"] is None
            assert isinstance(entry["applied_at"], float)
        assert REVISION_HEADER not in response.headers  # the filesystem store has none

        await w.store.set_state("R0002", RuleState(StateName.CLIPPED, confidence_max=0.25),
                                "alice")

        async def clipped() -> bool:
            entry = (await w.client.get("/rules")).json()[1]
            return bool(entry["state"] == "clipped" and entry["confidence_max"] == 0.25)

        await poll(clipped, message="R0002 clipped in /rules")
        (tmp_path / "R0003.yaml").unlink()

        async def deleted() -> bool:
            ids = [r["rule_id"] for r in (await w.client.get("/rules")).json()]
            return ids == ["R0001", "R0002"]

        await poll(deleted, message="R0003 gone from /rules")


async def test_events_single_and_list(tmp_path: Path) -> None:
    async with worker(tmp_path) as w:
        response = await w.client.post("/events", json=UNAME)
        assert response.status_code == 200
        tags = response.json()
        assert [t["rule_id"] for t in tags] == ["R0001"]
        assert tags[0]["technique_id"] == "T1082"
        assert tags[0]["evidence"]["command_text"] == "uname -a"

        quiet = {"source_kind": "command", "source_id": "c2", "payload": {"command_text": "ls"}}
        response = await w.client.post("/events", json=[UNAME, quiet, {**UNAME, "source_id": 3}])
        assert response.status_code == 200
        assert [(t["rule_id"], t["source_id"]) for t in response.json()] == [
            ("R0001", "c1"), ("R0001", "3")]
        assert (await w.client.post("/events", json=[])).json() == []


async def test_events_honour_state(tmp_path: Path) -> None:
    async with worker(tmp_path) as w:
        await w.store.set_state("R0001", RuleState(StateName.DISABLED), "alice")

        async def silent() -> bool:
            return (await w.client.post("/events", json=UNAME)).json() == []

        await poll(silent, message="R0001 disabled on the worker")


async def test_events_honour_scoped_state_and_rules_list_scopes(tmp_path: Path) -> None:
    async with worker(tmp_path) as w:
        await w.store.set_scoped_state("R0001", Scope.parse("decky=decky-03"),
                                       RuleState(StateName.DISABLED, reason="noisy"), "alice")
        on_decky_3 = {**UNAME, "decky_id": "decky-03"}

        async def silent_there() -> bool:
            return (await w.client.post("/events", json=on_decky_3)).json() == []

        await poll(silent_there, message="R0001 silenced on decky-03")
        fired = (await w.client.post("/events", json={**UNAME, "decky_id": "decky-04"})).json()
        assert {tag["rule_id"] for tag in fired} == {"R0001"}
        [view] = [r for r in (await w.client.get("/rules")).json() if r["rule_id"] == "R0001"]
        assert view["state"] == "enabled"
        [scope] = view["scopes"]
        assert (scope["scope"], scope["deckies"], scope["state"], scope["reason"]) == \
            ("decky=decky-03", ["decky-03"], "disabled", "noisy")


@pytest.mark.parametrize(("body", "reason"), [
    (b"{", "malformed JSON"),
    (b"", "malformed JSON"),
    (b"\xff\xfe", "malformed JSON"),
    (b"[" * 5000, "malformed JSON"),
])
async def test_malformed_json_is_400(tmp_path: Path, body: bytes, reason: str) -> None:
    async with worker(tmp_path) as w:
        response = await w.client.post("/events", content=body, headers=JSON)
        assert response.status_code == 400
        assert reason in response.json()["error"]


@pytest.mark.parametrize(("body", "reason"), [
    (42, "JSON object"),
    ({"source_kind": "command"}, "source_id"),
    ({"source_kind": "", "source_id": "x"}, "source_kind"),
])
async def test_a_single_bad_event_is_422(tmp_path: Path, body: object, reason: str) -> None:
    async with worker(tmp_path) as w:
        response = await w.client.post("/events", content=orjson.dumps(body), headers=JSON)
        assert response.status_code == 422
        detail = response.json()
        assert detail["index"] is None
        assert reason in detail["error"]
        # and the worker still serves
        assert (await w.client.post("/events", json=UNAME)).status_code == 200


@pytest.mark.parametrize(("body", "index", "reason"), [
    ([UNAME, UNAME, {"source_kind": "command", "source_id": "x", "payload": []}], 2, "payload"),
    ([UNAME, {**UNAME, "session_id": {"a": 1}}, UNAME], 1, "session_id"),
    ([42, UNAME], 0, "JSON object"),
])
async def test_a_bad_event_in_a_list_is_an_error_entry_and_costs_no_other(
        tmp_path: Path, body: list[object], index: int, reason: str) -> None:
    async with worker(tmp_path) as w:
        response = await w.client.post("/events", content=orjson.dumps(body), headers=JSON)
        assert response.status_code == 207
        assert response.headers["X-Decnet-TTP-Event-Errors"] == "1"
        detail = response.json()
        assert [e["index"] for e in detail["errors"]] == [index]
        assert reason in detail["errors"][0]["error"]
        assert detail["truncated"] is None
        assert len(detail["tags"]) == len(body) - 1
        assert all(t["rule_id"] == "R0001" for t in detail["tags"])


async def test_body_limit_is_413(tmp_path: Path) -> None:
    async with worker(tmp_path, max_body_bytes=1024) as w:
        big = [UNAME] * 100
        response = await w.client.post("/events", json=big)
        assert response.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: streamed
            yield b"["
            for _ in range(100):
                yield orjson.dumps(UNAME) + b","
            yield orjson.dumps(UNAME) + b"]"

        response = await w.client.post("/events", content=chunks(), headers=JSON)
        assert response.status_code == 413
        assert (await w.client.post("/events", json=UNAME)).status_code == 200


async def test_metrics(tmp_path: Path) -> None:
    async with worker(tmp_path) as w:
        await w.client.post("/events", json=[UNAME, UNAME])
        text = (await w.client.get("/metrics")).text
        values = {line.split(" ")[0]: float(line.split(" ")[1])
                  for line in text.splitlines() if line and not line.startswith("#")}
        assert values["decnet_ttp_ready"] == 1.0
        assert values["decnet_ttp_rules_loaded"] == 3.0
        assert values["decnet_ttp_events_evaluated_total"] == 2.0
        assert values["decnet_ttp_tags_emitted_total"] == 2.0
        assert values["decnet_ttp_poll_errors_total"] == 0.0
        assert "decnet_ttp_changes_applied_total" in values
        assert "process_resident_memory_bytes" in values


async def test_status(tmp_path: Path) -> None:
    async with worker(tmp_path) as w:
        status = (await w.client.get("/status")).json()
        assert status["ready"] is True
        assert status["rules_loaded"] == 3
        assert status["revision"] is None


async def test_two_apps_have_their_own_registries(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with worker(tmp_path / "a") as a, worker(tmp_path / "b") as b:
        await a.client.post("/events", json=UNAME)
        text_b = (await b.client.get("/metrics")).text
        assert "decnet_ttp_events_evaluated_total 0.0" in text_b


async def test_unknown_route_and_method(tmp_path: Path) -> None:
    async with worker(tmp_path) as w:
        assert (await w.client.get("/nope")).status_code == 404
        assert (await w.client.get("/events")).status_code == 405


async def test_one_rule(tmp_path: Path) -> None:
    async with worker(tmp_path) as w:
        entry = (await w.client.get("/rules/R0002")).json()
        assert entry["rule_id"] == "R0002"
        assert entry == (await w.client.get("/rules")).json()[1]
        missing = await w.client.get("/rules/R9999")
        assert missing.status_code == 404
        assert "R9999" in missing.json()["error"]


async def test_a_resync_reloads_everything(tmp_path: Path) -> None:
    """A subscriber told it lagged (or a tail whose position fell out of the change
    log) reloads the whole rule set instead of applying a partial stream."""
    async with worker(tmp_path) as w:
        assert w.live.full_loads == 1
        (tmp_path / "R0003.yaml").unlink()
        await poll(lambda: "R0003" not in w.live.engine.rules, message="R0003 deleted")
        shutil.copy(SHIPPED / "R0004.yaml", tmp_path / "R0004.yaml")
        w.store.announcer.announce(RuleChange(RESYNC, "*", None))
        await poll(lambda: w.live.full_loads == 2, message="a full reload")
        await poll(lambda: "R0004" in w.live.engine.rules, message="R0004 loaded")
        assert (await w.client.get("/healthz")).status_code == 200


async def test_healthz_and_metrics_report_a_deleted_sqlite_database(tmp_path: Path) -> None:
    from decnet.ttp.store.impl.database import DatabaseRuleStore
    from decnet.ttp.store.sql import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'rules.db'}"
    await migrate.upgrade(url)
    store = DatabaseRuleStore(url)
    await store.start()
    store.start_tail(0.05)
    live = LiveRules(store)
    task = asyncio.get_running_loop().create_task(live.run())
    transport = httpx.ASGITransport(app=create_app(live))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
            await asyncio.wait_for(live.wait_ready(), 5)
            assert (await client.get("/healthz")).status_code == 200
            assert "decnet_ttp_database_problem 0.0" in (await client.get("/metrics")).text
            (tmp_path / "rules.db").unlink()

            async def refused() -> bool:
                return (await client.get("/healthz")).status_code == 503

            await poll(refused, message="healthz 503")
            body = (await client.get("/healthz")).json()
            assert body["status"] == "database_problem"
            assert "there is no rule database" in body["detail"]
            assert "decnet_ttp_database_problem 1.0" in (await client.get("/metrics")).text
            assert not (tmp_path / "rules.db").exists()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.stop()
