"""How a reply addresses the customer: the form of address they use, and their name (the vocative
in Polish and Latvian, Pan/Pani in formal Polish)."""

from __future__ import annotations

import re

# Polish names in -a that are men's (everything else in -a is a woman's name).
_PL_MEN_IN_A = frozenset({"kuba", "barnaba", "bonawentura", "kosma", "jarema", "saba", "zawisza"})
# Diminutives in consonant + "ia" take -iu (Kasia -> Kasiu); full names take -io (Julia -> Julio).
_PL_SOFT_DIMINUTIVE = re.compile(r"(?:s|z|c|n|dz)ia$")
# Short diminutives in -la take -lu (Ola -> Olu, Ela -> Elu); longer names -lo (Karola -> Karolo).
_PL_SHORT_LA = re.compile(r"^\w{1,2}la$")
# Masculine endings and their vocative, longest first (Tomasz -> Tomaszu, Piotr -> Piotrze).
_PL_MASCULINE: tuple[tuple[str, str], ...] = (
    ("eł", "le"),  # Paweł -> Pawle
    ("ek", "ku"),  # Marek -> Marku, Jacek -> Jacku
    ("ander", "andrze"),  # Aleksander -> Aleksandrze (Oliwer -> Oliwerze keeps its e)
    ("cper", "cprze"),  # Kacper -> Kacprze
    ("sz", "szu"),
    ("cz", "czu"),
    ("rz", "rzu"),
    ("ch", "chu"),
    ("ł", "le"),  # Michał -> Michale
    ("t", "cie"),  # Robert -> Robercie
    ("d", "dzie"),  # Dawid -> Dawidzie
    ("r", "rze"),  # Piotr -> Piotrze
    ("k", "ku"),
    ("g", "gu"),
    ("j", "ju"),  # Maciej -> Macieju
    ("l", "lu"),  # Kamil -> Kamilu
    ("ż", "żu"),
    ("n", "nie"),
    ("m", "mie"),
    ("b", "bie"),
    ("p", "pie"),
    ("f", "fie"),
    ("w", "wie"),
    ("s", "sie"),
    ("z", "zie"),
)


def is_polish_woman(name: str) -> bool:
    """Whether a Polish given name is a woman's: it ends in -a and is not Kuba or Barnaba."""
    low = name.casefold()
    return low.endswith("a") and low not in _PL_MEN_IN_A


def polish_vocative(name: str) -> str:
    """The vocative of a Polish given name: Anna -> Anno, Kasia -> Kasiu, Tomasz -> Tomaszu."""
    low = name.casefold()
    if low.endswith("a"):
        soft = _PL_SOFT_DIMINUTIVE.search(low) or _PL_SHORT_LA.match(low)
        return _same_case(name[:-1] + ("u" if soft else "o"), name)
    if low.endswith(("i", "y", "e", "o", "u")):
        return name  # Antoni, Jerzy: the vocative is the name itself
    for ending, vocative in _PL_MASCULINE:
        if low.endswith(ending):
            return _same_case(name[: len(name) - len(ending)] + vocative, name)
    return name


def latvian_vocative(name: str) -> str:
    """The vocative of a Latvian given name: Jānis -> Jāni, Edgars -> Edgar; women's unchanged."""
    low = name.casefold()
    if low.endswith(("is", "us")):
        return name[:-1]
    if low.endswith(("s", "š")) and len(name) > 2:
        return name[:-1]
    return name


def _same_case(text: str, like: str) -> str:
    return text.upper() if like.isupper() and len(like) > 1 else text


def address(given: str, language: str, register: str | None) -> str:
    """A given name as the greeting says it: "Anno", "Panie Tomaszu", "Jāni", or unchanged."""
    if not given or not given[:1].isalpha():
        return given
    if language == "pl":
        vocative = polish_vocative(given)
        if register == "formal":
            return f"{'Pani' if is_polish_woman(given) else 'Panie'} {vocative}"
        return vocative
    if language == "lv":
        return latvian_vocative(given)
    return given


# Words by which a customer shows the form of address they use. A company is often addressed in
# the plural ("ihr", "vous", "jūs", "wy"), which says nothing about formality, so only the
# unambiguous singular (or the polite plural "Państwo") counts; Portuguese tells Portugal (the
# "tu" variant) from Brazil (the "você" templates).
_REGISTER_CUES: dict[str, dict[str, re.Pattern[str]]] = {
    "de": {
        "formal": re.compile(r"(?<![.!?:]\s)(?<!^)\b(?:Sie|Ihnen|Ihre[mnrs]?)\b"),
        # Lower case only: "Ihr" may be the polite possessive, "ihr" also means "her".
        "informal": re.compile(
            r"\b(?:[Dd]u|[Dd]ich|[Dd]ir|[Dd]ein\w*|euch|[Ee]uer\w*|[Ee]ure\w*)\b"
        ),
    },
    "fr": {"informal": re.compile(r"\b(?:tu|toi|ton|tes|t'as)\b", re.I)},
    "es": {
        "formal": re.compile(r"\busted\b", re.I),
        "informal": re.compile(r"\b(?:tú|vosotros|vosotras|vuestr[oa]s?|contigo)\b", re.I),
    },
    "pl": {"formal": re.compile(r"\bPaństw(?:o|a|u|em)\b")},
    "lv": {"informal": re.compile(r"\b(?:tu|tev|tevi|tavs|tava|tavu|tavā)\b", re.I)},
    "pt": {
        "informal": re.compile(
            r"\b(?:connosco|telemóvel|autocarro|ecrã|utilizador|morada|facto|contacto|"
            r"estou a \w+ar|estou a \w+er|estou a \w+ir|tens|podes|queres)\b",
            re.I,
        ),
        "formal": re.compile(
            r"\b(?:você|vocês|vc|vcs|celular|ônibus|tela|usuário|contato|a gente|pra|tô)\b", re.I
        ),
    },
}


def mirrored_register(text: str, language: str) -> str | None:
    """The form of address the customer's own words show ("formal" or "informal"), or None
    when they show none or both."""
    cues = _REGISTER_CUES.get(language, {})
    shown = {register for register, pattern in cues.items() if pattern.search(text)}
    return shown.pop() if len(shown) == 1 else None


# Academic titles people put in their profile name: they are greeted with the title and surname.
_TITLE = re.compile(r"^(?:dr|prof|doc|dott|mag|ing|mgr|dra|profa?)\.?$", re.IGNORECASE)


def titled_name(author_name: str) -> str | None:
    """ "Dr. Krüger" for a profile named "Dr. Stefan Krüger": not "Hallo Stefan"."""
    words = author_name.split()
    if len(words) >= 2 and _TITLE.match(words[0]) and words[-1][:1].isalpha():
        title = words[0] if words[0].endswith(".") else f"{words[0]}."
        return f"{title} {words[-1]}"
    return None


_UPPER = "A-ZÀ-ÖØ-ÞĀĂĄĆČĎĒĖĘĚĢĪĮĶĻŁŃŅŇŌŐŒŔŘŚŞŠŢŤŪŮŰŲŹŻŽ"
_NAME = rf"[{_UPPER}][\w'-]+"


# Where a praising customer names the colleague who helped, per language. The name is kept in the
# case the words around it give, which is the case the thank-you repeats it in: Polish and Latvian
# thank in the dative ("dzięki Pani Kasi", "paldies Jānim") and pass words on in the dative too.
def _after(words: str, titles: str = "") -> re.Pattern[str]:
    """A name (with its title, if any) right after one of `words`."""
    title = rf"(?:(?:{titles}) )?" if titles else ""
    return re.compile(rf"\b(?:{words}) ({title}{_NAME})")


_EN_ROLES = "agent|adviser|advisor|driver|colleague|technician|nurse|rep|engineer|courier"
_COLLEAGUE: dict[str, tuple[re.Pattern[str], ...]] = {
    "en": (
        _after(r"[Tt]hanks?,?(?: so much)?,? (?:to)?|[Tt]hank you(?: so much)?,?(?: to)?"),
        _after(r"[Kk]udos(?: to)?|[Ss]hout ?out(?: to)?|[Pp]rops(?: to)?"),
        _after(_EN_ROLES),
        re.compile(rf"\b({_NAME}) (?:from|at) (?:your|the) (?:team|support|store|shop|helpline)"),
    ),
    "de": (
        _after(r"[Dd]anke(?: an)?|[Dd]ank an", "Frau|Herrn?"),
        # "Dank Frau Becker hab ich bestanden": the preposition, only with a title ("dank Ihrer
        # Hilfe" names nobody).
        re.compile(rf"\b[Dd]ank ((?:Frau|Herrn?) {_NAME})"),
        _after(r"Mitarbeiter(?:in)?|Fahrer(?:in)?|Techniker(?:in)?|Berater(?:in)?", "Frau|Herrn?"),
    ),
    "fr": (
        _after(r"[Mm]erci (?:à|a)", r"Mme|M\.|Madame|Monsieur"),
        _after(r"conseill(?:er|ère)|chauffeur|technicien(?:ne)?|livreur", r"Mme|M\."),
    ),
    "es": (
        _after(r"[Gg]racias a"),
        _after(r"agente|conductor(?:a)?|técnic[oa]|asesor(?:a)?|repartidor(?:a)?"),
    ),
    "pt": (
        _after(r"[Oo]brigad[oa] (?:à|ao|a|pela|pelo)"),
        _after(r"atendente|motorista|técnic[oa]|consultor(?:a)?|entregador(?:a)?"),
    ),
    "pl": (_after(r"(?:[Dd]zięki|[Dd]ziękuję|[Dd]ziękujemy)(?: bardzo)?", "[Pp]ani|[Pp]anu"),),
    "lv": (
        _after(
            r"[Pp]aldies(?: (?:operatorei|operatoram|kurjeram|šoferim|konsultantei|konsultantam))?"
        ),
    ),
}


def praised_colleague(text: str, language: str, brand: str = "") -> str | None:
    """The colleague a praising customer names ("Kwame", "Mme Lefèvre", "Pani Kasi"), if any."""
    for pattern in _COLLEAGUE.get(language, ()):
        for match in pattern.finditer(text):
            name = match.group(1)
            if brand and brand.casefold() in name.casefold():
                continue  # "thanks Kestrel" thanks the brand
            return name
    return None
