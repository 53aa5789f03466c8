"""The one clock: every timestamp in triage is timezone-aware UTC and comes from here."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, in UTC, with tzinfo."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Treat naive datetimes (as SQLite returns them) as UTC; ValueError if UTC cannot hold it."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59-05:00 is past datetime.max in UTC. A ValueError makes it a malformed
        # value, which connectors skip item by item (map_items) instead of failing the page.
        raise ValueError(f"{value.isoformat()} cannot be represented in UTC") from None
