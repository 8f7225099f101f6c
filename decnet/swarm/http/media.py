"""Which request bodies `POST /events` reads: a table of media types.

A body is read only when it says what it is: a browser's cross-origin form post
(`text/plain`, `application/x-www-form-urlencoded`, `multipart/form-data`) is refused
with 415 before a byte of it is parsed.
"""

from __future__ import annotations

from typing import Final

#: Media type (lower case, without parameters) -> the body format it names.
EVENT_MEDIA_TYPES: Final[dict[str, str]] = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
}
#: Structured-syntax suffixes (RFC 6839) -> the body format: `application/x+json`.
EVENT_MEDIA_SUFFIXES: Final[dict[str, str]] = {
    "+json": "json",
}
#: Charsets a JSON body may declare (RFC 8259: JSON exchanged between systems is UTF-8).
JSON_CHARSETS: Final = frozenset({"utf-8", "utf8"})


class UnsupportedMediaType(ValueError):
    """A body whose Content-Type `POST /events` does not read; the message says which do."""


def body_format(content_type: str | None) -> str:
    """The format named by a Content-Type header value; `UnsupportedMediaType` otherwise."""
    if not content_type:
        raise UnsupportedMediaType("Content-Type is required: application/json")
    media_type, *params = (part.strip() for part in content_type.split(";"))
    media_type = media_type.lower()
    found = EVENT_MEDIA_TYPES.get(media_type)
    if found is None and media_type.startswith("application/"):
        found = next((fmt for suffix, fmt in EVENT_MEDIA_SUFFIXES.items()
                      if media_type.endswith(suffix)), None)
    if found is None:
        accepted = ", ".join([*EVENT_MEDIA_TYPES, *(f"application/*{s}"
                                                    for s in EVENT_MEDIA_SUFFIXES)])
        raise UnsupportedMediaType(f"Content-Type must be one of: {accepted}")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and \
                value.strip().strip('"').lower() not in JSON_CHARSETS:
            raise UnsupportedMediaType("a JSON body must be UTF-8")
    return found
