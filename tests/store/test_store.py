from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel, select

from triage.domain import NewMention
from triage.store import Mention, make_engine, session_scope, upgrade
from triage.store.engine import current_revision
from triage.store.queries import (
    count_recent_by_author,
    get_state,
    record_run,
    save_batch,
    unanalyzed_mentions,
)


def _mention(external_id: str, text: str = "hello", **extra) -> NewMention:
    return NewMention(source="src", external_id=external_id, platform="x", text=text, **extra)


def test_migrations_from_empty_match_the_tables(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    upgrade(engine)  # idempotent
    assert current_revision(engine) == "0007"
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []
    engine.dispose()


def test_a_sqlite_file_is_created_but_never_its_missing_directory(tmp_path, monkeypatch):
    missing = tmp_path / "typo" / "dir"
    url = f"sqlite:///{missing / 'triage.db'}"
    with pytest.raises(FileNotFoundError, match=re.escape(f"the directory {missing} does not")):
        make_engine(url)
    assert not (tmp_path / "typo").exists()
    # The default, a file in the working directory, and a folder that exists are created.
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite:///triage.db", f"sqlite:///{tmp_path / 'other.db'}", "sqlite://"):
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
    assert (tmp_path / "triage.db").is_file() and (tmp_path / "other.db").is_file()


def test_same_mention_twice_is_stored_once(engine):
    with session_scope(engine) as session:
        assert (
            save_batch(session, source="src", mentions=[_mention("1"), _mention("2")], cursor="a")
            == 2
        )
    with session_scope(engine) as session:
        new = save_batch(
            session, source="src", mentions=[_mention("2", "changed"), _mention("3")], cursor="b"
        )
        assert new == 1
    with session_scope(engine) as session:
        rows = session.exec(select(Mention).order_by(Mention.external_id)).all()
        assert [(m.external_id, m.text) for m in rows] == [
            ("1", "hello"),
            ("2", "hello"),
            ("3", "hello"),
        ]
        assert get_state(session, name="src").cursor == "b"


def test_same_external_id_from_two_sources_is_two_mentions(engine):
    with session_scope(engine) as session:
        save_batch(session, source="a", mentions=[_mention("1")], cursor=None)
        save_batch(session, source="b", mentions=[_mention("1")], cursor=None)
    with session_scope(engine) as session:
        assert len(session.exec(select(Mention)).all()) == 2


def test_cursor_rolls_back_with_its_mentions(engine):
    try:
        with session_scope(engine) as session:
            save_batch(session, source="src", mentions=[_mention("1")], cursor="page-2")
            raise RuntimeError("crash before commit")
    except RuntimeError:
        pass
    with session_scope(engine) as session:
        assert session.exec(select(Mention)).all() == []
        assert get_state(session, name="src").cursor is None


def test_any_text_and_times_round_trip(engine):
    huge = "é🙂" * 25_000 + " مرحبا بكم"
    created = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    with session_scope(engine) as session:
        save_batch(
            session,
            source="src",
            mentions=[_mention("big", huge, created_at=created, raw={"k": ["v", 1]})],
            cursor=None,
        )
    with session_scope(engine) as session:
        stored = session.exec(select(Mention)).one()
        assert stored.text == huge
        assert stored.created_at == created
        assert stored.created_at.tzinfo is not None
        assert stored.raw == {"k": ["v", 1]}
        assert [m.external_id for m in unanalyzed_mentions(session, limit=10)] == ["big"]


def test_connector_health_counts_failures_and_recovers(engine):
    with session_scope(engine) as session:
        record_run(session, name="rss", error="boom")
        state = record_run(session, name="rss", error="boom again")
        assert state.consecutive_failures == 2
        assert state.last_error == "boom again"
        state = record_run(session, name="rss", error=None)
        assert state.consecutive_failures == 0
        assert state.last_success_at is not None


def test_repeat_contact_counts_only_the_same_author_recently(engine):
    now = datetime(2026, 11, 20, tzinfo=UTC)
    with session_scope(engine) as session:
        save_batch(
            session,
            source="src",
            mentions=[
                _mention("old", author_handle="@ann", created_at=now - timedelta(days=30)),
                _mention("a", author_handle="@ann", created_at=now - timedelta(days=1)),
                _mention("b", author_handle="@bob", created_at=now),
                _mention("c", author_handle="@ann", created_at=now),
            ],
            cursor=None,
        )
    with session_scope(engine) as session:
        last = session.exec(select(Mention).where(Mention.external_id == "c")).one()
        count = count_recent_by_author(
            session, platform="x", handle="@ann", since=now - timedelta(days=7), before_id=last.id
        )
        assert count == 1
