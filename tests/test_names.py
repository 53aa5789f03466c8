"""Names in the greeting: the Polish and Latvian vocative, Pan/Pani in formal Polish."""

from __future__ import annotations

import pytest

from triage.drafts.names import (
    address,
    latvian_vocative,
    mirrored_register,
    polish_vocative,
    praised_colleague,
    titled_name,
)


@pytest.mark.parametrize(
    ("name", "vocative"),
    [
        ("Anna", "Anno"), ("Magda", "Magdo"), ("Agnieszka", "Agnieszko"), ("Julia", "Julio"),
        ("Zofia", "Zofio"), ("Kasia", "Kasiu"), ("Ania", "Aniu"), ("Zosia", "Zosiu"),
        ("Ola", "Olu"), ("Karola", "Karolo"), ("Kuba", "Kubo"), ("Tomasz", "Tomaszu"),
        ("Łukasz", "Łukaszu"), ("Piotr", "Piotrze"), ("Wiktor", "Wiktorze"),
        ("Oliwer", "Oliwerze"), ("Kacper", "Kacprze"), ("Aleksander", "Aleksandrze"),
        ("Marek", "Marku"), ("Jacek", "Jacku"), ("Dominik", "Dominiku"), ("Paweł", "Pawle"),
        ("Michał", "Michale"), ("Robert", "Robercie"), ("Dawid", "Dawidzie"), ("Jan", "Janie"),
        ("Adam", "Adamie"), ("Jakub", "Jakubie"), ("Filip", "Filipie"),
        ("Krzysztof", "Krzysztofie"), ("Stanisław", "Stanisławie"), ("Maciej", "Macieju"),
        ("Kamil", "Kamilu"), ("Grzegorz", "Grzegorzu"), ("Wojciech", "Wojciechu"),
        ("Antoni", "Antoni"), ("Jerzy", "Jerzy"), ("ANNA", "ANNO"),
    ],
)  # fmt: skip
def test_polish_vocative(name, vocative):
    assert polish_vocative(name) == vocative


@pytest.mark.parametrize(
    ("name", "vocative"),
    [
        ("Jānis", "Jāni"), ("Kārlis", "Kārli"), ("Andris", "Andri"), ("Edgars", "Edgar"),
        ("Mārtiņš", "Mārtiņ"), ("Ingus", "Ingu"), ("Raimonds", "Raimond"), ("Ilze", "Ilze"),
        ("Anna", "Anna"), ("Līga", "Līga"),
    ],
)  # fmt: skip
def test_latvian_vocative(name, vocative):
    assert latvian_vocative(name) == vocative


def test_formal_polish_says_pan_or_pani_and_other_languages_keep_the_name():
    assert address("Tomasz", "pl", "formal") == "Panie Tomaszu"
    assert address("Anna", "pl", "formal") == "Pani Anno"
    assert address("Kuba", "pl", "formal") == "Panie Kubo"
    assert address("Tomasz", "pl", "informal") == "Tomaszu"
    assert address("Jānis", "lv", "formal") == "Jāni"
    assert address("Stefan", "de", "formal") == "Stefan"
    # A handle is not a name: it stays as written.
    assert address("@tomasz_k", "pl", "formal") == "@tomasz_k"
    assert address("", "pl", "formal") == ""


@pytest.mark.parametrize(
    ("language", "text", "register"),
    [
        ("de", "Können Sie mir bitte helfen? Mein Paket kam nicht.", "formal"),
        ("de", "Hey, kannst du mal schauen, euer Paket ist weg", "informal"),
        ("de", "Sie haben doppelt abgebucht", None),  # "Sie" first: they, or you?
        ("fr", "t'as vu ton appli ? elle plante", "informal"),
        ("fr", "Vous m'avez prélevé deux fois", None),  # "vous" is also the plural
        ("es", "¿Usted me puede ayudar con el pedido?", "formal"),
        ("es", "¿Vosotros no contestáis nunca?", "informal"),
        ("es", "Me cobraron dos veces", None),
        ("pl", "Czy mogą Państwo sprawdzić zamówienie?", "formal"),
        ("pl", "Pani w rejestracji była niemiła", None),  # a lady at the desk, not the reader
        ("lv", "Vai tu vari palīdzēt?", "informal"),
        ("lv", "Kāpēc jūs noņēmāt naudu?", None),
        ("pt", "Estou a tentar entrar e o telemóvel não deixa", "informal"),
        ("pt", "Vocês cobraram duas vezes, tô sem celular", "formal"),
        ("en", "Can you help me?", None),
    ],
)
def test_the_customers_own_form_of_address_is_read(language, text, register):
    assert mirrored_register(text, language) == register


def test_a_title_is_greeted_with_the_surname():
    assert titled_name("Dr. Stefan Krüger") == "Dr. Krüger"
    assert titled_name("prof Anna Nowak") == "prof. Nowak"
    assert titled_name("Stefan Krüger") is None
    assert titled_name("Dr.") is None


@pytest.mark.parametrize(
    ("language", "text", "colleague"),
    [
        ("en", "My driver Kwame noticed I'd left my laptop and drove 3 miles back!", "Kwame"),
        ("en", "Thank you so much to Ana from support!", "Ana"),
        ("en", "Thanks Kestrel, you rock", None),  # the brand itself
        ("en", "Thanks for the fast delivery!", None),
        ("fr", "Merci à Mme Lefèvre, notre gestionnaire, d'une humanité rare", "Mme Lefèvre"),
        ("de", "Vielen Dank an Frau Müller vom Kundenservice!", "Frau Müller"),
        ("de", "Dank Frau Becker hab ich die Prüfung bestanden", "Frau Becker"),
        ("de", "Dank Ihrer schnellen Hilfe läuft alles wieder", None),
        ("pl", "Dzięki Pani Kasi z infolinii wszystko załatwione", "Pani Kasi"),
        ("lv", "Paldies operatorei Annai, viss atrisināts!", "Annai"),
        ("es", "Gracias a Lucía por la ayuda", "Lucía"),
        ("pt", "Obrigada à Carla pelo atendimento", "Carla"),
    ],
)
def test_the_colleague_a_customer_praises_is_found(language, text, colleague):
    assert praised_colleague(text, language, "Kestrel") == colleague
