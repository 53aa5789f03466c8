"""The report and spike figures from rollups equal the figures from every row (issue 16)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
import sqlalchemy as sa
from sqlmodel import select

from tests.reports.conftest import _add
from tests.store.test_scale import _downgrade
from tests.test_act import API, EchoConnector, _connector
from triage.act import CaseActions, Replies
from triage.config import Settings, SlackSettings, SlaSettings
from triage.reports.figures import (
    Row,
    _words,
    care_figures,
    complaint_category,
    compute,
    load_rows,
    top_topics,
)
from triage.reports.spikes import detect, spikes_cycle
from triage.slack.client import make_slack_client
from triage.store import (
    Analysis,
    Case,
    CaseStatus,
    Mention,
    OutboundReply,
    ReplyStatus,
    session_scope,
)
from triage.store.engine import upgrade
from triage.store.queries import count_analysed, record_case_timings
from triage.store.tables import CaseTiming, ReportHour, ReportWord

START = datetime(2026, 11, 2, tzinfo=UTC)
SOURCES = ("x", "reddit", "trustpilot", "rss")
LANGUAGES = ("en", "pl", "de", "und")
KINDS = ("complaint", "complaint", "question", "praise", "feedback", "info")
INTENTS = ("billing", "refund", "delivery", "security", "waiting", "anger", "vulnerable",
           "repeat_contact", "question", "account_takeover", "login")  # fmt: skip
WORDS = ("parcel", "refund", "login", "broken", "charged", "twice", "waiting", "app", "courier",
         "password", "nobody", "answers", "the", "and", "again")  # fmt: skip
AGENTS = ("U1", "U2", "U3")


def _seed(engine, rng: random.Random, count: int, start: datetime, span: timedelta) -> None:
    """`count` analysed mentions posted at random times in [start, start + span), some with no
    time of their own, their cases answered, dismissed or open; counted as the pipeline counts
    them, a chunk at a time."""
    for low in range(0, count, 40):
        with session_scope(engine) as session:
            ids = []
            for n in range(low, min(low + 40, count)):
                at = start + timedelta(seconds=rng.uniform(0, span.total_seconds()))
                source = rng.choice(SOURCES)
                mention = Mention(
                    source=source, external_id=f"r{n}", platform=source,
                    text=" ".join(rng.choices(WORDS, k=rng.randint(2, 7))),
                    created_at=None if rng.random() < 0.15 else at,
                    url=f"https://example.com/{n}",
                )  # fmt: skip
                mention.fetched_at = at if mention.created_at is None else at + timedelta(hours=2)
                session.add(mention)
                session.flush()
                kind = rng.choice(KINDS)
                sentiment = rng.choice(("negative", "negative", "neutral", "positive"))
                session.add(
                    Analysis(
                        mention_id=mention.id, language=rng.choice(LANGUAGES), sentiment=sentiment,
                        p_negative=0.5, p_neutral=0.3, p_positive=0.2, complaint_probability=0.5,
                        kind=kind, intents=rng.sample(INTENTS, rng.randint(0, 4)),
                        urgency=rng.randint(0, 100), priority=rng.choice(("P1", "P2", "P3", "P4")),
                        reasons=[], model_version="test",
                    )
                )  # fmt: skip
                ids.append(mention.id)
                if kind != "info":
                    _case(session, rng, mention, at)
            session.flush()
            count_analysed(session, mention_ids=ids)


def _case(session, rng: random.Random, mention: Mention, at: datetime) -> None:
    """Its case: answered (through triage by an agent, or marked replied), dismissed or open."""
    case = Case(mention_id=mention.id, status=CaseStatus.POSTED)
    fate = rng.random()
    later = at + timedelta(seconds=rng.uniform(60, 40_000))
    if fate < 0.45:
        case.status, case.replied_at = CaseStatus.REPLIED, later
        case.first_response_seconds = (later - at).total_seconds()
        case.assignee = rng.choice(AGENTS)
        if rng.random() < 0.7:
            sent = rng.choice((ReplyStatus.SENT, ReplyStatus.SENT, ReplyStatus.FAILED))
            session.add(
                OutboundReply(
                    idempotency_key=f"k{mention.id}", mention_id=mention.id, source=mention.source,
                    text="hi", status=sent, requested_by=rng.choice(AGENTS), sent_at=later,
                )
            )  # fmt: skip
    elif fate < 0.7:
        case.status, case.dismissed_at = CaseStatus.DISMISSED, later
    session.add(case)
    session.flush()
    record_case_timings(session, case_ids=[case.id])


def _reference_rows(engine, since: datetime, until: datetime) -> list[Row]:
    """Every analysed mention of [since, until) read in full and filtered here, as the report
    read them before the rollups."""
    with session_scope(engine) as session:
        found = session.exec(
            select(Mention, Analysis, Case)
            .join(Analysis, Analysis.mention_id == Mention.id)
            .join(Case, Case.mention_id == Mention.id, isouter=True)
        ).all()
        senders: dict[int, list[str]] = defaultdict(list)
        for reply in session.exec(select(OutboundReply)).all():
            if reply.status == ReplyStatus.SENT:
                senders[reply.mention_id].append(reply.requested_by)
    rows = []
    for mention, analysis, case in found:
        created = mention.created_at or mention.fetched_at
        if not since <= created < until:
            continue
        resolved = (case.replied_at or case.dismissed_at) if case else None
        agent = min(senders[mention.id]) if senders.get(mention.id) else None
        rows.append(
            Row(
                mention_id=mention.id, created_at=created, source=mention.source,
                platform=mention.platform, language=analysis.language,
                sentiment=analysis.sentiment, kind=analysis.kind, priority=analysis.priority,
                urgency=analysis.urgency, intents=tuple(analysis.intents or ()),
                text=mention.text, url=mention.url, status=str(case.status) if case else None,
                first_response_seconds=case.first_response_seconds if case else None,
                resolution_seconds=(resolved - created).total_seconds() if resolved else None,
                agent=agent or (case.assignee if case and case.replied_at else None),
            )
        )  # fmt: skip
    return sorted(rows, key=lambda r: (r.created_at, r.mention_id))


def _net(rows: list[Row]) -> float | None:
    if not rows:
        return None
    return (
        100.0
        * sum((r.sentiment == "positive") - (r.sentiment == "negative") for r in rows)
        / len(rows)
    )


def _reference(engine, since: datetime, until: datetime, sla: SlaSettings, skip: frozenset[str]):
    rows = _reference_rows(engine, since, until)
    previous = _reference_rows(engine, since - (until - since), since)
    negative = [r for r in rows if r.sentiment == "negative"]
    topics = top_topics(negative, skip=skip)
    daily: dict = defaultdict(Counter)
    for row in rows:
        daily[row.created_at.date()][row.sentiment] += 1
    days, day = [], since.date()
    while datetime.combine(day, datetime.min.time(), UTC) < until:
        days.append((day, *(daily[day][s] for s in ("negative", "neutral", "positive"))))
        day += timedelta(days=1)
    categories = Counter(
        category
        for row in rows
        if row.kind == "complaint"
        for category in dict.fromkeys(map(complaint_category, row.intents))
        if category
    )
    return {
        "volume": len(rows),
        "sentiment": dict(Counter(r.sentiment for r in rows)),
        "net": _net(rows),
        "previous": (len(previous), _net(previous)),
        "by_source": list(Counter(r.source for r in rows).most_common()),
        "by_language": list(Counter(r.language for r in rows).most_common()),
        "categories": dict(categories),
        "category_counts": sorted(categories.values(), reverse=True),
        "topics": topics,
        "examples": {
            word: [r.mention_id for r in negative if word in _words(r)][:3]
            for word, _ in topics[:5]
        },
        "daily": days,
        "care": care_figures(rows, sla),
        "rows": [r.mention_id for r in rows],
    }


def _figures(engine, since: datetime, until: datetime, sla: SlaSettings, brand: list[str]):
    f = compute(engine, since, until, sla, brand_words=brand)
    return {
        "volume": f.volume,
        "sentiment": {k: v for k, v in f.sentiment.items() if v},
        "net": f.net_sentiment,
        "previous": (f.previous_volume, f.previous_net_sentiment),
        "by_source": list(f.by_source.items()),
        "by_language": list(f.by_language.items()),
        "categories": f.complaint_categories,
        "category_counts": list(f.complaint_categories.values()),
        "topics": f.negative_topics,
        "examples": {w: [r.mention_id for r in rows] for w, rows in f.examples.items()},
        "daily": f.daily,
        "care": f.care,
        "rows": [r.mention_id for r in f.rows],
    }


@pytest.fixture
def seeded(engine):
    _seed(engine, random.Random(16), 360, START, timedelta(days=6))
    return engine


WINDOWS = [
    (timedelta(days=3, hours=2, minutes=17, seconds=3), timedelta(days=2, hours=5, minutes=31)),
    (timedelta(days=2), timedelta(days=3)),  # on the hour: rollups alone
    (timedelta(days=4, hours=7, minutes=10), timedelta(minutes=40)),  # inside one hour
    (timedelta(days=1, hours=23, minutes=59), timedelta(hours=1, minutes=2)),  # two edges
    (timedelta(days=-1), timedelta(days=9)),  # past both ends of the data
]


@pytest.mark.parametrize(("offset", "length"), WINDOWS)
def test_rollup_figures_equal_the_figures_from_every_row(seeded, offset, length):
    since = START + offset
    sla = SlaSettings()
    brand = ["Again", "@app"]
    expected = _reference(seeded, since, since + length, sla, frozenset({"again", "app"}))
    assert expected["volume"] > 0 or length < timedelta(hours=1)
    assert _figures(seeded, since, since + length, sla, brand) == expected


def test_the_figures_change_with_what_is_counted(seeded):
    # The comparison above can fail: a mention analysed but not counted shows.
    since, until = START + timedelta(days=2), START + timedelta(days=5)
    before = compute(seeded, since, until, SlaSettings())
    _add(seeded, 9999, since + timedelta(hours=30), lang="pl", intents=("billing",))
    after = compute(seeded, since, until, SlaSettings())
    assert after.volume == before.volume + 1
    assert after.by_language["pl"] == before.by_language.get("pl", 0) + 1
    assert (
        after.complaint_categories["billing"] == before.complaint_categories.get("billing", 0) + 1
    )


def _rollups(engine) -> tuple[set[tuple], set[tuple], set[tuple]]:
    with session_scope(engine) as session:
        hours = {
            (r.hour, r.source, r.language, r.sentiment, r.category, r.n, r.first_at, r.first_id)
            for r in session.exec(select(ReportHour)).all()
        }
        timings = {tuple(t.model_dump().values()) for t in session.exec(select(CaseTiming)).all()}
        words = {(w.day, w.word, w.n) for w in session.exec(select(ReportWord)).all()}
    return hours, timings, words


def test_the_migration_fills_the_rollups_as_analysing_keeps_them(seeded):
    kept = _rollups(seeded)
    hours, timings, words = kept
    assert len(hours) > 300 and {row[4] for row in hours} > {""}
    assert len(timings) > 100 and len(words) > 30
    _downgrade(seeded, "0006")
    assert "report_hour" not in sa.inspect(seeded).get_table_names()
    upgrade(seeded)
    assert _rollups(seeded) == kept


HOUR = datetime(2026, 11, 23, 14, tzinfo=UTC)


def _bulk(engine, times: list[datetime], sentiment: str, start: int) -> None:
    """Analysed neutral or negative mentions from source x at `times`, counted."""
    with session_scope(engine) as session:
        mentions = [
            Mention(source="x", external_id=f"s{start + i}", platform="x", text=f"m {i}",
                    created_at=at, url=f"https://x.com/{start + i}")
            for i, at in enumerate(times)
        ]  # fmt: skip
        session.add_all(mentions)
        session.flush()
        session.add_all(
            Analysis(
                mention_id=m.id, language="en", sentiment=sentiment, p_negative=0.5,
                p_neutral=0.5, p_positive=0.0, complaint_probability=0.5, kind="complaint",
                intents=["outage"], urgency=50, priority="P3", reasons=[], model_version="t",
            )
            for m in mentions
        )  # fmt: skip
        session.flush()
        count_analysed(session, mention_ids=[m.id for m in mentions])


def test_a_negative_share_spike_fires_from_the_rollups_of_the_weeks_before(engine, slack):
    state, url = slack
    # Two neutral mentions in each hour of the week before, six at this hour in each of the four
    # weeks before, then eight negative ones: no more volume than usual, but all negative.
    week = [HOUR - timedelta(hours=h, minutes=m) for h in range(1, 169) for m in (10, 40)]
    weekly = [HOUR - timedelta(weeks=w) + timedelta(minutes=m) for w in range(1, 5) for m in
              range(5, 35, 5)]  # fmt: skip
    _bulk(engine, week + weekly, "neutral", 0)
    _bulk(engine, [HOUR + timedelta(minutes=m) for m in range(0, 56, 7)], "negative", 10_000)
    settings = Settings(
        slack=SlackSettings(bot_token="xoxb-test", care_channel="C0CARE0001", api_url=url)
    )
    alerted = spikes_cycle(engine, settings, make_slack_client(settings.slack), HOUR + timedelta(
        hours=1, minutes=2))  # fmt: skip
    found = {(s.scope, s.metric): s for s in alerted}
    assert set(found) == {("all", "negative share"), ("x", "negative share")}
    spike = found[("all", "negative share")]
    assert (spike.observed, spike.expected, len(spike.mentions)) == (1.0, 0.0, 8)
    # The same decision as from every row of the four weeks.
    rows = load_rows(engine, HOUR - timedelta(weeks=4), HOUR + timedelta(hours=1))
    assert {(s.scope, s.metric, s.observed, s.expected, s.z) for s in detect(rows, HOUR)} == {
        (s.scope, s.metric, s.observed, s.expected, s.z) for s in alerted
    }
    assert len(state.calls_to("chat.postMessage")) == 2


@respx.mock
def test_the_care_figures_follow_the_act_stage(engine):
    respx.post(API).mock(return_value=httpx.Response(200, json={"id": "r1"}))
    at = START + timedelta(hours=3, minutes=7)
    for n in range(1, 5):
        _add(engine, n, at + timedelta(minutes=n), priority=f"P{n}")
    with session_scope(engine) as session:
        cases = {c.mention_id: c.id for c in session.exec(select(Case)).all()}
    Replies(engine, _connector(EchoConnector)).send(1, "Sorry!", actor="U2")
    Replies(engine, _connector(EchoConnector)).mark_replied(2, actor="U3")
    CaseActions(engine).dismiss(cases[3], actor="U1", reason="spam")
    since, until = START, START + timedelta(days=1)
    care = compute(engine, since, until, SlaSettings()).care
    assert care == care_figures(_reference_rows(engine, since, until), SlaSettings())
    assert care.replied == 2 and set(care.by_agent) == {"U2"}
