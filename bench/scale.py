"""Cost against history: seed 100k and 1M realistic rows, time the recurring jobs, show the plans.

Run by hand, never in CI (1M rows take a few minutes to seed and about 3 GB of disk per database):

    .venv/bin/python bench/scale.py --sizes 0,100k,1m --db sqlite,postgres
    .venv/bin/python bench/scale.py --sizes 1m --db postgres --slow     # spikes and reports too

The rows are shaped by triage's own tables (triage/store/tables.py): mentions from nine sources
over 60 days (text in eight languages, authors from a heavy-tailed pool, a raw payload, created
and fetched times), an analysis for each, a case for each mention that needs a human (replied or
dismissed when old, more of them open the newer they are), its draft, the Slack outbox rows a
carded case leaves (its card, the escalation copy of a P1, card updates, SLA reminders and
breach pings, digests), audit events, sent replies and connector_state. SQLite is seeded with
executemany in batches, PostgreSQL with COPY; PostgreSQL is then analysed (as autovacuum would),
SQLite is not (triage never runs ANALYZE there).

Each operation runs once to warm up, then `--repeat` times; the table shows the median in
seconds. The notify cycle is the real Notifier against tests/slack/fake_slack.py (no pacing: the
store's cost, not Slack's); analysing and drafting are the real pipeline's steps with stand-in
models (the store's side of them). The plans of the slowest statements of each operation
(EXPLAIN ANALYZE on PostgreSQL, EXPLAIN QUERY PLAN on SQLite) are printed as each operation
ends, for the largest size (`--explain all` for every size); the table comes last.

The PostgreSQL databases are `<--pg-url's database>_<size>` (triage_scale_1m, ...), dropped and
created again unless `--reuse`; the SQLite files live in `--sqlite-dir`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
from bisect import bisect
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlmodel import SQLModel  # noqa: E402

from tests.slack.fake_slack import start_fake_slack  # noqa: E402
from triage.clock import utcnow  # noqa: E402
from triage.config import ConnectorSettings, DatabaseSettings, Settings, SlackSettings  # noqa: E402
from triage.domain import NewMention  # noqa: E402
from triage.store import (  # noqa: E402
    Analysis,
    Case,
    CaseStatus,
    Draft,
    Mention,
    make_engine,
    session_scope,
    upgrade,
)
from triage.store.queries import rebuild_rollups  # noqa: E402
from triage.store.tables import UTCDateTime  # noqa: E402

CARE = "C0CARE0001"
ESCALATION = "C0ESCAL001"
LEADS = "S0LEADS001"
DAYS = 60
CHUNK = 20_000  # mentions per seeding batch
AGENTS = [f"U0AGENT{n:03d}" for n in range(25)]

# name, platform, share of mentions, whether it is a review source (rating and title), news
SOURCES = [
    ("x-brand", "x", 0.33, False, False),
    ("mastodon", "mastodon", 0.05, False, False),
    ("reddit", "reddit", 0.10, False, False),
    ("trustpilot", "trustpilot", 0.09, True, False),
    ("appstore", "appstore", 0.08, True, False),
    ("googleplay", "googleplay", 0.08, True, False),
    ("youtube", "youtube", 0.07, False, False),
    ("zapier", "webhook", 0.10, False, False),
    ("press", "rss", 0.10, False, True),
]
LANGUAGES = [
    ("en", 0.34),
    ("pl", 0.10),
    ("de", 0.12),
    ("es", 0.10),
    ("fr", 0.10),
    ("pt", 0.08),
    ("lv", 0.05),
    ("it", 0.06),
    ("und", 0.05),
]
SOURCE_SHARES = [(source, source[2]) for source in SOURCES]
KINDS = [
    ("complaint", 0.32),
    ("question", 0.12),
    ("feedback", 0.08),
    ("praise", 0.18),
    ("info", 0.22),
    ("spam", 0.08),
]
COMPLAINT_BANDS = [("P1", 0.05), ("P2", 0.22), ("P3", 0.73)]
QUESTION_BANDS = [("P2", 0.08), ("P3", 0.5), ("P4", 0.42)]
OTHER_SENTIMENTS = [("neutral", 0.7), ("negative", 0.15), ("positive", 0.15)]
# What becomes of a case in the end (when the team has had time for it).
OUTCOMES = [("replied", 0.62), ("dismissed", 0.365), ("open", 0.015)]
PROBLEMS = ["billing", "refund", "delivery", "outage", "login", "defect", "service", "churn"]
RARE_PROBLEMS = ["account_takeover", "fraud", "phishing", "safety", "legal", "press", "privacy"]
TEXTS = {
    "complaint": [
        "Kestrel charged me twice for the same order and nobody answers",
        "my parcel has been stuck in the depot for nine days",
        "the app logs me out every time I open it, third time I write about this",
        "Zaplacilem dwa razy za to samo zamowienie, gdzie jest zwrot?",
        "Die Lieferung ist seit einer Woche verspaetet und der Support antwortet nicht",
        "Me cobraron dos veces y nadie responde en el chat",
        "Impossible de me connecter depuis la mise a jour, c'est inadmissible",
        "Fui cobrado duas vezes e ainda nao recebi o reembolso",
        "Lietotne nestrada jau otro dienu, nevaru samaksat rekinu",
        "the outage again?? I cannot pay my bills, fix it",
        "refund promised three weeks ago, still nothing on my card",
        "your courier left my package in the rain, everything is ruined",
    ],
    "question": [
        "does the new plan include international shipping?",
        "how do I change the e-mail address on my account?",
        "Czy moge zmienic adres dostawy po zamowieniu?",
        "Wie kann ich mein Abo kuendigen?",
        "Cuando llega el pedido si pedi el lunes?",
    ],
    "praise": [
        "Kestrel support sorted my refund in ten minutes, thank you!",
        "love the new app update, so much faster",
        "Super schnelle Lieferung, danke!",
        "Obrigado pelo atendimento rapido",
    ],
    "info": [
        "Kestrel announces a new logistics centre in Riga",
        "Quarterly results: Kestrel grows 12 percent in Europe",
        "Kestrel is hiring 200 engineers in Warsaw",
        "RT: Kestrel spring sale starts Monday",
    ],
}
TAILS = [
    "",
    " #fail",
    " @KestrelHelp",
    " please help",
    " order 48213-PL",
    " seriously.",
    " (sent from my phone)",
]


_CUMULATIVE: dict[int, tuple[list[float], list[Any]]] = {}


def weighted(rng: random.Random, pairs: list[tuple[Any, float]]) -> Any:
    """A value drawn with its weight from one of the lists above (module constants: the
    cumulative weights are kept by the list's id)."""
    if id(pairs) not in _CUMULATIVE:
        _CUMULATIVE[id(pairs)] = (list(accumulate(w for _, w in pairs)), [v for v, _ in pairs])
    bounds, values = _CUMULATIVE[id(pairs)]
    return values[min(bisect(bounds, rng.random()), len(values) - 1)]


# --- seeding ---------------------------------------------------------------------------------


@dataclass
class Tables:
    """One batch of rows per table, in insert order (parents before children)."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, table: str, **row: Any) -> None:
        self.rows[table].append(row)


ORDER = [
    "mention",
    "analysis",
    "care_case",
    "draft",
    "slack_outbox",
    "outbound_reply",
    "audit_event",
]


def author_pool(size: int) -> int:
    """How many authors wrote `size` mentions (a few of them most)."""
    return max(1000, size // 4)


class Seeder:
    """Generates the history of `size` mentions ending at `now`, CHUNK mentions at a time."""

    def __init__(self, size: int, now: datetime, seed: int = 16):
        self.size = size
        self.now = now
        self.rng = random.Random(seed)
        self.start = now - timedelta(days=DAYS)
        self.case_id = 0
        self.outbox_id = 0
        self.audit_id = 0
        self.reply_id = 0
        self.authors = author_pool(size)
        self.per_source: dict[str, int] = defaultdict(int)

    def chunks(self) -> Iterator[Tables]:
        for low in range(1, self.size + 1, CHUNK):
            tables = Tables()
            for mention_id in range(low, min(low + CHUNK, self.size + 1)):
                self._mention(tables, mention_id)
            yield tables

    def _mention(self, t: Tables, mention_id: int) -> None:
        rng = self.rng
        source, platform, _, review, news = weighted(rng, SOURCE_SHARES)
        self.per_source[source] += 1
        # Fetched in id order over the 60 days; posted a little before (minutes, sometimes days).
        fetched = self.start + timedelta(seconds=(mention_id / self.size) * DAYS * 86400 - 60)
        created = (
            None if rng.random() < 0.03 else fetched - timedelta(minutes=rng.expovariate(1 / 12))
        )
        # Heavy-tailed authors: a few write a lot, most once or twice.
        author = int(self.authors * rng.random() ** 3)
        handle = None if news else f"@user{author}"
        kind = "info" if news and rng.random() < 0.85 else weighted(rng, KINDS)
        bank = TEXTS.get(kind, TEXTS["info"] if kind == "spam" else TEXTS["question"])
        text = rng.choice(bank) + rng.choice(TAILS)
        if rng.random() < 0.3:
            text = text + " " + rng.choice(bank)
        reach = int(rng.paretovariate(1.2) * 40)
        rating = None
        title = None
        if review:
            rating = (
                float(1 + int(rng.random() * 5))
                if kind != "complaint"
                else float(rng.choice([1, 1, 2]))
            )
            title = text[:40]
        engagement = int(rng.expovariate(1 / 6))
        external_id = f"{source}-{mention_id}"
        raw = {
            "id": external_id,
            "text": text,
            "lang": "und",
            "author": {"handle": handle, "followers": reach, "verified": reach > 50_000},
            "created_at": (created or fetched).isoformat(),
            "metrics": {
                "likes": engagement,
                "replies": engagement // 3,
                "reposts": engagement // 5,
            },
            "entities": {"hashtags": ["fail"] if "#fail" in text else [], "urls": []},
        }
        t.add(
            "mention",
            id=mention_id,
            source=source,
            external_id=external_id,
            platform=platform,
            url=f"https://{platform}.example/{external_id}",
            author_name=None if news else f"User {author}",
            author_handle=handle,
            author_reach=reach,
            title=title,
            text=text,
            created_at=created,
            fetched_at=fetched,
            rating=rating,
            engagement=engagement,
            thread_id=None,
            parent_id=None,
            raw=raw,
            analyzed=True,
        )
        self._analysis(t, mention_id, source, kind, created or fetched, fetched)

    def _analysis(
        self,
        t: Tables,
        mention_id: int,
        source: str,
        kind: str,
        posted: datetime,
        fetched: datetime,
    ) -> None:
        rng = self.rng
        language = weighted(rng, LANGUAGES)
        if kind == "complaint":
            priority = weighted(rng, COMPLAINT_BANDS)
            intents = [rng.choice(RARE_PROBLEMS if priority == "P1" else PROBLEMS)]
            sentiment = "negative" if rng.random() < 0.88 else "neutral"
        elif kind == "question":
            priority = weighted(rng, QUESTION_BANDS)
            intents = ["question"]
            sentiment = "neutral"
        else:
            priority = "P4" if rng.random() < 0.92 else "P3"
            intents = {"praise": ["praise"], "feedback": ["feedback"], "spam": ["spam"]}.get(
                kind, []
            )
            sentiment = "positive" if kind == "praise" else weighted(rng, OTHER_SENTIMENTS)
        low = {"P1": 75, "P2": 50, "P3": 25, "P4": 0}[priority]
        urgency = low + int(rng.random() * (25 if priority != "P1" else 26))
        p = {"negative": 0.1, "neutral": 0.1, "positive": 0.1}
        p[sentiment] = 0.8
        analyzed = fetched + timedelta(seconds=2)
        t.add(
            "analysis",
            id=mention_id,
            mention_id=mention_id,
            language=language,
            language_confidence=0.9,
            sentiment=sentiment,
            p_negative=p["negative"],
            p_neutral=p["neutral"],
            p_positive=p["positive"],
            complaint_probability=0.8 if kind == "complaint" else 0.1,
            kind=kind,
            intents=intents,
            urgency=urgency,
            priority=priority,
            escalate=priority == "P1" and rng.random() < 0.5,
            reasons=[f"negative tone ({int(p['negative'] * 100)}%)", f"mentions {intents[:1]}"],
            model_version="e5-small+heads bench",
            analyzed_at=analyzed,
        )
        if kind not in ("info", "spam"):
            self._case(t, mention_id, source, language, priority, urgency, posted, analyzed)

    def _case(
        self,
        t: Tables,
        mention_id: int,
        source: str,
        language: str,
        priority: str,
        urgency: int,
        posted: datetime,
        created: datetime,
    ) -> None:
        rng = self.rng
        self.case_id += 1
        case_id = self.case_id
        age = (self.now - created).total_seconds()
        target = {"P1": 1800, "P2": 7200, "P3": 28800, "P4": 86400}[priority]
        card_at = created + timedelta(seconds=1 + rng.random() * 4)
        # How long the team takes to answer, and whether it answers at all.
        answer = rng.lognormvariate(0, 1) * target * 0.4
        outcome = weighted(rng, OUTCOMES)
        status, replied_at, dismissed_at, claimed_at, escalated_at = (
            "posted",
            None,
            None,
            None,
            None,
        )
        assignee = None
        if outcome != "open" and answer < age:
            done = created + timedelta(seconds=answer)
            if outcome == "replied":
                status, replied_at = "replied", done
                claimed_at = created + timedelta(seconds=answer * 0.3)
                assignee = rng.choice(AGENTS)
            else:
                status, dismissed_at = "dismissed", done
        elif rng.random() < 0.25:
            status, claimed_at, assignee = (
                "claimed",
                card_at + timedelta(minutes=3),
                rng.choice(AGENTS),
            )
        elif priority == "P1" and rng.random() < 0.3:
            status, escalated_at = "escalated", card_at + timedelta(minutes=2)
        digested = status == "posted" and priority in ("P3", "P4") and rng.random() < 0.01
        if digested:
            status = "new"
        since = posted
        t.add(
            "care_case",
            id=case_id,
            mention_id=mention_id,
            status=status,
            assignee=assignee,
            dismiss_reason=rng.choice(["spam", "not_about_us", "no_reply_needed"])
            if dismissed_at
            else None,
            reply_text="Hi, sorry about that: we have refunded the second charge. ^AK"
            if replied_at
            else None,
            reply_url=f"https://example.com/reply/{case_id}" if replied_at else None,
            created_at=created,
            posted_at=None if digested else card_at,
            claimed_at=claimed_at,
            replied_at=replied_at,
            dismissed_at=dismissed_at,
            escalated_at=escalated_at,
            first_response_seconds=(replied_at - since).total_seconds() if replied_at else None,
            slack_channel=None if digested else CARE,
            slack_ts=None if digested else f"{card_at.timestamp():.6f}",
            # As the SLA check flags a case with its breach ping (_outbox queues the ping).
            sla_breached=not digested
            and status not in ("replied", "dismissed")
            and (self.now - since).total_seconds() >= target,
        )
        t.add(
            "draft",
            id=case_id,
            mention_id=mention_id,
            language=language,
            text=(
                "Hi, we're sorry to hear that. We're looking into it and will get back to you "
                "within 2 hours. Could you send us your order number by DM? Thanks for your "
                "patience. https://help.example.com/orders"
            ),
            generator=f"template:complaint:{language}",
            note=None,
            created_at=created + timedelta(seconds=1),
        )
        self._outbox(t, case_id, priority, urgency, status, card_at, digested, since, target)
        self._audit(t, case_id, assignee, claimed_at, replied_at, dismissed_at, escalated_at)
        if replied_at is not None and rng.random() < 0.8:
            self.reply_id += 1
            t.add(
                "outbound_reply",
                id=self.reply_id,
                idempotency_key=f"reply:{case_id}:{self.reply_id}",
                mention_id=mention_id,
                case_id=case_id,
                source=source,
                text="Hi, sorry about that: we have refunded the second charge. ^AK",
                status="sent",
                attempts=1,
                requested_by=assignee or "U0AGENT000",
                external_id=f"r{self.reply_id}",
                url=f"https://example.com/reply/{case_id}",
                error=None,
                created_at=replied_at - timedelta(seconds=2),
                attempt_at=replied_at - timedelta(seconds=1),
                sent_at=replied_at,
            )

    def _outbox(
        self,
        t: Tables,
        case_id: int,
        priority: str,
        urgency: int,
        status: str,
        card_at: datetime,
        digested: bool,
        since: datetime,
        target: float,
    ) -> None:
        rng = self.rng
        rank = {"P1": 0, "P2": 1000, "P3": 2000, "P4": 3000}[priority] + (100 - urgency)
        card = {
            "text": f"{priority} ({urgency}) case {case_id}",
            "blocks": [
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": "*" + priority + "* " + "x" * 180},
                },
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "why: negative tone"}]},
                {"type": "section", "text": {"type": "mrkdwn", "text": "draft " + "y" * 240}},
                {"type": "actions", "block_id": f"case:{case_id}", "elements": []},
            ],
            "unfurl_links": False,
            "unfurl_media": False,
        }
        keys = [(f"card:{case_id}", CARE)]
        if priority == "P1":
            keys.append((f"card:{case_id}:escalation", ESCALATION))
        for key, channel in keys:
            self.outbox_id += 1
            t.add(
                "slack_outbox",
                id=self.outbox_id,
                key=key,
                method="chat.postMessage",
                channel=channel,
                case_id=case_id,
                rank=rank,
                payload=card,
                status="digested" if digested else "sent",
                digest=f"digest:{CARE}:{case_id // 500:012x}" if digested else None,
                attempts=0 if digested else 1,
                ts=None if digested else f"{card_at.timestamp():.6f}",
                error=None,
                created_at=card_at - timedelta(seconds=1),
                attempt_at=None if digested else card_at,
                sent_at=None if digested else card_at,
            )
        if digested:
            return
        # SLA reminders and breach pings the SLA check queued while the case waited.
        done = {"replied", "dismissed"}
        waited = (self.now - since).total_seconds() if status not in done else None
        for share, key in ((0.75, "sla-reminder"), (1.0, "sla-breach")):
            if waited is not None and waited >= share * target:
                at = since + timedelta(seconds=share * target)
                self._thread(t, f"{key}:{case_id}", case_id, at, card_at)
        if status in done:
            at = card_at + timedelta(minutes=rng.random() * 30)
            self._thread(
                t,
                f"update:{case_id}:{rng.getrandbits(64):016x}",
                case_id,
                at,
                card_at,
                "chat.update",
            )

    def _thread(
        self,
        t: Tables,
        key: str,
        case_id: int,
        at: datetime,
        card_at: datetime,
        method: str = "chat.postMessage",
    ) -> None:
        self.outbox_id += 1
        t.add(
            "slack_outbox",
            id=self.outbox_id,
            key=key,
            method=method,
            channel=CARE,
            case_id=case_id,
            rank=-1,
            payload={"text": "reminder", "thread_ts": f"{card_at.timestamp():.6f}"},
            status="sent",
            digest=None,
            attempts=1,
            ts=f"{at.timestamp():.6f}",
            error=None,
            created_at=at,
            attempt_at=at,
            sent_at=at,
        )

    def _audit(
        self, t: Tables, case_id: int, assignee, claimed_at, replied_at, dismissed_at, escalated_at
    ) -> None:
        events = [
            ("assign", claimed_at, None, assignee),
            ("reply_sent", replied_at, None, "Hi, sorry about that."),
            ("dismiss", dismissed_at, None, "no_reply_needed"),
            ("escalate", escalated_at, None, "needs a lead"),
        ]
        for action, at, before, after in events:
            if at is None:
                continue
            self.audit_id += 1
            t.add(
                "audit_event",
                id=self.audit_id,
                at=at,
                actor=assignee or "U0AGENT000",
                action=action,
                case_id=case_id,
                before=before,
                after=after,
                detail=None,
            )

    def states(self) -> list[dict[str, Any]]:
        last = self.now - timedelta(minutes=1)
        return [
            {
                "name": name,
                "cursor": f"cursor-{self.per_source[name]}",
                "last_run_at": last,
                "last_success_at": last,
                "last_error": None,
                "last_error_at": None,
                "consecutive_failures": 0,
                "paused": False,
                "mentions": self.per_source[name],
            }
            for name, *_ in SOURCES
        ]

    def spike_events(self) -> list[dict[str, Any]]:
        """A spike alert now and then over the 60 days (older than the 3-hour crisis window)."""
        rows = []
        for day in range(1, DAYS, 4):
            self.audit_id += 1
            hour = (self.now - timedelta(days=day)).replace(minute=0, second=0, microsecond=0)
            rows.append(
                {
                    "id": self.audit_id,
                    "at": hour + timedelta(minutes=5),
                    "actor": "triage",
                    "action": "spike_alerted",
                    "case_id": None,
                    "before": None,
                    "after": f"all:volume:{hour.isoformat()}",
                    "detail": {"z": 4.2},
                }
            )
        return rows


class Writer:
    """Bulk inserts that keep only the columns the database has (so the seeder fits any
    revision of the schema), converting values as SQLAlchemy would store them."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.dialect = engine.dialect.name
        inspector = sa.inspect(engine)
        self.columns = {
            name: [c["name"] for c in inspector.get_columns(name)]
            for name in [*ORDER, "connector_state"]
        }
        self.kinds = {
            table.name: {
                column.name: (
                    "json"
                    if isinstance(column.type, sa.JSON)
                    else "time"
                    if isinstance(column.type, UTCDateTime)
                    else "bool"
                    if isinstance(column.type, sa.Boolean)
                    else ""
                )
                for column in table.columns
            }
            for table in SQLModel.metadata.sorted_tables
        }

    def _convert(self, table: str, columns: list[str], row: dict[str, Any]) -> tuple[Any, ...]:
        kinds = self.kinds[table]
        values = []
        for name in columns:
            value = row.get(name)
            kind = kinds.get(name, "")
            if value is None:
                pass
            elif kind == "json":
                value = json.dumps(value)
            elif kind == "time" and self.dialect == "sqlite":
                value = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            elif kind == "bool" and self.dialect == "sqlite":
                value = int(value)
            values.append(value)
        return tuple(values)

    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = [c for c in self.columns[table] if c in rows[0]]
        tuples = [self._convert(table, columns, row) for row in rows]
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            names = ", ".join(f'"{c}"' for c in columns)
            if self.dialect == "sqlite":
                cursor.execute("PRAGMA synchronous=OFF")
                marks = ", ".join("?" for _ in columns)
                cursor.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', tuples)
            else:
                with cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
                    for values in tuples:
                        copy.write_row(values)
            raw.commit()
        finally:
            raw.close()


def seed(engine: sa.Engine, size: int) -> float:
    """Seed `size` mentions and everything that follows from them; returns seconds taken."""
    started = time.perf_counter()
    now = utcnow()
    seeder = Seeder(size, now)
    writer = Writer(engine)
    done = 0
    for tables in seeder.chunks():
        for table in ORDER:
            writer.write(table, tables.rows.get(table, []))
        done += len(tables.rows["mention"])
        print(f"  seeded {done:,} mentions ({time.perf_counter() - started:.0f} s)", flush=True)
    writer.write("audit_event", seeder.spike_events())
    writer.write("connector_state", seeder.states())
    with engine.begin() as connection:
        rebuild_rollups(connection)  # what the pipeline keeps as it analyses
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            for table in ORDER:
                connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                )
            connection.commit()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - started


# --- the databases ---------------------------------------------------------------------------


def label(size: int) -> str:
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}m"
    if size >= 1000 and size % 1000 == 0:
        return f"{size // 1000}k"
    return str(size)


def parse_size(text: str) -> int:
    text = text.strip().lower()
    factor = {"k": 1000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * factor)


def open_database(kind: str, size: int, args: argparse.Namespace) -> tuple[sa.Engine, bool]:
    """The engine of the database for `size`, migrated; True when it must be seeded."""
    if kind == "sqlite":
        path = Path(args.sqlite_dir) / f"triage_scale_{label(size)}.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (args.reuse and size and path.exists())
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        engine = make_engine(f"sqlite:///{path}")
    else:
        base = sa.make_url(args.pg_url)
        name = f"{base.database}_{label(size)}"
        if name == "test" or base.database == "test":
            raise SystemExit("refusing the tests' database `test`: pass another --pg-url")
        admin = make_engine(base.set(database="postgres").render_as_string(hide_password=False))
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            exists = connection.exec_driver_sql(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).first()
            fresh = not (args.reuse and size and exists)
            if fresh:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        engine = make_engine(base.set(database=name).render_as_string(hide_password=False))
    started = time.perf_counter()
    upgrade(engine)
    took = time.perf_counter() - started
    if took > 1:
        print(f"  migrated to the newest revision in {took:.1f} s", flush=True)
    return engine, fresh


# --- statements and plans --------------------------------------------------------------------


@dataclass
class Statement:
    sql: str
    calls: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    parameters: Any = None


class Recorder:
    """Every statement an operation runs, with its time, to explain the slowest."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.on = False
        self.statements: dict[str, Statement] = {}
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        took = time.perf_counter() - conn.info["bench_started"].pop()
        if not self.on:
            return
        seen = self.statements.setdefault(statement, Statement(statement))
        seen.calls += 1
        seen.seconds += took
        if took >= seen.slowest and not executemany:
            seen.slowest, seen.parameters = took, parameters

    def slowest(self, count: int) -> list[Statement]:
        return sorted(self.statements.values(), key=lambda s: -s.seconds)[:count]

    def plan(self, statement: Statement) -> str:
        sql = statement.sql.strip()
        if not sql.upper().startswith(("SELECT", "WITH")):
            return "(not a query: no plan)"
        self.on = False
        with self.engine.connect() as connection:
            if self.engine.dialect.name == "sqlite":
                rows = connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + sql, statement.parameters or ()
                ).all()
                return "\n".join(f"{'  ' * _depth(rows, r[1])}{r[3]}" for r in rows)
            rows = connection.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + sql, statement.parameters or {}
            ).all()
            return "\n".join(row[0] for row in rows)


def _depth(rows: list[Any], parent: int) -> int:
    parents = {row[0]: row[1] for row in rows}
    depth = 0
    while parent:
        depth += 1
        parent = parents.get(parent, 0)
    return depth


# --- the operations --------------------------------------------------------------------------


class StubModels:
    """Stand-in models: the pipeline's store work without the encoder's cost."""

    version = "bench-stub"

    def __init__(self) -> None:
        self.sentiment = self
        self.encoder = self

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")
            vector = np.random.default_rng(seed).standard_normal(384)
            rows.append(vector / np.linalg.norm(vector))
        return np.asarray(rows, dtype=np.float32)

    def analyze(self, items):
        from models.language import LanguageResult
        from models.sentiment import SentimentResult
        from models.urgency import UrgencyResult
        from triage.analyze import AnalysisOutput

        outputs = []
        for item in items:
            digest = hashlib.blake2b(item.text.encode(), digest_size=2).digest()[0]
            kind = ["complaint", "question", "praise", "info"][digest % 4]
            priority = ["P1", "P2", "P3", "P4"][digest // 64]
            outputs.append(
                AnalysisOutput(
                    LanguageResult("en", 0.9),
                    SentimentResult("negative", {"negative": 0.8, "neutral": 0.1, "positive": 0.1}),
                    UrgencyResult(
                        score={"P1": 80, "P2": 60, "P3": 30, "P4": 10}[priority],
                        priority=priority,
                        kind=kind,
                        complaint_probability=0.7,
                        escalate=False,
                        intents=["billing"] if kind == "complaint" else [],
                        reasons=["negative tone (80%)"],
                    ),
                )
            )
        return outputs


@dataclass
class Context:
    engine: sa.Engine
    settings: Settings
    slack_url: str
    authors: int = 1000
    serial: int = 0
    run: str = field(default_factory=lambda: f"{time.time_ns():x}")
    pending: list[NewMention] = field(default_factory=list)

    def new_mentions(self, count: int) -> list[NewMention]:
        self.serial += 1
        rng = random.Random(self.serial)
        # New mentions come from the authors of the history, drawn as the seeder drew them.
        handles = [f"@user{int(self.authors * rng.random() ** 3)}" for _ in range(count)]
        return [
            NewMention(
                source="x-brand",
                external_id=f"bench-{self.run}-{self.serial}-{n}",
                platform="x",
                text=f"{rng.choice(TEXTS['complaint'])} ({self.serial}-{n})",
                author_handle=handles[n],
                author_name="Bench",
                created_at=utcnow() - timedelta(seconds=30),
            )
            for n in range(count)
        ]

    def add_new_cases(self, count: int) -> None:
        """`count` analysed mentions with drafts and new cases, as the pipeline leaves them."""
        with session_scope(self.engine) as session:
            for n, new in enumerate(self.new_mentions(count)):
                # Flagged as the pipeline flags an analysed mention (on a schema with the flag).
                flag = {"analyzed": True} if "analyzed" in Mention.model_fields else {}
                mention = Mention(**{**asdict(new), "raw": None, **flag})
                session.add(mention)
                session.flush()
                priority = ["P1", "P2", "P3", "P3", "P4"][n % 5]
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
                        intents=["billing"],
                        urgency={"P1": 80, "P2": 60, "P3": 30, "P4": 10}[priority],
                        priority=priority,
                        reasons=["negative tone (80%)"],
                        model_version="bench",
                    )
                )
                session.add(
                    Draft(mention_id=mention.id, language="en", text="Hi, sorry!", generator="t")
                )
                session.add(Case(mention_id=mention.id))

    def notifier(self):
        from triage.notify import Notifier
        from triage.slack.client import make_slack_client

        return Notifier(
            self.settings, self.engine, make_slack_client(self.settings.slack), sleep=lambda s: None
        )

    def close_new_cases(self) -> None:
        """Cases the last operation opened are handled, so the next one starts as it would."""
        with session_scope(self.engine) as session:
            session.execute(
                sa.update(Case)
                .where(Case.status == CaseStatus.NEW)
                .where(
                    sa.exists().where(
                        Mention.id == Case.mention_id, Mention.external_id.startswith("bench-")
                    )
                )
                .values(status=CaseStatus.DISMISSED, dismissed_at=utcnow())
            )


@dataclass
class Operation:
    name: str
    run: Callable[[Context], Any]
    setup: Callable[[Context], Any] | None = None
    teardown: Callable[[Context], Any] | None = None
    slow: bool = False
    repeat: bool = True


def _connectors_list(ctx: Context) -> None:
    from triage.store.queries import connector_states, mention_counts

    with session_scope(ctx.engine) as session:
        connector_states(session)
        mention_counts(session)


def _queue(ctx: Context) -> None:
    from triage.views import load_queue, open_count

    load_queue(ctx.engine, limit=30)
    open_count(ctx.engine)


def _unanalysed(ctx: Context) -> None:
    from triage.store.queries import unanalyzed_mentions

    with session_scope(ctx.engine) as session:
        unanalyzed_mentions(session, limit=ctx.settings.models.batch_size * 4)


def _sla(ctx: Context) -> None:
    ctx.notifier().check_sla()


def _notify(ctx: Context) -> int:
    """One pass of the notify cycle: the SLA check, new cases to cards, housekeeping, sending."""
    notifier = ctx.notifier()
    notifier.check_sla()
    return notifier.flush(refill=True, limit=10_000)


def _enqueue(ctx: Context) -> int:
    """The part of a notify pass that is the store's: the SLA check and new cases to cards."""
    notifier = ctx.notifier()
    notifier.check_sla()
    return notifier.enqueue_cards()


def _save(ctx: Context) -> None:
    ctx.pending = ctx.new_mentions(1000)


def _ingest(ctx: Context) -> None:
    from triage.store.queries import save_batch

    mentions = ctx.pending
    for page in range(0, len(mentions), 100):
        with session_scope(ctx.engine) as session:
            save_batch(session, source="x-brand", mentions=mentions[page : page + 100], cursor="c")


def _ingest_untimed(ctx: Context) -> None:
    _save(ctx)
    _ingest(ctx)


def _pipeline(ctx: Context):
    from triage.pipeline import Pipeline

    stub = StubModels()
    return Pipeline(ctx.settings, ctx.engine, analyzer_factory=lambda settings: stub)


def _analyse(ctx: Context) -> None:
    """The analysis part of Pipeline.process: chunk after chunk of unanalysed mentions (with
    each one's repeat-contact count), their analyses and cases."""
    pipeline = _pipeline(ctx)
    chunk = ctx.settings.models.batch_size * 4
    while pipeline._analyze_chunk(chunk, None)[0]:
        pass


def _draft(ctx: Context) -> None:
    """The drafting part of Pipeline.process: a draft for every case without one (learning
    from replies agents edited and sent, as the pipeline does)."""
    _pipeline(ctx)._draft_rows(None)


def _ingest_and_analyse(ctx: Context) -> None:
    _ingest_untimed(ctx)
    _analyse(ctx)


def _spikes(ctx: Context) -> None:
    from triage.reports.spikes import spikes_cycle
    from triage.slack.client import make_slack_client

    spikes_cycle(ctx.engine, ctx.settings, make_slack_client(ctx.settings.slack))


def _report(days: int) -> Callable[[Context], None]:
    def run(ctx: Context) -> None:
        from triage.reports import build_report

        until = utcnow()
        build_report(ctx.engine, ctx.settings, until - timedelta(days=days), until)

    return run


OPERATIONS = [
    Operation("connectors list (counts)", _connectors_list),
    Operation("triage queue", _queue),
    Operation("unanalysed mentions (none new)", _unanalysed),
    Operation("SLA check", _sla),
    Operation("notify cycle, nothing new", _notify),
    Operation(
        "notify cycle, 100 new cases",
        _notify,
        setup=lambda ctx: ctx.add_new_cases(100),
    ),
    Operation(
        "  of which the SLA check and queueing the cards",
        _enqueue,
        setup=lambda ctx: ctx.add_new_cases(100),
        teardown=lambda ctx: ctx.close_new_cases(),
    ),
    Operation("store 1,000 new mentions (10 pages)", _ingest, setup=_save),
    Operation("analyse 1,000 new mentions (stub models)", _analyse, setup=_ingest_untimed),
    Operation(
        "draft replies for their cases",
        _draft,
        setup=_ingest_and_analyse,
        teardown=lambda ctx: ctx.close_new_cases(),
    ),
    Operation("spike check", _spikes, slow=True, repeat=False),
    Operation("report, 7 days", _report(7), slow=True, repeat=False),
    Operation("report, 30 days", _report(30), slow=True, repeat=False),
]


def settings_for(engine: sa.Engine, slack_url: str, folder: Path) -> Settings:
    empty = folder / "bench-empty.jsonl"
    empty.write_text("", encoding="utf-8")
    return Settings(
        database=DatabaseSettings(url=engine.url.render_as_string(hide_password=False)),
        slack=SlackSettings(
            bot_token="xoxb-bench",
            care_channel=CARE,
            escalation_channel=ESCALATION,
            leads_group=LEADS,
            api_url=slack_url,
            post_interval=0.001,  # the store's cost, not Slack's pace (bench/e2e_latency has it)
        ),
        connectors=[
            ConnectorSettings(name=name, type="file", options={"path": str(empty)})
            for name, *_ in SOURCES
        ],
    )


def measure(
    ctx: Context, operation: Operation, repeat: int, recorder: Recorder
) -> tuple[float, list[Statement]]:
    """The median seconds of the operation (setup and teardown not counted)."""
    times = []
    runs = (1 + repeat) if operation.repeat else 1
    recorder.statements = {}
    for run in range(runs):
        if operation.setup:
            operation.setup(ctx)
        recorder.on = run == runs - 1
        started = time.perf_counter()
        operation.run(ctx)
        took = time.perf_counter() - started
        recorder.on = False
        if operation.teardown:
            operation.teardown(ctx)
        if run or not operation.repeat or runs == 1:
            times.append(took)
    return statistics.median(times), recorder.slowest(3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="0,100k,1m", help="mentions to seed, e.g. 0,100k,1m")
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/triage_scale")
    parser.add_argument("--sqlite-dir", default="/tmp/triage-scale")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per operation (median)")
    parser.add_argument("--slow", action="store_true", help="also the spike check and reports")
    parser.add_argument(
        "--reuse", action="store_true", help="keep databases seeded before (never the empty one)"
    )
    parser.add_argument("--only", default="", help="operations whose name contains this")
    parser.add_argument(
        "--explain", choices=["largest", "all", "none"], default="largest", help="plans to print"
    )
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    kinds = [k.strip() for k in args.db.split(",") if k.strip()]
    operations = [
        op
        for op in OPERATIONS
        if (args.slow or not op.slow) and args.only.lower() in op.name.lower()
    ]
    server, slack_url = start_fake_slack()
    results: dict[tuple[str, str], float] = {}
    seeding: list[str] = []
    try:
        for kind in kinds:
            for size in sizes:
                print(f"{kind}, {size:,} mentions", flush=True)
                engine, fresh = open_database(kind, size, args)
                if fresh and size:
                    took = seed(engine, size)
                    seeding.append(f"{kind} {label(size)}: seeded in {took:.0f} s")
                settings = settings_for(engine, slack_url, Path(args.sqlite_dir))
                ctx = Context(engine, settings, slack_url, authors=author_pool(size))
                recorder = Recorder(engine)
                for operation in operations:
                    seconds, slowest = measure(ctx, operation, args.repeat, recorder)
                    results[(operation.name, f"{kind} {label(size)}")] = seconds
                    print(f"  {operation.name}: {seconds:.3f} s", flush=True)
                    if args.explain == "all" or (args.explain == "largest" and size == max(sizes)):
                        # As they come, so an interrupted run keeps the plans it got to.
                        for statement in slowest:
                            print(
                                f"\n#### plan: {kind} {label(size)}: {operation.name}: "
                                f"{statement.calls} calls, {statement.seconds:.3f} s in all\n\n"
                                f"```sql\n{' '.join(statement.sql.split())[:1500]}\n```\n\n"
                                f"```\n{recorder.plan(statement)}\n```\n",
                                flush=True,
                            )
                engine.dispose()
    finally:
        server.shutdown()
        server.server_close()
    columns = list(dict.fromkeys(column for _, column in results))
    print()
    print("| operation | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for operation in operations:
        cells = [results.get((operation.name, c)) for c in columns]
        print(
            f"| {operation.name} | "
            + " | ".join("" if v is None else f"{v:.3f}" for v in cells)
            + " |"
        )
    print()
    for line in seeding:
        print(line)


if __name__ == "__main__":
    main()
