"""The draft checker catches each bad pattern in each language, and passes the good drafts."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.reply import LengthUnit, ReplyRules
from models.labels import LABELS
from triage.config import load_settings
from triage.drafts import DraftRequest, render_draft
from triage.drafts.check import Promises, check_draft, errors, summary

LANGUAGES = ["en", "pl", "lv", "pt", "es", "de", "fr"]
X = ReplyRules(max_length=280)
PRIVATE = ReplyRules(max_length=1000, public=False)

# Per language: a blaming phrase, personal data asked in public, the same moved to a DM, a
# refund promise, a compensation promise, and a complaint reply with a time frame.
CASES = {
    "en": (
        "Hi Anna, unfortunately that is our policy.",
        "Hi Anna, please reply here with your card number.",
        "Hi Anna, please DM us your home address.",
        "Hi Anna, we'll refund the charge.",
        "Hi Anna, we'll add a goodwill credit of £20.",
        "Hi Anna, sorry about this. We'll get back to you within 2 hours.",
    ),
    "pl": (
        "Cześć Anna, niestety zgodnie z regulaminem nic nie możemy zrobić.",
        "Cześć Anna, podaj tutaj swój numer karty.",
        "Cześć Anna, podeślij nam w prywatnej wiadomości adres zamieszkania.",
        "Cześć Anna, zwrócimy Ci pieniądze.",
        "Cześć Anna, dostaniesz rekompensatę 50 zł.",
        "Cześć Anna, przepraszamy. Odpiszemy Ci w ciągu 2 godzin.",
    ),
    "lv": (
        "Sveika, Anna! Diemžēl tā ir mūsu politika.",
        "Sveika, Anna! Lūdzu, uzrakstiet šeit savu personas kodu.",
        "Sveika, Anna! Lūdzu, atsūtiet privātā ziņā kartes numuru.",
        "Sveika, Anna! Mēs atmaksāsim naudu.",
        "Sveika, Anna! Jūs saņemsiet kompensāciju 20 €.",
        "Sveika, Anna! Atvainojamies. Atbildēsim 2 stundu laikā.",
    ),
    "pt": (
        "Olá Anna, infelizmente essa é a nossa política.",
        "Olá Anna, responda aqui com a sua senha.",
        "Olá Anna, envie-nos por mensagem privada a sua morada.",
        "Olá Anna, faremos o reembolso.",
        "Olá Anna, vai receber uma compensação de 20 €.",
        "Olá Anna, pedimos desculpa. Voltamos a falar em 2 horas.",
    ),
    "es": (
        "Hola Anna, lamentablemente es nuestra política.",
        "Hola Anna, respóndenos aquí con tu número de tarjeta.",
        "Hola Anna, envíanos por mensaje privado tu dirección.",
        "Hola Anna, te haremos el reembolso.",
        "Hola Anna, te daremos una compensación de 20 €.",
        "Hola Anna, lo sentimos. Te respondemos en 2 horas.",
    ),
    "de": (
        "Hallo Anna, leider sind das unsere Richtlinien.",
        "Hallo Anna, nennen Sie uns hier Ihr Passwort.",
        "Hallo Anna, schicken Sie uns per DM Ihre Adresse.",
        "Hallo Anna, wir erstatten den Betrag.",
        "Hallo Anna, Sie bekommen einen Gutschein über 20 €.",
        "Hallo Anna, das tut uns leid. Wir melden uns innerhalb von 2 Stunden.",
    ),
    "fr": (
        "Bonjour Anna, malheureusement c'est notre politique.",
        "Bonjour Anna, indiquez ici votre numéro de carte.",
        "Bonjour Anna, envoyez-nous en message privé votre adresse postale.",
        "Bonjour Anna, nous allons vous rembourser.",
        "Bonjour Anna, nous vous offrons un dédommagement de 20 €.",
        "Bonjour Anna, désolés. Nous revenons vers vous dans 2 heures.",
    ),
}


def _codes(text, lang, kind="question", **kwargs):
    return {f.code for f in check_draft(text, language=lang, kind=kind, name="Anna", **kwargs)}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_bad_pattern_is_caught_in_each_language(lang):
    blaming, public_data, private_data, refund, compensation, good = CASES[lang]
    assert "blaming" in _codes(blaming, lang)
    assert "personal_data" in _codes(public_data, lang, rules=X)
    assert "personal_data" not in _codes(private_data, lang, rules=X)
    assert "personal_data" not in _codes(public_data, lang, rules=PRIVATE)
    assert "promise" in _codes(refund, lang, promises=Promises(refunds=False))
    assert "promise" not in _codes(refund, lang, promises=Promises(refunds=True))
    assert "promise" in _codes(compensation, lang)
    assert "promise" not in _codes(compensation, lang, promises=Promises(compensation=True))
    assert _codes(good, lang, kind="complaint", rules=X) == set()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_complaint_reply_without_a_time_frame_is_hinted(lang):
    _, _, _, _, _, good = CASES[lang]
    without = good.rsplit(".", 2)[0] + "."
    assert "no_time_frame" in _codes(without, lang, kind="complaint")
    assert "no_time_frame" not in _codes(without, lang, kind="praise")


def test_missing_name_placeholder_and_length():
    findings = check_draft(
        "Hello {name}, we are on it [AGENT]." + " more" * 60,
        language="en",
        kind="question",
        rules=X,
        name="Anna",
    )
    codes = [f.code for f in findings]
    assert codes[:2] == ["too_long", "placeholder"]
    assert "no_name" in codes
    assert {f.code for f in errors(findings)} == {"too_long", "placeholder"}
    assert "{name}" in summary(findings) and "[AGENT]" in summary(findings)


def test_bluesky_counts_graphemes():
    rules = ReplyRules(max_length=300, unit=LengthUnit.GRAPHEMES)
    family = "👨‍👩‍👧"  # one grapheme, five code points
    assert not errors(check_draft("Hi Anna " + family * 290, language="en", kind="x", rules=rules))
    assert errors(check_draft("Hi Anna " + family * 295, language="en", kind="x", rules=rules))


def test_a_link_where_the_platform_shows_none_is_hinted():
    play = ReplyRules(max_length=350, links=False)
    text = "Hi Anna, see https://status.kestrel.example for updates."
    assert "link" in _codes(text, "en", rules=play)
    assert "link" not in _codes(text, "en", rules=X)


def test_we_never_ask_for_a_password_is_not_asking():
    text = "Hi Anna, secure your account at the link. We never ask for your password or PIN."
    assert "personal_data" not in _codes(text, "en", rules=X)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(
    ("kind", "intents"),
    [
        ("complaint", ("billing",)),
        ("complaint", ("delivery",)),
        ("complaint", ("outage",)),
        ("complaint", ("login",)),
        ("complaint", ("security",)),
        ("complaint", ("defect",)),
        ("complaint", ("safety",)),
        ("complaint", ("legal", "billing")),
        ("question", ("press",)),
        ("complaint", ()),
        ("question", ()),
        ("praise", ()),
    ],
)
@pytest.mark.parametrize("rules", [X, ReplyRules(max_length=350, links=False)], ids=["x", "play"])
def test_every_shipped_draft_passes_the_checker(lang, kind, intents, rules):
    draft = render_draft(
        DraftRequest(
            kind=kind,
            language=lang,
            intents=intents,
            author_name="Anna Smith",
            author_handle="@anna",
            sla_seconds=7200,
            brand="Kestrel",
            help_url="https://help.kestrel.example",
            status_url="https://status.kestrel.example",
            links=rules.links,
        )
    )
    findings = check_draft(draft.text, language=lang, kind=kind, rules=rules, name="Anna")
    if draft.generator.startswith("template:answer:"):
        # The answer scaffold waits for the agent: its placeholder is the only finding.
        assert [f.code for f in findings] == ["placeholder"], summary(findings)
    else:
        assert findings == [], summary(findings)


# Every intent and modifier of the taxonomy as a complaint, with a person at risk who wrote
# before on top, and the other kinds.
CATEGORIES = (
    [("complaint", (intent,)) for intent in LABELS]
    + [("complaint", ("outage", "vulnerable", "repeat_contact")), ("complaint", ())]
    + [("question", ()), ("question", ("login",)), ("praise", ()), ("feedback", ())]
)


def _platform_rules() -> dict[str, ReplyRules]:
    from connectors.registry import connector_types

    return {
        name: cls.reply_rules
        for name, cls in sorted(connector_types().items())
        if cls.reply_rules is not None
    }


PLAYBOOKS = sorted((Path(__file__).parent.parent / "examples" / "playbooks").glob("*.toml"))


@pytest.mark.parametrize("playbook_file", [None, *PLAYBOOKS], ids=lambda p: p.stem if p else "none")
@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_draft_fits_every_platform_that_takes_replies(lang, playbook_file, tmp_path):
    playbook = None
    if playbook_file is not None:
        config = tmp_path / "config.toml"
        config.write_text(f'[brand]\nplaybook = "{playbook_file}"\n', encoding="utf-8")
        playbook = load_settings(config).playbook
    platforms = _platform_rules()
    assert {"x", "bluesky", "mastodon", "googleplay", "appstore", "reddit"} <= set(platforms)
    for platform, rules in platforms.items():
        for kind, intents in CATEGORIES:
            for register in (None, "formal", "informal"):
                draft = render_draft(
                    DraftRequest(
                        kind=kind,
                        language=lang,
                        intents=intents,
                        author_name="Maximiliana Smith",
                        author_handle="@maximiliana_smith",
                        sla_seconds=2 * 86400,
                        brand="Kestrel",
                        help_url="https://help.kestrel.example",
                        status_url="https://status.kestrel.example",
                        links=rules.links,
                        register=register,
                        rules=rules,
                        contact="customer-care@kestrel.example",
                        playbook=playbook,
                    )
                )
                findings = check_draft(
                    draft.text, language=lang, kind=kind, rules=rules, name="Maximiliana"
                )
                # A plain question's scaffold waits for the agent's answer, and nothing else.
                waiting = ["placeholder"] if draft.generator.startswith("template:answer:") else []
                assert [f.code for f in findings] == waiting, (
                    f"{platform} {kind} {intents}: {summary(findings)}"
                )
