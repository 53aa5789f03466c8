"""The example-based complaint and intent model on the real encoder."""

from __future__ import annotations

import pytest

from models.intent import EXAMPLES, Example, IntentModel, read_examples

pytestmark = pytest.mark.model

SMALL = [
    Example("You charged me twice this month, refund please", "en", True, "billing"),
    Example("Pobraliście dwa razy opłatę za abonament", "pl", True, "billing"),
    Example("My parcel is two weeks late and tracking is stuck", "en", True, "delivery"),
    Example("Paka nie dotarła, kurier zgubił przesyłkę", "pl", True, "delivery"),
    Example("No mobile data since this morning, is the network down?", "en", True, "outage"),
    Example("Thank you, the support team was brilliant!", "en", False, "praise"),
    Example("Dziękuję, świetna obsługa!", "pl", False, "praise"),
    Example("What are your shop opening hours on Sunday?", "en", False, "question"),
]


def test_neighbours_vote_for_complaint_and_intent_across_languages(encoder):
    model = IntentModel(encoder, SMALL, neighbours=3)
    double, thanks, late = model.predict(
        [
            "Divreiz noņēmāt naudu par rēķinu!",  # Latvian: no Latvian example at all
            "Thanks a lot, brilliant help from your team",
            "Where is my order? Three weeks and still nothing",
        ]
    )
    assert double.intent == "billing" and double.complaint_probability > 0.5
    assert thanks.intent == "praise" and thanks.complaint_probability < 0.5
    assert late.intent == "delivery" and late.complaint_probability > 0.5
    assert 0 < double.similarity <= 1


def test_bad_example_files_name_the_line(tmp_path):
    path = tmp_path / "examples.jsonl"
    path.write_text(
        '{"text": "ok", "lang": "en", "complaint": false, "intent": "praise"}\n'
        '{"text": "x", "lang": "en", "complaint": true, "intent": "weather"}\n',
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"examples\.jsonl:2: unknown intent 'weather'"):
        read_examples(path)


@pytest.mark.skipif(not EXAMPLES.is_file(), reason="no bundled intent examples")
def test_the_bundled_examples_cover_every_language_and_intent():
    from models.intent import INTENTS

    examples = read_examples()
    languages = {e.lang for e in examples}
    assert languages == {"en", "pl", "lv", "pt", "es", "de", "fr"}
    for language in languages:
        covered = {e.intent for e in examples if e.lang == language}
        assert covered == set(INTENTS), (language, set(INTENTS) - covered)


def test_complaint_head_and_neighbours_vote_both_work(encoder):
    texts = ["Pobraliście mi dwa razy opłatę!", "Dziękuję za pomoc, super obsługa"]
    head = IntentModel(encoder, SMALL, neighbours=3)
    vote = IntentModel(encoder, SMALL, neighbours=3, l2=None)
    for model in (head, vote):
        charged, thanks = model.predict(texts)
        assert charged.complaint_probability > 0.5 > thanks.complaint_probability
    # The head is a smooth probability; the vote of 3 neighbours is a weighted share.
    assert head._head is not None and vote._head is None


def test_the_validation_set_is_not_in_the_examples():
    from models.tune_intent import VALIDATION

    examples = {e.text.casefold() for e in read_examples()}
    validation = read_examples(VALIDATION)
    assert len(validation) >= 140
    assert {e.lang for e in validation} == {"en", "pl", "lv", "pt", "es", "de", "fr"}
    assert not [e.text for e in validation if e.text.casefold() in examples]
