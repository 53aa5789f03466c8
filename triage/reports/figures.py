"""The numbers behind a sentiment report: volume, net sentiment, topics, care metrics.

Computed from the store for a window [since, until) and the window of the same length before it:
counts from the hourly rollups (report_hour) and the window's partial hours, care timings from
its answered cases, topics from its negative mentions; never every row, but for the CSV.
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlmodel import Session

from triage.config import SlaSettings
from triage.drafts.learn import EDIT_CLASSES, draft_category, edit_class
from triage.store import session_scope
from triage.store.queries import (
    Counted,
    ReportRow,
    analyzed_between,
    analyzed_by_id,
    case_timings,
    complaint_category,
    counted_between,
    negative_texts,
    rollup_tallies,
    sent_with_drafts,
    word_counts,
)
from triage.store.tables import WORD_LENGTH
from triage.words import topic_words

PRIORITIES = ("P1", "P2", "P3", "P4")
# A word is a topic when at least this many negative mentions, and this share of them, have it:
# in a handful of mentions two make a topic, in thousands a word two customers used is chance.
MIN_TOPIC_MENTIONS = 2
MIN_TOPIC_SHARE = 0.03
TOPICS = 10  # shown
HOUR = timedelta(hours=1)
SENTIMENTS = ("negative", "neutral", "positive")


# One analysed mention as the report (and its CSV) sees it: the store reads it.
Row = ReportRow


class Timed(Protocol):
    """A case as the care figures see it (a report Row, or the store's Timing)."""

    @property
    def priority(self) -> str: ...
    @property
    def first_response_seconds(self) -> float | None: ...
    @property
    def resolution_seconds(self) -> float | None: ...
    @property
    def agent(self) -> str | None: ...


class Worded(Protocol):
    """A mention as the topics see it."""

    @property
    def language(self) -> str: ...
    @property
    def text(self) -> str: ...


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
    # every first response (seconds) per priority: the first-response chart
    first_responses: dict[str, list[float]] = field(default_factory=dict)


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
    category = functools.cache(draft_category)  # a few generators, a month of replies
    for language, generator, draft, text in sent:
        edit = edit_class(draft, text)
        total[edit] += 1
        by_language[language][edit] += 1
        by_category[category(generator)][edit] += 1

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
    # Where the rows behind the figures are read from, only when asked for (the CSV).
    engine: sa.Engine | None = field(default=None, repr=False, compare=False)

    @property
    def rows(self) -> list[Row]:
        """Every analysed mention of the window (read from the store on each call)."""
        return list(self.iter_rows())

    def iter_rows(self) -> Iterator[Row]:
        """Every analysed mention of the window, oldest first, streamed from the store."""
        if self.engine is None:
            return iter(())
        return iter_rows(self.engine, self.since, self.until)


def load_rows(engine: sa.Engine, since: datetime, until: datetime) -> list[Row]:
    """The analysed mentions posted in [since, until) (stored then, if the source gave no time)."""
    return list(iter_rows(engine, since, until))


def iter_rows(engine: sa.Engine, since: datetime, until: datetime) -> Iterator[Row]:
    """load_rows, streamed: the CSV writes each row as it is read."""
    with session_scope(engine) as session:
        yield from analyzed_between(session, since=since, until=until)


def compute(
    engine: sa.Engine,
    since: datetime,
    until: datetime,
    sla: SlaSettings,
    brand_words: Sequence[str] = (),
) -> Figures:
    """Every figure of the report for [since, until), compared with the window before.

    Counts come from the hourly rollups (topics: the daily word counts) and, for the hours (days)
    the window covers only in part, from the mentions themselves; care timings from one narrow
    row per closed case. `brand_words` (the brand's name and keywords) stay out of the topics:
    every mention has them.
    """
    if until <= since:
        raise ValueError(f"the report window is empty: {since:%Y-%m-%d} .. {until:%Y-%m-%d}")
    with session_scope(engine) as session:
        counts = _counts(session, since, until)
        previous = _counts(session, since - (until - since), since, detail=False)
        timings = case_timings(session, since=since, until=until)
        skip = frozenset(word.casefold().lstrip("@") for word in brand_words)
        negative = counts.by("sentiment").get("negative", 0)
        topics = _topics(session, since, until, negative, skip)
        example_ids = _examples(session, since, until, [word for word, _ in topics[:5]])
    examples = _rows_by_id(engine, [i for ids in example_ids.values() for i in ids])
    sentiment = counts.by("sentiment")
    return Figures(
        since=since,
        until=until,
        volume=counts.volume,
        sentiment={label: sentiment.get(label, 0) for label in SENTIMENTS},
        net_sentiment=counts.net_sentiment(),
        previous_volume=previous.volume,
        previous_net_sentiment=previous.net_sentiment(),
        by_source=counts.by("source"),
        by_language=counts.by("language"),
        complaint_categories=counts.by("category", complaints=True),
        negative_topics=topics,
        daily=counts.daily_sentiment(since, until),
        care=care_figures(timings, sla),
        drafts=draft_quality(engine, since, until),
        examples={word: [examples[i] for i in ids] for word, ids in example_ids.items()},
        engine=engine,
    )


# (source, language, sentiment, category): category '' counts mentions, a category complaints
_Key = tuple[str, str, str, str]
_FIELDS = ("source", "language", "sentiment", "category")


@dataclass
class _Counts:
    """A window's counts: per key, the count and the earliest (posted, id) counted; per day and
    sentiment, the mentions."""

    cells: dict[_Key, tuple[int, tuple[datetime, int]]] = field(default_factory=dict)
    days: Counter[tuple[date, str]] = field(default_factory=Counter)

    def add(self, key: _Key, n: int, first: tuple[datetime, int]) -> None:
        known = self.cells.get(key)
        self.cells[key] = (n, first) if known is None else (known[0] + n, min(known[1], first))

    def add_mention(self, mention: Counted) -> None:
        first = (mention.posted, mention.mention_id)
        base = (mention.source, mention.language, mention.sentiment)
        self.add((*base, ""), 1, first)
        self.days[(mention.posted.date(), mention.sentiment)] += 1
        if mention.kind == "complaint":
            for category in dict.fromkeys(map(complaint_category, mention.intents)):
                if category:
                    self.add((*base, category), 1, first)

    @property
    def volume(self) -> int:
        return sum(n for key, (n, _) in self.cells.items() if not key[3])

    def by(self, name: str, *, complaints: bool = False) -> dict[str, int]:
        """Counts per value of one key field, most first; ties in the order they first came."""
        index = _FIELDS.index(name)
        totals: dict[str, tuple[int, tuple[datetime, int]]] = {}
        for key, (n, first) in self.cells.items():
            if bool(key[3]) != complaints:
                continue
            known = totals.get(key[index])
            totals[key[index]] = (
                (n, first) if known is None else (known[0] + n, min(known[1], first))
            )
        ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[1][1], kv[0]))
        return {value: n for value, (n, _) in ranked}

    def net_sentiment(self) -> float | None:
        """Share positive minus share negative, in percentage points; None without mentions."""
        if not self.volume:
            return None
        sentiment = self.by("sentiment")
        positive, negative = sentiment.get("positive", 0), sentiment.get("negative", 0)
        return 100.0 * (positive - negative) / self.volume

    def daily_sentiment(self, since: datetime, until: datetime) -> list[tuple[date, int, int, int]]:
        """Negative, neutral and positive counts for every UTC day of the window, empty days too."""
        days = []
        day = since.date()
        while datetime.combine(day, datetime.min.time(), since.tzinfo) < until:
            days.append((day, *(self.days[(day, label)] for label in SENTIMENTS)))
            day += timedelta(days=1)
        return days


def _counts(session: Session, since: datetime, until: datetime, *, detail: bool = True) -> _Counts:
    """The counts of [since, until): its whole hours from the rollups, the hours it covers only
    in part from the mentions themselves. Without `detail`, only the sentiment of its whole
    hours (the window before: its volume and net sentiment)."""
    counts = _Counts()
    start = _ceil_hour(since)
    end = max(start, _floor_hour(until))
    if start < end and not detail:
        for tally in rollup_tallies(
            session, since=start, until=end, by=("sentiment",), category=""
        ):
            counts.add(("", "", *tally.key, ""), tally.n, (tally.first_at, tally.first_id))
    elif start < end:
        for tally in rollup_tallies(session, since=start, until=end, by=_FIELDS):
            counts.add(tally.key, tally.n, (tally.first_at, tally.first_id))
        for tally in rollup_tallies(
            session, since=start, until=end, by=("hour", "sentiment"), category=""
        ):
            hour, sentiment = tally.key
            counts.days[(hour.date(), sentiment)] += tally.n
    edges = [(since, start), (end, until)] if start < end else [(since, until)]
    for low, high in edges:
        if low < high:
            for mention in counted_between(session, since=low, until=high):
                counts.add_mention(mention)
    return counts


def _topics(
    session: Session, since: datetime, until: datetime, negatives: int, skip: frozenset[str]
) -> list[tuple[str, int]]:
    """top_topics of the window's `negatives` negative mentions: its whole days from the word
    rollups, the days it covers only in part from the mentions' text."""
    first = _ceil_day(since)
    last = max(first, _floor_day(until))
    edges: Counter[str] = Counter()
    in_edges = 0
    for low, high in [(since, first), (last, until)] if first < last else [(since, until)]:
        for _id, language, text in (
            negative_texts(session, since=low, until=high) if low < high else ()
        ):
            in_edges += 1
            edges.update(w for w in topic_words(language, text) - skip if len(w) <= WORD_LENGTH)
    floor = max(MIN_TOPIC_MENTIONS, math.ceil(MIN_TOPIC_SHARE * negatives))
    counts = Counter(edges)
    if first < last:
        # A word short of the floor by more than the edges' mentions cannot reach it.
        whole = word_counts(
            session, since=first.date(), until=last.date(), at_least=max(1, floor - in_edges)
        )
        counts.update({word: n for word, n in whole if word not in skip})
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [(word, n) for word, n in ranked if n >= floor][:TOPICS]


def _examples(
    session: Session, since: datetime, until: datetime, words: Sequence[str]
) -> dict[str, list[int]]:
    """The first three negative mentions of the window with each word: read in order until
    every word has its three."""
    found: dict[str, list[int]] = {word: [] for word in words}
    if not words:
        return found
    for mention_id, language, text in negative_texts(session, since=since, until=until):
        have = topic_words(language, text)
        for word, ids in found.items():
            if word in have and len(ids) < 3:
                ids.append(mention_id)
        if all(len(ids) == 3 for ids in found.values()):
            break
    return found


def _ceil_hour(moment: datetime) -> datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def _floor_hour(moment: datetime) -> datetime:
    # In UTC: the rollups' hours and days are UTC's.
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_day(moment: datetime) -> datetime:
    floor = _floor_day(moment)
    return floor if floor == moment else floor + timedelta(days=1)


def _floor_day(moment: datetime) -> datetime:
    return _floor_hour(moment).replace(hour=0)


def _rows_by_id(engine: sa.Engine, mention_ids: Sequence[int]) -> dict[int, Row]:
    """The report rows of a few mentions (the examples), by id."""
    if not mention_ids:
        return {}
    with session_scope(engine) as session:
        return {
            found.mention_id: found for found in analyzed_by_id(session, mention_ids=mention_ids)
        }


def care_figures(rows: Sequence[Timed], sla: SlaSettings) -> CareFigures:
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
    agents: dict[str, list[Timed]] = defaultdict(list)
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
        first_responses={
            priority: [r.first_response_seconds for r in replied if r.priority == priority]
            for priority in dict.fromkeys(r.priority for r in replied)
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
    rows: Sequence[Worded], limit: int = TOPICS, skip: frozenset[str] = frozenset()
) -> list[tuple[str, int]]:
    """The words most negative mentions share (each mention counts a word once), stop words of
    its language out, each in at least MIN_TOPIC_MENTIONS mentions and MIN_TOPIC_SHARE of them."""
    return _ranked_topics([_words(row) - skip for row in rows], len(rows), limit)


def _ranked_topics(
    words: Iterable[set[str]], mentions: int, limit: int = TOPICS
) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for found in words:
        counts.update(found)
    floor = max(MIN_TOPIC_MENTIONS, math.ceil(MIN_TOPIC_SHARE * mentions))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [(word, n) for word, n in ranked if n >= floor][:limit]


def _words(row: Worded) -> set[str]:
    return topic_words(row.language, row.text)
