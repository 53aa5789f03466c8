"""Reply lengths are counted the way each platform counts them, and the base checks the rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest

from connectors.base import Connector, Page
from connectors.reply import LengthUnit, ReplyNotAllowed, ReplyRules, SentReply, measure
from triage.config import ConnectorSettings
from triage.domain import ReplyTarget

TARGET = ReplyTarget(external_id="42", platform="demo")


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("Hello", LengthUnit.CHARACTERS, 5),
        ("Dziękujemy", LengthUnit.CHARACTERS, 10),
        ("👍🏽", LengthUnit.CHARACTERS, 2),  # thumbs up + skin tone: two code points
        ("👍🏽", LengthUnit.GRAPHEMES, 1),
        ("🇱🇻 paldies", LengthUnit.GRAPHEMES, 9),
        ("e\u0301", LengthUnit.GRAPHEMES, 1),  # e + combining acute
        ("Hi", LengthUnit.X_WEIGHTED, 2),
        ("日本", LengthUnit.X_WEIGHTED, 4),  # CJK weighs 2
        ("ok 👍🏽", LengthUnit.X_WEIGHTED, 5),  # emoji sequence weighs 2
        ("see https://example.com/a/very/long/path/indeed", LengthUnit.X_WEIGHTED, 4 + 23),
        ("@ana@mastodon.social hi", LengthUnit.MASTODON, len("@ana hi")),
        ("Dziękujemy 👍", LengthUnit.UTF8_BYTES, 10 + 1 + 1 + 4),
        ("status: https://status.kestrel.example/incidents/123", LengthUnit.MASTODON, 8 + 23),
    ],
)
def test_lengths_follow_each_platforms_counting(text: str, unit: LengthUnit, expected: int):
    assert measure(text, unit) == expected


class Demo(Connector):
    type = "demo"
    platform = "demo"
    uses_queries = False
    optional_credentials = ("token",)
    reply_credentials = ("token",)
    expected: ClassVar = {"token": "a token with the write scope"}
    reply_rules: ClassVar[ReplyRules | None] = ReplyRules(max_length=10, unit=LengthUnit.GRAPHEMES)

    def pages(self, cursor: str | None) -> Iterator[Page]:
        return iter(())  # these tests only reply

    def post_reply(self, target: ReplyTarget, text: str, *, key: str) -> SentReply:
        self.posted.append((target.external_id, text, key))
        return SentReply(external_id="r1")


def _demo(**credentials: str) -> Demo:
    demo = Demo(ConnectorSettings(name="demo", type="demo", credentials=credentials))
    demo.posted = []
    return demo


def test_reply_needs_its_credentials_and_says_which():
    demo = _demo()
    assert demo.reply_unavailable() == (
        "replying on demo needs connectors[demo].credentials.token; "
        "expected a token with the write scope"
    )
    with pytest.raises(ReplyNotAllowed, match=r"credentials\.token"):
        demo.reply(TARGET, "hi", key="k")
    assert demo.posted == []


def test_reply_over_the_limit_or_empty_is_refused_before_any_call():
    demo = _demo(token="t")
    over = r"11 characters \(an emoji counts once\) long; demo allows 10"
    with pytest.raises(ReplyNotAllowed, match=over):
        demo.reply(TARGET, "🇱🇻" * 11, key="k")
    with pytest.raises(ReplyNotAllowed, match="empty"):
        demo.reply(TARGET, "  ", key="k")
    assert demo.posted == []


def test_a_reply_within_the_rules_reaches_the_platform_call_with_its_key():
    demo = _demo(token="t")
    sent = demo.reply(TARGET, "🇱🇻" * 10, key="mention-7")
    assert sent.external_id == "r1"
    assert demo.posted == [("42", "🇱🇻" * 10, "mention-7")]
