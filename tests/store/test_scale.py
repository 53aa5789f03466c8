"""Issue 16: the recurring jobs read indexes of what is new, and answer exactly as before."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from sqlmodel import select

from models.language import LanguageResult
from models.sentiment import SentimentResult
from models.urgency import UrgencyResult
from tests.slack.conftest import CARE
from triage.analyze import AnalysisOutput
from triage.config import DatabaseSettings, Settings, SlackSettings
from triage.domain import NewMention
from triage.notify import PRIORITY_RANK, SLA_REMINDER_SHARE, Notifier
from triage.pipeline import Pipeline
from triage.slack.client import make_slack_client
from triage.store import (
    OPEN_STATUSES,
    Analysis,
    Case,
    CaseStatus,
    Draft,
    Mention,
    SlackMessage,
    make_engine,
    session_scope,
    upgrade,
)
from triage.store.engine import alembic_config, current_revision
from triage.store.queries import (
    PRIORITY_ORDER,
    cases_to_notify,
    cases_without_draft,
    count_recent_by_author,
    mention_counts,
    open_by_priority,
    open_queue,
    prune_raw,
    save_batch,
    sla_due_cases,
    unanalyzed_mentions,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _mention(external_id: str, **extra) -> NewMention:
    return NewMention(source="src", external_id=external_id, platform="x", text="hi", **extra)


# --- connectors list: a count kept by save_batch ----------------------------------------------


def test_the_mention_count_is_kept_by_save_batch(engine):
    with session_scope(engine) as session:
        assert save_batch(session, source="a", mentions=[_mention("1"), _mention("2")], cursor="x")
        save_batch(session, source="b", mentions=[_mention("1")], cursor=None)
    with session_scope(engine) as session:
        # A repeat is not counted again; an empty page counts nothing.
        save_batch(session, source="a", mentions=[_mention("2"), _mention("3")], cursor="y")
        save_batch(session, source="a", mentions=[], cursor="z")
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        save_batch(session, source="a", mentions=[_mention("4")], cursor="w")
        raise RuntimeError("the count rolls back with its mentions")
    with session_scope(engine) as session:
        counted = dict(
            session.exec(select(Mention.source, sa.func.count()).group_by(Mention.source)).all()
        )
        assert mention_counts(session) == counted == {"a": 3, "b": 1}


# --- the migration ------------------------------------------------------------------------------


def _downgrade(engine: sa.Engine, revision: str) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _indexes(engine: sa.Engine, table: str) -> set[str]:
    return {index["name"] for index in sa.inspect(engine).get_indexes(table)}


def test_migration_0005_fills_the_new_columns_and_goes_back(db_url):
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0004")
        created = NOW.replace(tzinfo=None)
        with engine.begin() as connection:
            for number, source in enumerate(["a", "a", "b"], 1):
                connection.execute(
                    sa.text(
                        "INSERT INTO mention (id, source, external_id, platform, text, fetched_at)"
                        " VALUES (:id, :source, :id, 'x', 'hi', :at)"
                    ),
                    {"id": number, "source": source, "at": created},
                )
            connection.execute(
                sa.text(
                    "INSERT INTO analysis (mention_id, language, language_confidence, sentiment,"
                    " p_negative, p_neutral, p_positive, complaint_probability, kind, urgency,"
                    " priority, escalate, model_version, analyzed_at) VALUES"
                    " (2, 'en', 1, 'neutral', 0, 1, 0, 0, 'info', 0, 'P4', :no, 'v', :at)"
                ),
                {"no": False, "at": created},
            )
            for name in ("a", "b", "idle"):
                connection.execute(
                    sa.text(
                        "INSERT INTO connector_state (name, consecutive_failures, paused)"
                        " VALUES (:name, 0, :no)"
                    ),
                    {"name": name, "no": False},
                )

        upgrade(engine, "0005")
        assert current_revision(engine) == "0005"
        with session_scope(engine) as session:
            flags = dict(session.exec(select(Mention.id, Mention.analyzed)).all())
            assert flags == {1: False, 2: True, 3: False}
            assert [m.id for m in unanalyzed_mentions(session, limit=10)] == [1, 3]
            assert mention_counts(session) == {"a": 2, "b": 1}
            assert session.exec(select(sa.func.count()).select_from(Analysis)).one() == 1
        assert {"ix_mention_author", "ix_mention_unanalyzed"} <= _indexes(engine, "mention")
        assert "ix_mention_author_handle" not in _indexes(engine, "mention")

        _downgrade(engine, "0004")
        assert current_revision(engine) == "0004"
        columns = {c["name"] for c in sa.inspect(engine).get_columns("mention")}
        assert "analyzed" not in columns
        assert "ix_mention_author_handle" in _indexes(engine, "mention")
        assert "ix_care_case_open" not in _indexes(engine, "care_case")
        state_columns = {c["name"] for c in sa.inspect(engine).get_columns("connector_state")}
        assert "mention_count" not in state_columns
        with engine.connect() as connection:
            # Nothing was copied and dropped on the way (a dropped `mention` cascades).
            for table, rows in (("mention", 3), ("analysis", 1), ("connector_state", 3)):
                count = connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
                assert count == rows, table

        upgrade(engine, "0005")
        assert current_revision(engine) == "0005"
    finally:
        engine.dispose()


def test_migration_0006_flags_the_cases_already_pinged_and_goes_back(db_url):
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0005")
        at = NOW.replace(tzinfo=None)
        with engine.begin() as connection:
            for number in (1, 2):
                connection.execute(
                    sa.text(
                        "INSERT INTO mention (id, source, external_id, platform, text, fetched_at,"
                        " analyzed) VALUES (:id, 'a', :id, 'x', 'hi', :at, :yes)"
                    ),
                    {"id": number, "at": at, "yes": True},
                )
                connection.execute(
                    sa.text(
                        "INSERT INTO care_case (id, mention_id, status, created_at)"
                        " VALUES (:id, :id, 'posted', :at)"
                    ),
                    {"id": number, "at": at},
                )
            connection.execute(
                sa.text(
                    "INSERT INTO slack_outbox (key, method, channel, case_id, rank, payload,"
                    " status, attempts, created_at) VALUES ('sla-breach:2', 'chat.postMessage',"
                    " 'C1', 2, 0, '{}', 'sent', 1, :at)"
                ),
                {"at": at},
            )

        upgrade(engine, "0006")
        assert current_revision(engine) == "0006"
        with session_scope(engine) as session:
            assert dict(session.exec(select(Case.id, Case.sla_breached)).all()) == {
                1: False,
                2: True,
            }
        assert "ix_care_case_sla_watched" in _indexes(engine, "care_case")
        assert "ix_mention_raw_kept" in _indexes(engine, "mention")

        _downgrade(engine, "0005")
        assert "ix_mention_raw_kept" not in _indexes(engine, "mention")
        assert "sla_breached" not in {
            c["name"] for c in sa.inspect(engine).get_columns("care_case")
        }
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM care_case")).scalar() == 2
        upgrade(engine, "0006")
        assert current_revision(engine) == "0006"
    finally:
        engine.dispose()


# --- the unanalysed mentions and repeat contacts ------------------------------------------------


class _Models:
    """Stand-in models: every mention a P3 complaint."""

    version = "fake"

    def analyze(self, items):
        return [
            AnalysisOutput(
                LanguageResult("en", 0.9),
                SentimentResult("negative", {"negative": 0.8, "neutral": 0.1, "positive": 0.1}),
                UrgencyResult(30, "P3", "complaint", 0.8, False, ["billing"], ["negative"]),
            )
            for _ in items
        ]


def test_the_pipeline_flags_each_mention_with_its_analysis(engine):
    with session_scope(engine) as session:
        save_batch(
            session, source="src", mentions=[_mention(str(n)) for n in range(5)], cursor=None
        )
    with session_scope(engine) as session:
        assert len(unanalyzed_mentions(session, limit=10)) == 5
    settings = Settings(database=DatabaseSettings(url=str(engine.url)))
    report = Pipeline(settings, engine, analyzer_factory=lambda _s: _Models()).process()
    assert (report.analyzed, report.cases) == (5, 5)
    with session_scope(engine) as session:
        assert set(session.exec(select(Mention.analyzed)).all()) == {True}
        assert unanalyzed_mentions(session, limit=10) == []


def test_repeat_contacts_count_mentions_without_a_time_of_their_own(engine):
    with session_scope(engine) as session:
        save_batch(
            session,
            source="src",
            mentions=[
                _mention("untimed", author_handle="@ann"),
                _mention("old", author_handle="@ann", created_at=NOW - timedelta(days=30)),
                _mention("recent", author_handle="@ann", created_at=NOW - timedelta(days=1)),
                _mention("elsewhere", author_handle="@ann", created_at=NOW),
                _mention("now", author_handle="@ann", created_at=NOW),
            ],
            cursor=None,
        )
        session.execute(
            sa.update(Mention).where(Mention.external_id == "elsewhere").values(platform="y")
        )
    with session_scope(engine) as session:
        last = session.exec(select(Mention).where(Mention.external_id == "now")).one()
        since = NOW - timedelta(days=7)
        count = count_recent_by_author(
            session, platform="x", handle="@ann", since=since, before_id=last.id
        )
        assert count == 2  # "untimed" and "recent"


# --- the open queue and the SLA check: the same answers as before --------------------------------


def _random_cases(engine: sa.Engine, rng: random.Random, count: int) -> None:
    """Cases of every status and priority, times near their SLA moments, some pings queued."""
    with session_scope(engine) as session:
        for number in range(count):
            priority = rng.choice(["P1", "P2", "P3", "P4"])
            target = {"P1": 1800, "P2": 7200, "P3": 28800, "P4": 86400}[priority]
            # Around the reminder and breach moments, to the second (and on them).
            elapsed = target * rng.choice([0.1, 0.75, 0.9, 1.0, 1.5]) + rng.choice([-1, 0, 0, 1])
            created = NOW - timedelta(seconds=elapsed)
            mention = Mention(
                source="src",
                external_id=f"r{number}",
                platform="x",
                text="help",
                created_at=None if rng.random() < 0.2 else created,
                fetched_at=created,
            )
            session.add(mention)
            session.flush()
            session.add(
                Analysis(
                    mention_id=mention.id,
                    language="en",
                    sentiment="negative",
                    p_negative=0.8,
                    p_neutral=0.1,
                    p_positive=0.1,
                    complaint_probability=0.8,
                    kind="complaint",
                    urgency=rng.choice([10, 40, 40, 60, 90]),
                    priority=priority,
                    model_version="test",
                )
            )
            status = rng.choice([*OPEN_STATUSES, CaseStatus.REPLIED, CaseStatus.DISMISSED])
            posted = status != CaseStatus.NEW or rng.random() < 0.3
            case = Case(
                mention_id=mention.id,
                status=status,
                created_at=created,
                slack_channel=CARE if posted else None,
                slack_ts=f"{number}.000100" if posted else None,
                replied_at=created if rng.random() < 0.1 else None,
            )
            session.add(case)
            session.flush()
            for key in ("sla-reminder", "sla-breach"):
                if rng.random() < 0.25:
                    session.add(
                        SlackMessage(
                            key=f"{key}:{case.id}",
                            method="chat.postMessage",
                            channel=CARE,
                            case_id=case.id,
                            status="sent",
                        )
                    )


def _old_open_queue(session, limit: int) -> list[int]:
    """The open queue as it was read before issue 16: one query, everything sorted."""
    statement = (
        select(Case.id)
        .join(Mention, Mention.id == Case.mention_id)
        .join(Analysis, Analysis.mention_id == Mention.id)
        .where(Case.status.in_(OPEN_STATUSES))
        .order_by(PRIORITY_ORDER, Analysis.urgency.desc(), Mention.created_at, Case.id)
        .limit(limit)
    )
    return list(session.exec(statement).all())


def test_the_open_queue_is_the_same_as_before(engine):
    _random_cases(engine, random.Random(16), 120)
    with session_scope(engine) as session:
        for limit in (1, 7, 30, 500):
            shown = [case.id for case, *_ in open_queue(session, limit=limit)]
            assert shown == _old_open_queue(session, limit)
        open_total = session.exec(
            select(sa.func.count()).select_from(Case).where(Case.status.in_(OPEN_STATUSES))
        ).one()
        assert sum(open_by_priority(session).values()) == open_total


def _notifier(engine: sa.Engine, url: str) -> Notifier:
    settings = Settings(
        database=DatabaseSettings(url=str(engine.url)),
        slack=SlackSettings(bot_token="xoxb-test", care_channel=CARE, api_url=url),
    )
    return Notifier(settings, engine, make_slack_client(settings.slack), sleep=lambda _s: None)


def _old_sla_keys(engine: sa.Engine, notifier: Notifier, now: datetime) -> set[str]:
    """What the SLA check queued before issue 16: every open posted case not pinged, read in
    full, each one's moment decided here, a key queued unless it was queued before."""
    with session_scope(engine) as session:
        queued = set(session.exec(select(SlackMessage.key)).all())
        rows = session.exec(
            select(Case, Mention, Analysis)
            .join(Mention, Mention.id == Case.mention_id)
            .join(Analysis, Analysis.mention_id == Mention.id)
            .where(
                Case.status.in_(OPEN_STATUSES),
                Case.slack_ts.is_not(None),
                Case.replied_at.is_(None),
            )
        ).all()
    keys = set()
    for case, mention, analysis in rows:
        if f"sla-breach:{case.id}" in queued:
            continue
        target = notifier.settings.sla.target(analysis.priority)
        elapsed = (now - (mention.created_at or case.created_at)).total_seconds()
        if elapsed >= target:
            keys.add(f"sla-breach:{case.id}")
        elif elapsed >= SLA_REMINDER_SHARE * target:
            keys.add(f"sla-reminder:{case.id}")
    return keys - queued


def test_the_sla_check_queues_what_it_queued_before_and_reads_only_due_cases(engine, slack):
    _, url = slack
    _random_cases(engine, random.Random(7), 160)
    notifier = _notifier(engine, url)
    for now in (NOW, NOW + timedelta(minutes=10), NOW + timedelta(hours=3)):
        expected = _old_sla_keys(engine, notifier, now)
        with session_scope(engine) as session:
            before = set(session.exec(select(SlackMessage.key)).all())
        assert notifier.check_sla(now=now) == len(expected)
        with session_scope(engine) as session:
            after = set(session.exec(select(SlackMessage.key)).all())
        assert after - before == expected
        # A case whose breach ping is queued is flagged and never read by the check again.
        pinged = {int(key.split(":")[1]) for key in expected if key.startswith("sla-breach:")}
        with session_scope(engine) as session:
            flagged = set(session.exec(select(Case.id).where(Case.sla_breached)).all())
        assert pinged <= flagged
        assert notifier.check_sla(now=now) == 0
        # Nothing left to say: a case is read again only within a second of its next moment.
        with session_scope(engine) as session:
            targets = {p: notifier.settings.sla.target(p) for p in PRIORITY_RANK}
            due = sla_due_cases(
                session, now=now, targets=targets, reminder_share=SLA_REMINDER_SHARE
            )
        for case, mention, analysis in due:
            target = targets[analysis.priority]
            elapsed = (now - (mention.created_at or case.created_at)).total_seconds()
            moments = (SLA_REMINDER_SHARE * target, target)
            assert any(moment - 1 <= elapsed < moment for moment in moments), case.id


# --- the plans: partial indexes, never a scan of the history (SQLite: no statistics, so the plan
# on a small file is the plan on a large one) --------------------------------------------------


@contextmanager
def _statements(engine: sa.Engine) -> Iterator[list[tuple[str, object]]]:
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _plans(engine: sa.Engine, run: Callable[[], object]) -> list[str]:
    with _statements(engine) as seen:
        run()
    plans = []
    with engine.connect() as connection:
        for statement, parameters in seen:
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            plans.append("\n".join(row[3] for row in rows))
    return plans


HISTORY = ("mention", "analysis", "care_case", "draft", "slack_outbox", "audit_event")
PARTIAL = (
    "ix_mention_unanalyzed",
    "ix_care_case_open",
    "ix_care_case_sla_watched",
    "ix_mention_raw_kept",
)


def _scans_of_history(plans: list[str]) -> list[str]:
    """Steps that read a whole table of history (a partial index holds only what is new)."""
    return [
        line
        for plan in plans
        for line in plan.splitlines()
        if line.startswith("SCAN ")
        and line.split()[1] in HISTORY
        and not any(index in line for index in PARTIAL)
    ]


@pytest.fixture
def sqlite_engine(sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_the_recurring_queries_read_no_history(sqlite_engine, slack):
    engine = sqlite_engine
    _, url = slack
    _random_cases(engine, random.Random(3), 20)
    notifier = _notifier(engine, url)
    targets = {p: notifier.settings.sla.target(p) for p in PRIORITY_RANK}

    def session_run(query: Callable[..., object], **kwargs) -> Callable[[], object]:
        def run() -> object:
            with session_scope(engine) as session:
                return query(session, **kwargs)

        return run

    jobs: dict[str, Callable[[], object]] = {
        "unanalysed": session_run(unanalyzed_mentions, limit=128),
        "repeat contacts": session_run(
            count_recent_by_author, platform="x", handle="@a", since=NOW, before_id=10
        ),
        "cards to queue": session_run(cases_to_notify, limit=100),
        "drafts to write": session_run(cases_without_draft, limit=200),
        "SLA check": session_run(
            sla_due_cases, now=NOW, targets=targets, reminder_share=SLA_REMINDER_SHARE
        ),
        "open queue": session_run(open_queue, limit=30),
        "open counts": session_run(open_by_priority),
        "connector counts": session_run(mention_counts),
        "old payloads": session_run(prune_raw, before=NOW - timedelta(days=30)),
        "next to send": lambda: notifier._next_due(set()),
    }
    for name, run in jobs.items():
        plans = _plans(engine, run)
        assert plans, name
        assert _scans_of_history(plans) == [], (name, plans)
    plans = "\n".join(_plans(engine, jobs["unanalysed"]))
    assert "ix_mention_unanalyzed" in plans
    assert "ix_mention_author" in "\n".join(_plans(engine, jobs["repeat contacts"]))


def test_drafts_are_still_found_for_new_cases(engine):
    """cases_without_draft reads open cases through their partial index: still every one."""
    _random_cases(engine, random.Random(5), 40)
    with session_scope(engine) as session:
        drafted = session.exec(select(Case.mention_id).where(Case.id % 2 == 0)).all()
        for mention_id in drafted:
            session.add(Draft(mention_id=mention_id, language="en", text="hi", generator="t"))
    with session_scope(engine) as session:
        found = sorted(case.id for case, *_ in cases_without_draft(session, limit=500))
        expected = session.exec(
            select(Case.id)
            .where(Case.status.in_(OPEN_STATUSES), Case.id % 2 == 1)
            .order_by(Case.id)
        ).all()
        assert found == list(expected)


# --- retention -------------------------------------------------------------------------------


def test_old_payloads_are_pruned_except_those_of_open_cases(engine):
    old, recent = NOW - timedelta(days=40), NOW - timedelta(days=2)
    status = {
        "old, no case": None,
        "old, open": "posted",
        "old, replied": "replied",
        "recent": None,
    }
    ids = {}
    with session_scope(engine) as session:
        for number, (name, case_status) in enumerate(status.items()):
            mention = Mention(
                source="x",
                external_id=str(number),
                platform="x",
                text=name,
                raw={"review_id": f"r{number}"},
                fetched_at=recent if name == "recent" else old,
            )
            session.add(mention)
            session.flush()
            ids[name] = mention.id
            if case_status:
                session.add(Case(mention_id=mention.id, status=case_status, created_at=old))
    settings = Settings(database=DatabaseSettings(url=str(engine.url)), store={"keep_raw_days": 30})
    pipeline = Pipeline(settings, engine)

    assert pipeline.prune(now=NOW) == 2
    with session_scope(engine) as session:
        raw = {name: session.get(Mention, ids[name]).raw for name in status}
    assert raw["old, no case"] is None and raw["old, replied"] is None
    assert raw["old, open"] == {"review_id": "r1"}  # a reply to it still needs the ids
    assert raw["recent"] == {"review_id": "r3"}
    assert pipeline.prune(now=NOW) == 0  # pruned once: SQL NULL, not a JSON null
    off = Pipeline(Settings(database=DatabaseSettings(url=str(engine.url))), engine)
    assert off.prune(now=NOW + timedelta(days=400)) == 0
