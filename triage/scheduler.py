"""APScheduler jobs: polls per connector, analysis, and periodic jobs, each on threads of its own.

Polls, analysis and the periodic jobs (the Slack notify cycle, reports, spike checks) run in
separate thread pools, so a source that times out or a long backlog never holds back the cards.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
from collections.abc import Callable
from datetime import timedelta
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from connectors.registry import polled
from triage.clock import utcnow
from triage.config import ConnectorSettings
from triage.pipeline import IngestReport, Pipeline

log = logging.getLogger(__name__)
JITTER_FRACTION = 0.1
MAX_BACKOFF_SECONDS = 6 * 3600
# Analysis also runs on a timer, for mentions that arrived while the last run was finishing.
ANALYZE_SECONDS = 10.0
ANALYZE_JOB = "analyze"


class _SkippedRunsToDebug(logging.Filter):
    """A periodic job still busy from its last run is normal under load, not a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "maximum number of running instances" in str(record.msg):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(__name__).isEnabledFor(logging.DEBUG)
        return True


_APSCHEDULER_LOG = logging.getLogger("apscheduler.scheduler")
_APSCHEDULER_LOG.addFilter(_SkippedRunsToDebug())


def _logged(name: str, job: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            job()
        except Exception:  # the next run tries again; one failure must not stop the job
            log.exception("%s failed", name)

    return run


def backoff_seconds(interval: float, failures: int, *, cap: float = MAX_BACKOFF_SECONDS) -> float:
    """Delay before retrying a connector that failed `failures` times in a row."""
    if failures <= 0:
        return interval
    return min(cap, max(interval, 60.0) * 2 ** (failures - 1))


class ConnectorScheduler:
    """Polls each connector on its own schedule; a failing one backs off and never blocks others."""

    def __init__(self, pipeline: Pipeline, *, max_workers: int = 4):
        self.pipeline = pipeline
        self.stop_event = threading.Event()
        connectors = polled(pipeline.settings.enabled_connectors())
        self._max_workers = max_workers
        self._scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        self._connectors = {connector.name: connector for connector in connectors}
        self._periodic: list[tuple[str, Callable[[], Any], float]] = []
        # Set by a poll that stored mentions; the analysis job runs until it stays clear.
        self._new_mentions = threading.Event()
        self._analyzing = threading.Lock()

    def every(self, seconds: float, name: str, job: Callable[[], Any]) -> None:
        """Also run `job` every `seconds` (Slack notifications, SLA checks); call before start."""
        self._periodic.append((name, job, seconds))

    def start(self, *, paused: bool = False, load_models: bool = False) -> None:
        """Schedule every job; with `load_models`, load the models at once rather than at the
        first poll that finds mentions (whose mentions would wait for them: a cold start)."""
        now = utcnow()
        # One pool per kind of work: a slow poll never holds analysis or the Slack cycle.
        polls = max(1, min(self._max_workers, len(self._connectors)))
        self._scheduler.add_executor(ThreadPoolExecutor(polls), "polls")
        self._scheduler.add_executor(ThreadPoolExecutor(1), "analysis")
        self._scheduler.add_executor(ThreadPoolExecutor(max(1, len(self._periodic))), "periodic")
        for index, connector in enumerate(self._connectors.values()):
            self._scheduler.add_job(
                self.run_connector,
                IntervalTrigger(
                    seconds=connector.interval, jitter=connector.interval * JITTER_FRACTION
                ),
                executor="polls",
                args=[connector.name],
                id=connector.name,
                name=f"poll {connector.name}",
                # Stagger the first polls so sources don't all start in the same second.
                next_run_time=now + timedelta(seconds=index * 2 + random.uniform(0, 1)),
            )
        for name, job, seconds in self._periodic:
            self._scheduler.add_job(
                _logged(name, job),
                IntervalTrigger(seconds=seconds),
                executor="periodic",
                id=name,
                name=name,
                next_run_time=now + timedelta(seconds=1),
            )
        if load_models:
            self._scheduler.add_job(
                _logged("loading the models", lambda: self.pipeline.analyzer),
                executor="analysis",
                id="load models",
                name="load models",
                next_run_time=now,
            )
        # The first run, at once, picks up mentions a crash or stop left unanalyzed.
        self._scheduler.add_job(
            self.analyze,
            IntervalTrigger(seconds=ANALYZE_SECONDS),
            executor="analysis",
            id=ANALYZE_JOB,
            name="analyze",
            next_run_time=now,
        )
        self._scheduler.start(paused=paused)
        log.info("scheduler started with %d connectors", len(self._connectors))

    def run_connector(self, name: str) -> IngestReport:
        """One scheduled poll: ingest, wake the analysis job, reschedule after a failure."""
        connector: ConnectorSettings = self._connectors[name]
        report = self.pipeline.ingest(connector, stop=self.stop_event)
        if report.new:
            log.info("%s: %d new mentions", name, report.new)
            self._new_mentions.set()
            self._wake_analysis()
        if report.error and not self.stop_event.is_set():
            delay = backoff_seconds(connector.interval, report.consecutive_failures)
            if report.needs_credentials:
                delay = MAX_BACKOFF_SECONDS
            elif report.retry_after:
                delay = max(delay, report.retry_after)
            job = self._scheduler.get_job(name)
            if job is not None:
                job.modify(next_run_time=utcnow() + timedelta(seconds=delay))
            log.debug("connector %s retries in %.0f s", name, delay)
        return report

    def analyze(self) -> None:
        """Analyze, open cases and draft until no poll has stored anything new meanwhile."""
        with self._analyzing:
            while not self.stop_event.is_set():
                self._new_mentions.clear()
                try:
                    processed = self.pipeline.process(stop=self.stop_event)
                except Exception:
                    log.exception("analysis failed")
                    return
                if processed.analyzed:
                    log.info(
                        "%d mentions analyzed, %d cases opened, %d drafts",
                        processed.analyzed,
                        processed.cases,
                        processed.drafts,
                    )
                if not self._new_mentions.is_set():
                    return

    def _wake_analysis(self) -> None:
        # A running analysis sees the flag and goes round again; only an idle one is woken.
        if self._analyzing.locked() or not self._scheduler.running:
            return
        job = self._scheduler.get_job(ANALYZE_JOB)
        if job is not None:
            job.modify(next_run_time=utcnow())

    def stop(self) -> None:
        """Finish the batch in hand, then stop every job."""
        self.stop_event.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        log.info("scheduler stopped")

    def run_forever(self) -> None:
        """Start, block until SIGINT or SIGTERM, then stop cleanly."""

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if self.stop_event.is_set():
                # Everything is committed per batch: mentions stored but not yet analyzed,
                # drafted or posted are picked up by the next start, so exiting loses nothing.
                log.warning(
                    "received %s again: exiting now; unfinished work resumes at the next start",
                    name,
                )
                logging.shutdown()
                os._exit(128 + signum)
            # Set before logging: a second signal can land while this handler is still writing.
            self.stop_event.set()
            log.info("received %s, stopping after the current batch (again to exit now)", name)

        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            # Models load now, not at the first poll with mentions, whose cards would wait.
            self.start(load_models=True)
            while not self.stop_event.wait(1.0):
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
