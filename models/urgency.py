"""Complaint intent and urgency: an explainable 0-100 score, a band P1..P4, and its reasons.

Every point of the score comes from one named contribution, and each contribution becomes one
short reason an agent reads. Cue lists live in models/cues/<lang>.toml.
"""

from __future__ import annotations

import functools
import itertools
import re
import tomllib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

CUES_DIR = Path(__file__).parent / "cues"
NON_COMPLAINT_INTENTS = frozenset({"question", "praise", "feedback"})
# How much the example-based complaint model counts against the cue blend (chosen on the
# validation mentions, models/tune_intent.py).
MODEL_SHARE = 0.75
# The complaint probability given to praise contradicted by a problem (sarcasm).
SARCASM_FLOOR = 0.6
# Negation flips these only: "not bad", "not happy". "not working" stays a complaint.
NEGATABLE_INTENTS = frozenset({"anger", "praise"})
NEGATION_WINDOW = 3
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class UrgencyWeights:
    """How many points each signal adds; the defaults are documented in docs/architecture.md."""

    negativity: float = 35.0
    intents_cap: float = 35.0
    rating: tuple[float, float, float] = (15.0, 10.0, 3.0)  # 1, 2 and 3 stars
    reach: tuple[tuple[int, float], ...] = ((100_000, 15.0), (10_000, 10.0), (1_000, 4.0))
    vip: float = 15.0
    engagement_threshold: int = 50
    engagement: float = 5.0
    repeat_contact: float = 8.0
    repeat_contact_cap: float = 16.0
    bands: tuple[int, int, int] = (75, 50, 25)  # lower bounds of P1, P2, P3
    escalation_floor: int = 90


@dataclass(frozen=True, slots=True)
class Signals:
    """Everything the score looks at for one mention."""

    text: str
    language: str
    p_negative: float
    p_positive: float
    rating: float | None = None
    reach: int | None = None
    engagement: int | None = None
    vip: bool = False
    prior_contacts: int = 0
    # From models/intent.py: the nearest hand-written examples' verdict, when available.
    model_complaint: float | None = None
    model_intent: str | None = None


@dataclass(frozen=True, slots=True)
class UrgencyResult:
    score: int
    priority: str
    kind: str  # complaint | question | feedback | praise | info
    complaint_probability: float
    escalate: bool
    intents: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Intent:
    name: str
    reason: str
    weight: float
    escalate: bool
    patterns: tuple[re.Pattern[str], ...]


@dataclass(frozen=True, slots=True)
class CueSet:
    language: str
    intents: tuple[Intent, ...]
    negations: tuple[re.Pattern[str], ...]


def normalise(text: str) -> str:
    # NFKC keeps typographic apostrophes, and customers type "can’t" as often as "can't".
    return unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")


@functools.cache
def cue_pattern(cue: str) -> re.Pattern[str]:
    """A cue as a regex on normalised text: word boundaries, a trailing * for a prefix."""
    cue = normalise(cue.strip())
    prefix = cue.endswith("*")
    body = r"\s+".join(re.escape(part) for part in cue.rstrip("*").split())
    start = r"(?<!\w)" if cue[:1].isalnum() else ""
    end = r"\w*" if prefix else (r"(?!\w)" if cue.rstrip("*")[-1:].isalnum() else "")
    return re.compile(start + body + end)


@functools.cache
def load_cues(language: str, cues_dir: Path = CUES_DIR) -> CueSet | None:
    """The cue set of a language, or None when there is no file for it."""
    path = cues_dir / f"{language}.toml"
    if not path.exists():
        return None
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    intents = tuple(
        Intent(
            name=name,
            reason=spec["reason"],
            weight=float(spec.get("weight", 0)),
            escalate=bool(spec.get("escalate", False)),
            patterns=tuple(cue_pattern(cue) for cue in spec.get("cues", []) if cue.strip()),
        )
        for name, spec in data.get("intents", {}).items()
    )
    negations = tuple(cue_pattern(cue) for cue in data.get("negation", {}).get("cues", []))
    return CueSet(language=language, intents=intents, negations=negations)


def available_languages(cues_dir: Path = CUES_DIR) -> list[str]:
    return sorted(path.stem for path in cues_dir.glob("*.toml"))


class UrgencyScorer:
    """Turns model outputs and mention facts into the score, the band and the reasons."""

    def __init__(self, weights: UrgencyWeights | None = None, cues_dir: Path = CUES_DIR):
        self.weights = weights or UrgencyWeights()
        self.cues_dir = cues_dir

    def _cue_sets(self, language: str) -> list[CueSet]:
        # English slips into every language ("refund", "app"); unknown text gets every list.
        codes = [language, "en"] if language != "und" else available_languages(self.cues_dir)
        sets = (load_cues(code, self.cues_dir) for code in dict.fromkeys(codes))
        return [cue_set for cue_set in sets if cue_set is not None]

    def match_intents(self, text: str, language: str) -> list[Intent]:
        """The intents whose cues occur in the text, in cue-file order, each once."""
        normal = normalise(text)
        found: dict[str, Intent] = {}
        for cue_set in self._cue_sets(language):
            negated_spans = _negation_spans(normal, cue_set.negations)
            for intent in cue_set.intents:
                if intent.name in found:
                    continue
                for pattern in intent.patterns:
                    match = pattern.search(normal)
                    while (
                        match
                        and intent.name in NEGATABLE_INTENTS
                        and _inside(match.start(), negated_spans)
                    ):
                        match = pattern.search(normal, match.end())
                    if match:
                        found[intent.name] = intent
                        break
        return list(found.values())

    def score(self, signals: Signals) -> UrgencyResult:
        w = self.weights
        intents = self.match_intents(signals.text, signals.language)
        complaint_intents = [i for i in intents if i.name not in NON_COMPLAINT_INTENTS]
        names = {i.name for i in intents}
        points: list[tuple[float, str]] = []

        if signals.p_negative >= 0.2:
            points.append(
                (w.negativity * signals.p_negative, f"negative tone ({signals.p_negative:.0%})")
            )
        intent_points = min(w.intents_cap, sum(i.weight for i in complaint_intents))
        for intent in complaint_intents:
            share = (
                intent_points * intent.weight / max(1.0, sum(i.weight for i in complaint_intents))
            )
            points.append((share, intent.reason))
        if signals.rating is not None and signals.rating <= 3:
            stars = max(1, round(signals.rating))
            points.append((w.rating[stars - 1], f"{stars}-star review"))
        if signals.reach:
            for threshold, value in w.reach:
                if signals.reach >= threshold:
                    points.append((value, f"{compact(signals.reach)} followers"))
                    break
        if signals.vip:
            points.append((w.vip, "VIP account"))
        if signals.engagement and signals.engagement >= w.engagement_threshold:
            points.append((w.engagement, f"{compact(signals.engagement)} likes and replies"))
        if signals.prior_contacts:
            value = min(w.repeat_contact_cap, w.repeat_contact * signals.prior_contacts)
            points.append((value, f"{_ordinal(signals.prior_contacts + 1)} message this week"))

        complaint_probability = _complaint_probability(signals, bool(complaint_intents))
        if _contradicted_praise(signals, names):
            # Irony fools the sentiment model and the examples alike; the cues catch it.
            complaint_probability = max(complaint_probability, SARCASM_FLOOR)
        escalations = [i for i in intents if i.escalate]
        score = round(min(100.0, sum(value for value, _ in points)))
        if escalations:
            score = max(score, w.escalation_floor)
        kind = _kind(signals, complaint_probability, names)
        priority = "P1" if escalations else _band(score, w.bands)
        if kind in ("praise", "feedback") and not escalations:
            priority = "P4"
        elif kind == "complaint" and priority == "P4":
            priority = "P3"  # a complaint always gets a human's attention within the day
        reasons = [f"escalate: {i.reason}" for i in escalations]
        escalated = {i.reason for i in escalations}
        reasons += [
            reason
            for value, reason in sorted(points, key=lambda p: -p[0])
            if value >= 1 and reason not in escalated
        ]
        if kind == "praise":
            reasons.append("praise: thank-you")
        elif kind == "feedback":
            reasons.append("feedback: a suggestion to thank and pass on")
        names_out = [i.name for i in intents]
        model_intent = signals.model_intent
        if model_intent and model_intent not in names and model_intent != "other":
            names_out.append(model_intent)
            if not complaint_intents and kind == "complaint":
                reasons.append(f"reads like a {model_intent} problem")
        return UrgencyResult(
            score=score,
            priority=priority,
            kind=kind,
            complaint_probability=round(complaint_probability, 4),
            escalate=bool(escalations),
            intents=names_out,
            reasons=list(dict.fromkeys(reasons)),
        )


def _complaint_probability(signals: Signals, has_complaint_cue: bool) -> float:
    # Negativity, cues and a low rating, averaged with the example-based model when there is one.
    value = 0.6 * signals.p_negative + (0.45 if has_complaint_cue else 0.0)
    if signals.rating is not None and signals.rating <= 2:
        value += 0.25
    value = min(1.0, max(0.0, value))
    if signals.model_complaint is None:
        return value
    return MODEL_SHARE * signals.model_complaint + (1 - MODEL_SHARE) * value


def _contradicted_praise(signals: Signals, intents: set[str]) -> bool:
    """Praise words or a positive tone next to a problem: "Great, lost my parcel again 🙃"."""
    problems = intents - NON_COMPLAINT_INTENTS
    praising = "praise" in intents or signals.p_positive >= 0.5
    return bool(problems) and (praising or "sarcasm" in problems)


def _kind(signals: Signals, complaint_probability: float, intents: set[str]) -> str:
    if complaint_probability >= 0.5 or _contradicted_praise(signals, intents):
        return "complaint"
    if "feedback" in intents:
        return "feedback"  # "could you add dark mode?" is a suggestion, not a question
    if "question" in intents or "?" in signals.text:
        return "question"
    if "praise" in intents or signals.p_positive >= 0.6:
        return "praise"
    return "info"


def _band(score: int, bands: tuple[int, int, int]) -> str:
    for priority, lower in zip(("P1", "P2", "P3"), bands, strict=True):
        if score >= lower:
            return priority
    return "P4"


def _negation_spans(text: str, negations: Iterable[re.Pattern[str]]) -> list[tuple[int, int]]:
    """Character spans covering the few words after each negation."""
    spans = []
    for pattern in negations:
        for match in pattern.finditer(text):
            words = list(itertools.islice(_WORD.finditer(text, match.end()), NEGATION_WINDOW))
            if words:
                spans.append((match.start(), words[-1].end()))
    return spans


def _inside(position: int, spans: list[tuple[int, int]]) -> bool:
    return any(start <= position < end for start, end in spans)


def compact(number: int) -> str:
    """12,400 as 12k, 1,500,000 as 1.5M: how reach reads in a reason."""
    if number >= 1_000_000:
        return f"{number / 1_000_000:.1f}M".replace(".0M", "M")
    if number >= 1_000:
        return f"{number / 1_000:.0f}k"
    return str(number)


def _ordinal(number: int) -> str:
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"
