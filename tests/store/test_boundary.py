"""The connector/store boundary: an odd row is stored clamped or skipped, never the whole batch."""

from __future__ import annotations

import logging
import math
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.pool import NullPool
from sqlmodel import select

from tests.conftest import write_jsonl
from triage.config import ConnectorSettings, Settings
from triage.domain import NewMention
from triage.pipeline import Pipeline
from triage.store import ConnectorState, Mention, make_engine, session_scope, upgrade
from triage.store.queries import get_state, record_run, save_batch

STORE_LOGGER = "triage.store.clean"
FILE_LOGGER = "triage.connectors.imports"
INT32_MAX = 2**31 - 1


def _stored(engine) -> dict[str, Mention]:
    with session_scope(engine) as session:
        return {m.external_id: m for m in session.exec(select(Mention))}


def _messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


ODD_ROWS = [
    {"id": "good-1", "text": "Kestrel billing charged me twice", "followers": 120},
    {"id": "late", "text": "from the far future", "created_at": "9999-12-31T23:59:59-05:00"},
    {"id": "early", "text": "from the year one", "created_at": "0001-01-01T00:00:00+05:00"},
    {"id": "famous", "text": "huge reach", "followers": 10**20},
    {"id": "int32", "text": "just past int4", "followers": 2**31, "engagement": 10**20},
    {"id": "nul", "text": "line one\x00line two", "author": "Ana\x00", "note\x00": "a\x00b"},
    {"id": "platform", "text": "long platform", "platform": "p" * 40},
    {"id": "handle", "text": "long handle", "handle": "h" * 300, "author": "a" * 300},
    {"id": "i" * 600, "text": "an id too long to cut without merging"},
    {"id": "thread", "text": "thread id too long", "thread_id": "t" * 600},
    {"id": "stars", "text": "rated on a ten-point scale", "rating": 9},
    {"id": "only-nul", "text": "\x00\x00"},
    {"id": "good-2", "text": "Kestrel app works again, thanks"},
]


def test_odd_file_rows_are_clamped_or_skipped_and_the_cursor_moves(
    engine, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "export.jsonl"
    write_jsonl(path, ODD_ROWS)
    imports = ConnectorSettings(name="imports", type="file", options={"path": str(path)})
    settings = Settings.model_validate(
        {"database": {"url": str(engine.url)}, "connectors": [imports.model_dump()]}
    )
    pipeline = Pipeline(settings, engine)
    with caplog.at_level(logging.INFO):
        report = pipeline.ingest(imports)
    assert report.error is None
    assert report.new == 9

    stored = _stored(engine)
    assert sorted(stored) == sorted(
        ["good-1", "famous", "int32", "nul", "platform", "handle", "thread", "stars", "good-2"]
    )
    assert stored["good-1"].author_reach == 120
    assert stored["famous"].author_reach == INT32_MAX
    assert (stored["int32"].author_reach, stored["int32"].engagement) == (INT32_MAX, INT32_MAX)
    nul = stored["nul"]
    assert (nul.text, nul.author_name) == ("line oneline two", "Ana")
    assert nul.raw == {"id": "nul", "text": "line oneline two", "author": "Ana", "note": "ab"}
    assert stored["platform"].platform == "p" * 32
    assert (stored["handle"].author_handle, stored["handle"].author_name) == ("h" * 256, "a" * 256)
    assert stored["thread"].thread_id is None
    assert stored["stars"].rating is None

    assert _messages(caplog, FILE_LOGGER) == [
        f"skipped {path}:2: created_at: '9999-12-31T23:59:59-05:00' cannot be represented in UTC",
        f"skipped {path}:3: created_at: '0001-01-01T00:00:00+05:00' cannot be represented in UTC",
    ]
    store_lines = _messages(caplog, STORE_LOGGER)
    assert len(store_lines) == 9  # one line per clamped or skipped row
    assert any(line.startswith("imports: skipped 'iiiiii") for line in store_lines)
    assert any(line.startswith("imports: skipped 'only-nul': no text left") for line in store_lines)
    assert any(line.startswith("imports: stored 'famous'") for line in store_lines)

    # The cursor moved past every row: a second run reads nothing and fails nothing.
    with session_scope(engine) as session:
        assert get_state(session, name="imports").cursor is not None
    again = pipeline.ingest(imports)
    assert (again.error, again.new) == (None, 0)


def test_text_json_numbers_and_times_are_made_storable(
    engine, caplog: pytest.LogCaptureFixture
) -> None:
    minus_five = timezone(timedelta(hours=-5))
    mentions = [
        NewMention(
            source="api",
            external_id="surrogates",
            platform="x",
            text="half an emoji \ud83d here",
            author_name="\udcff",
            url="https://example.com/\x00",
            raw={"k\ud83d": ["\x00", {"deep": "\udc00ok"}], "score": math.nan, "n": 10**30},
        ),
        NewMention(
            source="api",
            external_id="numbers",
            platform="x",
            text="odd numbers",
            author_reach=-3,
            engagement=True,  # type: ignore[arg-type]  # a connector bug, not a count
            rating=math.inf,
        ),
        NewMention(
            source="api",
            external_id="split-pair",
            platform="x",
            text="phone \ud83d\udcf1",  # a pair kept as two code points joins into one
        ),
        NewMention(
            source="api",
            external_id="far",
            platform="x",
            text="unrepresentable time",
            created_at=datetime(9999, 12, 31, 23, 59, tzinfo=minus_five),
        ),
        NewMention(source="api", external_id="nul\x00id", platform="x", text="id with a NUL"),
        NewMention(source="api", external_id="fine", platform="x", text="fine", rating=4.0),
    ]
    with caplog.at_level(logging.INFO, logger=STORE_LOGGER), session_scope(engine) as session:
        new = save_batch(session, source="api", mentions=mentions, cursor="page-2")
    assert new == 4
    stored = _stored(engine)
    assert sorted(stored) == ["fine", "numbers", "split-pair", "surrogates"]
    odd = stored["surrogates"]
    assert (odd.text, odd.author_name, odd.url) == (
        "half an emoji  here",
        None,
        "https://example.com/",
    )
    assert odd.raw == {"k": ["", {"deep": "ok"}], "score": None, "n": 10**30}
    numbers = stored["numbers"]
    assert (numbers.author_reach, numbers.engagement, numbers.rating) == (None, None, None)
    assert stored["split-pair"].text == "phone 📱"
    assert stored["fine"].rating == 4.0
    lines = _messages(caplog, STORE_LOGGER)
    assert len(lines) == 5
    assert any(line.startswith("api: skipped 'far': created_at") for line in lines)
    assert "api: skipped 'nul\\x00id': external_id: holds NUL characters or unpaired " in (
        "\n".join(lines)
    )
    with session_scope(engine) as session:
        assert get_state(session, name="api").cursor == "page-2"


def test_first_concurrent_saves_of_a_new_source_all_succeed(db_url: str) -> None:
    """Many first deliveries at once: the state row is created once and no mention is lost."""
    # 100 racing writers fail the old read-then-insert reliably and leave SQLite's 10 s busy
    # timeout a wide margin on a loaded machine.
    threads = 100
    if db_url.startswith("sqlite"):
        # A connection per thread, so all of them really race for the first state row.
        engine = make_engine(db_url, poolclass=NullPool)
    else:
        engine = make_engine(db_url, pool_size=40, max_overflow=0, pool_timeout=300)
    try:
        upgrade(engine)
        start = threading.Barrier(threads, timeout=120)
        errors: list[str] = []

        def deliver(number: int) -> None:
            try:
                start.wait()
                # What `triage serve` does with one webhook request.
                with session_scope(engine) as session:
                    cursor = get_state(session, name="hook").cursor
                    mention = NewMention(
                        source="hook", external_id=f"m-{number}", platform="x", text="hi"
                    )
                    save_batch(session, source="hook", mentions=[mention], cursor=cursor)
                    record_run(session, name="hook", error=None)
            except Exception as exc:  # collected: the assertion below names them
                errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")

        workers = [threading.Thread(target=deliver, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        assert len(_stored(engine)) == threads
        with session_scope(engine) as session:
            assert len(session.exec(select(ConnectorState)).all()) == 1
            assert session.get(ConnectorState, "hook").consecutive_failures == 0
            # The count `connectors list` shows, added in SQL: no racing batch lost its own.
            assert session.get(ConnectorState, "hook").mention_count == threads
    finally:
        engine.dispose()


def test_utc_conversion_refuses_times_outside_the_calendar() -> None:
    from triage.clock import as_utc

    with pytest.raises(ValueError, match="cannot be represented in UTC"):
        as_utc(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))))
    naive = datetime(2026, 1, 1)
    assert as_utc(naive) == naive.replace(tzinfo=UTC)
