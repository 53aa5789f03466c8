"""The words a mention is about, as the report's topics count them: its words of three letters
or more, without the stop words of its language and of English, links, handles and hashtags.

Here, not in triage/reports, because the store counts them as mentions are analysed
(report_word) and the store never imports the reports.
"""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path

import stopwordsiso

from triage.config import FIRST_CLASS_LANGUAGES

STOPWORDS_FILE = Path(__file__).with_name("stopwords.toml")
_WORD = re.compile(r"[^\W\d_][\w'’-]{2,}")
_NOISE = re.compile(r"https?://\S+|@\w+|#\w+")
# French (and Italian) elision: "l'appli", "qu'on" are "appli", "on".
_ELISION = re.compile(r"^(?:qu|[cdjlmnst])'")


@functools.cache
def stopwords(language: str) -> frozenset[str]:
    """Words that are no topic in a mention in `language`: the stopwords-iso lists of that
    language and of English (customers mix English in), with stopwords.toml's care words added
    and its kept words taken out. A language without a list gets every first-class language's."""
    data = tomllib.loads(STOPWORDS_FILE.read_text(encoding="utf-8"))
    languages = {language, "en"} if stopwordsiso.has_lang(language) else set(FIRST_CLASS_LANGUAGES)
    words = set(stopwordsiso.stopwords(languages))
    words.update(word for lang in languages for word in data["extra"].get(lang, ()))
    words.difference_update(word for lang in languages for word in data["keep"].get(lang, ()))
    return frozenset(word.casefold().replace("’", "'") for word in words)


def topic_words(language: str, text: str) -> set[str]:
    """The words of `text` (in `language`) that may be a topic, each once."""
    stop = stopwords(language)
    words = set()
    for token in _WORD.findall(_NOISE.sub(" ", text.casefold().replace("’", "'"))):
        word = _ELISION.sub("", token).strip("'-")
        if len(word) >= 3 and word not in stop and word.replace("'", "") not in stop:
            words.add(word)
    return words
