"""`POST /events` with honeypot logs: `?format=` and NDJSON bodies."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.swarm.test_http_api import worker

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "inputs"


async def test_cowrie_lines_are_tagged_with_their_attacker(tmp_path: Path) -> None:
    body = (FIXTURES / "cowrie-2018.json").read_bytes()
    async with worker(tmp_path) as w:
        response = await w.client.post("/events?format=cowrie", content=body,
                                       headers={"content-type": "application/x-ndjson"})
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["errors"] == [] and result["skipped"] == {}
        uname = [t for t in result["tags"] if t["rule_id"] == "R0001"]
        assert len(uname) == 1
        assert (uname[0]["src_ip"], uname[0]["session_id"], uname[0]["sensor"]) == (
            "198.51.100.23", "a1b2c3d4e5f6", "hp-fra-01")
        again = (await w.client.post("/events?format=cowrie", content=body,
                                     headers={"content-type": "application/json"})).json()
        assert [t["uuid"] for t in again["tags"]] == [t["uuid"] for t in result["tags"]]


async def test_an_ndjson_body_is_read_as_auto(tmp_path: Path) -> None:
    body = b"\n".join([
        (FIXTURES / "cowrie-2018.json").read_bytes().splitlines()[4],
        b"{broken",
        orjson.dumps({"source_kind": "command", "source_id": "n1",
                      "payload": {"command_text": "uname -a"}}),
        (FIXTURES / "opencanary.json").read_bytes().splitlines()[-1],
    ])
    async with worker(tmp_path) as w:
        response = await w.client.post("/events", content=body,
                                       headers={"content-type": "application/x-ndjson"})
        assert response.status_code == 207, response.text  # one record is an error
        result = response.json()
        assert [t["source_id"][:7] for t in result["tags"]] == ["cowrie:", "n1"]
        assert [e["index"] for e in result["errors"]] == [1]
        assert result["skipped"] == {"logtype 17001": 1}


async def test_an_unknown_format_is_400(tmp_path: Path) -> None:
    async with worker(tmp_path) as w:
        response = await w.client.post("/events?format=syslog", content=b"{}",
                                       headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert "unknown format" in response.json()["error"]
