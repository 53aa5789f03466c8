"""Complaint intent and urgency: an explainable 0-100 score, a band P1..P4, and its reasons.

Every point of the score comes from one named contribution, and each contribution becomes one
short reason an agent reads. Cue lists live in models/cues/<lang>.toml.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from models.labels import ESCALATING, MONEY_OR_ACCESS, PROBLEMS, REASONS, SERIOUS
from models.labels import POINTS as LABEL_POINTS

CUES_DIR = Path(__file__).parent / "cues"
# Cue intents named otherwise in the taxonomy (models/labels.py), and cue intents that are
# evidence for the score but not labels of their own.
CUE_LABELS = {"security": "account_takeover", "waiting": "repeat_contact"}
CUE_SIGNALS = frozenset({"anger", "sarcasm"})
PROBLEM_LABELS = PROBLEMS | {"anger", "sarcasm"}
# Cue and model intents that do not report a problem (reports count the others).
NON_COMPLAINT_INTENTS = frozenset({"question", "praise", "feedback", "spam"}) | {
    "vulnerable",
    "repeat_contact",
}
ESCALATING_LABELS = ESCALATING
# How much the intent model's complaint probability counts against the cue blend.
MODEL_SHARE = 0.75
# The complaint probability given to praise contradicted by a problem (sarcasm).
SARCASM_FLOOR = 0.6
# Negation flips these only: "not bad", "not happy". "not working" stays a complaint.
NEGATABLE_INTENTS = frozenset({"anger", "praise"})
NEGATION_WINDOW = 3
# At most this many details named in one reason ("vulnerable: a baby or child, in the cold").
MAX_DETAILS = 2
# Fewer words than this and the intent head's labels are not used.
MIN_MODEL_WORDS = 3
# A cue whose label the intent head gives less than this is a word out of context ("checked it
# three times" is no repeat contact, "¿cómo?" no question): of the 197 cue hits on the
# validation mentions it rules out, 189 were wrong. Escalating labels keep a lower bar.
CUE_VETO = 0.2
ESCALATING_CUE_VETO = 0.05
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
    vulnerable: float = 25.0
    stated_repeat: float = 12.0  # "third time I write", as the text says it


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
    # From models/intent.py, when its head is installed: the labels over their thresholds and
    # how likely the mention reports a problem.
    model_complaint: float | None = None
    model_labels: tuple[str, ...] | None = None
    # The head's view of whether a care lead would rank it P1/P2 (None: no head installed), and
    # the same against the bars for a complaint about money or access and for any other.
    model_urgent: bool | None = None
    model_urgent_if_serious: bool | None = None
    model_urgent_if_other: bool | None = None
    # The head's probability of each label, which can overrule a cue (None: no head installed).
    model_probabilities: Mapping[str, float] | None = None


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
class Detail:
    """What a found label is about in particular ("a baby or child"), named in its reason."""

    label: str
    phrase: str
    patterns: tuple[re.Pattern[str], ...]


@dataclass(frozen=True, slots=True)
class CueIndex:
    """Which cue patterns a text can match at all, by the cue's first word: only those are
    searched (searching every cue of every intent was a fifth of the whole analysis' time)."""

    exact: dict[str, tuple[tuple[int, re.Pattern[str]], ...]]  # first word -> (intent, cue)
    prefix: dict[str, tuple[tuple[int, re.Pattern[str]], ...]]  # "refund*" -> its cues
    always: tuple[tuple[int, re.Pattern[str]], ...]  # cues with no word ("👏", "?!")

    def candidates(self, words: Iterable[str]) -> dict[int, list[re.Pattern[str]]]:
        """The cues worth searching in a text made of `words`, per intent index."""
        found: dict[int, list[re.Pattern[str]]] = {}
        hits = [*self.always]
        for word in set(words):
            hits += self.exact.get(word, ())
            for end in range(1, len(word) + 1):
                hits += self.prefix.get(word[:end], ())
        for index, pattern in hits:
            found.setdefault(index, []).append(pattern)
        return found


def cue_index(intents: tuple[Intent, ...], cues: list[list[str]]) -> CueIndex:
    exact: dict[str, list[tuple[int, re.Pattern[str]]]] = {}
    prefix: dict[str, list[tuple[int, re.Pattern[str]]]] = {}
    always: list[tuple[int, re.Pattern[str]]] = []
    for index, (intent, texts) in enumerate(zip(intents, cues, strict=True)):
        for cue, pattern in zip(texts, intent.patterns, strict=True):
            normal = normalise(cue.strip())
            words = _WORD.findall(normal.rstrip("*"))
            if not words:
                always.append((index, pattern))
            elif len(words) == 1 and normal.endswith("*") and normal.rstrip("*").endswith(words[0]):
                prefix.setdefault(words[0], []).append((index, pattern))
            else:
                exact.setdefault(words[0], []).append((index, pattern))
    return CueIndex(
        exact={k: tuple(v) for k, v in exact.items()},
        prefix={k: tuple(v) for k, v in prefix.items()},
        always=tuple(always),
    )


@dataclass(frozen=True, slots=True)
class CueSet:
    language: str
    intents: tuple[Intent, ...]
    negations: tuple[re.Pattern[str], ...]
    details: tuple[Detail, ...] = ()
    index: CueIndex | None = None


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
    cues = [
        [c for c in spec.get("cues", []) if c.strip()] for spec in data.get("intents", {}).values()
    ]
    intents = tuple(
        Intent(
            name=name,
            reason=spec["reason"],
            weight=float(spec.get("weight", 0)),
            escalate=bool(spec.get("escalate", False)),
            patterns=tuple(cue_pattern(cue) for cue in texts),
        )
        for (name, spec), texts in zip(data.get("intents", {}).items(), cues, strict=True)
    )
    negations = tuple(cue_pattern(cue) for cue in data.get("negation", {}).get("cues", []))
    details = tuple(
        Detail(label, phrase, tuple(cue_pattern(cue) for cue in cues if cue.strip()))
        for label, phrases in data.get("details", {}).items()
        for phrase, cues in phrases.items()
    )
    return CueSet(
        language=language,
        intents=intents,
        negations=negations,
        details=details,
        index=cue_index(intents, cues),
    )


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
        words = _WORD.findall(normal)
        found: dict[str, Intent] = {}
        for cue_set in self._cue_sets(language):
            negated_spans = _negation_spans(normal, cue_set.negations)
            candidates = cue_set.index.candidates(words) if cue_set.index else None
            for number, intent in enumerate(cue_set.intents):
                if intent.name in found:
                    continue
                patterns = intent.patterns if candidates is None else candidates.get(number, ())
                for pattern in patterns:
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

    def match_details(self, text: str, language: str, label: str) -> list[str]:
        """The details of `label` whose words occur in the text ("a baby or child"), in order."""
        normal = normalise(text)
        found: dict[str, None] = {}
        for cue_set in self._cue_sets(language):
            for detail in cue_set.details:
                if detail.label == label and any(p.search(normal) for p in detail.patterns):
                    found[detail.phrase] = None
        return list(found)[:MAX_DETAILS]

    def score(self, signals: Signals) -> UrgencyResult:
        w = self.weights
        findings, cue_signals = self._findings(signals)
        if _model_says_praise(signals) and "sarcasm" not in cue_signals:
            # "Refunded within a day, thank you Ana!": a problem word in praise of its fix.
            findings = [f for f in findings if f.name not in PROBLEM_LABELS]
        names = {f.name for f in findings}
        problems = [f for f in findings if f.name in PROBLEM_LABELS]
        if "vulnerable" in names and not problems and "praise" not in names:
            # "Grandma's blood thinners are four days late": a person at risk is the problem.
            problems = [f for f in findings if f.name == "vulnerable"]
        sarcastic = _contradicted_praise(signals, names, bool(problems), "sarcasm" in cue_signals)
        for name in ("anger", "sarcasm"):
            # Strong words and irony markers ("thanks for nothing") are a complaint of their own.
            if name in cue_signals:
                cue = cue_signals[name]
                problems.append(Finding(name, cue.reason, cue.weight, escalate=False))
        if sarcastic or (problems and signals.p_negative >= 0.5):
            # Praise words around a problem are irony, not thanks: "great, charged twice 👏".
            findings = [f for f in findings if f.name != "praise"]
            names.discard("praise")
        points: list[tuple[float, str]] = []

        if signals.p_negative >= 0.2:
            points.append(
                (w.negativity * signals.p_negative, f"negative tone ({signals.p_negative:.0%})")
            )
        weighted = [f for f in problems if f.points > 0]
        intent_points = min(w.intents_cap, sum(f.points for f in weighted))
        total = max(1.0, sum(f.points for f in weighted))
        for finding in weighted:
            points.append((intent_points * finding.points / total, finding.reason))
        if "vulnerable" in names:
            points.append((w.vulnerable, _reason(findings, "vulnerable")))
        if "repeat_contact" in names:
            points.append((w.stated_repeat, _reason(findings, "repeat_contact")))
        # Facts outside the words: what they rated, who wrote, how many saw it, how often.
        outside: list[tuple[float, str]] = []
        if signals.rating is not None and signals.rating <= 3:
            stars = max(1, round(signals.rating))
            outside.append((w.rating[stars - 1], f"{stars}-star review"))
        if signals.reach:
            for threshold, value in w.reach:
                if signals.reach >= threshold:
                    outside.append((value, f"{compact(signals.reach)} followers"))
                    break
        if signals.vip:
            outside.append((w.vip, "VIP account"))
        if signals.engagement and signals.engagement >= w.engagement_threshold:
            outside.append((w.engagement, f"{compact(signals.engagement)} likes and replies"))
        if signals.prior_contacts:
            value = min(w.repeat_contact_cap, w.repeat_contact * signals.prior_contacts)
            outside.append((value, f"{_ordinal(signals.prior_contacts + 1)} message this week"))
        points += outside

        complaint_probability = _complaint_probability(signals, bool(problems))
        if sarcastic:
            complaint_probability = max(complaint_probability, SARCASM_FLOOR)
        kind = _kind(signals, complaint_probability, names, bool(problems))
        # Praise of the nurse who helped grandma, or spam, is no emergency whatever it names.
        answered = kind in ("complaint", "question")
        escalations = (
            [f for f in findings if f.escalate and _stands(f, signals)] if answered else []
        )
        score = round(min(100.0, sum(value for value, _ in points)))
        if escalations:
            score = max(score, w.escalation_floor)
        priority = "P1" if escalations else _band(score, w.bands)
        if kind in ("praise", "feedback", "spam", "info"):
            priority = "P4"
        elif kind == "complaint" and not escalations:
            priority = _complaint_band(signals, names, score, sum(v for v, _ in outside), w)
        reasons = [f"escalate: {f.reason}" for f in escalations]
        escalated = {f.reason for f in escalations}
        reasons += [
            reason
            for value, reason in sorted(points, key=lambda p: -p[0])
            if value >= 1 and reason not in escalated
        ]
        if kind == "praise":
            reasons.append("praise: thank-you")
        elif kind == "feedback":
            reasons.append("feedback: a suggestion to thank and pass on")
        elif kind == "spam":
            reasons.append("reads like spam: dismiss unless it is about us")
        return UrgencyResult(
            score=score,
            priority=priority,
            kind=kind,
            complaint_probability=round(complaint_probability, 4),
            escalate=bool(escalations),
            intents=[f.name for f in findings],
            reasons=list(dict.fromkeys(reasons)),
        )

    def _findings(self, signals: Signals) -> tuple[list[Finding], dict[str, Intent]]:
        """What the mention is about (the intent model's labels and the cues, each once), and
        the cue signals (anger, sarcasm) that matched."""
        found: dict[str, Finding] = {}
        cue_signals: dict[str, Intent] = {}
        # A word or two ("ok", "?") tells the head nothing: it guesses; only cues count there.
        model_labels = signals.model_labels if _words(signals.text) >= MIN_MODEL_WORDS else ()
        for label in model_labels or ():
            found[label] = Finding(
                name=label,
                reason=REASONS.get(label, label.replace("_", " ")),
                points=LABEL_POINTS.get(label, 0.0),
                escalate=label in ESCALATING_LABELS,
                from_model=True,
            )
        # Cues stay as explainable extra evidence; their reasons win, they name the words.
        for intent in self.match_intents(signals.text, signals.language):
            name = CUE_LABELS.get(intent.name, intent.name)
            if name in CUE_SIGNALS:
                cue_signals[name] = intent
                continue
            if _vetoed(name, signals):
                continue
            known = found.get(name)
            found[name] = Finding(
                name=name,
                reason=intent.reason,
                points=max(intent.weight, known.points if known else 0.0),
                escalate=intent.escalate or (known.escalate if known else False),
                from_model=known is not None,
                from_cue=True,
            )
        return [self._detailed(f, signals) for f in found.values()], cue_signals

    def _detailed(self, finding: Finding, signals: Signals) -> Finding:
        """The finding with what in particular it is about added to its reason, when the
        words say it: "vulnerable person involved: a baby or child, no heating in the cold"."""
        details = self.match_details(signals.text, signals.language, finding.name)
        if not details:
            return finding
        return dataclasses.replace(finding, reason=f"{finding.reason}: {', '.join(details)}")


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a mention is about, from the model or a cue, with what it adds to the score."""

    name: str
    reason: str
    points: float
    escalate: bool
    from_model: bool = False
    from_cue: bool = False


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def _stands(finding: Finding, signals: Signals) -> bool:
    """Whether an escalating finding is strong enough to page someone.

    A cue names the words; the head's label alone must come with its own sense that the
    mention is urgent: "first pilates class, found muscles I never knew" is no safety risk, nor
    is a rude waiter, however negative. (On the validation mentions, model-only escalations
    without it were right 2 times in 23.)
    """
    if finding.from_cue or signals.model_urgent is None:
        return True
    return bool(signals.model_urgent)


def _vetoed(label: str, signals: Signals) -> bool:
    """Whether the intent head, having read the whole mention, rules out a cue's label."""
    if signals.model_probabilities is None or _words(signals.text) < MIN_MODEL_WORDS:
        return False
    if label in PROBLEMS and (signals.model_complaint or 0.0) >= 0.5:
        return False  # the head sees a problem, only not which: the cue may name it
    veto = ESCALATING_CUE_VETO if label in ESCALATING_LABELS else CUE_VETO
    return signals.model_probabilities.get(label, 1.0) < veto


# Below this complaint probability a problem the head names beside praise is one that was fixed.
PRAISE_ONLY = 0.3


def _model_says_praise(signals: Signals) -> bool:
    """Whether the head reads thanks, and any problem it names as one that is over."""
    labels = set(signals.model_labels or ())
    if "praise" not in labels:
        return False
    if not labels & PROBLEMS:
        return signals.p_positive >= 0.5
    # "The buffering is finally sorted, thanks": the head names the problem but reads no
    # complaint in the mention (on the validation mentions, 5 of 5 such were thanks alone).
    return (signals.model_complaint if signals.model_complaint is not None else 1.0) < PRAISE_ONLY


# Points from outside facts (reach, VIP, rating, engagement, earlier messages) that lift a
# complaint the intent head reads as "can wait" into P2 all the same.
OUTSIDE_LIFT = 10.0


def _complaint_band(
    signals: Signals, names: set[str], score: int, outside: float, w: UrgencyWeights
) -> str:
    """P1..P3 for a complaint that does not escalate."""
    band = _band(score, w.bands)
    if signals.model_urgent is None:
        # No intent head: the score's band, at least P2 when money or access hurts now.
        serious = bool(names & SERIOUS) or "repeat_contact" in names
        return min(band, "P2" if serious else "P3")  # "P2" < "P3": the higher of the two
    # The head learned from care leads' rankings how bad a problem is within its intent ("the
    # lid broke, no big deal" against "the dishwasher floods the kitchen"); the words alone
    # cannot lift past that, facts outside them can. Money or access problems are P2 by the
    # guide unless the head is sure they are not; any other complaint needs the head fairly sure
    # (an escalating label that did not stand is doubted, so it is no reason for the low bar).
    serious = bool(names & MONEY_OR_ACCESS)
    bar = signals.model_urgent_if_serious if serious else signals.model_urgent_if_other
    head_says = signals.model_urgent if bar is None else bar
    urgent = head_says or "repeat_contact" in names or outside >= OUTSIDE_LIFT
    if not urgent:
        return "P3"
    return band if band == "P1" else "P2"


def _reason(findings: list[Finding], name: str) -> str:
    return next((f.reason for f in findings if f.name == name), REASONS.get(name, name))


def _complaint_probability(signals: Signals, has_problem: bool) -> float:
    # Negativity, a problem found and a low rating, averaged with the intent model's own view.
    value = 0.6 * signals.p_negative + (0.45 if has_problem else 0.0)
    if signals.rating is not None and signals.rating <= 2:
        value += 0.25
    value = min(1.0, max(0.0, value))
    if signals.model_complaint is None:
        return value
    return MODEL_SHARE * signals.model_complaint + (1 - MODEL_SHARE) * value


def _contradicted_praise(
    signals: Signals, names: set[str], has_problem: bool, sarcasm: bool
) -> bool:
    """Praise words or a positive tone next to a problem: "Great, lost my parcel again 🙃"."""
    praising = "praise" in names or signals.p_positive >= 0.5
    return has_problem and (praising or sarcasm)


def _kind(
    signals: Signals, complaint_probability: float, names: set[str], has_problem: bool
) -> str:
    if "spam" in names and not has_problem:
        return "spam"
    if has_problem or complaint_probability >= 0.5:
        return "complaint"
    if "feedback" in names:
        return "feedback"  # "could you add dark mode?" is a suggestion, not a question
    if "question" in names or "?" in signals.text:
        return "question"
    if "praise" in names or signals.p_positive >= 0.6:
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
