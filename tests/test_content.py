"""The bundled content: sample mentions, per-language urgency cues and reply templates.

Fast checks with no model: every file parses, the sample covers every first-class language and the
cases the demo needs, the cue files agree with each other on intents, reasons and weights, and every
reply template renders under a tweet's 280 characters in the worst case.
"""

from __future__ import annotations

import json
import re
import string
import tomllib
import unicodedata
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from triage.drafts.render import with_register

ROOT = Path(__file__).resolve().parents[1]
MENTIONS = ROOT / "triage" / "sample_data" / "mentions.jsonl"
CUES = ROOT / "models" / "cues"
TEMPLATES = ROOT / "triage" / "drafts" / "templates"
LANGUAGES = ("en", "pl", "lv", "pt", "es", "de", "fr")

PLATFORMS = {
    "x",
    "reddit",
    "mastodon",
    "bluesky",
    "youtube",
    "appstore",
    "googleplay",
    "trustpilot",
    "rss",
}
REVIEW_PLATFORMS = {"appstore", "googleplay", "trustpilot"}
URL_PREFIX = {
    "x": "https://x.com/",
    "reddit": "https://www.reddit.com/r/",
    "bluesky": "https://bsky.app/profile/",
    "youtube": "https://www.youtube.com/watch?v=",
    "appstore": "https://apps.apple.com/",
    "googleplay": "https://play.google.com/store/apps/details?id=",
    "trustpilot": "https://www.trustpilot.com/reviews/",
}
REQUIRED_FIELDS = {
    "id",
    "platform",
    "text",
    "author",
    "handle",
    "followers",
    "rating",
    "created_at",
    "url",
    "engagement",
}
FIRST_DAY, LAST_DAY = datetime(2026, 11, 17, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC)

REASONS = {
    "billing": "mentions a billing problem",
    "refund": "asks for a refund",
    "delivery": "delivery problem",
    "outage": "service outage",
    "login": "cannot log in",
    "security": "account security: possible fraud or hack",
    "defect": "product defect",
    "safety": "safety risk",
    "legal": "legal threat",
    "privacy": "personal data request or leak",
    "press": "press inquiry",
    "churn": "threatens to cancel or leave",
    "waiting": "has been waiting / repeated contact",
    "anger": "strong negative language",
    "sarcasm": "sarcasm: praise words around a problem",
    "feedback": "suggests an improvement",
    "question": "asks a question",
    "praise": "praise or thanks",
}
ESCALATE = {"security", "safety", "legal", "press"}

PLACEHOLDERS = {
    "name",
    "brand",
    "within",
    "next_step",
    "help_url",
    "status_url",
    "answer",
    "apology",
    "privately",
}
NEXT_STEPS = {"default", "billing", "delivery", "outage", "login", "security"}
PLURAL_CATEGORIES = {
    "en": {"one", "other"},
    "de": {"one", "other"},
    "pl": {"one", "few", "many", "other"},
    "lv": {"zero", "one", "other"},
    "pt": {"one", "many", "other"},
    "es": {"one", "many", "other"},
    "fr": {"one", "many", "other"},
}
# Words the care principles rule out ("unfortunately", "policy", "you should have"), per language.
BANNED = {
    "en": ["unfortunately", "policy", "you should have", "you should've"],
    "pl": ["niestety", "polityk", "regulamin", "powinieneś", "powinnaś", "trzeba było"],
    "lv": ["diemžēl", "politik", "noteikumi", "jums vajadzēja"],
    "pt": ["infelizmente", "política", "deveria ter", "devia ter"],
    "es": ["lamentablemente", "desafortunadamente", "por desgracia", "política", "deberías haber"],
    "de": ["leider", "richtlinie", "hätten sie", "sie hätten"],
    "fr": ["malheureusement", "hélas", "politique", "vous auriez dû"],
}
NAME_12 = "Aleksandra K"
URLS = {"help_url": "https://help.kestrel.example", "status_url": "https://status.kestrel.example"}


# ---------------------------------------------------------------------------------------- helpers
def load_mentions() -> list[dict]:
    rows = []
    for number, line in enumerate(MENTIONS.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"mentions.jsonl:{number} is blank"
        row = json.loads(line)
        assert isinstance(row, dict), f"mentions.jsonl:{number} is not an object"
        rows.append(row)
    return rows


def load_toml(folder: Path) -> dict[str, dict]:
    return {
        lang: tomllib.loads((folder / f"{lang}.toml").read_text(encoding="utf-8"))
        for lang in LANGUAGES
    }


def normalise(text: str) -> str:
    """What the cue matcher sees: NFKC, casefold, typographic apostrophes made plain."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return text.translate(str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"}))


def cue_pattern(cue: str) -> re.Pattern[str]:
    """A cue as a regex: word boundaries at letter edges; a trailing * matches any word ending."""
    prefix = cue.endswith("*")
    body = cue[:-1] if prefix else cue
    pattern = r"\s+".join(re.escape(word) for word in body.split())
    if body[0].isalnum():
        pattern = r"(?<!\w)" + pattern
    if prefix:
        pattern += r"\w*"
    elif body[-1].isalnum():
        pattern += r"(?!\w)"
    return re.compile(pattern)


def matched_intents(text: str, cues: dict) -> set[str]:
    text = normalise(text)
    return {
        intent
        for intent, table in cues["intents"].items()
        if any(cue_pattern(cue).search(text) for cue in table["cues"])
    }


def plural_category(lang: str, n: int) -> str:
    """CLDR cardinal plural category for a whole number."""
    if lang in ("en", "de"):
        return "one" if n == 1 else "other"
    if lang == "es":
        return "one" if n == 1 else "many" if n % 1_000_000 == 0 else "other"
    if lang in ("pt", "fr"):
        return "one" if n in (0, 1) else "many" if n % 1_000_000 == 0 else "other"
    if lang == "pl":
        if n == 1:
            return "one"
        return "few" if n % 10 in (2, 3, 4) and n % 100 not in (12, 13, 14) else "many"
    if lang == "lv":
        if n % 10 == 0 or 11 <= n % 100 <= 19:
            return "zero"
        return "one" if n % 10 == 1 and n % 100 != 11 else "other"
    raise ValueError(lang)


def within_phrases(lang: str, time: dict) -> list[str]:
    return [
        time["within"].format(n=n, unit=time[unit][plural_category(lang, n)])
        for unit in ("minute", "hour", "day")
        for n in range(1, 61)
    ]


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


MENTION_ROWS = load_mentions()
CUE_FILES = load_toml(CUES)
TEMPLATE_FILES = load_toml(TEMPLATES)


# ------------------------------------------------------------------------------- sample mentions
def test_sample_has_enough_rows_with_unique_ids():
    ids = [row["id"] for row in MENTION_ROWS]
    assert len(ids) >= 70
    assert len(set(ids)) == len(ids), [i for i, c in Counter(ids).items() if c > 1]
    assert all(re.fullmatch(r"smp-\d{3}", i) for i in ids)


@pytest.mark.parametrize("row", MENTION_ROWS, ids=lambda row: row["id"])
def test_sample_row_is_well_formed(row):
    missing = REQUIRED_FIELDS - row.keys()
    assert not missing, f"{row['id']} lacks {missing}"
    assert row["platform"] in PLATFORMS
    assert isinstance(row["text"], str) and row["text"].strip()
    assert isinstance(row["author"], str) and row["author"].strip()
    assert isinstance(row["handle"], str) and row["handle"].strip()
    assert row["followers"] is None or (type(row["followers"]) is int and row["followers"] >= 0)
    assert type(row["engagement"]) is int and row["engagement"] >= 0
    assert row["created_at"].endswith("Z")
    created = datetime.fromisoformat(row["created_at"])
    assert FIRST_DAY <= created < LAST_DAY, row["created_at"]
    if row["platform"] in REVIEW_PLATFORMS:
        assert type(row["rating"]) is int and 1 <= row["rating"] <= 5
    else:
        assert row["rating"] is None
    if row["platform"] in ("x", "mastodon", "bluesky", "youtube"):
        assert row["handle"].startswith("@")
    elif row["platform"] == "reddit":
        assert row["handle"].startswith("u/")
    else:
        assert not row["handle"].startswith(("@", "u/"))
    prefix = URL_PREFIX.get(row["platform"], "https://")
    assert row["url"].startswith(prefix), row["url"]
    assert row.get("lang") in (*LANGUAGES, None)


def test_sample_covers_every_language_and_platform():
    languages = Counter(row.get("lang") for row in MENTION_ROWS)
    for lang in LANGUAGES:
        assert languages[lang] >= 8, f"only {languages[lang]} {lang} rows"
    assert languages["en"] == max(languages[lang] for lang in LANGUAGES)
    assert {row["platform"] for row in MENTION_ROWS} == PLATFORMS
    ratings = {row["rating"] for row in MENTION_ROWS if row["rating"] is not None}
    assert ratings == {1, 2, 3, 4, 5}


def test_sample_threads_point_backwards():
    by_id = {row["id"]: row for row in MENTION_ROWS}
    linked = [row for row in MENTION_ROWS if row.get("parent_id") or row.get("thread_id")]
    assert linked
    for row in linked:
        for key in ("thread_id", "parent_id"):
            target = by_id.get(row.get(key))
            assert target is not None, f"{row['id']}.{key} names no row"
            assert target["created_at"] < row["created_at"]


def test_sample_has_the_demo_cases():
    vip = [row for row in MENTION_ROWS if row["handle"] == "@tech_reviewer_max"]
    assert vip and vip[0]["followers"] == 250_000
    authors = Counter((row["platform"], row["handle"]) for row in MENTION_ROWS)
    assert any(count >= 2 for count in authors.values()), "nobody comes back a second time"
    assert any(len(row["text"]) > 1000 for row in MENTION_ROWS), "no long review"
    emoji_only = [
        row for row in MENTION_ROWS if not re.search(r"[^\W\d_]", re.sub(r"@\w+", "", row["text"]))
    ]
    assert emoji_only, "no emoji-only mention"
    assert any(row["platform"] == "rss" and row.get("title") for row in MENTION_ROWS)


def test_sample_rows_load_through_the_file_connector():
    file_connector = pytest.importorskip("connectors.file")
    for row in MENTION_ROWS:
        mention = file_connector.row_to_mention(row, source="sample")
        assert mention.external_id == row["id"]
        assert mention.created_at is not None


# --------------------------------------------------------------------------------------- cues
@pytest.mark.parametrize("lang", LANGUAGES)
def test_cue_file_shape(lang):
    cues = CUE_FILES[lang]
    assert cues["language"] == lang
    assert set(cues["intents"]) == set(REASONS)
    for intent, table in cues["intents"].items():
        assert table["reason"] == REASONS[intent]
        assert type(table["weight"]) is int and 0 <= table["weight"] <= 30
        assert table.get("escalate", False) is (intent in ESCALATE)
        assert set(table) <= {"reason", "weight", "escalate", "cues"}
        entries = table["cues"]
        # Inflected languages list each case form that matters (no stems: see lv anger).
        assert 10 <= len(entries) <= 45, f"{lang}.{intent} has {len(entries)} cues"
        assert len(set(entries)) == len(entries), f"{lang}.{intent} repeats a cue"
    for section in ("negation", "intensifiers"):
        assert cues[section]["cues"], f"{lang}: [{section}] is empty"
    for intent in ("question", "praise", "feedback"):
        assert cues["intents"][intent]["weight"] == 0


@pytest.mark.parametrize("lang", LANGUAGES)
def test_cues_are_normalised_and_brand_free(lang):
    cues = CUE_FILES[lang]
    every = [cue for table in cues["intents"].values() for cue in table["cues"]]
    every += cues["negation"]["cues"] + cues["intensifiers"]["cues"]
    for cue in every:
        assert cue == cue.strip() and cue, repr(cue)
        assert normalise(cue) == cue, f"{lang}: {cue!r} is not lowercase/casefolded NFKC"
        assert "*" not in cue[:-1], f"{lang}: {cue!r} has a * before the end"
        assert "kestrel" not in cue, f"{lang}: {cue!r} names the brand"
        cue_pattern(cue)


def test_weights_agree_across_languages():
    def weights(lang):
        return {intent: t["weight"] for intent, t in CUE_FILES[lang]["intents"].items()}

    for lang in LANGUAGES:
        assert weights(lang) == weights("en"), lang


# What customers actually write, and what must fire. A phrase per language for the escalating
# intents and the most common complaints, so a cue edit that loses them is caught.
CUE_EXAMPLES = [
    ("en", "why was I charged twice for my November bill??", {"billing", "question"}),
    ("en", "someone did a SIM swap on my number overnight", {"security"}),
    ("en", "my K7's battery is swelling and it gets really hot", {"safety"}),
    ("en", "Next step is my lawyer and a formal complaint to Ofcom", {"legal"}),
    ("en", "I'm a reporter working on a story about the outage", {"press", "outage"}),
    ("en", "Still waiting, 3rd time I'm asking. No refund.", {"waiting", "refund"}),
    ("en", "can’t log in, the 2FA code never arrives", {"login"}),
    ("pl", "pobraliście mi dwa razy za abonament, kiedy zwrot??", {"billing", "refund"}),
    ("pl", "ktoś wyrobił duplikat mojej karty SIM", {"security"}),
    ("pl", "bateria spuchła i telefon strasznie się grzeje", {"safety"}),
    ("pl", "Składam skargę do UOKiK", {"legal"}),
    ("pl", "Piszę już trzeci raz i dalej cisza", {"waiting"}),
    ("pl", "nie moge sie zalogowac, kod SMS nie przychodzi", {"login"}),
    ("lv", "kāpēc man divreiz noņēmāt naudu?", {"billing", "question"}),
    ("lv", "Kāds ir uzlauzis manu kontu", {"security"}),
    ("lv", "lādējot ļoti sakarst, ir jūtama deguma smaka", {"safety"}),
    ("lv", "rakstu sūdzību PTAC", {"legal"}),
    ("lv", "Purvciemā nav tīkla", {"outage"}),
    ("pt", "vocês me cobraram duas vezes, quero o estorno", {"billing", "refund"}),
    ("pt", "clonaram meu chip", {"security"}),
    ("pt", "a bateria ficou inchada", {"safety"}),
    ("pt", "vou no Procon e no Reclame Aqui", {"legal"}),
    ("pt", "mais um dia sem sinal", {"outage"}),
    ("es", "¿por qué me cobraron dos veces la factura?", {"billing", "question"}),
    ("es", "me han hackeado la cuenta", {"security"}),
    ("es", "la batería está hinchada y huele a quemado", {"safety"}),
    ("es", "hoja de reclamaciones y denuncia en la OCU", {"legal"}),
    ("es", "Me voy a la competencia", {"churn"}),
    ("de", "Ihr habt mir die Rechnung doppelt abgebucht", {"billing"}),
    ("de", "Jemand hat einen SIM-Swap gemacht, Konto gehackt", {"security"}),
    ("de", "Mein Akku ist aufgebläht und wird beim Laden so heiß", {"safety"}),
    ("de", "Ich gehe zur Verbraucherzentrale und schalte meinen Anwalt ein", {"legal"}),
    ("de", "Seit heute Morgen kein Netz, nur Notrufe", {"outage"}),
    ("fr", "j'ai été débitée deux fois, je veux être remboursée", {"billing", "refund"}),
    ("fr", "quelqu'un a demandé une nouvelle carte SIM à mon nom, c'est une fraude", {"security"}),
    ("fr", "la batterie a gonflé, odeur de brûlé", {"safety"}),
    ("fr", "Prochaine étape : UFC-Que Choisir et SignalConso", {"legal"}),
    ("fr", "journaliste, je prépare un article", {"press"}),
]

# Praise and neutral posts must not raise an escalation flag.
CALM_EXAMPLES = [
    ("en", "Kestrel's K7 camera is not bad at all, honestly. Safe to say I love it 🔥"),
    ("en", "Thanks @kestrel_help, sorted my roaming issue in 10 minutes. Legend"),
    ("pl", "Dzięki za szybką wymianę telefonu, tak się robi obsługę klienta 💪"),
    ("lv", "Liels paldies! Tarifu nomainīju 5 minūtēs, un tas ļoti atmaksājas 👍"),
    ("pt", "App muito bom! Consigo pagar a fatura em segundos. Parabéns!"),
    ("es", "Mil gracias, me cambiaron el cargador en 2 días, atención de 10"),
    ("de", "Ich kann nicht klagen, Top Service, gerne wieder!"),
    ("fr", "Merci pour votre réactivité, ma portabilité a été réglée en une heure 👏"),
]


@pytest.mark.parametrize(("lang", "text", "expected"), CUE_EXAMPLES)
def test_cues_fire_on_real_phrasings(lang, text, expected):
    found = matched_intents(text, CUE_FILES[lang])
    assert expected <= found, f"{lang}: {text!r} gave {sorted(found)}"


@pytest.mark.parametrize(("lang", "text"), CALM_EXAMPLES)
def test_praise_does_not_escalate(lang, text):
    found = matched_intents(text, CUE_FILES[lang])
    assert "praise" in found
    assert not found & (ESCALATE | {"churn", "billing", "outage"}), f"{lang}: {sorted(found)}"


# ----------------------------------------------------------------------------------- templates
@pytest.mark.parametrize("lang", LANGUAGES)
def test_template_file_shape(lang):
    data = TEMPLATE_FILES[lang]
    assert data["language"] == lang
    assert data["register"] in {"formal", "informal", "neutral"}
    assert set(data["templates"]) == {"complaint", "question", "praise", "answer", "feedback"}
    assert {"name", "answer", "help_url"} <= fields(data["templates"]["answer"])
    assert data["scaffold"]["answer"] == data["scaffold"]["answer"].upper()
    assert set(data["next_steps"]) >= NEXT_STEPS
    time = data["time"]
    for unit in ("minute", "hour", "day"):
        assert set(time[unit]) == PLURAL_CATEGORIES[lang], f"{lang}.{unit}"
    assert fields(time["within"]) == {"n", "unit"}
    for key in ("complaint", "question"):
        assert {"name", "within", "next_step"} <= fields(data["templates"][key])
    assert "name" in fields(data["templates"]["praise"])
    assert "next_step" not in fields(data["templates"]["praise"])
    assert fields(data["templates"]["feedback"]) == {"name"}
    for text in [*data["templates"].values(), *data["next_steps"].values()]:
        assert fields(text) <= PLACEHOLDERS, f"{lang}: unknown placeholder in {text!r}"
    private = data["private"]
    assert not fields(private["dm"]) and fields(private["email"]) == fields(private["form"]) == {
        "contact"
    }
    steps = data["next_steps"]
    assert "status_url" in fields(steps["outage"])
    assert "help_url" in fields(steps["login"])
    assert "help_url" in fields(steps["security"])


def test_register_choices():
    assert TEMPLATE_FILES["en"]["register"] == "neutral"
    assert TEMPLATE_FILES["de"]["register"] == "formal"
    assert TEMPLATE_FILES["fr"]["register"] == "formal"


def test_next_step_keys_agree_across_languages():
    reference = set(TEMPLATE_FILES["en"]["next_steps"])
    for lang in LANGUAGES:
        assert set(TEMPLATE_FILES[lang]["next_steps"]) == reference, lang


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("register", [None, "formal", "informal"])
def test_every_reply_fits_in_a_tweet(lang, register):
    # Each form of address, and the product and known-order versions of the steps, too.
    data = with_register(TEMPLATE_FILES[lang], register)
    within = max(within_phrases(lang, data["time"]), key=len)
    values = {"name": NAME_12, "brand": "Kestrel", "privately": data["private"]["dm"], **URLS}
    answer = data["templates"]["answer"].format(**values, answer=data["scaffold"]["answer"])
    assert len(answer) <= 280 - 40, f"{lang}: room for the answer: {answer}"
    steps = [
        *data["next_steps"].items(),
        *data.get("product_steps", {}).items(),
        *data.get("known_order", {}).items(),
    ]
    for key, template in data["templates"].items():
        if key in ("answer", "feedback"):
            continue
        for step_key, step in steps:
            apology = data["apology"].get(step_key, data["apology"]["default"])
            next_step = step.format(**values, order="12345678901")
            reply = template.format(**values, within=within, next_step=next_step, apology=apology)
            assert len(reply) <= 280, f"{lang}.{key}+{step_key}: {len(reply)} chars: {reply}"
            assert "{" not in reply and "}" not in reply


@pytest.mark.parametrize("lang", LANGUAGES)
def test_templates_use_positive_language(lang):
    data = TEMPLATE_FILES[lang]
    texts = [*data["templates"].values(), *data["next_steps"].values()]
    for text in texts:
        lowered = text.casefold()
        for word in BANNED[lang]:
            assert word not in lowered, f"{lang}: {word!r} in {text!r}"


def test_within_uses_the_right_plural_forms():
    def render(lang, n, unit):
        time = TEMPLATE_FILES[lang]["time"]
        return time["within"].format(n=n, unit=time[unit][plural_category(lang, n)])

    assert render("en", 1, "hour") == "within 1 hour"
    assert render("en", 2, "hour") == "within 2 hours"
    assert render("pl", 1, "hour") == "w ciągu 1 godziny"
    assert render("pl", 2, "hour") == "w ciągu 2 godzin"
    assert render("pl", 30, "minute") == "w ciągu 30 minut"
    assert render("lv", 2, "hour") == "2 stundu laikā"
    assert render("lv", 21, "hour") == "21 stundas laikā"
    assert render("lv", 30, "minute") == "30 minūšu laikā"
    assert render("de", 1, "day") == "innerhalb von 1 Tag"
    assert render("de", 2, "day") == "innerhalb von 2 Tagen"
    assert render("fr", 2, "hour") == "sous 2 heures"
    assert render("es", 1, "day") == "en menos de 1 día"
    assert render("pt", 8, "hour") == "em até 8 horas"
