"""The one check of a link taken from a post before it is shown anywhere: web addresses only."""

from __future__ import annotations

from urllib.parse import urlsplit

WEB_SCHEMES = frozenset({"http", "https"})


def web_url(url: str | None) -> str | None:
    """`url` when it is an http(s) address with a host, else None (javascript:, data:, ...)."""
    if not url:
        return None
    candidate = url.strip()
    # Browsers drop tabs and newlines inside a scheme ("java\tscript:"), so any control
    # character makes the address suspect.
    if any(ord(char) < 32 or ord(char) == 127 for char in candidate):
        return None
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return None
    if parts.scheme.lower() not in WEB_SCHEMES or not parts.hostname:
        return None
    return candidate
