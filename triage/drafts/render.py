"""Template drafts per language and kind, with the SLA time frame and a concrete next step."""

from __future__ import annotations

import functools
import math
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import regex

from connectors.reply import ReplyRules
from models.urgency import cue_pattern, normalise
from triage.config import OpeningHours, Playbook, in_register
from triage.drafts.names import address, mirrored_register, praised_colleague, titled_name

TEMPLATES_DIR = Path(__file__).parent / "templates"
FALLBACK_LANGUAGE = "en"
DRAFTED_KINDS = ("complaint", "question", "feedback", "praise")
# Intents answered only with a holding reply, in this order, and how the note names them.
HOLDING = {"legal": "legal threat", "press": "press inquiry"}
# Sentences said after the apology when they fit, in this order.
EXTRAS = ("vulnerable", "repeat_contact", "known_issue", "tried")
# What the agent is told a draft left out when the platform had no room for it.
LEFT_OUT = {
    "vulnerable": "that it can't wait (a person at risk)",
    "repeat_contact": "sorry they had to write more than once",
    "known_issue": "that we're checking whether others are affected",
    "tried": "thanks for the steps they already tried",
}
# A brand's playbook step for account security also answers a takeover or a charge the customer
# did not make (not phishing: someone asking "is this mail really you?" has lost nothing yet).
PLAYBOOK_FALLBACK = {"account_takeover": "security", "fraud": "security"}
# A risk to the person or their money decides the next step whatever else the mention is about
# (a safety risk first, then the likeliest of the others: "charges on a card I never used" is
# fraud even when the head also suspects a takeover); otherwise the intent the mention is most
# about does (intents come likeliest first), so a weak billing word does not turn a late delivery
# into an apology for the bill.
FIRST_STEPS = ("safety", "account_takeover", "fraud", "phishing", "security")


@dataclass(frozen=True, slots=True)
class DraftRequest:
    """What a draft is written from."""

    kind: str  # complaint | question | feedback | praise
    language: str
    intents: tuple[str, ...]  # likeliest first, as models.urgency reports them
    author_name: str | None
    author_handle: str | None
    sla_seconds: float
    brand: str
    help_url: str
    status_url: str
    # The brand voice and the platform: per-category help pages, emoji, whether links show.
    help_urls: tuple[tuple[str, str], ...] = ()
    emoji: bool = True
    links: bool = True
    # "formal" or "informal" from [brand] formality; None: the language file's own register.
    register: str | None = None
    # The mention's text, read for specifics to acknowledge (an order number).
    mention_text: str = ""
    # The brand's own words on how to reach it privately, added when the reply still fits.
    dm_instructions: str = ""
    rules: ReplyRules | None = None
    # Where to write privately when the platform has no private messages (e-mail or a page).
    contact: str = ""
    # The brand's own next steps and saved replies (config `[playbook]`).
    playbook: Playbook | None = None


@dataclass(frozen=True, slots=True)
class DraftText:
    text: str
    language: str
    generator: str
    note: str | None = None


def plural_category(language: str, n: int) -> str:
    """The CLDR plural category of a whole number in the language."""
    if language == "pl":
        if n == 1:
            return "one"
        if n % 10 in (2, 3, 4) and n % 100 not in (12, 13, 14):
            return "few"
        return "many"
    if language == "lv":
        if n % 10 == 0 or 11 <= n % 100 <= 19:
            return "zero"
        if n % 10 == 1 and n % 100 != 11:
            return "one"
        return "other"
    if language in ("fr", "pt"):
        return "one" if n in (0, 1) else "other"
    return "one" if n == 1 else "other"


@functools.cache
def load_templates(language: str, directory: Path = TEMPLATES_DIR) -> dict[str, Any] | None:
    path = directory / f"{language}.toml"
    if not path.exists():
        return None
    return tomllib.loads(path.read_text(encoding="utf-8"))


def with_register(templates: dict[str, Any], register: str | None) -> dict[str, Any]:
    """The templates in `register` when the language has that variant, else unchanged."""
    variant = templates.get("variants", {}).get(register) if register else None
    if not variant or register == templates.get("register"):
        return templates
    merged = dict(templates, register=register)
    tables = ("templates", "apology", "next_steps", "known_order", "holding", "scaffold")
    for table in (*tables, "private", "time", "praise_topics", "product_steps"):
        merged[table] = {**templates.get(table, {}), **variant.get(table, {})}
    return merged


def available_languages(directory: Path = TEMPLATES_DIR) -> list[str]:
    return sorted(path.stem for path in directory.glob("*.toml"))


def time_frame(templates: dict[str, Any], language: str, seconds: float) -> str:
    """ "within 2 hours" in the language, picking minutes, hours or days to read naturally."""
    # Rounded up: "within 10 hours" for 10 h 30 min would promise too much.
    seconds = math.ceil(round(seconds) / 60) * 60
    if seconds < 2 * 3600 and seconds % 3600:
        n, unit = max(1, seconds // 60), "minute"
    elif seconds < 2 * 86400:
        # "within 24 hours", as brands say it, not "within 1 day".
        n, unit = math.ceil(seconds / 3600), "hour"
    else:
        n, unit = math.ceil(seconds / 86400), "day"
    forms: dict[str, str] = templates["time"][unit]
    category = plural_category(language, n)
    word = forms.get(category) or forms.get("other") or forms.get("many") or forms["one"]
    return templates["time"]["within"].format(n=n, unit=word)


def promised_seconds(now: datetime, sla_seconds: float, hours: OpeningHours | None) -> float:
    """How long a reply may take as the customer should be told: the SLA counted in the team's
    opening hours ("within 2 hours" at 23:00 is 11 hours away when the team opens at 8)."""
    if hours is None:
        return sla_seconds
    zone = ZoneInfo(hours.timezone)
    local = now.astimezone(zone)
    opens, closes = (time.fromisoformat(hours.opens), time.fromisoformat(hours.closes))
    day = local.date()
    start = datetime.combine(day, opens, zone)
    end = datetime.combine(day, closes, zone)
    if local >= end:
        start, end = start + timedelta(days=1), end + timedelta(days=1)
    clock = max(local, start)  # before opening, the SLA starts counting when the team opens
    left = sla_seconds
    while clock + timedelta(seconds=left) > end:
        left -= (end - clock).total_seconds()
        start, end = start + timedelta(days=1), end + timedelta(days=1)
        clock = start
    return (clock + timedelta(seconds=left) - local).total_seconds()


def first_name(author_name: str | None, author_handle: str | None) -> str:
    """The customer's first name when the profile gives one, else their handle."""
    if author_name:
        first = author_name.split()[0]
        if any(ch.isalpha() for ch in first):
            return first
    if author_handle:
        return author_handle.strip()
    return ""


def addressed(templates: dict[str, Any], request: DraftRequest, language: str) -> dict[str, Any]:
    """The templates in the register the reply uses: the customer's own form of address when
    their words show it ("Können Sie..." -> Sie), else the brand's default."""
    register = mirrored_register(request.mention_text, language) or request.register
    return with_register(templates, register)


def customer_greeting(request: DraftRequest) -> str:
    """The name the draft for `request` greets its customer with (as render_draft does)."""
    language = request.language if load_templates(request.language) else FALLBACK_LANGUAGE
    templates = addressed(load_templates(language) or {}, request, language)
    return greeting_name(request, language, templates.get("register"))


def greeting_name(request: DraftRequest, language: str, register: str | None) -> str:
    """The name the greeting uses: a given name as the language addresses someone ("Anno",
    "Panie Tomaszu", "Jāni"), a title with the surname ("Dr. Krüger"); a handle as written."""
    titled = titled_name(request.author_name or "")
    if titled:
        return titled
    given = first_name(request.author_name, request.author_handle)
    if request.author_name and given == request.author_name.split()[0]:
        return address(given, language, register)
    return given


def render_draft(request: DraftRequest) -> DraftText:
    """The template draft for a case's kind and intents; other languages get English and a note."""
    if request.kind not in DRAFTED_KINDS:
        raise ValueError(f"no draft for kind {request.kind!r}; expected one of {DRAFTED_KINDS}")
    language = request.language
    templates = load_templates(language)
    note = None
    if templates is None:
        templates = load_templates(FALLBACK_LANGUAGE)
        assert templates is not None, "the English templates ship with triage"
        note = (
            f"The customer wrote in {language!r}, which has no templates yet: "
            "this draft is in English; consider replying in their language."
        )
        language = FALLBACK_LANGUAGE
    templates = addressed(templates, request, language)
    intents = request.intents
    # The likelier of the two: a journalist who mentions the law is still the press.
    holding = next((i for i in intents if i in HOLDING), None)
    public_customer = holding == "press" and _customer_with_audience(templates, request)
    if public_customer:
        # "140k followers, and tomorrow my story shows how you've stalled me for weeks": a
        # customer about to go public wants their problem solved, not a press office's reply.
        holding = None
    if holding is not None:
        # Legal threats and the press get a short reply that moves to private, nothing more,
        # in the polite form even from a brand that writes "du" to its followers.
        own = load_templates(language) or {}
        polite = own.get("holding_register")
        if polite and mirrored_register(request.mention_text, language) is None:
            templates = with_register(own, polite)
        key = holding
        deadline = templates.get("press_cues", {}).get("deadline", [])
        if holding == "press" and says(deadline, request.mention_text):
            key = "press_known"  # they gave their deadline: never ask for it again
        text = fill(
            templates["holding"][key],
            name=greeting_name(request, language, templates.get("register")),
            within=time_frame(templates, language, request.sla_seconds),
            privately=privately(templates, request),
        )
        lead = f"Holding reply for a {HOLDING[holding]}: a lead should approve it."
        return DraftText(
            text=_finish(text, request),
            language=language,
            generator=f"template:holding:{language}:{holding}",
            note=_noted(note, lead),
        )
    next_steps: dict[str, str] = templates["next_steps"]
    risks = [i for i in intents if i in FIRST_STEPS]
    ranked = [i for i in intents if i == "safety"] + risks + list(intents)
    step_key = next((i for i in ranked if i in next_steps), "default")
    values = {
        "name": greeting_name(request, language, templates.get("register")),
        "brand": request.brand,
        "within": time_frame(templates, language, request.sla_seconds),
        "help_url": dict(request.help_urls).get(step_key, request.help_url),
        "status_url": request.status_url,
        "privately": privately(templates, request),
    }
    playbook = request.playbook or Playbook()
    register = templates.get("register")
    if request.kind == "question" and step_key == "default":
        saved = saved_reply(playbook, language, request.mention_text)
        if saved is not None:
            # The brand's ready answer to this frequent question: sendable as it stands.
            text = fill(templates["templates"]["answer"], **values, answer=saved)
            return DraftText(
                text=_finish(text, request),
                language=language,
                generator=f"template:saved:{language}",
                note=note,
            )
        # A plain question needs an answer only the agent knows: a scaffold with the help link,
        # and a placeholder the checker refuses to send until the agent writes the answer.
        text = fill(
            templates["templates"]["answer"], **values, answer=templates["scaffold"]["answer"]
        )
        scaffold = "Write the answer in place of the placeholder; it cannot be sent before."
        return DraftText(
            text=_finish(text, request),
            language=language,
            generator=f"template:answer:{language}",
            note=_noted(note, scaffold),
        )
    order = order_number(request.mention_text)
    known: dict[str, str] = templates.get("known_order", {})
    # The brand's own next step (its playbook) wins over the sector-neutral template.
    # Its plain-language text is in the brand's default register; a customer mirrored into the
    # other one gets the playbook's text for that register, or the template's.
    default = request.register or (load_templates(language) or {}).get("register")
    own_known = playbook.phrase("known_order", step_key, language, register, default)
    own_step = playbook.phrase("next_steps", step_key, language, register, default)
    if own_step is None and step_key in PLAYBOOK_FALLBACK:
        own_step = playbook.phrase(
            "next_steps", PLAYBOOK_FALLBACK[step_key], language, register, default
        )
    if order and (own_known or (step_key in known and not own_step)):
        # They told us the order number: say it back, and never ask for it again.
        values["next_step"] = (own_known or known[step_key]).format(**values, order=order)
    else:
        step = next_steps[step_key]
        if "defect" in intents:
            # A hazard from a faulty product: stop, unplug, we collect it (the neutral step
            # serves a driver, a car or a pool as well).
            step = templates.get("product_steps", {}).get(step_key, step)
        values["next_step"] = (own_step or step).format(**values)
    apologies: dict[str, str] = templates["apology"]
    # Churn or how they were treated has no step of its own but its own first sentence.
    apology_key = (
        step_key
        if step_key != "default"
        else next((i for i in ranked if i in apologies and i not in EXTRAS), "default")
    )
    values["apology"] = apologies.get(apology_key, apologies["default"])
    template = templates["templates"][request.kind]
    product = named_product(playbook, language, register, default, request.mention_text)
    if step_key == "defect" and product and "defect_named" in apologies:
        # "Sorry your kettle isn't working": the thing they wrote about, in the brand's words.
        values["apology"] = fill(apologies["defect_named"], product=product)
    if intents[:1] == ("churn",) and not risks and "churn" in apologies:
        # "12 years with you and this renewal price. Bye.": above all they are leaving (when
        # the platform has room for it); the next step still deals with the cause.
        leaving = {**values, "apology": apologies["churn"]}
        if fits(_finish(fill(template, **leaving), request), request):
            values = leaving
    if request.kind == "praise":
        colleague = praised_colleague(request.mention_text, language, request.brand)
        named = templates.get("praise_topics", {}).get("named")
        if colleague and named:
            # "Kwame drove 3 miles back with my laptop": thank the customer and tell Kwame.
            template, values["colleague"] = named, colleague
        else:
            topic = praise_topic(templates, request.mention_text)
            template = templates.get("praise_topics", {}).get(topic, template)
    text = _finish(fill(template, **values), request)
    # A person at risk is said first, then that they wrote before and heard nothing, then
    # whether others have it too (when they ask), then that they already tried the obvious
    # fixes, as far as the platform has room.
    tried = says(templates.get("tried_cues", {}).get("tried", []), request.mention_text)
    # "Is this a known issue??": answered honestly, except beside an outage's step ("we're on it").
    asked = step_key != "outage" and says(
        templates.get("known_cues", {}).get("asked", []), request.mention_text
    )
    shown = {*intents, *(["tried"] if tried else []), *(["known_issue"] if asked else [])}
    if request.kind == "complaint":
        wanted = [k for k in EXTRAS if k in shown and k in apologies]
        text, left_out = _with_extras(template, values, apologies, wanted, request)
        if left_out:
            lead = "Left out for lack of room: " + "; ".join(LEFT_OUT[k] for k in left_out) + "."
            note = _noted(note, lead)
    if (
        request.kind in ("complaint", "question")
        and request.dm_instructions.strip()
        and _dms(request)
    ):
        longer = f"{text} {_finish(request.dm_instructions, request)}"
        if fits(longer, request):
            text = longer
    if "safety" in intents:
        lead = "Safety risk: a lead should approve this reply."
        note = _noted(note, lead)
    if public_customer:
        lead = "A customer with a public audience, about to go public: a lead may want to see it."
        note = _noted(note, lead)
    return DraftText(
        text=text,
        language=language,
        generator=f"template:{request.kind}:{language}:{step_key}",
        note=note,
    )


# "Hi {name}, ..." and "Thank you, {name}!" when nobody is named: "Hi, ...", "Thank you!".
_NAME_SLOT = re.compile(r"(?:,\s*|\s+)\{name\}")


def fill(template: str, **values: str) -> str:
    """The template with its values; with no name to greet, the greeting closes without one."""
    if not values.get("name"):
        template = _NAME_SLOT.sub("", template)
    return template.format(**values)


_URL = re.compile(r"https?://([^\s/]+)[^\s]*?(?=[.,;:!?)]?(?:\s|$))")
_EMOJI = regex.compile(r"\s?\p{Extended_Pictographic}(?:\uFE0F|\u200D\p{Extended_Pictographic})*")


def _dms(request: DraftRequest) -> bool:
    return request.rules is None or request.rules.private_messages


def privately(templates: dict[str, Any], request: DraftRequest) -> str:
    """How the customer reaches us privately, as the language says it: "by DM" where the
    platform has private messages, else "by e-mail to ..." or "via our contact form at ..."."""
    phrases: dict[str, str] = templates["private"]
    if _dms(request):
        return phrases["dm"]
    contact = request.contact.strip() or request.help_url
    kind = "email" if "@" in contact and "://" not in contact else "form"
    return phrases[kind].format(contact=contact)


def fits(text: str, request: DraftRequest) -> bool:
    """Whether the text fits the platform the request's reply goes to."""
    rules = request.rules
    return rules is None or rules.length(text) <= rules.max_length


def _finish(text: str, request: DraftRequest) -> str:
    """Apply the platform and the brand voice: bare host names where links don't show, emoji."""
    if not request.links:
        # Store reviews show plain text: a host name people can type beats a dead URL.
        text = _URL.sub(lambda m: m.group(1), text)
    if not request.emoji:
        text = _EMOJI.sub("", text)
    return " ".join(text.split())


# "order 123456", "zamówienie nr 123456", "Bestellung #A-12345", "#123456": order words in the
# seven languages, then a reference with at least five digits (short numbers are often prices).
_ORDER = re.compile(
    r"(?:#|\b(?:order|zam[oó]wieni\w*|pas[uū]t[iī]jum\w*|pedido|encomenda|bestellung|"
    r"bestellnummer|commande|auftrag)\s*(?:n[or]\.?|n[°º]|nummer|number|numer|numurs|n[uú]mero)?"
    r"\s*[#:]?\s*)([a-z]{0,4}-?\d(?:[\d-]{3,18})\d)\b",
    re.IGNORECASE,
)


def _noted(note: str | None, lead: str) -> str:
    """The card's note with one more sentence for the agent."""
    return f"{note} {lead}" if note else lead


def _with_extras(
    template: str,
    values: dict[str, str],
    apologies: dict[str, str],
    wanted: list[str],
    request: DraftRequest,
) -> tuple[str, list[str]]:
    """The complaint with each extra sentence that still fits, in order, and those left out.

    A person at risk is said even where the apology must give way to it ("we know this can't
    wait" matters more on a 280-character platform than "sorry your heating isn't working").
    """

    def render(opening: str, keys: list[str]) -> str:
        apology = " ".join([opening, *(apologies[k] for k in keys)])
        return _finish(fill(template, **{**values, "apology": apology}), request)

    def greedy(opening: str, keys: list[str]) -> list[str]:
        chosen: list[str] = []
        for key in keys:
            if fits(render(opening, [*chosen, key]), request):
                chosen.append(key)
        return chosen

    opening = values["apology"]
    chosen = greedy(opening, wanted)
    if "vulnerable" in wanted and "vulnerable" not in chosen:
        lead = apologies["vulnerable"]
        if opening[:1].islower():
            lead = lead[:1].lower() + lead[1:]  # "Hallo Jonas, uns ist klar, ..."
        if fits(render(lead, []), request):
            rest = greedy(lead, [k for k in wanted if k != "vulnerable"])
            return render(lead, rest), [k for k in wanted if k != "vulnerable" and k not in rest]
    return render(opening, chosen), [k for k in wanted if k not in chosen]


def _customer_with_audience(templates: dict[str, Any], request: DraftRequest) -> bool:
    """Whether a "press" mention is a customer who counts their followers and has a problem of
    their own (a step or first sentence of its own), not a journalist asking for a statement."""
    audience = templates.get("press_cues", {}).get("audience", [])
    own = any(i in templates["next_steps"] or i == "churn" for i in request.intents)
    return own and says(audience, request.mention_text)


def says(cues: Iterable[str], text: str) -> bool:
    """Whether any of the cues (matched as models/urgency.py matches them) occurs in the text."""
    normal = normalise(text)
    return any(cue_pattern(cue).search(normal) for cue in cues)


def named_product(
    playbook: Playbook, language: str, register: str | None, default: str | None, text: str
) -> str | None:
    """How a reply names the product the mention is about, when the playbook knows it."""
    for product in playbook.products:
        if says(product.cues.get(language, []), text):
            return in_register(product.say, language, register, default)
    return None


def saved_reply(playbook: Playbook, language: str, text: str) -> str | None:
    """The brand's saved answer whose cue words occur in the question, first match wins."""
    for saved in playbook.saved_replies:
        if saved.language == language and says(saved.cues, text):
            return saved.answer
    return None


def praise_topic(templates: dict[str, Any], text: str) -> str | None:
    """What the customer praised (support, delivery, app, product), by the language's cues."""
    for topic, cues in templates.get("praise_cues", {}).items():
        if says(cues, text):
            return str(topic)
    return None


def order_number(text: str) -> str | None:
    """The order reference a customer gave, if any; only letters, digits and hyphens."""
    for match in _ORDER.finditer(text):
        reference = match.group(1)
        if sum(ch.isdigit() for ch in reference) >= 5:
            return reference.upper()
    return None


def sign(text: str, sign_off: str, agent_name: str | None, brand: str) -> str:
    """`text` with the brand's sign-off for the sending agent, added once; unchanged without one."""
    if not sign_off.strip():
        return text
    words = [w for w in (agent_name or "").split() if w[:1].isalpha()]
    needs_agent = "{initials}" in sign_off or "{first_name}" in sign_off
    if needs_agent and not words:
        return text  # nobody to sign as: better no sign-off than "^"
    signature = sign_off.format(
        initials="".join(w[0].upper() for w in words[:2]),
        first_name=words[0] if words else "",
        brand=brand,
    )
    return text if text.rstrip().endswith(signature) else f"{text.rstrip()} {signature}"
