"""Cards stay inside Block Kit's limits, cut long text with a link, and escape everything."""

from __future__ import annotations

import json

from triage.slack.cards import APPROVE, MARK_REPLIED, OPEN, CardView, card_blocks
from triage.slack.text import cut, escape, link


def _view(**changes) -> CardView:
    base = dict(
        case_id=7,
        priority="P2",
        urgency=61,
        source="play",
        platform="googleplay",
        text="The app crashes",
        url="https://play.google.com/store/apps/details?id=com.kestrel&reviewId=1",
        language="pl",
        sentiment="negative",
        confidence=0.83,
        reasons=["1-star review"],
        rating=1.0,
        draft="Dzień dobry, przepraszamy.",
        reply_limit=350,
        reply_length=26,
    )
    return CardView(**{**base, **changes})


def _texts(blocks: list[dict]) -> list[str]:
    found = []
    for block in blocks:
        if "text" in block:
            found.append(block["text"]["text"])
        for element in block.get("elements", []):
            if element.get("type") == "mrkdwn":
                found.append(element["text"])
    return found


def test_escape_and_link_make_customer_text_inert():
    assert escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert link("https://x.example/a b|c", "<b>|") == "<https://x.example/a%20b%7Cc|&lt;b&gt;¦>"


def test_cut_keeps_within_the_limit_and_never_splits_an_entity():
    tail = " … <https://x.example/1|read the rest>"
    cut_text = cut("a" * 60 + "&" * 10, 100, more_url="https://x.example/1")
    # 100 - len(tail) = 62 characters of "aaa…&amp;…" would end inside "&amp;": it is dropped.
    assert cut_text == "a" * 60 + tail
    assert len(cut_text) <= 100
    assert cut("short & sweet", 100) == "short &amp; sweet"


def test_a_very_long_review_is_cut_with_a_link_and_blocks_stay_in_limits():
    blocks = card_blocks(_view(text="Słabo. " * 2000, draft="x" * 6000))
    for text in _texts(blocks):
        assert len(text) <= 3000
    mention = blocks[1]["text"]["text"]
    assert mention.endswith("|read the rest>")
    assert len(json.dumps(blocks)) < 50_000


def test_stars_praise_and_buttons():
    blocks = card_blocks(_view(kind="praise", priority="P4", urgency=10, rating=5.0))
    assert blocks[0]["text"]["text"] == (
        ":white_circle: *P4 · 10* · googleplay · ★★★★★ · :sparkling_heart: praise"
    )
    approve = blocks[-1]["elements"][0]
    assert approve["action_id"] == APPROVE and approve["text"]["text"] == "Send thanks"
    draft = next(t for t in _texts(blocks) if t.startswith("*Draft reply*"))
    assert draft.startswith("*Draft reply* (pl · 26/350)")


def test_an_over_long_draft_is_flagged_and_a_read_only_source_gets_open_and_mark():
    over = card_blocks(_view(reply_length=400))
    assert "400/350 :warning: too long" in json.dumps(over, ensure_ascii=False)
    read_only = card_blocks(_view(cannot_reply="hackernews has no API for replies"))
    actions = [element.get("action_id") for element in read_only[-1]["elements"]]
    assert actions[:2] == [OPEN, MARK_REPLIED] and APPROVE not in actions


def test_draft_hints_are_shown_under_the_draft_escaped():
    hints = ["does not greet <@U1> by name", "b", "c", "d", "e", "f"]
    blocks = card_blocks(_view(draft_hints=hints))
    draft = next(t for t in _texts(blocks) if t.startswith("*Draft reply*"))
    assert ":bulb: does not greet &lt;@U1&gt; by name" in draft
    assert draft.count(":bulb:") == 5  # the rest would crowd the card
