"""Learning from what agents send: a new draft starts from the closest reply an agent edited.

A sent reply is an example when the agent changed its draft; a new mention in the same language,
of the same kind and draft category, whose text the encoder finds close enough, gets that reply
with the old customer's details (name, handle, order number) swapped for the new one's.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from triage.drafts.render import order_number

EDIT_CLASSES = ("unedited", "light", "rewritten")
# A sent reply this similar to its draft (difflib ratio) was lightly edited; below, rewritten.
LIGHT_EDIT = 0.8
# Text an agent's sign-off may add to a draft sent as it was ("^AB", "– Ana, Kestrel").
SIGN_OFF_ROOM = 40
# How close (cosine of the encoder's embeddings) a mention must be to an earlier one for its
# reply to be reused. On the care validation mentions (pairs in one language), 10.5% of pairs
# about the same intent reach 0.9 and 2.6% of the others; language, kind and the draft's category
# must match as well, and "order 123456 not delivered after two weeks" against its paraphrase
# scores 0.92.
NEAR_ENOUGH = 0.9


def edit_class(draft: str, sent: str) -> str:
    """ "unedited", "light" or "rewritten": how far the sent reply is from its draft."""
    draft, sent = " ".join(draft.split()), " ".join(sent.split())
    if sent == draft or (sent.startswith(draft) and len(sent) - len(draft) <= SIGN_OFF_ROOM):
        return "unedited"
    # Upper bounds of the ratio first, the lengths' (real_quick_ratio) and the characters'
    # (quick_ratio): below the bar, the slow ratio need not run (a report measures a month of
    # replies).
    if 2.0 * min(len(draft), len(sent)) / (len(draft) + len(sent)) < LIGHT_EDIT:
        return "rewritten"
    matcher = difflib.SequenceMatcher(None, draft, sent, autojunk=False)
    if matcher.quick_ratio() < LIGHT_EDIT:
        return "rewritten"
    return "light" if matcher.ratio() >= LIGHT_EDIT else "rewritten"


def draft_category(generator: str) -> str:
    """What a draft was written for, from its generator: "delivery", "legal", "answer", "model"."""
    parts = generator.split(":")
    if parts[0] == "learned" and len(parts) > 2:
        return parts[2]
    if parts[0] != "template" or len(parts) < 3:
        return "model"
    if parts[1] in ("answer", "saved"):
        return parts[1]
    return parts[3] if len(parts) > 3 else parts[1]


@dataclass(frozen=True, slots=True)
class Customer:
    """Who a reply was written to: what a reused reply must not carry over to someone else."""

    greeting: str  # the name as the draft greeted them ("Anno", "@anna_k")
    handle: str | None
    text: str  # their mention, read for an order number


@dataclass(frozen=True, slots=True)
class Example:
    """A reply an agent sent, after editing its draft, to a mention of `customer`."""

    reply_id: int
    sent: str
    customer: Customer
    embedding: np.ndarray


def without_sign_off(text: str, sign_off: str, brand: str) -> str:
    """The reply without the agent's sign-off that sending added ("... ^AB" -> "...")."""
    if not sign_off.strip():
        return text
    pattern = re.escape(sign_off)
    for field, value in (("initials", r"\S+"), ("first_name", r"\S+"), ("brand", re.escape(brand))):
        pattern = pattern.replace(re.escape("{" + field + "}"), value)
    return re.sub(rf"\s*{pattern}\s*$", "", text)


def personalise(example: Example, customer: Customer) -> str | None:
    """The example's reply for another customer, or None when it says something about the
    first one that cannot be swapped (an order number the new customer did not give)."""
    text = example.sent
    old, new = example.customer, customer
    if old.greeting and old.greeting != new.greeting:
        if not new.greeting:
            return None
        text = re.sub(rf"(?<!\w){re.escape(old.greeting)}(?!\w)", new.greeting, text)
    if old.handle and new.handle:
        text = re.sub(rf"(?<!\w){re.escape(old.handle)}(?!\w)", new.handle, text)
    old_order, new_order = order_number(old.text), order_number(customer.text)
    if old_order and old_order.casefold() in text.casefold():
        if not new_order:
            return None
        text = re.sub(re.escape(old_order), new_order, text, flags=re.IGNORECASE)
    return text


def nearest(query: np.ndarray, examples: Sequence[Example]) -> tuple[Example, float] | None:
    """The example whose mention is closest to the query embedding, if near enough."""
    if not examples:
        return None
    matrix = np.stack([example.embedding for example in examples])
    scores = matrix @ np.asarray(query, dtype=matrix.dtype)
    best = int(np.argmax(scores))
    score = float(scores[best])
    return (examples[best], score) if score >= NEAR_ENOUGH else None
