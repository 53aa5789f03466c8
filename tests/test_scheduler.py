"""The scheduler keeps analysis and the periodic jobs going whatever one source does."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlmodel import func, select

from triage.config import Settings
from triage.domain import Batch, NewMention
from triage.pipeline import Pipeline
from triage.scheduler import ConnectorScheduler
from triage.store import Analysis, Draft, make_engine, session_scope, upgrade
from triage.store.queries import save_batch

COMPLAINTS = [
    "You charged me twice this month and nobody answers. Refund now!",
    "My parcel is two weeks late and the tracking has not moved since Monday.",
    "The app logs me out every time I open it, I cannot pay my bill.",
    "Third time I write: my heater still does not turn on. Please help.",
    "The kettle I bought last week leaks all over the counter.",
    "No internet since yesterday morning, I work from home!",
]


class _HangingSource:
    """A source whose poll never returns until released, like a server that never answers."""

    def __init__(self, started: threading.Event, release: threading.Event):
        self.started, self.release = started, release

    def __enter__(self) -> _HangingSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def fetch(self, _cursor: str | None) -> Iterator[Batch]:
        self.started.set()
        self.release.wait(120)
        return iter(())


def _wait_for(condition: Callable[[], bool], *, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _store_left_behind(engine, count: int) -> None:
    mentions = [
        NewMention(source="imports", external_id=str(i), platform="x", text=text)
        for i, text in enumerate(COMPLAINTS[:count])
    ]
    with session_scope(engine) as session:
        save_batch(session, source="imports", mentions=mentions, cursor=None)


def _count(engine, table) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(table)).one()


@pytest.fixture
def store(sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    yield sqlite_url, engine
    engine.dispose()


@pytest.mark.model
def test_a_hanging_source_holds_back_neither_analysis_nor_the_slack_cycle(store, analyzer):
    url, engine = store
    _store_left_behind(engine, len(COMPLAINTS))
    started, release = threading.Event(), threading.Event()
    settings = Settings.model_validate(
        {
            "database": {"url": url},
            "connectors": [{"name": "slow", "type": "file", "options": {"path": "x.jsonl"}}],
        }
    )
    pipeline = Pipeline(
        settings,
        engine,
        analyzer_factory=lambda _s: analyzer,
        connector_factory=lambda _c: _HangingSource(started, release),
    )
    ticks: list[float] = []
    scheduler = ConnectorScheduler(pipeline)
    scheduler.every(0.2, "slack", lambda: ticks.append(time.monotonic()))
    scheduler.start()
    try:
        assert _wait_for(started.is_set), "the poll never started"
        # With the one source's poll hanging, the notify cycle still runs and the backlog
        # is analyzed and drafted.
        assert _wait_for(lambda: len(ticks) >= 3)
        assert _wait_for(lambda: _count(engine, Analysis) == len(COMPLAINTS))
        assert _wait_for(lambda: _count(engine, Draft) > 0)
        assert started.is_set() and not release.is_set()
    finally:
        release.set()
        scheduler.stop()


class _RecordingAnalyzer:
    """The real analyzer, noting how many drafts existed each time it was called."""

    def __init__(self, analyzer, engine):
        self._analyzer, self._engine = analyzer, engine
        self.drafts_seen: list[int] = []

    def __getattr__(self, name: str):
        return getattr(self._analyzer, name)

    def analyze(self, inputs):
        self.drafts_seen.append(_count(self._engine, Draft))
        return self._analyzer.analyze(inputs)


@pytest.mark.model
def test_drafts_follow_each_chunk_so_a_backlog_yields_cards_as_it_goes(store, analyzer):
    url, engine = store
    _store_left_behind(engine, len(COMPLAINTS))
    recording = _RecordingAnalyzer(analyzer, engine)
    # batch_size 1 -> chunks of 4 mentions: the six complaints take two chunks.
    settings = Settings.model_validate({"database": {"url": url}, "models": {"batch_size": 1}})
    pipeline = Pipeline(settings, engine, analyzer_factory=lambda _s: recording)

    report = pipeline.process()

    assert report.analyzed == len(COMPLAINTS) and report.drafts == _count(engine, Draft)
    # The second chunk was analyzed after the first chunk's cases had their drafts.
    assert len(recording.drafts_seen) == 2
    assert recording.drafts_seen[0] == 0 and recording.drafts_seen[1] > 0


def test_a_periodic_job_still_busy_is_not_logged_as_a_warning(store, caplog):
    url, engine = store
    settings = Settings.model_validate({"database": {"url": url}})
    scheduler = ConnectorScheduler(Pipeline(settings, engine))
    runs: list[int] = []

    def slow() -> None:
        runs.append(1)
        time.sleep(0.4)

    scheduler.every(0.05, "slack", slow)
    with caplog.at_level(logging.DEBUG):
        scheduler.start()
        try:
            assert _wait_for(lambda: len(runs) >= 3)
        finally:
            scheduler.stop()
    skipped = [r for r in caplog.records if "maximum number of running" in r.getMessage()]
    assert skipped, "the job never overlapped its own interval; the test proves nothing"
    assert all(r.levelno == logging.DEBUG for r in skipped)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_stop_asked_for_while_the_models_load_analyzes_nothing(store):
    url, engine = store
    _store_left_behind(engine, 3)
    stop = threading.Event()

    def loading(_settings):
        stop.set()  # Ctrl-C while the models load
        return object()  # an analyzer that must not be asked anything

    settings = Settings.model_validate({"database": {"url": url}})
    report = Pipeline(settings, engine, analyzer_factory=loading).process(stop=stop)

    assert report.analyzed == 0 and _count(engine, Analysis) == 0


@pytest.mark.parametrize("load_models", [True, False])
def test_triage_run_loads_the_models_at_start_not_at_the_first_mention(store, load_models):
    url, engine = store
    settings = Settings.model_validate(
        {
            "database": {"url": url},
            "connectors": [{"name": "quiet", "type": "file", "options": {"path": "x.jsonl"}}],
        }
    )
    loaded = threading.Event()

    def factory(_settings: Settings):
        loaded.set()
        return object()

    started, release = threading.Event(), threading.Event()
    pipeline = Pipeline(
        settings,
        engine,
        analyzer_factory=factory,
        connector_factory=lambda _c: _HangingSource(started, release),
    )
    scheduler = ConnectorScheduler(pipeline)
    scheduler.start(load_models=load_models)
    try:
        # No mention has come (the one source's poll never returns), yet the models are ready.
        assert _wait_for(started.is_set)
        assert loaded.wait(5) is load_models
    finally:
        release.set()
        scheduler.stop()
