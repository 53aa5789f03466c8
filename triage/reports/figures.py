"""The numbers behind a sentiment report: volume, net sentiment, topics, care metrics.

Computed from the store for a window [since, until) and the window of the same length before it.
"""

from __future__ import annotations

import functools
import math
import re
import tomllib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import stopwordsiso

from models.labels import PROBLEMS
from models.urgency import CUE_LABELS
from triage.config import FIRST_CLASS_LANGUAGES, SlaSettings
from triage.drafts.learn import EDIT_CLASSES, draft_category, edit_class
from triage.store import session_scope
from triage.store.queries import analyzed_between, sent_with_drafts

STOPWORDS_FILE = Path(__file__).with_name("stopwords.toml")
PRIORITIES = ("P1", "P2", "P3", "P4")
# A word is a topic when at least this many negative mentions, and this share of them, have it:
# in a handful of mentions two make a topic, in thousands a word two customers used is chance.
MIN_TOPIC_MENTIONS = 2
MIN_TOPIC_SHARE = 0.03
_WORD = re.compile(r"[^\W\d_][\w'’-]{2,}")
_NOISE = re.compile(r"https?://\S+|@\w+|#\w+")
# French (and Italian) elision: "l'appli", "qu'on" are "appli", "on".
_ELISION = re.compile(r"^(?:qu|[cdjlmnst])'")


@dataclass(frozen=True, slots=True)
class Row:
    """One analysed mention as the report (and its CSV) sees it."""

    mention_id: int
    created_at: datetime  # when it was posted, else when triage stored it
    source: str
    platform: str
    language: str
    sentiment: str
    kind: str
    priority: str
    urgency: int
    intents: tuple[str, ...]
    text: str
    url: str | None
    status: str | None
    first_response_seconds: float | None
    resolution_seconds: float | None
    agent: str | None


@dataclass(frozen=True, slots=True)
class CareFigures:
    """First response and resolution, overall and per agent (seconds)."""

    replied: int
    first_response_median: float | None
    first_response_p90: float | None
    within_sla: dict[str, float | None]  # share of replied cases per priority, 0..1
    resolution_median: float | None
    # replies, median first response, median resolution (seconds), per agent
    by_agent: dict[str, tuple[int, float | None, float | None]]


@dataclass(frozen=True, slots=True)
class DraftQuality:
    """How much agents changed the drafts they sent: counts of unedited, lightly edited and
    rewritten replies, per language and per draft category (the template's next step)."""

    total: dict[str, int]
    by_language: dict[str, dict[str, int]]
    by_category: dict[str, dict[str, int]]


def draft_quality(engine: sa.Engine, since: datetime, until: datetime) -> DraftQuality:
    """The edits behind the replies sent in [since, until)."""
    with session_scope(engine) as session:
        sent = sent_with_drafts(session, since=since, until=until)
    total: Counter[str] = Counter()
    by_language: dict[str, Counter[str]] = defaultdict(Counter)
    by_category: dict[str, Counter[str]] = defaultdict(Counter)
    for language, generator, draft, text in sent:
        edit = edit_class(draft, text)
        total[edit] += 1
        by_language[language][edit] += 1
        by_category[draft_category(generator)][edit] += 1

    def table(counts: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
        ordered = sorted(counts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        return {key: {e: c.get(e, 0) for e in EDIT_CLASSES} for key, c in ordered}

    return DraftQuality(
        total={e: total.get(e, 0) for e in EDIT_CLASSES},
        by_language=table(by_language),
        by_category=table(by_category),
    )


@dataclass(frozen=True, slots=True)
class Figures:
    since: datetime
    until: datetime
    volume: int
    sentiment: dict[str, int]
    net_sentiment: float | None  # share positive minus share negative, in points
    previous_volume: int
    previous_net_sentiment: float | None
    by_source: dict[str, int]
    by_language: dict[str, int]
    complaint_categories: dict[str, int]
    negative_topics: list[tuple[str, int]]
    daily: list[tuple[date, int, int, int]]  # day, negative, neutral, positive
    care: CareFigures
    drafts: DraftQuality = field(default_factory=lambda: DraftQuality({}, {}, {}))
    examples: dict[str, list[Row]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)


def load_rows(engine: sa.Engine, since: datetime, until: datetime) -> list[Row]:
    """The analysed mentions posted in [since, until) (stored then, if the source gave no time)."""
    with session_scope(engine) as session:
        found = analyzed_between(session, since=since, until=until)
        return [_row(mention, analysis, case, agent) for mention, analysis, case, agent in found]


def compute(
    engine: sa.Engine,
    since: datetime,
    until: datetime,
    sla: SlaSettings,
    brand_words: Sequence[str] = (),
) -> Figures:
    """Every figure of the report for [since, until), compared with the window before.

    `brand_words` (the brand's name and keywords) stay out of the topics: every mention has them.
    """
    if until <= since:
        raise ValueError(f"the report window is empty: {since:%Y-%m-%d} .. {until:%Y-%m-%d}")
    rows = load_rows(engine, since, until)
    previous = load_rows(engine, since - (until - since), since)
    sentiment = Counter(row.sentiment for row in rows)
    complaints = [row for row in rows if row.kind == "complaint"]
    negative = [row for row in rows if row.sentiment == "negative"]
    skip = frozenset(word.casefold().lstrip("@") for word in brand_words)
    topics = top_topics(negative, skip=skip)
    return Figures(
        since=since,
        until=until,
        volume=len(rows),
        sentiment={label: sentiment.get(label, 0) for label in ("negative", "neutral", "positive")},
        net_sentiment=net_sentiment(rows),
        previous_volume=len(previous),
        previous_net_sentiment=net_sentiment(previous),
        by_source=dict(Counter(row.source for row in rows).most_common()),
        by_language=dict(Counter(row.language for row in rows).most_common()),
        complaint_categories=dict(
            Counter(
                category
                for row in complaints
                for category in dict.fromkeys(map(complaint_category, row.intents))
                if category
            ).most_common()
        ),
        negative_topics=topics,
        daily=daily_sentiment(rows, since, until),
        care=care_figures(rows, sla),
        drafts=draft_quality(engine, since, until),
        examples={word: [r for r in negative if word in _words(r)][:3] for word, _ in topics[:5]},
        rows=rows,
    )


def complaint_category(intent: str) -> str | None:
    """The problem label (models/labels.py) a stored intent names, else None: questions, praise,
    feedback, spam, the modifiers (vulnerable, repeat contact) and the cue signals older analyses
    stored (anger, sarcasm, waiting) are no complaint category."""
    label = CUE_LABELS.get(intent, intent)
    return label if label in PROBLEMS else None


def net_sentiment(rows: Sequence[Row]) -> float | None:
    """Share positive minus share negative, in percentage points; None without mentions."""
    if not rows:
        return None
    positive = sum(row.sentiment == "positive" for row in rows)
    negative = sum(row.sentiment == "negative" for row in rows)
    return 100.0 * (positive - negative) / len(rows)


def daily_sentiment(
    rows: Sequence[Row], since: datetime, until: datetime
) -> list[tuple[date, int, int, int]]:
    """Negative, neutral and positive counts for every UTC day of the window, empty days too."""
    counts: dict[date, Counter[str]] = defaultdict(Counter)
    for row in rows:
        counts[row.created_at.date()][row.sentiment] += 1
    days = []
    day = since.date()
    while datetime.combine(day, datetime.min.time(), since.tzinfo) < until:
        c = counts.get(day, Counter())
        days.append((day, c["negative"], c["neutral"], c["positive"]))
        day += timedelta(days=1)
    return days


def care_figures(rows: Sequence[Row], sla: SlaSettings) -> CareFigures:
    """First-response median and p90, share within the SLA per priority, resolution, per agent."""
    replied = [row for row in rows if row.first_response_seconds is not None]
    times = [r.first_response_seconds for r in replied if r.first_response_seconds is not None]
    within: dict[str, float | None] = {}
    for priority in PRIORITIES:
        done = [r.first_response_seconds for r in replied if r.priority == priority]
        target = sla.target(priority)
        within[priority] = (
            sum(1 for t in done if t is not None and t <= target) / len(done) if done else None
        )
    agents: dict[str, list[Row]] = defaultdict(list)
    for row in replied:
        if row.agent:
            agents[row.agent].append(row)
    resolved = [r.resolution_seconds for r in rows if r.resolution_seconds is not None]
    return CareFigures(
        replied=len(replied),
        first_response_median=percentile(times, 50),
        first_response_p90=percentile(times, 90),
        within_sla=within,
        resolution_median=percentile(resolved, 50),
        by_agent={
            agent: (
                len(mine),
                percentile([r.first_response_seconds or 0.0 for r in mine], 50),
                percentile([r.resolution_seconds for r in mine if r.resolution_seconds], 50),
            )
            for agent, mine in sorted(agents.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        },
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile with linear interpolation between ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def top_topics(
    rows: Sequence[Row], limit: int = 10, skip: frozenset[str] = frozenset()
) -> list[tuple[str, int]]:
    """The words most negative mentions share (each mention counts a word once), stop words of
    its language out, each in at least MIN_TOPIC_MENTIONS mentions and MIN_TOPIC_SHARE of them."""
    counts: Counter[str] = Counter()
    for row in rows:
        counts.update(_words(row) - skip)
    floor = max(MIN_TOPIC_MENTIONS, math.ceil(MIN_TOPIC_SHARE * len(rows)))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [(word, n) for word, n in ranked if n >= floor][:limit]


@functools.cache
def stopwords(language: str) -> frozenset[str]:
    """Words that are no topic in a mention in `language`: the stopwords-iso lists of that
    language and of English (customers mix English in), with stopwords.toml's care words added
    and its kept words taken out. A language without a list gets every first-class language's."""
    data = tomllib.loads(STOPWORDS_FILE.read_text(encoding="utf-8"))
    languages = {language, "en"} if stopwordsiso.has_lang(language) else set(FIRST_CLASS_LANGUAGES)
    words = set(stopwordsiso.stopwords(languages))
    words.update(word for lang in languages for word in data["extra"].get(lang, ()))
    words.difference_update(word for lang in languages for word in data["keep"].get(lang, ()))
    return frozenset(word.casefold().replace("’", "'") for word in words)


def _words(row: Row) -> set[str]:
    stop = stopwords(row.language)
    words = set()
    for token in _WORD.findall(_NOISE.sub(" ", row.text.casefold().replace("’", "'"))):
        word = _ELISION.sub("", token).strip("'-")
        if len(word) >= 3 and word not in stop and word.replace("'", "") not in stop:
            words.add(word)
    return words


def _row(mention, analysis, case, agent: str | None) -> Row:
    resolved_at = (case.replied_at or case.dismissed_at) if case else None
    created = mention.created_at or mention.fetched_at
    return Row(
        mention_id=mention.id or 0,
        created_at=created,
        source=mention.source,
        platform=mention.platform,
        language=analysis.language,
        sentiment=analysis.sentiment,
        kind=analysis.kind,
        priority=analysis.priority,
        urgency=analysis.urgency,
        intents=tuple(analysis.intents or ()),
        text=mention.text,
        url=mention.url,
        status=str(case.status) if case else None,
        first_response_seconds=case.first_response_seconds if case else None,
        resolution_seconds=(resolved_at - created).total_seconds() if resolved_at else None,
        agent=agent or (case.assignee if case and case.replied_at else None),
    )
