"""`POST /events` reads JSON bodies only: a form post from a browser is refused unread."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from decnet.swarm.http.media import UnsupportedMediaType, body_format
from tests.swarm.http.serving import copy_rules, metric, serving

UNAME = orjson.dumps({"source_kind": "command", "source_id": "c1",
                      "payload": {"command_text": "uname -a"}})


@pytest.mark.parametrize("content_type", [
    "application/json", "Application/JSON", "application/json; charset=utf-8",
    'application/json;charset="UTF-8"', "application/vnd.decnet.events+json",
])
def test_json_media_types_are_read(content_type: str) -> None:
    assert body_format(content_type) == "json"


@pytest.mark.parametrize("content_type", [
    None, "", "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "text/json", "application/jsonx",
    "application/json; charset=utf-16", "image/svg+json",
])
def test_other_media_types_are_refused(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType, match=r"Content-Type|UTF-8"):
        body_format(content_type)


def test_the_worker_answers_415_to_a_cross_origin_form_post(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serving(copy_rules(tmp_path, ["R0001.yaml"]), capsys) as url, \
            httpx.Client(base_url=url) as client:
        for headers in ({"Content-Type": "text/plain"}, {},
                        {"Content-Type": "application/x-www-form-urlencoded"}):
            response = client.post("/events", content=UNAME, headers=headers)
            assert response.status_code == 415, headers
            assert "application/json" in response.json()["error"]
        refused = metric(client.get("/metrics").text,
                         'decnet_ttp_http_refused_total{reason="media_type"}')
        assert refused == 3
        assert metric(client.get("/metrics").text, "decnet_ttp_events_evaluated_total") == 0
        response = client.post("/events", content=UNAME,
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 200 and response.json()[0]["rule_id"] == "R0001"
