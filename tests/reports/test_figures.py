"""Report figures (issue 17, item 8): mentions without their own time, topics without filler
words in any first-class language, complaint categories without modifiers."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from models.labels import MODIFIERS
from tests.reports.conftest import DAY1, SINCE, UNTIL, _add
from triage.config import FIRST_CLASS_LANGUAGES, Settings, SlaSettings
from triage.reports import build_report
from triage.reports.figures import Row, compute, top_topics
from triage.store import Mention, make_engine, session_scope, upgrade

H = timedelta(hours=1)


def test_mentions_without_their_own_time_count_when_triage_stored_them(engine, tmp_path):
    _add(engine, 1, DAY1 + 3 * H, text="posted in the period")
    _add(engine, 2, DAY1 + 5 * H, stored_only=True, lang="pl", reply_after=600, agent="U1")
    _add(engine, 3, DAY1 - 5 * H, stored_only=True)  # stored in the period before
    _add(engine, 4, UNTIL + H, stored_only=True)  # stored after the period
    _add(engine, 5, DAY1 - 30 * H, text="posted before, stored in the period")
    with session_scope(engine) as session:
        late = session.get(Mention, 5)
        late.fetched_at = DAY1 + 6 * H
        session.add(late)
    f = compute(engine, SINCE, UNTIL, SlaSettings())
    assert [r.mention_id for r in f.rows] == [1, 2]
    assert f.rows[1].created_at == DAY1 + 5 * H
    assert (f.volume, f.previous_volume) == (2, 2)
    assert f.by_language == {"en": 1, "pl": 1}
    assert f.daily[0][1:] == (2, 0, 0)
    assert f.care.replied == 1 and f.care.resolution_median == 600.0
    [path] = build_report(engine, Settings(), SINCE, UNTIL).write(tmp_path / "r.csv", "csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text("utf-8"))))
    assert rows[1]["created_at"] == (DAY1 + 5 * H).isoformat()


def test_complaint_categories_are_problems_not_modifiers_or_cue_signals(engine):
    at = DAY1 + 2 * H
    _add(engine, 1, at, intents=("delivery", "waiting", "anger", "sarcasm"))
    _add(engine, 2, at, intents=("vulnerable", "repeat_contact", "billing"))
    _add(engine, 3, at, intents=("security", "account_takeover"))  # an older cue name
    _add(engine, 4, at, intents=("anger", "sarcasm", "repeat_contact"))
    _add(engine, 5, at, intents=("question", "delivery"))
    f = compute(engine, SINCE, UNTIL, SlaSettings())
    assert f.complaint_categories == {"delivery": 2, "billing": 1, "account_takeover": 1}
    summary = build_report(engine, Settings(), SINCE, UNTIL).summary
    assert "top complaints: delivery, billing, account_takeover;" in summary
    for word in (*MODIFIERS, "waiting", "anger", "sarcasm", "security"):
        assert word not in summary


# Three negative mentions per language that share one topic, "internet", and filler: the words
# the issue named (last, night, nawet) and their kind in every first-class language.
FILLER = {
    "en": [
        "Internet down all night, last week too, honestly",
        "Still no internet since last night. Even now!!",
        "The internet was down again last Friday night, for hours",
    ],
    "pl": [
        "Nawet w nocy nie ma internetu, od wczoraj",
        "Internetu nie ma już trzeci dzień, nawet rano",
        "Znowu bez internetu całą noc, serio",
    ],
    "lv": [
        "Internets atkal pazuda visu nakti, pat vakar",
        "Jau otro nakti internets nav pieejams, lūdzu",
        "Kāpēc man naktī internets vēl nestrādā? Paldies",
    ],
    "pt": [
        "A internet caiu de novo esta noite, até agora nada",
        "Sem internet desde ontem à noite, sério",
        "Mais uma noite sem internet, já são três dias",
    ],
    "es": [
        "Otra noche sin internet, desde ayer por la tarde",
        "Llevo tres días sin internet, ni siquiera de noche",
        "El internet sigue caído esta noche, en serio",
    ],
    "de": [
        "Schon wieder die ganze Nacht kein Internet, seit gestern",
        "Seit drei Tagen kein Internet, sogar nachts",
        "Auch heute Nacht war das Internet weg, ehrlich",
    ],
    "fr": [
        "Encore une nuit sans internet, même hier soir",
        "Toujours pas d'internet depuis hier, c'est la troisième nuit",
        "L'internet ne marche plus cette nuit, sérieusement",
    ],
}


def test_every_first_class_language_has_filler_examples():
    assert set(FILLER) == set(FIRST_CLASS_LANGUAGES)


@pytest.fixture
def sqlite_engine(sqlite_url):
    """Topics are counted in Python: one database is enough."""
    engine = make_engine(sqlite_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("language", sorted(FILLER))
def test_negative_topics_leave_out_filler_words(sqlite_engine, language):
    engine = sqlite_engine
    for n, text in enumerate(FILLER[language], start=1):
        _add(engine, n, DAY1 + n * H, lang=language, text=f"@kestrel {text} #fail")
    _add(engine, 9, DAY1 + 9 * H, lang=language, sentiment="positive", kind="praise",
         intents=("praise",), text=FILLER[language][0])  # fmt: skip
    f = compute(engine, SINCE, UNTIL, SlaSettings(), brand_words=["Kestrel"])
    topic = {"lv": "internets", "pl": "internetu"}.get(language, "internet")
    assert f.negative_topics == [(topic, 3)]
    assert [r.mention_id for r in f.examples[topic]] == [1, 2, 3]
    summary = build_report(engine, Settings(), SINCE, UNTIL).summary
    assert f"negative mentions talk about {topic}." in summary


def _row(n: int, text: str, language: str = "en") -> Row:
    return Row(
        mention_id=n, created_at=DAY1, source="x", platform="x", language=language,
        sentiment="negative", kind="complaint", priority="P3", urgency=40, intents=("outage",),
        text=text, url=None, status=None, first_response_seconds=None, resolution_seconds=None,
        agent=None,
    )  # fmt: skip


def test_a_topic_needs_a_share_of_the_negative_mentions_not_only_two():
    few = [_row(1, "modem broken, router too"), _row(2, "router and modem broken"),
           *(_row(n, "modem broken") for n in range(3, 11))]  # fmt: skip
    assert top_topics(few) == [("broken", 10), ("modem", 10), ("router", 2)]
    many = [*few, *(_row(n, "modem broken") for n in range(11, 101))]
    # 2 of 100 is chance: a topic needs 3% of the negative mentions
    assert top_topics(many) == [("broken", 100), ("modem", 100)]
    third = [*many[:-1], _row(100, "modem broken, the router again")]
    assert top_topics(third) == [("broken", 100), ("modem", 100), ("router", 3)]


def test_undetected_languages_and_mixed_english_lose_their_filler_too():
    rows = [_row(1, "Last night no signal", "und"), _row(2, "nawet signal nie ma", "und"),
            _row(3, "No signal last night", "it"), _row(4, "Nuit sans signal", "xx")]  # fmt: skip
    assert top_topics(rows) == [("signal", 4)]
