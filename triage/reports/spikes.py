"""Spike alerts: an hour's volume or negative share above what the history predicts.

Volume: the last complete hour against the same hour of the week in the weeks before (weekly
seasonality), or the day before when there is less history; a z-score with a Poisson floor on
the spread. Negative share: the hour's share against the week before, as a test of proportions.
Each spike is posted once, per source and overall, to the care and reports channels.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError
from sqlmodel import col, select

from triage.clock import utcnow
from triage.config import Settings
from triage.reports.figures import Row, load_rows
from triage.slack.text import cut, escape, link
from triage.store import AuditEvent, session_scope
from triage.store.queries import SPIKE_ALERTED, audit, hourly_volume

log = logging.getLogger(__name__)
ALERTED = SPIKE_ALERTED
Z_THRESHOLD = 3.0
MIN_MENTIONS = 5  # fewer in an hour is never a spike worth waking anyone for
MIN_SHARE_RISE = 0.2  # the negative share must also rise by 20 points
WEEKS = 4
QUIET_HOURS = 3  # one alert per spike: a scope and metric alerted this recently stays quiet


@dataclass(frozen=True, slots=True)
class Spike:
    scope: str  # "all" or a source name
    metric: str  # volume | negative share
    hour: datetime
    observed: float
    expected: float
    z: float
    mentions: list[Row]

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.metric}:{self.hour.isoformat()}"

    def text(self) -> str:
        if self.metric == "volume":
            what = f"{self.observed:.0f} mentions, about {self.expected:.0f} expected"
        else:
            what = f"{self.observed:.0%} negative, about {self.expected:.0%} usual"
        where = "all sources" if self.scope == "all" else f"source {self.scope}"
        lines = [
            f":rotating_light: *Spike in {escape(self.metric)}* ({escape(where)}, "
            f"{self.hour:%d %b %H:00}–{self.hour + timedelta(hours=1):%H:00} UTC): "
            f"{escape(what)}, z = {self.z:.1f}"
        ]
        for row in sorted(self.mentions, key=lambda r: -r.urgency)[:3]:
            short = row.text if len(row.text) <= 200 else row.text[:199] + "…"
            shown = link(row.url, short) if row.url else cut(row.text, 200)
            lines.append(f"> {shown} ({escape(row.source)})")
        return "\n".join(lines)


def volume_z(observed: int, history: Sequence[int]) -> tuple[float, float]:
    """(expected, z) of an hour's count against the same hours before; spread at least Poisson."""
    if not history:
        return 0.0, 0.0
    mean = sum(history) / len(history)
    spread = math.sqrt(sum((x - mean) ** 2 for x in history) / len(history))
    spread = max(spread, math.sqrt(mean), 1.0)
    return mean, (observed - mean) / spread


def share_z(negative: int, total: int, base_negative: int, base_total: int) -> tuple[float, float]:
    """(usual share, z) of an hour's negative share against the week before."""
    if not total or not base_total:
        return 0.0, 0.0
    usual = base_negative / base_total
    usual_clamped = min(max(usual, 0.02), 0.98)
    z = (negative / total - usual) / math.sqrt(usual_clamped * (1 - usual_clamped) / total)
    return usual, z


@dataclass
class HourCounts:
    """One scope's mentions and negative mentions per hour (UTC) before the hour checked, and
    when its earliest mention known was posted."""

    total: Counter[datetime] = field(default_factory=Counter)
    negative: Counter[datetime] = field(default_factory=Counter)
    earliest: datetime | None = None

    def add(self, hour: datetime, total: int, negative: int, earliest: datetime) -> None:
        self.total[hour] += total
        self.negative[hour] += negative
        self.earliest = earliest if self.earliest is None else min(self.earliest, earliest)


def detect(rows: Sequence[Row], hour: datetime) -> list[Spike]:
    """Spikes in the hour starting at `hour`, from every row of the weeks before it."""
    history: dict[str, HourCounts] = defaultdict(HourCounts)
    for row in rows:
        negative = int(row.sentiment == "negative")
        counted = row.created_at < hour
        for scope in ("all", row.source):
            history[scope].add(
                _floor(row.created_at), int(counted), negative * counted, row.created_at
            )
    return detect_in(history, [row for row in rows if _in_hour(row, hour)], hour)


def detect_in(history: Mapping[str, HourCounts], now: Sequence[Row], hour: datetime) -> list[Spike]:
    """Spikes in the hour starting at `hour` (on the hour), whose mentions are `now`, against
    each scope's counts per hour before it ("all" and each source)."""
    spikes = []
    for scope in ["all", *sorted({row.source for row in now})]:
        counts = history.get(scope, HourCounts())
        mine = [row for row in now if scope == "all" or row.source == scope]
        weekly = [counts.total.get(hour - timedelta(weeks=w), 0) for w in range(1, WEEKS + 1)]
        earliest = min([row.created_at for row in mine] + [counts.earliest or hour])
        weeks_known = [c for w, c in enumerate(weekly, 1) if hour - timedelta(weeks=w) >= earliest]
        expected_from = (
            weeks_known
            if len(weeks_known) >= 2
            else [counts.total.get(hour - timedelta(hours=h), 0) for h in range(1, 25)]
        )
        expected, z = volume_z(len(mine), expected_from)
        if len(mine) >= MIN_MENTIONS and z >= Z_THRESHOLD:
            spikes.append(Spike(scope, "volume", hour, len(mine), expected, z, mine))
        week = [hour - timedelta(hours=h) for h in range(1, 7 * 24 + 1)]
        negative = sum(row.sentiment == "negative" for row in mine)
        usual, z = share_z(
            negative,
            len(mine),
            sum(counts.negative.get(h, 0) for h in week),
            sum(counts.total.get(h, 0) for h in week),
        )
        share = negative / len(mine) if mine else 0.0
        if len(mine) >= MIN_MENTIONS and z >= Z_THRESHOLD and share - usual >= MIN_SHARE_RISE:
            spikes.append(Spike(scope, "negative share", hour, share, usual, z, mine))
    return spikes


def spikes_cycle(
    engine: sa.Engine, settings: Settings, client: WebClient, now: datetime | None = None
) -> list[Spike]:
    """Check the last complete hour and alert each new spike once; returns those alerted.

    The weeks before come from the hourly rollups; only the hour's own mentions are read (the
    alert quotes them).
    """
    channels = [
        c for c in dict.fromkeys([settings.slack.care_channel, settings.slack.reports_channel]) if c
    ]
    hour = _floor(now or utcnow()) - timedelta(hours=1)
    history: dict[str, HourCounts] = defaultdict(HourCounts)
    with session_scope(engine) as session:
        for at, source, total, negative, earliest in hourly_volume(
            session, since=hour - timedelta(weeks=WEEKS), until=hour
        ):
            for scope in ("all", source):
                history[scope].add(at, total, negative, earliest)
    rows = load_rows(engine, hour, hour + timedelta(hours=1))
    alerted = []
    for spike in detect_in(history, rows, hour):
        if not channels or _recently_alerted(engine, spike):
            continue
        try:
            for channel in channels:
                client.chat_postMessage(channel=channel, text=spike.text(), unfurl_links=False)
        except SlackClientError as exc:
            log.warning("spike alert not posted: %s", exc)
            continue
        with session_scope(engine) as session:
            audit(session, actor="triage", action=ALERTED, after=spike.key, detail={"z": spike.z})
        alerted.append(spike)
    return alerted


def _recently_alerted(engine: sa.Engine, spike: Spike) -> bool:
    keys = [
        f"{spike.scope}:{spike.metric}:{(spike.hour - timedelta(hours=h)).isoformat()}"
        for h in range(QUIET_HOURS + 1)
    ]
    with session_scope(engine) as session:
        found = session.exec(
            select(AuditEvent.id).where(
                AuditEvent.action == ALERTED, col(AuditEvent.after).in_(keys)
            )
        ).first()
    return found is not None


def _floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _in_hour(row: Row, hour: datetime) -> bool:
    return hour <= row.created_at < hour + timedelta(hours=1)
