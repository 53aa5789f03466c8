"""The connector/store boundary: each NewMention made storable on SQLite and PostgreSQL alike.

Text loses NUL characters (PostgreSQL refuses them) and unpaired surrogates (UTF-8 cannot encode
them), in `raw` too; names are cut to their columns; counts are clamped to PostgreSQL's 32-bit
integer; a rating outside 0-5 is dropped. Ids are never altered, since a cut or cleaned id could
merge two mentions or stop matching the platform's: a bad external id skips the row, a bad thread
or parent id is dropped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from triage.clock import as_utc
from triage.domain import NewMention
from triage.store.tables import Mention

log = logging.getLogger(__name__)

# `Integer` is int4 on PostgreSQL and 64-bit on SQLite; one range keeps the two alike.
MAX_COUNT = 2**31 - 1
MAX_RATING = 5.0
LABEL_CHARS = 80


class Unstorable(ValueError):
    """A mention that no clamping can make storable; the store skips it."""


def storable_mentions(source: str, mentions: Iterable[NewMention]) -> list[NewMention]:
    """The mentions as they can be stored; one log line for each row changed or skipped."""
    kept: list[NewMention] = []
    for mention in mentions:
        try:
            clean, changes = storable(mention)
        except Unstorable as exc:
            log.warning("%s: skipped %s: %s", source, _label(mention.external_id), exc)
            continue
        if changes:
            log.warning(
                "%s: stored %s with %s", source, _label(mention.external_id), "; ".join(changes)
            )
        kept.append(clean)
    return kept


def storable(mention: NewMention) -> tuple[NewMention, list[str]]:
    """The mention fit for every column and what was changed; Unstorable if it cannot be."""
    changes: list[str] = []
    problem = _id_problem(mention.external_id, "external_id")
    if problem:
        raise Unstorable(problem)
    if not isinstance(mention.text, str):
        raise Unstorable(f"text is a {type(mention.text).__name__}, not a string")
    text = _string(mention.text, "text", changes)
    if text is None or not text.strip():
        raise Unstorable("no text left once NUL characters and unpaired surrogates are removed")
    platform = _string(mention.platform, "platform", changes)
    if platform is None or not platform.strip():
        raise Unstorable("no platform")
    try:
        created_at = _time(mention.created_at)
    except ValueError as exc:
        raise Unstorable(f"created_at: {exc}") from None
    try:
        raw = _json(mention.raw)
    except RecursionError:
        raise Unstorable("raw is nested too deeply to store") from None
    if raw != mention.raw:
        changes.append("raw: removed NUL characters, unpaired surrogates or non-finite numbers")
    clean = replace(
        mention,
        text=text,
        platform=platform,
        url=_string(mention.url, "url", changes),
        title=_string(mention.title, "title", changes),
        author_name=_string(mention.author_name, "author_name", changes),
        author_handle=_string(mention.author_handle, "author_handle", changes),
        author_reach=_count(mention.author_reach, "author_reach", changes),
        engagement=_count(mention.engagement, "engagement", changes),
        rating=_rating(mention.rating, changes),
        created_at=created_at,
        thread_id=_optional_id(mention.thread_id, "thread_id", changes),
        parent_id=_optional_id(mention.parent_id, "parent_id", changes),
        raw=raw,
    )
    return clean, changes


def clean_text(value: str) -> str:
    """The text without NUL characters and unpaired surrogates; surrogate pairs are joined."""
    value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16, a pair held as two code points becomes one character again, and an
        # unpaired half (a cut emoji, an undecodable byte) is dropped.
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "ignore")
    return value


def _limit(field: str) -> int | None:
    return getattr(Mention.__table__.columns[field].type, "length", None)  # type: ignore[attr-defined]


def _string(value: Any, field: str, changes: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        changes.append(f"{field}: a {type(value).__name__}, not a string, dropped")
        return None
    clean = clean_text(value)
    if clean != value:
        changes.append(f"{field}: removed NUL characters or unpaired surrogates")
    if not clean:
        return None
    limit = _limit(field)
    if limit is not None and len(clean) > limit:
        changes.append(f"{field}: cut from {len(clean)} to {limit} characters")
        clean = clean[:limit]
    return clean


def _id_problem(value: Any, field: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"{field}: {value!r} is not an id"
    if clean_text(value) != value:
        return f"{field}: holds NUL characters or unpaired surrogates"
    limit = _limit(field)
    if limit is not None and len(value) > limit:
        return f"{field}: {len(value)} characters, more than the {limit} stored"
    return None


def _optional_id(value: Any, field: str, changes: list[str]) -> str | None:
    if value is None:
        return None
    problem = _id_problem(value, field)
    if problem:
        changes.append(f"{problem}, dropped")
        return None
    return str(value)


def _count(value: Any, field: str, changes: list[str]) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        changes.append(f"{field}: {value!r} is not a count, dropped")
        return None
    if value > MAX_COUNT:
        changes.append(f"{field}: {value} clamped to {MAX_COUNT}")
        return MAX_COUNT
    return value


def _rating(value: Any, changes: list[str]) -> float | None:
    if value is None:
        return None
    # Clamping a 9 out of 10 to 5 stars, or -1 to 0, would invent a rating: drop it instead.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= MAX_RATING
    ):
        changes.append(f"rating: {value!r} is not from 0 to {MAX_RATING:g}, dropped")
        return None
    return float(value)


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValueError(f"{value!r} is not a datetime")
    return as_utc(value)


def _json(value: Any) -> Any:
    """JSON both databases take: clean strings and keys, non-finite numbers as null."""
    if isinstance(value, str):
        return clean_text(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {clean_text(str(key)): _json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json(item) for item in value]
    # Anything else would fail json.dumps and the whole batch with it.
    return clean_text(str(value))


def _label(external_id: Any) -> str:
    """How a log line names a row: its id, shortened, with NUL and the like escaped."""
    if isinstance(external_id, str) and len(external_id) > LABEL_CHARS:
        return f"{external_id[:LABEL_CHARS]!r}... ({len(external_id)} characters)"
    return repr(external_id)
