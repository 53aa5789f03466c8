"""Cards stay inside Block Kit's limits, cut long text with a link, and escape everything."""

from __future__ import annotations

import json

import pytest

from triage.slack.cards import APPROVE, MARK_REPLIED, OPEN, CardView, card_blocks
from triage.slack.text import cut, escape, fit, link, quote


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


def _limits_broken(node: object, path: str = "") -> list[str]:
    """Every text over Block Kit's 3,000, button url over 3,000 or confirm text over 300."""
    broken = []
    if isinstance(node, dict):
        text = node.get("text")
        if isinstance(text, str) and len(text) > (300 if "confirm" in path else 3000):
            broken.append(f"{path}.text: {len(text)}")
        url = node.get("url")
        if isinstance(url, str) and len(url) > 3000:
            broken.append(f"{path}.url: {len(url)}")
        for key, value in node.items():
            broken += _limits_broken(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            broken += _limits_broken(value, f"{path}[{index}]")
    return broken


LONG_URL = "https://example.com/review?" + "q=a%20b&" * 700  # 5,627 characters


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"url": LONG_URL, "cannot_reply": "no API"}, id="url-over-3000"),
        pytest.param({"text": "a\n" * 1400}, id="short-lines-quoted-past-3000"),
        pytest.param({"text": "&\n" * 1000}, id="escaped-short-lines"),
        pytest.param({"title": "Worst app ever " * 300}, id="long-title"),
        pytest.param({"author_name": "Ana " * 1000, "title": "t" * 2900}, id="long-author"),
        pytest.param({"draft": "ok\n" * 1400, "draft_note": "n" * 400}, id="draft-short-lines"),
        pytest.param({"draft": "x" * 2800, "draft_hints": ["h" * 500] * 5}, id="draft-and-hints"),
        pytest.param({"platform": "p" * 400}, id="long-platform"),
        pytest.param(
            {"outcome": ":white_check_mark: *Replied*\n" + "> &amp;\n" * 800}, id="outcome"
        ),
    ],
)
def test_a_card_of_any_mention_is_cut_to_block_kit_limits(changes):
    blocks = card_blocks(_view(**changes))  # slack_sdk refuses anything over its limits
    assert _limits_broken(blocks) == []
    mention = blocks[1]["text"]["text"]
    assert mention.startswith("*")  # the author still leads the mention
    if "text" in changes:
        assert mention.endswith("|read the rest>")


def test_a_url_too_long_for_slack_loses_its_links_not_the_card():
    blocks = card_blocks(_view(url=LONG_URL, text="x" * 4000, cannot_reply="no API"))
    sent = json.dumps(blocks)
    assert LONG_URL not in sent
    assert blocks[1]["text"]["text"].endswith(" …")
    actions = [element.get("action_id") for element in blocks[-1]["elements"]]
    assert OPEN not in actions and actions[0] == MARK_REPLIED


@pytest.mark.parametrize(
    "url", ["javascript:alert(document.cookie)", "data:text/html,<b>x</b>", "java\tscript:x"]
)
def test_a_url_that_is_no_web_address_is_never_a_link_or_a_button(url):
    blocks = card_blocks(_view(url=url, text="x" * 4000, cannot_reply="no API"))
    sent = json.dumps(blocks)
    assert "script:" not in sent and "data:" not in sent
    actions = [element.get("action_id") for element in blocks[-1]["elements"]]
    assert OPEN not in actions
    assert link(url, "open") == "open"
    assert link("https://x.example/1", "open") == "<https://x.example/1|open>"


def test_quote_is_measured_after_the_quote_marks():
    quoted = quote("a\nb & c\n\nd" * 400, 1000, more_url="https://x.example/1")
    assert len(quoted) <= 1000
    assert quoted.startswith("> a\n> b &amp; c\n>\n> d")
    assert quoted.endswith(" … <https://x.example/1|read the rest>")
    assert quote("a\n\nb") == "> a\n>\n> b"
    # A link that would take most of the room is left off, not the text.
    assert quote("x" * 3000, 1000, more_url="https://x.example/" + "y" * 600).endswith("x …")


def test_fit_cuts_built_mrkdwn_outside_entities_and_links():
    built = "*Replied* " + "&amp;" * 3 + " <https://x.example/reply|view the reply> and more"
    assert fit(built, len(built)) == built
    assert fit(built, 20) == "*Replied* &amp; …"
    assert fit(built, 40) == "*Replied* &amp;&amp;&amp; …"
    assert fit(built, 60) == "*Replied* &amp;&amp;&amp; …"  # not a link cut in half
    assert fit(built, 68) == "*Replied* &amp;&amp;&amp; <https://x.example/reply|view the reply> …"
