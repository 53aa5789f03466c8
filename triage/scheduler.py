"""APScheduler jobs: one per enabled connector at its own interval, backing off after failures."""

from __future__ import annotations

import logging
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
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max(1, min(max_workers, len(connectors))))},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        self._connectors = {connector.name: connector for connector in connectors}
        self._periodic: list[tuple[str, Callable[[], Any], float]] = []

    def every(self, seconds: float, name: str, job: Callable[[], Any]) -> None:
        """Also run `job` every `seconds` (Slack notifications, SLA checks); call before start."""
        self._periodic.append((name, job, seconds))

    def start(self, *, paused: bool = False) -> None:
        now = utcnow()
        for index, connector in enumerate(self._connectors.values()):
            self._scheduler.add_job(
                self.run_connector,
                IntervalTrigger(
                    seconds=connector.interval, jitter=connector.interval * JITTER_FRACTION
                ),
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
                id=name,
                name=name,
                next_run_time=now + timedelta(seconds=1),
            )
        # Mentions stored before a crash or stop but not yet analyzed are picked up at once.
        self._scheduler.add_job(self._process_backlog, "date", run_date=now, id="backlog")
        self._scheduler.start(paused=paused)
        log.info("scheduler started with %d connectors", len(self._connectors))

    def run_connector(self, name: str) -> IngestReport:
        """One scheduled poll: ingest, process what came in, reschedule after a failure."""
        connector: ConnectorSettings = self._connectors[name]
        report = self.pipeline.ingest(connector, stop=self.stop_event)
        if report.new and not self.stop_event.is_set():
            try:
                processed = self.pipeline.process(stop=self.stop_event)
                log.info(
                    "%s: %d new mentions, %d analyzed, %d cases opened",
                    name,
                    report.new,
                    processed.analyzed,
                    processed.cases,
                )
            except Exception:
                log.exception("processing after %s failed", name)
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

    def _process_backlog(self) -> None:
        try:
            processed = self.pipeline.process(stop=self.stop_event)
        except Exception:
            log.exception("processing the backlog failed")
            return
        if processed.analyzed:
            log.info("backlog: %d mentions analyzed", processed.analyzed)

    def stop(self) -> None:
        """Finish the batch in hand, then stop every job."""
        self.stop_event.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        log.info("scheduler stopped")

    def run_forever(self) -> None:
        """Start, block until SIGINT or SIGTERM, then stop cleanly."""

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s, stopping after the current batch", signal.Signals(signum).name)
            self.stop_event.set()

        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            while not self.stop_event.wait(1.0):
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
