"""Names in the greeting: the Polish and Latvian vocative, Pan/Pani in formal Polish."""

from __future__ import annotations

import pytest

from triage.drafts.names import address, latvian_vocative, polish_vocative


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
