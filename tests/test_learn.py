"""Learning from what agents send: the next similar mention's draft starts from an agent's edit."""

from __future__ import annotations

import numpy as np
import pytest
from sqlmodel import select

from tests.conftest import write_jsonl
from tests.test_pipeline import _file, pipeline_factory  # noqa: F401  (a fixture)
from triage.drafts.learn import (
    Customer,
    Example,
    edit_class,
    nearest,
    personalise,
    without_sign_off,
)
from triage.store import Draft, Mention, OutboundReply, session_scope
from triage.store.tables import ReplyStatus


def test_edit_classes():
    draft = "Hi Ana, we're sorry your parcel is late. Send us the order number by DM."
    assert edit_class(draft, draft + " ^AB") == "unedited"
    assert edit_class(draft, draft.replace("late", "two weeks late")) == "light"
    assert edit_class(draft, "Hi Ana, the courier lost it: a new one leaves today.") == "rewritten"


def test_a_reused_reply_is_made_out_to_the_new_customer_or_not_used():
    sent = "Hi Anno, we found order 4411872 at the depot: it reaches you tomorrow."
    old = Customer("Anno", "@ania", "Gdzie jest zamówienie 4411872?")
    example = Example(1, sent, old, np.ones(2))
    tomek = Customer("Tomku", "@tomek", "Gdzie jest zamówienie 5550001?")
    assert personalise(example, tomek) == (
        "Hi Tomku, we found order 5550001 at the depot: it reaches you tomorrow."
    )
    # The old order number cannot be said to someone who gave none.
    assert personalise(example, Customer("Tomku", "@tomek", "Gdzie moja paczka?")) is None
    assert without_sign_off("Thanks! ^AB", "^{initials}", "Kestrel") == "Thanks!"
    assert without_sign_off("Thanks! – Ana, Kestrel", "– {first_name}, {brand}", "Kestrel") == (
        "Thanks!"
    )


def test_only_a_near_enough_example_is_used():
    examples = [
        Example(1, "a", Customer("", None, ""), np.array([1.0, 0.0])),
        Example(2, "b", Customer("", None, ""), np.array([0.6, 0.8])),
    ]
    found = nearest(np.array([0.95, 0.312]), examples)
    assert found is not None and found[0].reply_id == 1
    assert nearest(np.array([0.0, 1.0]) * -1, examples) is None
    assert nearest(np.array([1.0, 0.0]), []) is None


@pytest.mark.model
def test_an_agents_edit_becomes_the_next_similar_drafts_start(tmp_path, pipeline_factory):  # noqa: F811
    first = {
        "id": "1",
        "platform": "x",
        "text": "@kestrel my order 4411872 still hasn't arrived after two weeks, where is it?",
        "author": "Anna Smith",
        "handle": "@anna",
    }
    write_jsonl(tmp_path / "in.jsonl", [first])
    pipeline = pipeline_factory(_file("imports", tmp_path / "in.jsonl"))
    pipeline.run_once()
    edited = (
        "Hi Anna, so sorry! Order 4411872 is stuck at our Leeds depot after a van breakdown: "
        "it goes out again tomorrow morning and we've refunded the delivery fee."
    )
    with session_scope(pipeline.engine) as session:
        mention, draft = session.exec(select(Mention, Draft).join(Draft)).one()
        assert draft.generator.endswith(":delivery") and "Leeds" not in draft.text
        session.add(
            OutboundReply(
                idempotency_key="k1", mention_id=mention.id, source="imports", text=edited,
                status=ReplyStatus.SENT, requested_by="U1", sent_at=mention.fetched_at,
            )
        )  # fmt: skip
    similar = {
        "id": "2",
        "platform": "x",
        "text": "@kestrel order 5550001 has not been delivered after two weeks, where is it??",
        "author": "Tom Baker",
        "handle": "@tom",
    }
    unrelated = {
        "id": "3",
        "platform": "x",
        "text": "@kestrel you charged me twice for my subscription this month, refund please",
        "author": "Eve Stone",
        "handle": "@eve",
    }
    write_jsonl(tmp_path / "in.jsonl", [first, similar, unrelated])
    pipeline.run_once()
    with session_scope(pipeline.engine) as session:
        drafts = {
            m.external_id: d for m, d in session.exec(select(Mention, Draft).join(Draft)).all()
        }
    learned = drafts["2"]
    assert learned.text == edited.replace("Anna", "Tom").replace("4411872", "5550001")
    assert learned.generator.startswith("learned:en:delivery:")
    assert "an agent edited and sent for a similar mention" in (learned.note or "")
    # Another problem keeps its own draft.
    assert drafts["3"].generator.startswith("template:") and "Leeds" not in drafts["3"].text
