from __future__ import annotations

import pytest

from connectors.reply import ReplyRules
from triage.config import Playbook
from triage.drafts import DraftRequest, render_draft
from triage.drafts.names import address, mirrored_register
from triage.drafts.render import load_templates, plural_category, time_frame, with_register

LANGUAGES = ["en", "pl", "lv", "pt", "es", "de", "fr"]


def _request(**overrides) -> DraftRequest:
    values = {
        "kind": "complaint",
        "language": "en",
        "intents": ("billing",),
        "author_name": "Anna Smith",
        "author_handle": "@anna",
        "sla_seconds": 7200,
        "brand": "Kestrel",
        "help_url": "https://help.kestrel.example",
        "status_url": "https://status.kestrel.example",
    }
    return DraftRequest(**{**values, **overrides})


@pytest.mark.parametrize(
    ("language", "n", "category"),
    [
        ("en", 1, "one"), ("en", 2, "other"), ("pl", 1, "one"), ("pl", 3, "few"),
        ("pl", 5, "many"), ("pl", 12, "many"), ("pl", 22, "few"), ("lv", 1, "one"),
        ("lv", 21, "one"), ("lv", 11, "zero"), ("lv", 10, "zero"), ("lv", 2, "other"),
        ("fr", 0, "one"), ("fr", 2, "other"),
    ],
)  # fmt: skip
def test_plural_categories(language, n, category):
    assert plural_category(language, n) == category


@pytest.mark.parametrize(
    ("language", "seconds", "phrase"),
    [
        ("en", 1800, "30 minutes"),
        ("en", 7200, "2 hours"),
        ("en", 3600, "1 hour"),
        ("pl", 7200, "w ciągu 2 godzin"),
        ("en", 2 * 86400, "2 days"),
        ("en", 86400, "24 hours"),
        ("de", 86400, "24 Stunden"),
    ],
)
def test_time_frames_read_naturally(language, seconds, phrase):
    assert phrase in time_frame(load_templates(language), language, seconds)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", ["complaint", "question", "praise"])
def test_every_language_and_kind_renders_personally(language, kind):
    draft = render_draft(_request(language=language, kind=kind))
    assert draft.language == language and draft.note is None
    assert "Ann" in draft.text
    assert "{" not in draft.text and "}" not in draft.text
    assert len(draft.text) <= 280


def test_complaints_promise_the_sla_and_a_next_step():
    draft = render_draft(_request(intents=("outage",), sla_seconds=1800))
    assert "30 minutes" in draft.text
    assert "https://status.kestrel.example" in draft.text
    assert draft.generator == "template:complaint:en:outage"


def test_other_languages_get_english_with_a_note():
    draft = render_draft(_request(language="it"))
    assert draft.language == "en"
    assert "'it'" in draft.note


def test_handle_when_no_name():
    assert "@anna" in render_draft(_request(author_name=None)).text


def test_info_gets_no_draft():
    with pytest.raises(ValueError, match="no draft for kind 'info'"):
        render_draft(_request(kind="info"))


def test_a_risk_decides_the_next_step_else_what_the_mention_is_most_about():
    draft = render_draft(_request(intents=("billing", "security")))
    assert draft.generator == "template:complaint:en:security"
    assert render_draft(_request(intents=("delivery", "safety"))).generator.endswith(":safety")
    # A late delivery with a stray billing word is answered about the delivery.
    late = render_draft(_request(intents=("delivery", "billing")))
    assert late.generator == "template:complaint:en:delivery"
    assert "bill" not in late.text
    charged = render_draft(_request(intents=("billing", "delivery")))
    assert charged.generator == "template:complaint:en:billing"


def test_takeover_phishing_and_fraud_each_get_their_own_step():
    takeover = render_draft(_request(intents=("login", "account_takeover", "vulnerable")))
    assert takeover.generator == "template:complaint:en:account_takeover"
    assert "got into your account" in takeover.text and "bank" in takeover.text
    # Someone asking whether a mail is really the brand has lost nothing yet: no "sorry",
    # no password change unless they clicked, and the reassurance that we never ask.
    phishing = render_draft(_request(intents=("question", "phishing")))
    assert phishing.generator == "template:complaint:en:phishing"
    assert "never ask for your password" in phishing.text and "sorry" not in phishing.text
    fraud = render_draft(_request(intents=("billing", "fraud")))
    assert fraud.generator == "template:complaint:en:fraud"
    assert "didn't make" in fraud.text and "never your card details" in fraud.text
    # A risk to money or the account comes before the likelier intent, as safety does.
    assert render_draft(_request(intents=("delivery", "fraud"))).generator.endswith(":fraud")
    # Among those risks the likelier decides ("charges on a card I never used" is no break-in),
    # and a safety risk still comes first.
    card = render_draft(_request(intents=("fraud", "account_takeover", "repeat_contact")))
    assert card.generator.endswith(":fraud") and "got into your account" not in card.text
    assert render_draft(_request(intents=("account_takeover", "fraud"))).generator.endswith(
        ":account_takeover"
    )
    assert render_draft(_request(intents=("fraud", "safety"))).generator.endswith(":safety")


def test_a_customer_leaving_hears_that_first_and_the_cause_is_still_dealt_with():
    leaving = render_draft(_request(intents=("churn", "billing", "refund")))
    assert "put this right before you go" in leaving.text
    assert "trouble with your bill" not in leaving.text
    assert leaving.generator.endswith(":billing")  # the invoice is still what we look at
    # A bill that is wrong above all, with a threat to leave beside it: the bill comes first.
    billed = render_draft(_request(intents=("billing", "churn")))
    assert "trouble with your bill" in billed.text


@pytest.mark.parametrize(
    ("intents", "words"),
    [
        (("privacy",), "data protection team"),
        (("accessibility",), "accessibility team"),
        (("service",), "how you were treated"),
        # Churn has no step of its own: the general one, after its own first sentence.
        (("churn",), "put this right before you go"),
        (("churn", "delivery"), "courier"),
    ],
)
def test_data_requests_access_barriers_treatment_and_churn_are_answered_as_such(intents, words):
    draft = render_draft(_request(intents=intents))
    assert words in draft.text, draft.text
    assert "sorry about the trouble with your bill" not in draft.text


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(
    "intent", ["account_takeover", "phishing", "fraud", "privacy", "accessibility", "service"]
)
def test_each_language_has_its_own_words_for_the_new_categories(lang, intent):
    draft = render_draft(_request(language=lang, intents=(intent,), contact="help@kestrel.example"))
    assert draft.generator == f"template:complaint:{lang}:{intent}"
    templates = load_templates(lang)
    assert templates["apology"][intent].split()[-1].rstrip(".!") in draft.text
    assert draft.text != render_draft(_request(language=lang, intents=("login",))).text


@pytest.mark.parametrize(
    "text",
    [
        "App keeps crashing. I've already reinstalled it twice and restarted my phone.",
        "tried everything, still no heating",
        "Turned it off and on again, nothing",
    ],
)
def test_what_the_customer_already_tried_is_acknowledged_when_it_fits(text):
    draft = render_draft(_request(intents=("defect",), mention_text=text))
    assert "won't ask you to repeat them" in draft.text
    plain = render_draft(_request(intents=("defect",), mention_text="App keeps crashing."))
    assert "repeat them" not in plain.text
    # Last in line: on a platform without room it goes first, the apology and step stay.
    tight = ReplyRules(max_length=220, private_messages=False)
    short = render_draft(_request(intents=("defect",), mention_text=text, rules=tight))
    assert "repeat them" not in short.text and "sorry" in short.text


@pytest.mark.parametrize(
    ("lang", "tried", "not_tried"),
    [
        ("pl", "Zrestartowałam router trzy razy i dalej nic.", "Router sam się zrestartował."),
        ("lv", "Rūteri jau restartēju trīs reizes!", "Telefons pats restartējas."),
        ("pt", "Já reinstalei duas vezes e nada!", "Como faço para reiniciar o router?"),
        ("es", "Ya reinicié el router tres veces.", "El router se reinicia solo."),
        ("de", "Ich hab echt alles probiert.", "Router hat sich neu gestartet."),
        ("fr", "J'ai déjà redémarré trois fois !!", "La box a redémarré toute seule."),
    ],
)
def test_each_language_acknowledges_what_was_already_tried(lang, tried, not_tried):
    roomy = ReplyRules(max_length=500)
    said = load_templates(lang)["apology"]["tried"]
    draft = render_draft(
        _request(language=lang, intents=("defect",), mention_text=tried, rules=roomy)
    )
    assert said in draft.text
    other = render_draft(
        _request(language=lang, intents=("defect",), mention_text=not_tried, rules=roomy)
    )
    assert said not in other.text


def test_a_brand_security_step_answers_takeover_and_fraud_but_not_phishing():
    own = "We have locked the account; call your bank to block the card."
    playbook = Playbook(next_steps={"security": {"en": own}})
    for intent in ("account_takeover", "fraud"):
        assert own in render_draft(_request(intents=(intent,), playbook=playbook)).text
    phishing = render_draft(_request(intents=("phishing",), playbook=playbook))
    assert own not in phishing.text and "never ask" in phishing.text


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(
    ("intent", "named"), [("legal", "legal threat"), ("press", "press inquiry")]
)
def test_legal_threats_and_the_press_get_a_holding_reply_for_a_lead(lang, intent, named):
    draft = render_draft(_request(language=lang, intents=("billing", intent), sla_seconds=1800))
    assert draft.generator == f"template:holding:{lang}:{intent}"
    assert draft.note == f"Holding reply for a {named}: a lead should approve it."
    assert "Ann" in draft.text and "30" in draft.text
    # It moves the conversation to private and promises nothing about the matter itself.
    generic = render_draft(_request(language=lang, intents=("billing",), sla_seconds=1800))
    assert draft.text != generic.text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_store_reviews_get_host_names_not_links_and_emoji_can_be_turned_off(lang):
    outage = render_draft(_request(language=lang, intents=("outage",), links=False))
    assert "https://" not in outage.text and "status.kestrel.example" in outage.text
    praise = render_draft(_request(language=lang, kind="praise", emoji=False))
    assert "💙" not in praise.text and "  " not in praise.text
    assert "💙" in render_draft(_request(language=lang, kind="praise")).text


def test_a_category_help_page_replaces_the_general_one():
    pages = (("login", "https://help.kestrel.example/sign-in"),)
    login = render_draft(_request(intents=("login",), help_urls=pages))
    assert "https://help.kestrel.example/sign-in" in login.text
    security = render_draft(_request(intents=("security",), help_urls=pages))
    assert "/sign-in" not in security.text and "https://help.kestrel.example" in security.text


VARIANTS = {"de": "informal", "fr": "informal", "es": "formal", "pt": "informal",
            "pl": "formal", "lv": "informal"}  # fmt: skip
# A word of the other form of address that must appear once the brand asks for it.
ADDRESS = {"de": "dein", "fr": "ton", "es": "su", "pt": "tua", "pl": "Prosimy", "lv": "tev"}


@pytest.mark.parametrize("lang", sorted(VARIANTS))
def test_the_brand_chooses_the_form_of_address(lang):
    register = VARIANTS[lang]
    default = render_draft(_request(language=lang, intents=("delivery",)))
    switched = render_draft(_request(language=lang, intents=("delivery",), register=register))
    assert switched.text != default.text
    assert ADDRESS[lang] in switched.text.split() or ADDRESS[lang] in switched.text
    same = render_draft(_request(language=lang, intents=("delivery",), register="no-such"))
    assert same.text == default.text


@pytest.mark.parametrize("lang", sorted(VARIANTS))
@pytest.mark.parametrize(
    "intents",
    [(), ("billing",), ("refund",), ("delivery",), ("outage",), ("login",), ("security",),
     ("defect",), ("safety",), ("legal",), ("press",)],
)  # fmt: skip
@pytest.mark.parametrize("kind", ["complaint", "question", "praise"])
def test_every_variant_renders_passes_the_checker_and_fits_x(lang, intents, kind):
    from connectors.reply import ReplyRules
    from triage.drafts.check import check_draft, summary

    draft = render_draft(
        _request(
            language=lang,
            kind=kind,
            intents=intents,
            author_name="Maximiliana Smith",
            register=VARIANTS[lang],
            sla_seconds=86400 * 2,
        )
    )
    assert "{" not in draft.text
    findings = check_draft(
        draft.text, language=lang, kind=kind, rules=ReplyRules(max_length=280), name="Maximiliana"
    )
    expected = ["placeholder"] if draft.generator.startswith("template:answer:") else []
    assert [f.code for f in findings] == expected, summary(findings)


def test_sign_off_with_the_agents_initials_or_name_added_once():
    from triage.drafts.render import sign

    assert sign("Hi Ana.", "^{initials}", "Ana Maria Lima", "Kestrel") == "Hi Ana. ^AM"
    assert sign("Hi Ana. ^AM", "^{initials}", "Ana Maria Lima", "Kestrel") == "Hi Ana. ^AM"
    assert (
        sign("Hi.", "– {first_name}, {brand}", "Jānis Bērziņš", "Kestrel") == "Hi. – Jānis, Kestrel"
    )
    assert sign("Hi.", "^{initials}", None, "Kestrel") == "Hi."  # no name: no bare "^"
    assert sign("Hi.", "– the {brand} team", None, "Kestrel") == "Hi. – the Kestrel team"
    assert sign("Hi.", "", "Ana", "Kestrel") == "Hi."


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_plain_question_gets_an_answer_scaffold_with_the_help_link(lang):
    from triage.drafts.check import check_draft, errors

    draft = render_draft(_request(language=lang, kind="question", intents=()))
    assert draft.generator == f"template:answer:{lang}"
    assert "https://help.kestrel.example" in draft.text and "Ann" in draft.text
    assert "Write the answer" in draft.note
    blocked = errors(check_draft(draft.text, language=lang, kind="question"))
    assert [f.code for f in blocked] == ["placeholder"]
    # A question about a login problem still gets the concrete next step, not a scaffold.
    login = render_draft(_request(language=lang, kind="question", intents=("login",)))
    assert login.generator.startswith("template:question:")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_apology_names_what_went_wrong(lang):
    apologies = load_templates(lang)["apology"]
    intents = ("billing", "delivery", "outage", "login", "defect")
    assert len({apologies[i] for i in intents}) == len(intents)
    for intent in intents:
        text = render_draft(_request(language=lang, intents=(intent,))).text
        assert apologies[intent] in text


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("register", [None, "formal", "informal"])
@pytest.mark.parametrize("intent", ["billing", "refund", "delivery", "defect", "other"])
def test_a_given_order_number_is_said_back_and_not_asked_for_again(lang, register, intent):
    from connectors.reply import ReplyRules
    from triage.drafts.check import check_draft, summary

    text = "Zamówienie nr 4711-0815 / order 4711-0815 still missing"
    draft = render_draft(
        _request(language=lang, intents=(intent,), register=register, mention_text=text)
    )
    assert "4711-0815" in draft.text
    plain = render_draft(_request(language=lang, intents=(intent,), register=register))
    asked = load_templates(lang)["next_steps"].get(intent, "")
    assert asked.split(",")[0] not in draft.text or not asked
    assert draft.text != plain.text
    findings = check_draft(
        draft.text, language=lang, kind="complaint", rules=ReplyRules(max_length=280), name="Anna"
    )
    assert findings == [], summary(findings)


def test_order_numbers_are_found_in_every_language_and_prices_are_not():
    from triage.drafts.render import order_number

    assert order_number("my order 123456 never came") == "123456"
    assert order_number("zamówienie nr 987654 nie dotarło") == "987654"
    assert order_number("pasūtījums 44556677 nav atnācis") == "44556677"
    assert order_number("o pedido 55443322 não chegou") == "55443322"
    assert order_number("Bestellung #A-12345 fehlt") == "A-12345"
    assert order_number("commande n° 778899 jamais reçue") == "778899"
    assert order_number("I paid 49.99 and it cost 120000 points") is None
    assert order_number("pedido 12") is None


def test_dm_instructions_are_added_only_while_the_reply_fits():
    from connectors.reply import ReplyRules

    hours = "Our DMs are open 8am-8pm, every day."
    roomy = render_draft(_request(dm_instructions=hours, rules=ReplyRules(max_length=500)))
    assert roomy.text.endswith(hours)
    plain = render_draft(_request()).text
    limit = len(plain) + len(hours)  # one character short of room for " " + hours
    tight = render_draft(_request(dm_instructions=hours, rules=ReplyRules(max_length=limit)))
    assert tight.text == plain
    praise = render_draft(_request(kind="praise", dm_instructions=hours))
    assert hours not in praise.text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_safety_drafts_are_flagged_for_a_lead(lang):
    draft = render_draft(_request(language=lang, intents=("safety",)))
    assert "a lead should approve" in draft.note


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("register", [None, "formal", "informal"])
def test_praise_gets_a_thank_you_for_what_was_praised(lang, register):
    from connectors.reply import ReplyRules
    from triage.drafts.check import check_draft, summary
    from triage.drafts.render import with_register

    templates = with_register(load_templates(lang), register)
    generic = render_draft(_request(language=lang, kind="praise", register=register)).text
    greeting = address("Anna", lang, templates.get("register"))
    seen = set()
    for topic, cues in templates["praise_cues"].items():
        mention = f"{cues[0].rstrip('*')} !"
        # A cue word may show the customer's own form of address ("celular": Brazil).
        shown = mirrored_register(mention, lang)
        if shown and shown != templates.get("register"):
            topic_templates = with_register(load_templates(lang), shown)
            assert templates["praise_topics"][topic] != topic_templates["praise_topics"][topic]
            continue
        draft = render_draft(
            _request(language=lang, kind="praise", register=register, mention_text=mention)
        )
        assert draft.text == " ".join(
            templates["praise_topics"][topic].format(name=greeting, brand="Kestrel").split()
        ), topic
        assert draft.text != generic
        seen.add(draft.text)
        findings = check_draft(
            draft.text, language=lang, kind="praise", rules=ReplyRules(max_length=280), name="Anna"
        )
        assert findings == [], summary(findings)
    assert len(seen) >= 3


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("register", [None, "formal", "informal"])
def test_feedback_gets_a_thank_you_that_promises_nothing(lang, register):
    from connectors.reply import ReplyRules
    from triage.drafts.check import Promises, check_draft, summary

    draft = render_draft(_request(language=lang, kind="feedback", register=register))
    assert draft.generator.startswith(f"template:feedback:{lang}")
    assert "Ann" in draft.text and "💡" in draft.text
    findings = check_draft(
        draft.text,
        language=lang,
        kind="feedback",
        rules=ReplyRules(max_length=280),
        name="Anna",
        promises=Promises(refunds=False, compensation=False),
    )
    assert findings == [], summary(findings)


# Words only a telecom (the sample brand) would use: no draft may carry them into another sector.
SECTOR_WORDS = {
    "en": r"phone|sim|signal|network|router|your number",
    "pl": r"telefon\w*|sim|zasięg\w*|sieci?|router\w*|twój numer(?! zam)",
    "lv": r"tālru\w*|telefon\w*|sim|tīkl\w*|rūter\w*|jūsu numur\w*|tavu numuru",
    "pt": r"telefone|celular|aparelho|chip|sinal|rede|roteador|(?:seu|teu) número(?! d)",
    "es": r"teléfono|móvil|dispositivo|sim|señal|red|router|(?:tu|su) número(?! de)",
    "de": r"handy|telefon\w*|sim|netz\w*|router|ihre nummer|deine nummer",
    "fr": r"téléphone|portable|sim|réseau|box|(?:votre|ton) numéro(?! de)",
}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("register", [None, "formal", "informal"])
def test_no_draft_speaks_of_one_sectors_products(lang, register):
    import re

    words = re.compile(rf"\b(?:{SECTOR_WORDS[lang]})\b", re.IGNORECASE)
    for kind, intent, text in _every_next_step(lang, register, ("complaint", "question")):
        assert not words.search(text), (kind, intent, text)


def _every_next_step(lang: str, register: str | None, kinds=("complaint",)):
    """(kind, intent, draft text) for every next step, with and without an order number."""
    for kind in kinds:
        for intent in load_templates(lang)["next_steps"]:
            for mention in ("", "order 4411872"):
                draft = render_draft(
                    _request(
                        language=lang,
                        kind=kind,
                        intents=(intent,),
                        register=register,
                        mention_text=mention,
                    )
                )
                yield kind, intent, draft.text


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("register", [None, "formal", "informal"])
def test_without_a_name_the_greeting_stands_alone(lang, register):
    import re

    for kind, intents in [
        ("complaint", ("delivery",)),
        ("complaint", ("legal",)),
        ("question", ()),
        ("praise", ()),
        ("feedback", ()),
    ]:
        text = render_draft(
            _request(
                language=lang,
                kind=kind,
                intents=intents,
                register=register,
                author_name=None,
                author_handle=None,
            )
        ).text
        # No "Hi , we're", "Thank you, !" or a reply opening on punctuation.
        assert not re.search(r"\s,|,\s*[,!.?]|^[\s,.!?]", text), (kind, text)
        named = render_draft(
            _request(language=lang, kind=kind, intents=intents, register=register)
        ).text
        assert "Ann" in named and len(text) < len(named)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("register", [None, "formal", "informal"])
def test_a_customer_who_wrote_before_hears_sorry_for_that_too_where_it_fits(lang, register):
    from connectors.reply import ReplyRules

    templates = load_templates(lang)
    variant = templates.get("variants", {}).get(register or "", {})
    again = (
        variant.get("apology", {}).get("repeat_contact") or templates["apology"]["repeat_contact"]
    )
    first = render_draft(_request(language=lang, intents=("delivery",), register=register))
    repeat = render_draft(
        _request(language=lang, intents=("delivery", "repeat_contact"), register=register)
    )
    assert again not in first.text and again in repeat.text
    assert repeat.text.replace(f" {again}", "") == first.text
    # Where the platform has no room for it, the rest of the reply stays as it was.
    tight = ReplyRules(max_length=len(first.text) + 5)
    squeezed = render_draft(
        _request(
            language=lang, intents=("delivery", "repeat_contact"), register=register, rules=tight
        )
    )
    assert squeezed.text == first.text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_dm_where_the_platform_has_no_private_messages(lang):
    from connectors.googleplay import GooglePlayConnector
    from connectors.x import XConnector

    templates = load_templates(lang)
    play, x = GooglePlayConnector.reply_rules, XConnector.reply_rules
    assert play is not None and not play.private_messages and x.private_messages
    for intent in ("delivery", "security", "legal", "press"):
        on_x = render_draft(_request(language=lang, intents=(intent,), rules=x)).text
        assert templates["private"]["dm"] in on_x
        review = render_draft(
            _request(
                language=lang,
                intents=(intent,),
                rules=play,
                links=False,
                contact="care@kestrel.example",
                dm_instructions="Our DMs are open 8am-8pm.",
            )
        ).text
        assert "care@kestrel.example" in review, review
        assert templates["private"]["dm"] not in review and "DMs" not in review
        # With no contact set, the help site (named, since reviews show no links) stands in.
        bare = render_draft(_request(language=lang, intents=(intent,), rules=play, links=False))
        assert "help.kestrel.example" in bare.text and "https://" not in bare.text


# "We'll check right away" beside "we'll get back to you within 8 hours" contradicts itself.
RIGHT_AWAY = {
    "en": r"right away|immediately|straight away",
    "pl": r"od razu|natychmiast",
    "lv": r"uzreiz|nekavējoties",
    "pt": r"agora mesmo|na hora|imediatamente|vamos já",
    "es": r"ahora mismo|enseguida|de inmediato",
    "de": r"sofort|\bgleich\b|umgehend",
    "fr": r"tout de suite|immédiatement",
}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("register", [None, "formal", "informal"])
def test_no_draft_promises_to_act_at_once_beside_its_time_frame(lang, register):
    import re

    hurry = re.compile(RIGHT_AWAY[lang], re.IGNORECASE)
    for _kind, intent, text in _every_next_step(lang, register):
        # "Change your password now" asks the customer to hurry; it promises nothing.
        assert intent == "security" or not hurry.search(text), text


def test_the_draft_mirrors_the_customers_form_of_address_and_title():
    formal = "Können Sie mir sagen, wo meine Bestellung bleibt? Mein Anwalt ist informiert."
    draft = render_draft(
        _request(
            language="de",
            intents=("delivery",),
            register="informal",  # the brand's default
            mention_text=formal,
            author_name="Dr. Stefan Krüger",
        )
    )
    assert draft.text.startswith("Hallo Dr. Krüger,") and "Sie" in draft.text
    assert " du " not in draft.text and "dein" not in draft.text
    casual = render_draft(
        _request(
            language="de",
            intents=("delivery",),
            mention_text="Wo bleibt mein Paket, habt ihr es verloren? Sag du mal",
        )
    )
    assert "deine" in casual.text or "dein" in casual.text
    # "Tu" in a French mention gets "tu" back, whatever the brand's default.
    tu = render_draft(
        _request(language="fr", intents=("delivery",), mention_text="t'as perdu mon colis ?")
    )
    assert "ton " in tu.text or "ta " in tu.text


def test_the_brands_playbook_gives_the_next_step_and_answers_saved_questions():
    from triage.config import Playbook, SavedReply

    playbook = Playbook(
        next_steps={
            "safety": {
                "en": "Please unplug the kettle and send us your order number {privately}: "
                "we'll send a courier for it and a replacement the same day.",
                "de": "Bitte ziehen Sie den Stecker und schicken Sie uns {privately} die "
                "Bestellnummer: Wir holen den Kocher ab und schicken sofort Ersatz.",
                "de.informal": "Bitte zieh den Stecker und schick uns {privately} die "
                "Bestellnummer: Wir holen den Kocher ab und schicken Ersatz.",
            }
        },
        known_order={"safety": {"en": "We're sending a courier for order {order} today."}},
        saved_replies=[
            SavedReply(
                language="en",
                cues=["opening hours", "open on sunday*"],
                answer="We're open 8am-8pm every day, Sundays too.",
            )
        ],
    )
    sparks = render_draft(_request(intents=("safety",), playbook=playbook))
    assert "unplug the kettle" in sparks.text and "by DM" in sparks.text
    told = render_draft(
        _request(intents=("safety",), playbook=playbook, mention_text="order 4411872 sparks")
    )
    assert "courier for order 4411872 today" in told.text
    # The register's own text where the playbook has one, else the language's.
    du = render_draft(
        _request(language="de", intents=("safety",), playbook=playbook, register="informal")
    )
    assert "zieh den Stecker" in du.text
    sie = render_draft(_request(language="de", intents=("safety",), playbook=playbook))
    assert "ziehen Sie den Stecker" in sie.text
    # A customer who writes "du" to a brand whose playbook speaks "Sie" only gets the template's
    # "du" text rather than a reply that switches register mid-way.
    formal_only = Playbook(next_steps={"safety": {"de": playbook.next_steps["safety"]["de"]}})
    sparks = "Dein Wasserkocher sprüht Funken, was soll ich tun?"
    casual = render_draft(
        _request(language="de", intents=("safety",), playbook=formal_only, mention_text=sparks)
    )
    assert (
        casual.text
        == render_draft(_request(language="de", intents=("safety",), mention_text=sparks)).text
    )
    assert "Sie " not in casual.text and "Schreib uns" in casual.text
    # Categories the playbook leaves out keep the sector-neutral template.
    late = render_draft(_request(intents=("delivery",), playbook=playbook))
    assert late.text == render_draft(_request(intents=("delivery",))).text
    # A question its saved replies answer is sendable as drafted; others get the scaffold.
    hours = render_draft(
        _request(kind="question", intents=(), playbook=playbook, mention_text="Open on Sundays?")
    )
    assert "Sundays too" in hours.text and hours.note is None
    assert hours.generator == "template:saved:en"
    other = render_draft(
        _request(
            kind="question", intents=(), playbook=playbook, mention_text="Do you ship to Riga?"
        )
    )
    assert "[ANSWER]" in other.text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_person_at_risk_is_said_first_then_the_earlier_messages(lang):
    from connectors.reply import ReplyRules

    apologies = load_templates(lang)["apology"]
    at_risk, again = apologies["vulnerable"], apologies["repeat_contact"]
    intents = ("outage", "vulnerable", "repeat_contact")
    roomy = render_draft(_request(language=lang, intents=intents, rules=ReplyRules(1000))).text
    assert at_risk in roomy and again in roomy and roomy.index(at_risk) < roomy.index(again)
    plain = render_draft(_request(language=lang, intents=("outage",))).text
    # Room for one of the two: the person at risk is the one said.
    tight = ReplyRules(max_length=len(plain) + len(at_risk) + 2)
    one = render_draft(_request(language=lang, intents=intents, rules=tight)).text
    assert at_risk in one and again not in one


JOURNALISTS = {
    "en": "Writing for the Courier about the outage, deadline 5pm today: can you comment?",
    "pl": "Piszę dla Gazety o awarii, potrzebuję komentarza do jutra do 12.",
    "lv": "Rakstu Dienai par traucējumiem, komentārs vajadzīgs līdz rītdienai 12:00.",
    "pt": "Escrevo para a Folha sobre a falha, preciso de um comentário até amanhã às 12h.",
    "es": "Escribo para El Diario sobre la caída, necesito declaración antes de mañana a las 12.",
    "de": "Ich schreibe für die Zeitung über die Störung, brauche ein Statement bis morgen 12 Uhr.",
    "fr": "J'écris pour Le Journal sur la panne, il me faut une réaction avant demain midi.",
}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("register", [None, "formal", "informal"])
def test_a_journalist_who_gave_a_deadline_is_not_asked_for_it_again(lang, register):
    asked = render_draft(
        _request(language=lang, intents=("press",), register=register, mention_text="?")
    )
    told = render_draft(
        _request(
            language=lang, intents=("press",), register=register, mention_text=JOURNALISTS[lang]
        )
    )
    templates = load_templates(lang)
    assert told.text != asked.text and told.generator == asked.generator
    assert templates["private"]["dm"] in asked.text and templates["private"]["dm"] not in told.text


@pytest.mark.parametrize(
    ("lang", "text", "colleague"),
    [
        ("en", "Thank you so much to Ana from support, sorted in minutes!", "Ana"),
        ("pl", "Dzięki Pani Kasi z infolinii wszystko załatwione!", "Pani Kasi"),
        ("lv", "Paldies operatorei Annai, viss atrisināts!", "Annai"),
        ("pt", "Obrigada à Carla pelo atendimento!", "Carla"),
        ("es", "Gracias a Lucía por la ayuda!", "Lucía"),
        ("de", "Vielen Dank an Frau Müller vom Kundenservice!", "Frau Müller"),
        ("fr", "Merci à Mme Lefèvre, d'une humanité rare", "Mme Lefèvre"),
    ],
)
def test_praise_of_a_named_colleague_thanks_and_names_them(lang, text, colleague):
    from connectors.reply import ReplyRules
    from triage.drafts.check import check_draft, summary

    for register in (None, "formal", "informal"):
        draft = render_draft(
            _request(language=lang, kind="praise", mention_text=text, register=register)
        )
        assert colleague in draft.text, draft.text
        findings = check_draft(
            draft.text, language=lang, kind="praise", rules=ReplyRules(280), name="Anna"
        )
        assert findings == [], summary(findings)


def test_the_promised_time_counts_only_the_teams_opening_hours():
    from datetime import UTC, datetime

    from triage.config import OpeningHours
    from triage.drafts.render import promised_seconds

    riga = OpeningHours(opens="08:00", closes="20:00", timezone="Europe/Riga")  # UTC+2 in winter
    at = lambda hh, mm=0: datetime(2026, 12, 2, hh, mm, tzinfo=UTC)  # noqa: E731
    assert promised_seconds(at(10), 7200, None) == 7200
    assert promised_seconds(at(10), 7200, riga) == 7200  # 12:00 in Riga: open
    # 23:00 in Riga: the team opens at 08:00, nine hours later, then two hours.
    assert promised_seconds(at(21), 7200, riga) == 11 * 3600
    # 19:30 in Riga: half an hour today, an hour and a half from 08:00 tomorrow.
    assert promised_seconds(at(17, 30), 7200, riga) == (0.5 + 12 + 1.5) * 3600
    # 06:00 in Riga: the clock starts at 08:00.
    assert promised_seconds(at(4), 1800, riga) == 2.5 * 3600
    templates = load_templates("en")
    assert time_frame(templates, "en", 10.5 * 3600) == "within 11 hours"
    assert time_frame(templates, "en", 1800) == "within 30 minutes"


FAULTY_KETTLE = {
    "en": ("The kettle switches itself off after ten seconds", "your kettle"),
    "de": ("Der Wasserkocher schaltet nach zehn Sekunden ab", "Ihr Wasserkocher"),
    "fr": ("La bouilloire s'éteint au bout de dix secondes", "votre bouilloire"),
    "es": ("El hervidor se apaga a los diez segundos", "tu hervidor"),
    "pt": ("A chaleira desliga sozinha depois de dez segundos", "sua chaleira"),
    "pl": ("Czajnik wyłącza się po dziesięciu sekundach", "czajnik"),
    "lv": ("Tējkanna izslēdzas pēc desmit sekundēm", "tējkanna"),
}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_fault_report_hears_its_product_named_in_the_brands_words(lang, tmp_path):
    from pathlib import Path

    from triage.config import load_settings

    book = Path(__file__).parent.parent / "examples" / "playbooks" / "smart-home.toml"
    (tmp_path / "config.toml").write_text(f'[brand]\nplaybook = "{book}"\n', encoding="utf-8")
    playbook = load_settings(tmp_path / "config.toml").playbook
    text, product = FAULTY_KETTLE[lang]
    draft = render_draft(
        _request(language=lang, intents=("defect",), mention_text=text, playbook=playbook)
    )
    assert product in draft.text, draft.text
    # Without a product the playbook knows, the apology stays general.
    other = render_draft(
        _request(language=lang, intents=("defect",), mention_text="broken", playbook=playbook)
    )
    assert product not in other.text


@pytest.mark.parametrize(
    ("lang", "text", "intents", "said"),
    [
        (
            "en",
            "250k followers on TikTok and my order vanished 40 days ago. Video goes up tomorrow",
            ("press", "delivery"),
            "courier",
        ),
        (
            "de",
            "Ich hab 140k Follower und zeige morgen, wie ihr mich seit Wochen hinhaltet",
            ("press", "churn", "service"),
            "behandelt",
        ),
        (
            "pl",
            "Mam 190 tys. obserwujących, a trener mnie wyśmiał. Jutro wrzucam filmik",
            ("press", "service"),
            "potraktowano",
        ),
    ],
)
def test_a_customer_with_followers_about_to_go_public_gets_their_problem_answered(
    lang, text, intents, said
):
    draft = render_draft(_request(language=lang, intents=intents, mention_text=text))
    assert "holding" not in draft.generator and said in draft.text, draft.text
    assert draft.note and "public audience" in draft.note


def test_a_blogger_asking_for_a_statement_still_gets_the_press_reply():
    text = "Travel blogger (85k followers) writing about the baggage chaos: want to comment?"
    draft = render_draft(_request(intents=("press",), mention_text=text))
    assert draft.generator == "template:holding:en:press"


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("register", ["formal", "informal"])
def test_a_safety_risk_gets_product_advice_only_when_a_product_is_faulty(lang, register):
    def step(intents: tuple[str, ...]) -> str:
        draft = render_draft(_request(language=lang, intents=intents, register=register))
        assert draft.generator.endswith(":safety") and draft.note and "Safety" in draft.note
        return draft.text

    templates = with_register(load_templates(lang), register)
    product = templates["product_steps"]["safety"].split("{privately}")[0].strip()
    neutral = templates["next_steps"]["safety"].split("{privately}")[0].strip()
    # A driver on the phone at 90 mph or a loose balcony rail: nothing to unplug or collect.
    assert neutral in step(("safety",)) and product not in step(("safety",))
    assert product in step(("defect", "safety"))


@pytest.mark.parametrize(
    ("lang", "asked", "not_asked"),
    [
        ("en", "K7 speaker crackles above 50%. Is this a known issue?", "K7 speaker crackles."),
        ("de", "Display flackert. Ist das Problem bekannt?", "Display flackert."),
        ("fr", "L'écran clignote, c'est un problème connu ?", "L'écran clignote."),
        ("es", "La app se cierra sola, ¿le pasa a alguien más?", "La app se cierra sola."),
        ("pt", "O app trava toda hora, é só comigo?", "O app trava toda hora."),
        ("pl", "Aplikacja się wiesza. Tylko u mnie tak?", "Aplikacja się wiesza."),
        ("lv", "Lietotne uzkaras. Vai tikai man tā?", "Lietotne uzkaras."),
    ],
)
def test_asked_whether_it_is_a_known_issue_the_draft_says_we_check(lang, asked, not_asked):
    roomy = ReplyRules(max_length=500)

    def draft(text: str, register: str, intents: tuple[str, ...] = ("defect",)) -> str:
        request = _request(
            language=lang, intents=intents, mention_text=text, rules=roomy, register=register
        )
        return render_draft(request).text

    for register in ("formal", "informal"):
        said = with_register(load_templates(lang), register)["apology"]["known_issue"]
        assert said in draft(asked, register)
        assert said not in draft(not_asked, register)
        # An outage's step already says we know and are on it.
        assert said not in draft(asked, register, ("outage",))


def test_a_person_at_risk_is_said_even_where_the_apology_must_give_way():
    request = _request(
        language="de",
        intents=("delivery", "vulnerable", "repeat_contact"),
        author_name="Hans-Joachim Weber",
        sla_seconds=1800,
        rules=ReplyRules(max_length=280),
    )
    draft = render_draft(request)
    vulnerable = load_templates("de")["apology"]["vulnerable"]
    assert vulnerable[:1].lower() + vulnerable[1:] in draft.text, draft.text
    assert len(draft.text) <= 280
    # What did not fit is named for the agent, and nothing else.
    assert draft.note is not None and "write more than once" in draft.note
    assert "can't wait" not in draft.note


def test_an_extra_sentence_that_fits_is_said_even_when_one_before_it_did_not():
    asked_and_tried = "Die App stürzt ab, ich habe alles probiert. Ist das Problem bekannt?"
    apology = load_templates("de")["apology"]
    plain = render_draft(_request(language="de", intents=("defect",), mention_text="Absturz"))
    # Room for the shorter "tried" sentence, not for the longer "known issue" one before it.
    assert len(apology["known_issue"]) > len(apology["tried"])
    room = ReplyRules(max_length=len(plain.text) + 1 + len(apology["tried"]))
    draft = render_draft(
        _request(language="de", intents=("defect",), mention_text=asked_and_tried, rules=room)
    )
    assert apology["tried"] in draft.text and apology["known_issue"] not in draft.text
    assert draft.note and "checking whether others are affected" in draft.note


@pytest.mark.parametrize(
    ("lang", "polite", "familiar"),
    [
        ("de", "Sie uns", "Schick uns"),
        ("es", "le responderá", "te responderá"),
        ("pl", "Dzień dobry", "Cześć"),
        ("fr", "vous répondra", "te répondra"),
        ("lv", "Jums atbildēs", "tev atbildēs"),
    ],
)
def test_a_legal_threat_is_answered_in_the_polite_form_even_by_a_familiar_brand(
    lang, polite, familiar
):
    for intent in ("legal", "press"):
        draft = render_draft(_request(language=lang, intents=(intent,), register="informal"))
        assert polite in draft.text and familiar not in draft.text, draft.text
    # A customer who writes in the familiar form themselves is answered in it.
    casual = {"de": "Du", "es": "tú", "pl": "", "fr": "tu", "lv": "tu"}[lang]
    if casual:
        mirrored = render_draft(
            _request(
                language=lang,
                intents=("legal",),
                register="informal",
                mention_text=f"{casual} ... avocat",
            )
        )
        assert polite not in mirrored.text, mirrored.text


def test_a_journalist_who_mentions_the_law_gets_the_press_reply():
    press = render_draft(_request(intents=("press", "legal")))
    assert press.generator == "template:holding:en:press"
    assert render_draft(_request(intents=("legal", "press"))).generator.endswith(":legal")
