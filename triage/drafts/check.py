"""The draft checker: hints for the agent on every draft and edit; only hard errors block sending.

Hard errors: over the platform's length limit, an unfilled placeholder. Hints: negative or blaming
phrases, no greeting by name, a complaint reply without a time frame, personal data asked for in
a public reply, promises the brand does not allow. Phrase lists live in each language's template
file under [checker].
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

from connectors.reply import ReplyRules
from models.urgency import cue_pattern, normalise
from triage.drafts.names import address
from triage.drafts.render import FALLBACK_LANGUAGE, load_templates

# {name}, {{agent}}, <order number>: what a template or an LLM leaves unfilled; and [NAME],
# [ODPOWIEDŹ]: a bracketed word in capitals (_placeholders keeps only those).
PLACEHOLDER = re.compile(r"\{\{?\s*[\w.]+\s*\}?\}|\[[^\W\d_][^\[\]\n]{1,30}\]|<[a-z][a-z _]{1,30}>")
# A sum of money: "£20", "20 €", "50 zł", "EUR 10".
MONEY = re.compile(
    r"(?:[£$€]\s?\d+|\d+(?:[.,]\d+)?\s?(?:€|£|\$|zł|pln|eur|usd|gbp|euro|euros|złotych)\b|"
    r"\b(?:eur|usd|gbp|pln)\s?\d+)",
    re.IGNORECASE,
)
LINK = re.compile(r"https?://\S+", re.IGNORECASE)
# A sentence ends at . ! ? followed by a space or the end: "help.kestrel.example" is one word.
_SENTENCE = re.compile(r"(?:[^.!?\n]|[.!?](?=\S))+[.!?]*")


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the checker noticed; `error` blocks sending, `hint` is advice."""

    code: str
    severity: Literal["error", "hint"]
    message: str


@dataclass(frozen=True, slots=True)
class Promises:
    """What the brand allows a reply to promise (from [brand])."""

    refunds: bool = True
    compensation: bool = False


@dataclass(frozen=True, slots=True)
class _Lists:
    blaming: tuple[re.Pattern[str], ...]
    personal_data: tuple[re.Pattern[str], ...]
    private: tuple[re.Pattern[str], ...]
    never: tuple[re.Pattern[str], ...]
    refund: tuple[re.Pattern[str], ...]
    compensation: tuple[re.Pattern[str], ...]
    time: tuple[re.Pattern[str], ...]


@functools.cache
def _lists(language: str) -> _Lists:
    templates = load_templates(language) or load_templates(FALLBACK_LANGUAGE)
    assert templates is not None, "the English templates ship with triage"
    checker: dict[str, list[str]] = templates.get("checker", {})

    def compiled(key: str, extra: tuple[str, ...] = ()) -> tuple[re.Pattern[str], ...]:
        return tuple(cue_pattern(cue) for cue in (*checker.get(key, []), *extra) if cue.strip())

    units: list[str] = [
        form for forms in templates.get("time", {}).values() if isinstance(forms, dict)
        for form in forms.values()
    ]  # fmt: skip
    return _Lists(
        blaming=compiled("blaming"),
        personal_data=compiled("personal_data"),
        private=compiled("private"),
        never=compiled("never"),
        refund=compiled("refund"),
        compensation=compiled("compensation"),
        time=compiled("time_words", tuple(units)),
    )


def check_draft(
    text: str,
    *,
    language: str,
    kind: str,
    rules: ReplyRules | None = None,
    name: str | None = None,
    promises: Promises | None = None,
) -> list[Finding]:
    """Everything worth telling the agent about a reply, most serious first (errors, then hints)."""
    promises = promises or Promises()
    lists = _lists(language)
    normal = normalise(text)
    findings: list[Finding] = []
    if rules is not None and rules.length(text) > rules.max_length:
        findings.append(
            Finding(
                "too_long",
                "error",
                f"{rules.length(text)} {rules.unit.label} of {rules.max_length} allowed",
            )
        )
    placeholders = sorted(set(_placeholders(text)))
    if placeholders:
        shown = ", ".join(placeholders[:3])
        findings.append(Finding("placeholder", "error", f"unfilled placeholder {shown}"))
    if rules is not None and not rules.links and LINK.search(text):
        findings.append(
            Finding("link", "hint", "the platform shows no links: give the site's name instead")
        )
    public = rules is None or rules.public
    if public:
        asked = _personal_data_asked(lists, normal)
        if asked:
            findings.append(
                Finding(
                    "personal_data",
                    "hint",
                    f"asks for “{asked}” in a public reply: ask for it in a private message",
                )
            )
    if not promises.refunds:
        promised = _found(lists.refund, normal)
        if promised:
            findings.append(
                Finding("promise", "hint", f"promises a refund (“{promised}”): not allowed")
            )
    if not promises.compensation:
        promised = _found(lists.compensation, normal) or _first(MONEY.search(text))
        if promised:
            findings.append(
                Finding("promise", "hint", f"promises compensation (“{promised}”): not allowed")
            )
    blaming = _found(lists.blaming, normal)
    if blaming:
        findings.append(
            Finding(
                "blaming", "hint", f"sounds negative or blaming (“{blaming}”): say what we'll do"
            )
        )
    # "Anno" and "Jāni" greet Anna and Jānis: the vocative counts as their name.
    forms = {name.lstrip("@"), address(name.lstrip("@"), language, None)} if name else set()
    if name and not any(normalise(form) in normal for form in forms):
        findings.append(Finding("no_name", "hint", f"does not greet {name} by name"))
    if kind == "complaint" and not (_found(lists.time, normal) or re.search(r"\d", text)):
        findings.append(
            Finding("no_time_frame", "hint", "a complaint reply should say when we'll be back")
        )
    return findings


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def summary(findings: list[Finding]) -> str:
    """One line for an agent: "unfilled placeholder {name}; sounds negative…"."""
    return "; ".join(f.message for f in findings)


def _found(patterns: tuple[re.Pattern[str], ...], normal: str) -> str | None:
    for pattern in patterns:
        match = pattern.search(normal)
        if match:
            return match.group(0)
    return None


def _placeholders(text: str) -> list[str]:
    found = PLACEHOLDER.findall(text)
    # "[ANSWER]" is a gap to fill; "[sic]" or "[2]" in a customer's quote is not.
    return [p for p in found if not p.startswith("[") or p == p.upper()]


def _first(match: re.Match[str] | None) -> str | None:
    return match.group(0) if match else None


def _personal_data_asked(lists: _Lists, normal: str) -> str | None:
    # Per sentence: "DM us your address" moves it to a private channel, and "we never ask for
    # your password" asks for nothing; "reply with your card number" is what we must not do.
    for sentence in _SENTENCE.findall(normal):
        term = _found(lists.personal_data, sentence)
        if term and not _found(lists.private, sentence) and not _found(lists.never, sentence):
            return term
    return None
