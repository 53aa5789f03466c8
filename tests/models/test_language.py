from __future__ import annotations

import pytest

from models.language import LanguageDetectorService

FIRST_CLASS = ["en", "pl", "lv", "pt", "es", "de", "fr"]


@pytest.fixture(scope="module")
def detector() -> LanguageDetectorService:
    return LanguageDetectorService(FIRST_CLASS)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Still waiting for my parcel, third week now", "en"),
        ("Pobraliście mi dwa razy opłatę za abonament", "pl"),
        ("Jūs divreiz noņēmāt naudu no mana konta", "lv"),
        ("Vocês cobraram duas vezes a minha fatura", "pt"),
        ("Me cobraron dos veces la factura de este mes", "es"),
        ("Ihr habt mir den Betrag doppelt abgebucht", "de"),
        ("Vous m'avez débité deux fois ce mois-ci", "fr"),
        ("Il telefono non si accende più da ieri sera", "it"),
    ],
)
def test_short_texts_in_each_language(detector, text, code):
    assert detector.detect(text).code == code


@pytest.mark.parametrize("text", ["🙃🙃🙃", "!!!", "12345", ""])
def test_no_letters_is_undetermined(detector, text):
    result = detector.detect(text)
    assert result.code == "und" and result.confidence == 0.0


def test_very_long_text_is_cheap_and_detected(detector):
    assert detector.detect("Das Handy ist nach einer Woche kaputt gegangen. " * 2000).code == "de"


def test_unknown_configured_language_is_a_clear_error():
    with pytest.raises(ValueError, match="'xx' is not supported"):
        LanguageDetectorService(["xx"])
