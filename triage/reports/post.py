"""Reports in Slack: the summary as a message, the charts through the external upload flow.

Scheduled reports (daily, weekly, at `[reports]` times in UTC) go out once per slot: each post
is recorded in the audit table under the slot's key, and a slot already there is skipped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError
from sqlmodel import select

from triage.clock import utcnow
from triage.config import ReportSettings, Settings
from triage.reports import Report, build_report
from triage.slack.bot import Ack, SlackBot
from triage.slack.text import escape
from triage.store import AuditEvent, session_scope
from triage.store.queries import audit

log = logging.getLogger(__name__)
POSTED = "report_posted"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True, slots=True)
class Slot:
    """One scheduled report: its period [since, until) and the key it is recorded under."""

    name: str  # daily | weekly
    since: datetime
    until: datetime

    @property
    def key(self) -> str:
        return f"{self.name}:{self.until.isoformat()}"

    @property
    def title(self) -> str:
        return f"{self.name.capitalize()} report, {self.since:%d %b} – {self.until:%d %b %Y}"


def post_report(
    client: WebClient, channel: str, report: Report, title: str, *, asked_by: str | None = None
) -> None:
    """The summary, then the charts in one upload (getUploadURLExternal, upload, complete)."""
    who = f" (asked by <@{asked_by}>)" if asked_by and _USER.match(asked_by) else ""
    client.chat_postMessage(
        channel=channel,
        text=f"*{escape(title)}*{who}\n{escape(report.summary)}",
        unfurl_links=False,
    )
    charts = [
        {"file": png, "filename": f"{name}.png", "title": name.replace("-", " ").capitalize()}
        for name, png in report.charts.items()
    ]
    # The whole report too: the tables, the examples and the per-agent care figures.
    page = {"content": report.html(), "filename": "report.html", "title": f"{title} (HTML)"}
    client.files_upload_v2(channel=channel, file_uploads=[*charts, page])


def due_slots(schedule: ReportSettings, now: datetime) -> list[Slot]:
    """The latest daily and weekly slots begun by `now` (older ones are not backfilled)."""
    slots = []
    if schedule.daily_at:
        end = _latest(now, schedule.daily_at, days=None)
        slots.append(Slot("daily", end - timedelta(days=1), end))
    if schedule.weekly_at and schedule.weekly_on:
        end = _latest(now, schedule.weekly_at, days=WEEKDAYS.index(schedule.weekly_on))
        slots.append(Slot("weekly", end - timedelta(days=7), end))
    return slots


def reports_cycle(
    engine: sa.Engine, settings: Settings, client: WebClient, now: datetime | None = None
) -> list[Slot]:
    """Post each due report not posted yet; returns the slots posted now."""
    channel = settings.reports.channel or settings.slack.reports_channel
    if not channel:
        return []
    posted = []
    for slot in due_slots(settings.reports, now or utcnow()):
        if _already_posted(engine, slot.key):
            continue
        report = build_report(engine, settings, slot.since, slot.until)
        try:
            post_report(client, channel, report, slot.title)
        except SlackClientError as exc:
            log.warning("the %s report could not be posted: %s", slot.name, exc)
            continue
        with session_scope(engine) as session:
            where = {"channel": channel}
            audit(session, actor="triage", action=POSTED, after=slot.key, detail=where)
        posted.append(slot)
    return posted


def _latest(now: datetime, at: str, *, days: int | None) -> datetime:
    hour, minute = (int(part) for part in at.split(":"))
    moment = datetime.combine(now.date(), time(hour, minute), now.tzinfo)
    if days is not None:
        moment -= timedelta(days=(now.weekday() - days) % 7)
    step = timedelta(days=1 if days is None else 7)
    return moment if moment <= now else moment - step


def _already_posted(engine: sa.Engine, key: str) -> bool:
    with session_scope(engine) as session:
        found = session.exec(
            select(AuditEvent.id).where(AuditEvent.action == POSTED, AuditEvent.after == key)
        ).first()
    return found is not None


_USER = re.compile(r"^[UW][A-Z0-9]{6,}$")
_PERIOD = re.compile(r"^(\d{1,3})([hd])$")
MAX_DAYS = 90


def report_command(bot: SlackBot, words: list[str], form: dict[str, str]) -> Ack:
    """`/triage report 7d`: answered at once, the report posted to the channel right after."""
    match = _PERIOD.match(words[0].lower()) if words else _PERIOD.match("7d")
    hours = int(match.group(1)) * (24 if match.group(2) == "d" else 1) if match else 0
    if not match or not 1 <= hours <= MAX_DAYS * 24:
        usage = f"Usage: `/triage report 7d` (a period from 1h to {MAX_DAYS}d)."
        return Ack(body={"response_type": "ephemeral", "text": usage})
    channel = form.get("channel_id") or bot.settings.reports.channel
    channel = channel or bot.settings.slack.reports_channel or ""
    until = utcnow()
    since = until - timedelta(hours=hours)
    title = f"Report for the last {words[0] if words else '7d'}"

    def work() -> None:
        report = build_report(bot.engine, bot.settings, since, until)
        try:
            post_report(bot.client, channel, report, title, asked_by=form.get("user_id"))
        except SlackClientError as exc:
            log.warning("the requested report could not be posted: %s", exc)

    return Ack(
        body={
            "response_type": "ephemeral",
            "text": "Preparing the report: it appears here shortly.",
        },
        work=work,
    )


def register(bot: SlackBot) -> None:
    """Make `/triage report` known to the bot."""
    bot.commands["report"] = report_command
