"""Plain data passed between stages, so no stage imports another stage's internals."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class NewMention:
    """A mention as a connector normalised it, before it is stored."""

    source: str
    external_id: str
    platform: str
    text: str
    url: str | None = None
    author_name: str | None = None
    author_handle: str | None = None
    author_reach: int | None = None
    created_at: datetime | None = None
    rating: float | None = None
    engagement: int | None = None
    thread_id: str | None = None
    parent_id: str | None = None
    title: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Batch:
    """Mentions from one page and the cursor to save with them in one transaction."""

    mentions: list[NewMention]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """What a connector needs to answer one stored mention: its ids and raw payload."""

    external_id: str
    platform: str
    url: str | None = None
    author_handle: str | None = None
    thread_id: str | None = None
    parent_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
