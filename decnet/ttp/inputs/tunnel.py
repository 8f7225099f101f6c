"""What a tunnelled stream opens with: an HTTP request line and headers, an SMTP greeting.

Cowrie logs the first bytes an attacker pushes through an SSH `direct-tcpip` channel as
Python's `repr` of them (`b'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'`). The text is read
as it is logged, escapes and all, never evaluated; only the first few lines are looked at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from decnet.ttp.constants import TUNNEL_HEADER_LINE_CHARS, TUNNEL_HEADER_LINES

_LINE_BREAK: Final = re.compile(r"\\r\\n|\\n|\r?\n")
_REQUEST_LINE: Final = re.compile(
    r"(GET|POST|HEAD|PUT|DELETE|OPTIONS|PATCH|CONNECT|TRACE|PROPFIND) +(\S+)"
    r"(?: +HTTP/(\d(?:\.\d)?))?$")
_SMTP: Final = re.compile(r"(EHLO|HELO|MAIL FROM:|RCPT TO:)\s*(.*)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    raw_url: str
    http_version: str | None
    host: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class SmtpGreeting:
    verb: str
    argument: str


def unwrap(data: str) -> str:
    """The logged text without Python's `b'…'` / `'…'` wrapping."""
    if len(data) >= 3 and data[0] == "b" and data[1] in "'\"" and data[-1] == data[1]:
        return data[2:-1]
    if len(data) >= 2 and data[0] in "'\"" and data[-1] == data[0]:
        return data[1:-1]
    return data


def lines(data: str) -> list[str]:
    return _LINE_BREAK.split(unwrap(data), TUNNEL_HEADER_LINES)[:TUNNEL_HEADER_LINES]


def http_request(data: str) -> HttpRequest | None:
    """The HTTP request a tunnelled stream starts with, if it starts with one."""
    head = lines(data)
    first = head[0] if head else ""
    match = _REQUEST_LINE.match(first) if len(first) <= TUNNEL_HEADER_LINE_CHARS else None
    if match is None:
        return None
    host = agent = None
    for line in head[1:]:
        if not line:
            break
        if len(line) > TUNNEL_HEADER_LINE_CHARS:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == "host" and host is None:
            host = value.strip()
        elif name == "user-agent" and agent is None:
            agent = value.strip()
    return HttpRequest(match[1], match[2], match[3], host, agent)


def smtp_greeting(data: str) -> SmtpGreeting | None:
    """The first SMTP command (EHLO, HELO, MAIL FROM:, RCPT TO:) of a tunnelled stream."""
    for line in lines(data)[:8]:
        if len(line) > TUNNEL_HEADER_LINE_CHARS:
            continue
        match = _SMTP.match(line)
        if match is not None:
            return SmtpGreeting(match[1].upper().rstrip(":"), match[2].strip())
    return None
