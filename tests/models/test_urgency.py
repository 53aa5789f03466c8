"""The explainable urgency score on the real cue lists (no model: probabilities are given)."""

from __future__ import annotations

import pytest

from models.labels import LABELS
from models.urgency import Signals, UrgencyScorer


@pytest.fixture(scope="module")
def scorer() -> UrgencyScorer:
    return UrgencyScorer()


def _score(scorer, text, language="en", p_negative=0.3, p_positive=0.3, **facts):
    return scorer.score(
        Signals(text=text, language=language, p_negative=p_negative, p_positive=p_positive, **facts)
    )


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "You charged me twice this month"),
        ("pl", "Pobraliście mi dwa razy opłatę"),
        ("lv", "Jūs divreiz noņēmāt naudu"),
        ("pt", "Vocês cobraram duas vezes"),
        ("es", "Me cobraron dos veces"),
        ("de", "Ihr habt doppelt abgebucht"),
        ("fr", "Vous m'avez débité deux fois"),
    ],
)
def test_charged_twice_is_a_billing_complaint_in_every_language(scorer, language, text):
    result = _score(scorer, text, language)
    assert result.kind == "complaint"
    assert "billing" in result.intents
    assert "mentions a billing problem" in result.reasons


@pytest.mark.parametrize(
    ("language", "text", "reason"),
    [
        (
            "pl",
            "Zgłaszam sprawę do UOKiK",
            "escalate: legal threat: a regulator or ombudsman",
        ),
        (
            "en",
            "My battery is swelling and the phone is smoking",
            "escalate: safety risk: fire, smoke or sparks, overheating or a battery",
        ),
        (
            "en",
            "Someone hacked my account and did a SIM swap",
            "escalate: account security: possible fraud or hack",
        ),
    ],
)
def test_escalations_are_always_p1_with_the_reason_once(scorer, language, text, reason):
    result = _score(scorer, text, language, p_negative=0.1)
    assert result.priority == "P1" and result.escalate and result.score >= 90
    assert result.reasons[0] == reason
    assert reason.removeprefix("escalate: ") not in result.reasons


def test_sarcasm_with_a_complaint_cue_is_a_complaint(scorer):
    result = _score(scorer, "Great, lost my parcel again 🙃", p_negative=0.1, p_positive=0.8)
    assert result.kind == "complaint" and result.priority == "P3"
    assert "delivery problem" in result.reasons


def test_negation_cancels_anger_but_not_complaints(scorer):
    assert "anger" not in _score(scorer, "not bad at all, honestly").intents
    assert "login" in _score(scorer, "I can’t log in since the update").intents


def test_praise_is_a_low_priority_thank_you(scorer):
    result = _score(scorer, "Thank you, love the new phone!", p_negative=0.02, p_positive=0.95)
    assert (result.kind, result.priority) == ("praise", "P4")
    assert "praise: thank-you" in result.reasons


def test_question_that_is_a_complaint(scorer):
    assert _score(scorer, "why was I charged twice?").kind == "complaint"
    assert _score(scorer, "Do you ship to Riga?", p_negative=0.05).kind == "question"


def test_each_signal_adds_points_and_says_why(scorer):
    base = _score(scorer, "The screen flickers", p_negative=0.6)
    loud = _score(
        scorer,
        "The screen flickers",
        p_negative=0.6,
        rating=1,
        reach=250_000,
        vip=True,
        engagement=120,
        prior_contacts=2,
    )
    assert loud.score > base.score
    for reason in (
        "1-star review",
        "250k followers",
        "VIP account",
        "120 likes and replies",
        "3rd message this week",
        "negative tone (60%)",
    ):
        assert reason in loud.reasons
    assert loud.priority == "P1"
    assert 0 <= base.score <= 100 and 0 <= loud.score <= 100


def test_neutral_news_is_information(scorer):
    result = _score(scorer, "Kestrel opens a new store in Riga next month", p_negative=0.05)
    assert result.kind == "info" and result.reasons == []


def test_huge_text_is_scored(scorer):
    result = _score(scorer, "not good " * 10_000 + "refund", p_negative=0.9)
    assert result.kind == "complaint"


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "It would be great if the app had a dark mode"),
        ("pl", "Przydałby się tryb ciemny, fajnie byłoby go mieć"),
        ("lv", "Būtu labi, ja lietotnei būtu tumšais režīms"),
        ("pt", "Seria ótimo se o app tivesse modo escuro"),
        ("es", "Sería genial que la app tuviera modo oscuro"),
        ("de", "Wäre schön, wenn die App einen Dunkelmodus hätte"),
        ("fr", "Ce serait top d'avoir un mode sombre dans l'appli"),
    ],
)
def test_a_suggestion_is_feedback_at_p4(scorer, language, text):
    result = _score(scorer, text, language, p_negative=0.05, p_positive=0.4)
    assert (result.kind, result.priority) == ("feedback", "P4")
    assert "feedback: a suggestion to thank and pass on" in result.reasons


def test_a_suggestion_inside_a_complaint_stays_a_complaint(scorer):
    text = "You charged me twice. It would be great if you checked your billing"
    assert _score(scorer, text, p_negative=0.8).kind == "complaint"


def test_a_reason_names_who_is_at_risk_and_what_the_takeover_did(scorer):
    cold = _score(
        scorer,
        "Heating down since Sunday, 14°C in the flat and we have a 3-month-old",
        p_negative=0.9,
        model_labels=("outage", "vulnerable"),
        model_complaint=0.9,
        model_urgent=True,
    )
    assert cold.priority == "P1"
    assert "escalate: vulnerable person involved: a baby or child, no heating in the cold" in (
        cold.reasons
    )
    takeover = _score(
        scorer,
        "Someone got into my account and changed the email, they're placing orders",
        p_negative=0.9,
        model_labels=("account_takeover",),
        model_complaint=0.9,
        model_urgent=True,
    )
    assert takeover.reasons[0] == (
        "escalate: account taken over by someone else: orders placed, login details changed"
    )


def test_details_only_explain_a_label_already_found(scorer):
    # "baby" alone adds no vulnerable label; a found label without detail words keeps its reason.
    result = _score(scorer, "The baby monitor app looks great in dark mode", p_positive=0.9)
    assert "vulnerable" not in result.intents
    assert not any("a baby or child" in reason for reason in result.reasons)
    plain = _score(
        scorer,
        "Someone is in my account, I did not do this",
        p_negative=0.9,
        model_labels=("account_takeover",),
        model_complaint=0.9,
        model_urgent=True,
    )
    assert plain.reasons[0] == "escalate: account taken over by someone else"


def test_every_language_details_the_same_labels_with_the_english_phrases():
    from models.urgency import available_languages, load_cues

    english = {(d.label, d.phrase) for d in load_cues("en").details}
    assert english
    for language in available_languages():
        details = load_cues(language).details
        assert details, language
        assert {(d.label, d.phrase) for d in details} <= english, language
        assert all(d.patterns for d in details), language


def test_a_model_only_escalation_needs_the_heads_own_sense_of_urgency(scorer):
    rude = "The waiter called us names and slammed the plates down, what an attitude"
    calm, urgent = (
        _score(
            scorer,
            rude,
            p_negative=0.95,
            model_labels=("safety", "service"),
            model_complaint=0.9,
            model_urgent=head_says_urgent,
        )
        for head_says_urgent in (False, True)
    )
    assert not calm.escalate and calm.priority == "P3"
    assert urgent.escalate and urgent.priority == "P1"
    # A cue names the risk in words: it escalates whatever the head thinks.
    cued = _score(
        scorer,
        "The charger started smoking and melted",
        p_negative=0.9,
        model_labels=("defect",),
        model_complaint=0.9,
        model_urgent=False,
    )
    assert cued.escalate and cued.priority == "P1"


def test_a_money_problem_needs_a_lower_bar_than_a_minor_fault(scorer):
    def rank(text: str, labels: tuple[str, ...]) -> str:
        # The head's urgency sits between the two bars: enough for money, not for a fault.
        return _score(
            scorer,
            text,
            p_negative=0.9,
            model_labels=labels,
            model_complaint=0.9,
            model_urgent=True,
            model_urgent_if_serious=True,
            model_urgent_if_other=False,
        ).priority

    assert rank("You took the annual fee twice from my account", ("billing",)) == "P2"
    assert rank("The lid of the kettle does not click shut any more", ("defect",)) == "P3"
    # Written before: earlier messages lift a minor fault all the same.
    assert rank("Third time I write: the lid does not click shut", ("defect",)) == "P2"


def test_the_head_rules_out_a_cue_word_read_out_of_context(scorer):
    def probabilities(**given: float) -> dict[str, float]:
        return {label: given.get(label, 0.01) for label in LABELS}

    text = "Checked it for the third time: question 23 is still marked wrong"
    assert "repeat_contact" in _score(scorer, text).intents  # the cue alone
    ruled_out = _score(
        scorer, text, model_complaint=0.9, model_probabilities=probabilities(defect=0.9)
    )
    assert "repeat_contact" not in ruled_out.intents
    agreed = _score(
        scorer, text, model_complaint=0.9, model_probabilities=probabilities(repeat_contact=0.3)
    )
    assert "repeat_contact" in agreed.intents
    # A problem word stands while the head sees a problem at all, only not which one.
    charged = "You charged me twice this month"
    sees_problem = _score(scorer, charged, model_complaint=0.6, model_probabilities=probabilities())
    assert "billing" in sees_problem.intents
    sees_none = _score(scorer, charged, model_complaint=0.1, model_probabilities=probabilities())
    assert "billing" not in sees_none.intents
    # An escalating cue needs the head all but certain it is absent.
    smoke = "The charger started smoking and melted"
    doubtful = _score(
        scorer, smoke, model_complaint=0.1, model_probabilities=probabilities(safety=0.08)
    )
    assert doubtful.escalate


def test_the_cue_index_finds_what_searching_every_cue_finds(scorer, monkeypatch):
    import dataclasses

    import models.urgency as urgency

    texts = [
        ("Refunded? No. Still waiting for my refund after 3 weeks!!", "en"),
        ("great, charged twice 👏👏", "en"),
        ("wi-fi down again?! third time I write", "en"),
        ("Pobraliście mi dwa razy opłatę, oddajcie kasę", "pl"),
        ("Kāds ielauzās manā kontā un mainīja e-pastu", "lv"),
        ("not bad at all, thanks", "en"),
        ("Mi hijo de 3 meses y sin calefacción", "es"),
        ("Hacker haben mein Konto übernommen und bestellen auf meine Kosten", "de"),
    ]
    indexed = [[i.name for i in scorer.match_intents(t, lang)] for t, lang in texts]
    assert all(indexed[:4]), indexed  # the cues do find these
    loaded = urgency.load_cues
    monkeypatch.setattr(
        urgency,
        "load_cues",
        lambda code, cues_dir=urgency.CUES_DIR: dataclasses.replace(
            loaded(code, cues_dir), index=None
        ),
    )
    every_cue = [[i.name for i in UrgencyScorer().match_intents(t, lang)] for t, lang in texts]
    assert indexed == every_cue


def test_praise_of_a_fixed_problem_stays_praise_when_the_head_reads_no_complaint(scorer):
    text = "The buffering on the TV app is finally sorted after the update, thanks Priya"

    def read(complaint: float):
        return _score(
            scorer,
            text,
            p_negative=0.2,
            p_positive=0.8,
            model_labels=("praise", "defect"),
            model_complaint=complaint,
            model_urgent=True,
        )

    over = read(0.05)
    assert (over.kind, over.priority) == ("praise", "P4")
    assert "defect" not in over.intents
    # The same labels with the head reading a complaint: the problem is not over.
    still = read(0.8)
    assert still.kind == "complaint" and still.priority in ("P2", "P3")
    assert "defect" in still.intents


def test_a_news_outlet_named_in_an_article_is_no_press_inquiry(scorer):
    text = "Kestrel atver jaunu veikalu Valmierā, vēsta ziņu portāls"
    result = _score(scorer, text, language="lv", p_negative=0.05, p_positive=0.2)
    assert "press" not in result.intents and not result.escalate


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "Under GDPR I'd like a copy of all the personal data you hold on me"),
        ("de", "Auskunftsersuchen nach Art. 15 DSGVO: welche Daten speichern Sie über mich?"),
        ("fr", "En vertu du RGPD, je demande la suppression de mes données personnelles"),
        ("es", "Según el RGPD quiero ejercer mi derecho de acceso a mis datos personales"),
        ("pt", "Com base na LGPD, quero saber quais dados pessoais vocês têm sobre mim"),
        ("pl", "Na podstawie RODO proszę o usunięcie moich danych osobowych"),
        ("lv", "Saskaņā ar VDAR lūdzu izdzēst manus datus no jūsu sistēmas"),
    ],
)
def test_a_data_request_citing_the_law_is_privacy_not_a_legal_threat(scorer, language, text):
    result = _score(scorer, text, language=language, p_negative=0.3)
    assert "privacy" in result.intents and "legal" not in result.intents, result.intents
    assert not result.escalate
