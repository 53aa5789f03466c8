"""Triage cards in Block Kit, built with slack_sdk's model classes; customer text is escaped.

A card shows what an agent needs to decide in one look: priority and score, platform, author
and reach, the mention, why it ranked where it did, the draft, and the buttons. Every piece of
customer or platform text goes through triage.slack.text (escape, cut to the block limits), so
every card can be built whatever the mention holds; what had to be cut is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    MarkdownTextObject,
    Option,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)

from models.urgency import compact
from triage.slack.text import (
    CONTEXT_ELEMENT_LIMIT,
    FIELD_TEXT_LIMIT,
    SECTION_TEXT_LIMIT,
    cut,
    escape,
    fit,
    link,
    quote,
    usable_url,
)
from triage.store import DismissReason

log = logging.getLogger(__name__)

# Block and action ids the interactivity handler dispatches on.
APPROVE = "triage.approve"
EDIT = "triage.edit"
ASSIGN = "triage.assign"
ESCALATE = "triage.escalate"
DISMISS = "triage.dismiss"
OPEN = "triage.open"
MARK_REPLIED = "triage.mark_replied"
EXPAND_DIGEST = "triage.expand_digest"

PRIORITY_EMOJI = {"P1": ":red_circle:", "P2": ":large_orange_circle:", "P3": ":large_blue_circle:"}
SENTIMENT_EMOJI = {"negative": ":slightly_frowning_face:", "positive": ":slightly_smiling_face:"}
# Names and titles are cut well inside the section so the mention itself keeps most of it.
AUTHOR_LIMIT = 200
TITLE_LIMIT = 300
PLATFORM_LIMIT = 60
DRAFT_NOTE_LIMIT = 150
DRAFT_HINT_LIMIT = 200


@dataclass(frozen=True, slots=True)
class CardView:
    """Everything a card shows, read from the stored case, mention, analysis and draft."""

    case_id: int
    priority: str
    urgency: int
    source: str
    platform: str
    text: str
    url: str | None
    language: str
    sentiment: str
    confidence: float
    reasons: list[str]
    author_name: str | None = None
    author_handle: str | None = None
    author_reach: int | None = None
    rating: float | None = None
    title: str | None = None
    created_at: datetime | None = None
    draft: str | None = None
    draft_note: str | None = None
    # What the draft checker says about the draft (triage/drafts/check.py), errors first.
    draft_hints: list[str] = field(default_factory=list)
    # None when the platform can't take a reply from here; then why, for the agent.
    reply_limit: int | None = None
    reply_length: int | None = None
    cannot_reply: str | None = None
    escalate: bool = False
    # complaint | question | feedback | praise | info: praise gets a thank-you, not an apology.
    kind: str = "complaint"
    oncall_group: str | None = None
    assignee: str | None = None
    # A line about where the case stands ("escalated by @lead"), under the draft.
    status_line: str | None = None
    # Set once the case is done: the card loses its buttons and says what happened.
    outcome: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def author(self) -> str:
        parts = [self.author_name or "", self.author_handle or ""]
        return " ".join(dict.fromkeys(part for part in parts if part)) or "someone"


def card_text(view: CardView) -> str:
    """The plain fallback text: notifications and screen readers show it."""
    return cut(f"{view.priority} ({view.urgency}) {view.platform}: {view.author}: {view.text}", 300)


def card_blocks(view: CardView) -> list[dict[str, Any]]:
    """The card's blocks, as dicts ready for chat.postMessage / chat.update."""
    cuts: list[str] = []
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=_headline(view))),
        SectionBlock(text=MarkdownTextObject(text=_mention(view, cuts))),
        ContextBlock(elements=[MarkdownTextObject(text=text) for text in _facts(view, cuts)]),
    ]
    if view.reasons:
        why = "*Why:* " + cut("; ".join(view.reasons), 2000)
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=why)]))
    blocks.append(DividerBlock())
    if view.draft:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_draft(view, cuts))))
    if view.outcome:
        outcome = _fit(view.outcome, "outcome", cuts)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=outcome)))
    else:
        notes = [f":bust_in_silhouette: <@{view.assignee}>"] if view.assignee else []
        notes += [view.status_line] if view.status_line else []
        if notes:
            blocks.append(
                ContextBlock(
                    elements=[MarkdownTextObject(text=_fit(n, "status", cuts)) for n in notes]
                )
            )
        blocks.append(ActionsBlock(block_id=f"case-{view.case_id}", elements=_buttons(view)))
    if cuts:
        log.info("card of case %s cut to Block Kit's limits: %s", view.case_id, ", ".join(cuts))
    return [block.to_dict() for block in blocks]


def _headline(view: CardView) -> str:
    emoji = PRIORITY_EMOJI.get(view.priority, ":white_circle:")
    head = f"{emoji} *{view.priority} · {view.urgency}* · {cut(view.platform, PLATFORM_LIMIT)}"
    if view.rating is not None:
        head += f" · {'★' * round(view.rating)}{'☆' * (5 - round(view.rating))}"
    if view.kind == "praise":
        head += " · :sparkling_heart: praise"
    if view.escalate and view.oncall_group:
        head += f" · <!subteam^{view.oncall_group}> needs a lead"
    elif view.escalate:
        head += " · :rotating_light: escalate"
    return head


def _mention(view: CardView, cuts: list[str]) -> str:
    who = f"*{_cut(view.author, AUTHOR_LIMIT, 'author', cuts)}*"
    if view.author_reach:
        who += f" · {compact(view.author_reach)} followers"
    title = f"*{_cut(view.title, TITLE_LIMIT, 'title', cuts)}*\n" if view.title else ""
    # Measured once quoted: many short lines gain more from "> " than they hold.
    room = SECTION_TEXT_LIMIT - len(who) - 1 - len(title)
    quoted = quote(view.text)
    if len(quoted) > room:
        cuts.append("mention")
        quoted = quote(view.text, room, more_url=view.url)
    return f"{who}\n{title}{quoted}"


def _facts(view: CardView, cuts: list[str]) -> list[str]:
    facts = [
        f"{SENTIMENT_EMOJI.get(view.sentiment, ':neutral_face:')} {escape(view.sentiment)} "
        f"{view.confidence:.0%}",
        f":speech_balloon: {escape(view.language)}",
        f":inbox_tray: {escape(view.source)}",
    ]
    if view.created_at:
        stamp = int(view.created_at.timestamp())
        facts.append(f"<!date^{stamp}^{{date_short_pretty}} {{time}}|{view.created_at:%Y-%m-%d}>")
    if view.url:
        original = link(view.url, "original")
        if usable_url(view.url) and len(original) <= SECTION_TEXT_LIMIT:
            facts.append(original)
        else:
            cuts.append(f"the {len(view.url)}-character URL")
    return facts[:CONTEXT_ELEMENT_LIMIT]


def _draft(view: CardView, cuts: list[str]) -> str:
    size = ""
    if view.reply_limit is not None and view.reply_length is not None:
        over = " :warning: too long" if view.reply_length > view.reply_limit else ""
        size = f" · {view.reply_length}/{view.reply_limit}{over}"
    note = f"\n_{cut(view.draft_note, DRAFT_NOTE_LIMIT)}_" if view.draft_note else ""
    hints = "".join(f"\n:bulb: {cut(hint, DRAFT_HINT_LIMIT)}" for hint in view.draft_hints[:5])
    head = f"*Draft reply* ({cut(view.language, PLATFORM_LIMIT)}{size}){note}\n"
    room = SECTION_TEXT_LIMIT - len(head) - len(hints)
    quoted = quote(view.draft or "")
    if len(quoted) > room:
        cuts.append("draft")
        quoted = quote(view.draft or "", room)
    return f"{head}{quoted}{hints}"


def _cut(text: str, limit: int, name: str, cuts: list[str]) -> str:
    if len(escape(text)) > limit:
        cuts.append(name)
    return cut(text, limit)


def _fit(mrkdwn: str, name: str, cuts: list[str]) -> str:
    if len(mrkdwn) > SECTION_TEXT_LIMIT:
        cuts.append(name)
    return fit(mrkdwn, SECTION_TEXT_LIMIT)


def _buttons(view: CardView) -> list[Any]:
    value = str(view.case_id)
    platform = cut(view.platform, PLATFORM_LIMIT)  # keeps the confirm text under Slack's 300
    buttons: list[Any] = []
    if view.cannot_reply is None:
        buttons.append(
            ButtonElement(
                text=PlainTextObject(
                    text="Send thanks" if view.kind == "praise" else "Approve & send"
                ),
                action_id=APPROVE,
                value=value,
                style="primary",
                confirm=ConfirmObject(
                    title="Send this reply?",
                    text=f"It goes out publicly on {platform}, as the draft shows.",
                    confirm="Send",
                    deny="Cancel",
                ),
            )
        )
        buttons.append(ButtonElement(text="Edit", action_id=EDIT, value=value))
    else:
        # Slack refuses a button url over 3,000 characters: no Open button beats no card.
        if usable_url(view.url):
            buttons.append(ButtonElement(text="Open", action_id=OPEN, url=view.url, value=value))
        buttons.append(ButtonElement(text="Mark as replied", action_id=MARK_REPLIED, value=value))
    buttons.append(ButtonElement(text="Assign to me", action_id=ASSIGN, value=value))
    if not view.escalate:
        buttons.append(
            ButtonElement(text="Escalate", action_id=ESCALATE, value=value, style="danger")
        )
    buttons.append(
        StaticSelectElement(
            placeholder="Dismiss…",
            action_id=DISMISS,
            options=[
                Option(value=f"{value}:{reason.value}", label=reason.label)
                for reason in DismissReason
            ],
        )
    )
    return buttons


@dataclass(frozen=True, slots=True)
class DigestView:
    """The P3/P4 cases a busy channel holds back: how many, about what, the worst few."""

    key: str
    count: int
    by_intent: list[tuple[str, int]]
    by_language: list[tuple[str, int]]
    # (priority, urgency, platform, excerpt, case id), worst first
    top: list[tuple[str, int, str, str, int]]


def digest_text(view: DigestView) -> str:
    return f"Digest: {view.count} lower-priority cases held back while the channel is busy"


def digest_blocks(view: DigestView) -> list[dict[str, Any]]:
    """One message for many P3/P4 cases, with a button that posts them as cards in its thread."""
    topics = " · ".join(f"{escape(name)} {n}" for name, n in view.by_intent) or "none"
    languages = " · ".join(f"{escape(code)} {n}" for code, n in view.by_language)
    lines = [
        f"*{priority} {urgency}* {escape(cut(platform, PLATFORM_LIMIT))} · {escape(text)} "
        f"(case {case_id})"
        for priority, urgency, platform, text, case_id in view.top
    ]
    more = view.count - len(view.top)
    blocks: list[Block] = [
        SectionBlock(
            text=MarkdownTextObject(
                text=f":package: *{view.count} P3/P4 cases* came in faster than single cards "
                "can be posted here, so they are grouped; P1 and P2 still come as cards."
            )
        ),
        ContextBlock(
            elements=[
                MarkdownTextObject(text=fit(f"*Topics:* {topics}", FIELD_TEXT_LIMIT)),
                MarkdownTextObject(text=fit(f"*Languages:* {languages}", FIELD_TEXT_LIMIT)),
            ]
        ),
        SectionBlock(text=MarkdownTextObject(text=fit("\n".join(lines), SECTION_TEXT_LIMIT))),
    ]
    label = f"Post all {view.count} as cards in the thread" if more > 0 else "Post as cards"
    blocks.append(
        ActionsBlock(elements=[ButtonElement(text=label, action_id=EXPAND_DIGEST, value=view.key)])
    )
    return [block.to_dict() for block in blocks]


def status_text(state: Any, *, now: datetime, ended: bool = False) -> str:
    """The care channel's pinned status while it is busy (a QueueState from the store)."""
    if ended:
        return f":white_check_mark: *Back to normal* ({now:%H:%M} UTC): single cards again."
    topics = " · ".join(f"{escape(name)} {n}" for name, n in state.top_topics) or "none yet"
    lines = [
        f":rotating_light: *Busy* (updated {now:%H:%M} UTC): P1 and P2 come as cards first; "
        "P3/P4 may come grouped in digests.",
        f"*Last hour:* {state.mentions_last_hour} mentions · *Top topics:* {topics}",
        f"*Waiting:* {state.not_posted} cases not yet posted ({state.in_digests} in digests)",
    ]
    if state.oldest_waiting_p1 is not None:
        waited = max(0, int((now - state.oldest_waiting_p1).total_seconds() // 60))
        lines.append(f"*Oldest P1 nobody has taken:* {waited} min (case {state.oldest_p1_case})")
    return fit("\n".join(lines), SECTION_TEXT_LIMIT)
