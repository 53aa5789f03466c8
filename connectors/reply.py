"""Replying on a platform: the rules a reply must meet, how its length is counted, the result.

A connector that can answer declares `reply_rules` and implements `post_reply`; the base checks
the text against the rules first. Idempotency: `post_reply` receives a key that is the same on
every retry of one reply. A platform with a native guard uses it (Mastodon's Idempotency-Key,
Bluesky's record key); review platforms keep one reply per review, so a repeat overwrites; the
rest implement `find_reply`, which the act stage calls before retrying an attempt whose outcome
is unknown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import regex

from triage.http import ConnectorError


class LengthUnit(StrEnum):
    """How a platform counts a reply's length."""

    CHARACTERS = "characters"  # Unicode code points
    GRAPHEMES = "graphemes"  # what a reader sees as one character (Bluesky)
    X_WEIGHTED = "x-weighted"  # X: links 23, most scripts 1, CJK and emoji 2
    MASTODON = "mastodon"  # code points; links 23, @user@domain counts as @user
    UTF8_BYTES = "utf8-bytes"  # Google Business Profile: bytes of the UTF-8 text

    @property
    def label(self) -> str:
        """How an agent reads the count."""
        return {
            LengthUnit.CHARACTERS: "characters",
            LengthUnit.GRAPHEMES: "characters (an emoji counts once)",
            LengthUnit.X_WEIGHTED: "characters as X counts them (links 23, emoji and CJK 2)",
            LengthUnit.MASTODON: "characters as Mastodon counts them (links 23)",
            LengthUnit.UTF8_BYTES: "bytes (an accented letter counts 2, an emoji 4)",
        }[self]


@dataclass(frozen=True, slots=True)
class ReplyRules:
    """What a platform accepts as a reply."""

    max_length: int
    unit: LengthUnit = LengthUnit.CHARACTERS
    # Whether a link in a reply is shown as a link (review answers show plain text).
    links: bool = True
    # Whether everyone can read the reply: never ask for account details there.
    public: bool = True
    # Whether the customer can message the brand privately on this platform ("DM us").
    private_messages: bool = True
    # A platform rule the agent should know, shown next to the draft.
    note: str = ""

    def length(self, text: str) -> int:
        """The text's length as this platform counts it."""
        return measure(text, self.unit)


@dataclass(frozen=True, slots=True)
class SentReply:
    """A reply the platform accepted (or already had): its id and where to see it."""

    external_id: str | None
    url: str | None = None
    # True when the platform already had this reply (a retry found it instead of posting).
    already_there: bool = False


class ReplyNotAllowed(ConnectorError):
    """The platform, its rules or our credentials do not allow this reply; says what to do."""


URL_WEIGHT = 23  # X and Mastodon count every link as 23 characters, whatever its length
_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_MASTODON_MENTION = re.compile(r"(@[\w.]+)@[\w.-]+\w", re.UNICODE)
# twitter-text v3: these code point ranges weigh 1, everything else 2.
_X_LIGHT = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))
_GRAPHEME = regex.compile(r"\X")


def measure(text: str, unit: LengthUnit) -> int:
    """The length of `text` in `unit`."""
    if unit is LengthUnit.GRAPHEMES:
        return len(_GRAPHEME.findall(text))
    if unit is LengthUnit.UTF8_BYTES:
        return len(text.encode("utf-8"))
    if unit is LengthUnit.MASTODON:
        shortened = _MASTODON_MENTION.sub(r"\1", text)
        links = _URL.findall(shortened)
        return len(_URL.sub("", shortened)) + URL_WEIGHT * len(links)
    if unit is LengthUnit.X_WEIGHTED:
        links = _URL.findall(text)
        rest = _URL.sub("", text)
        return sum(_x_weight(cluster) for cluster in _GRAPHEME.findall(rest)) + URL_WEIGHT * len(
            links
        )
    return len(text)


def _x_weight(cluster: str) -> int:
    if _is_emoji(cluster):
        return 2  # an emoji sequence (flag, skin tone, family) counts once, as 2
    return sum(
        1 if any(low <= ord(char) <= high for low, high in _X_LIGHT) else 2 for char in cluster
    )


def _is_emoji(cluster: str) -> bool:
    return any(ord(char) >= 0x1F000 or char in "\u200d\ufe0f" for char in cluster)
