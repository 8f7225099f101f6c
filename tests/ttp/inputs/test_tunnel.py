"""Reading what a tunnelled stream opens with."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from decnet.ttp.inputs.tunnel import http_request, smtp_greeting


def test_python3_and_python2_reprs_and_plain_text() -> None:
    for data in ("b'POST /cgi-bin/luci HTTP/1.0\\r\\nHost: 10.0.0.1\\r\\n\\r\\n'",
                 "'POST /cgi-bin/luci HTTP/1.0\\r\\nHost: 10.0.0.1\\r\\n\\r\\n'",
                 "POST /cgi-bin/luci HTTP/1.0\r\nHost: 10.0.0.1\r\n\r\n"):
        request = http_request(data)
        assert request is not None, data
        assert (request.method, request.raw_url, request.http_version, request.host) == (
            "POST", "/cgi-bin/luci", "1.0", "10.0.0.1")


def test_headers_after_the_blank_line_are_body() -> None:
    request = http_request("b'GET / HTTP/1.1\\r\\n\\r\\nHost: late\\r\\n'")
    assert request is not None and request.host is None


def test_not_http() -> None:
    assert http_request("b'\\x16\\x03\\x01\\x02\\x00\\x01'") is None
    assert http_request("") is None


def test_smtp_greetings() -> None:
    greeting = smtp_greeting("b'HELO bot\\r\\nMAIL FROM:<a@example.com>\\r\\n'")
    assert greeting is not None and (greeting.verb, greeting.argument) == ("HELO", "bot")
    greeting = smtp_greeting("b'mail from: <x@example.org>\\r\\n'")
    assert greeting is not None and greeting.verb == "MAIL FROM"
    assert smtp_greeting("b'GET / HTTP/1.1\\r\\n'") is None


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(max_size=300))
def test_any_text_is_read_without_error(data: str) -> None:
    http_request(data)
    smtp_greeting(data)
