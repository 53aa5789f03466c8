"""The intent taxonomy (models/data/intents/README.md): labels, what they mean for the score."""

from __future__ import annotations

INTENTS: tuple[str, ...] = (
    "account_takeover",
    "phishing",
    "fraud",
    "billing",
    "refund",
    "delivery",
    "outage",
    "login",
    "defect",
    "safety",
    "legal",
    "press",
    "privacy",
    "accessibility",
    "churn",
    "service",
    "question",
    "praise",
    "feedback",
    "spam",
)
MODIFIERS: tuple[str, ...] = ("vulnerable", "repeat_contact")
LABELS: tuple[str, ...] = INTENTS + MODIFIERS
# Intents that are a problem for the customer: any of them makes the mention a complaint.
PROBLEMS = frozenset(INTENTS) - {"question", "praise", "feedback", "spam"}
# Never left waiting: each of these goes to a person at once (P1).
ESCALATING = frozenset(
    {"account_takeover", "phishing", "fraud", "safety", "legal", "press", "vulnerable"}
)
# Money or access that hurts now: a complaint about one of these is at least P2.
SERIOUS = (
    frozenset({"billing", "refund", "login", "outage", "churn", "privacy", "accessibility"})
    | ESCALATING
)
# The serious labels that do not escalate: a complaint about one is P2 unless the head is sure
# it can wait.
MONEY_OR_ACCESS = SERIOUS - ESCALATING
# What each label adds to the urgency score, before the cap on all intents together.
POINTS: dict[str, float] = {
    "account_takeover": 40,
    "phishing": 35,
    "fraud": 40,
    "safety": 40,
    "legal": 35,
    "press": 30,
    "billing": 18,
    "refund": 16,
    "outage": 20,
    "login": 16,
    "delivery": 14,
    "defect": 14,
    "privacy": 18,
    "accessibility": 18,
    "churn": 20,
    "service": 12,
}
# The reason an agent reads for a label the model found.
REASONS: dict[str, str] = {
    "account_takeover": "account taken over by someone else",
    "phishing": "phishing or a scam in the brand's name",
    "fraud": "money taken without consent",
    "billing": "billing problem",
    "refund": "refund owed",
    "delivery": "delivery problem",
    "outage": "service outage",
    "login": "cannot get into the account",
    "defect": "product or app fault",
    "safety": "safety risk",
    "legal": "legal threat",
    "press": "press inquiry",
    "privacy": "personal data request or leak",
    "accessibility": "accessibility barrier",
    "churn": "about to leave",
    "service": "unhappy with how they were treated",
    "question": "asks a question",
    "praise": "praise or thanks",
    "feedback": "suggests an improvement",
    "spam": "spam",
    "vulnerable": "vulnerable person involved",
    "repeat_contact": "has written before without an answer",
}
