"""Language detection with lingua: the configured languages plus common others, "und" if unsure."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

UNDETERMINED = "und"
# Detected so that a post in one of these is not forced into a first-class language.
COMMON_OTHERS = ("it", "nl", "ar", "ru", "uk", "tr", "hi", "ja", "zh", "ko", "sv", "lt", "cs")
MIN_CONFIDENCE = 0.4
# Detection needs a sentence or two; the rest of a 50 kB review only costs time.
MAX_CHARS = 1000


@dataclass(frozen=True, slots=True)
class LanguageResult:
    code: str
    confidence: float


def _lingua_language(code: str) -> Language:
    try:
        return Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper()))
    except AttributeError:
        raise ValueError(f"language {code!r} is not supported by the language detector") from None


@functools.cache
def _detector(codes: tuple[str, ...]) -> LanguageDetector:
    languages = {_lingua_language(code) for code in codes}
    return LanguageDetectorBuilder.from_languages(*languages).build()


class LanguageDetectorService:
    """Detects the language of each text among `languages` and the common others."""

    def __init__(self, languages: Sequence[str]):
        self.codes = tuple(sorted({*languages, *COMMON_OTHERS}))
        self._detector = _detector(self.codes)

    def detect(self, text: str) -> LanguageResult:
        sample = text[:MAX_CHARS]
        if not any(ch.isalpha() for ch in sample):
            return LanguageResult(UNDETERMINED, 0.0)
        values = self._detector.compute_language_confidence_values(sample)
        if not values or values[0].value < MIN_CONFIDENCE:
            return LanguageResult(UNDETERMINED, values[0].value if values else 0.0)
        top = values[0]
        return LanguageResult(top.language.iso_code_639_1.name.lower(), round(top.value, 4))

    def detect_many(self, texts: Sequence[str]) -> list[LanguageResult]:
        return [self.detect(text) for text in texts]
