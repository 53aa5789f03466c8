"""The analyze stage: language, sentiment and urgency for a batch of texts, models loaded once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from models.intent import IntentModel, get_intent_model, head_installed
from models.language import LanguageDetectorService, LanguageResult
from models.sentiment import SentimentModel, SentimentResult, get_sentiment_model
from models.urgency import Signals, UrgencyResult, UrgencyScorer
from triage.config import Settings
from triage.domain import NewMention
from triage.store import Mention

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AnalysisInput:
    """The facts about one mention that the models and the score look at."""

    text: str
    title: str | None = None
    rating: float | None = None
    reach: int | None = None
    engagement: int | None = None
    author_handle: str | None = None
    prior_contacts: int = 0

    @classmethod
    def of(cls, mention: NewMention | Mention, *, prior_contacts: int = 0) -> AnalysisInput:
        """The facts of a mention, stored or just fetched."""
        return cls(
            text=mention.text,
            title=mention.title,
            rating=mention.rating,
            reach=mention.author_reach,
            engagement=mention.engagement,
            author_handle=mention.author_handle,
            prior_contacts=prior_contacts,
        )


@dataclass(frozen=True, slots=True)
class AnalysisOutput:
    language: LanguageResult
    sentiment: SentimentResult
    urgency: UrgencyResult


class Analyzer:
    """Scores mentions in batches; one instance per process holds the loaded models."""

    def __init__(
        self,
        settings: Settings,
        *,
        sentiment: SentimentModel | None = None,
        language: LanguageDetectorService | None = None,
        scorer: UrgencyScorer | None = None,
        intent: IntentModel | None = None,
    ):
        models = settings.models
        self.batch_size = models.batch_size
        self.sentiment = sentiment or get_sentiment_model(
            models.encoder,
            models.sentiment_head,
            max_length=models.max_length,
            batch_size=models.batch_size,
            threads=models.threads,
            precision=models.precision,
        )
        self.language = language or LanguageDetectorService(models.languages)
        self.scorer = scorer or UrgencyScorer(models.urgency.weights())
        # The intent head, when its weights are installed (they ship with triage).
        self.intent = (
            get_intent_model(self.sentiment.encoder)
            if intent is None and head_installed()
            else intent
        )
        self.vip = {_handle_key(handle) for handle in settings.brand.vip_accounts}

    @property
    def version(self) -> str:
        return self.sentiment.version

    def analyze(self, items: Sequence[AnalysisInput]) -> list[AnalysisOutput]:
        """Language, sentiment and urgency for each item, in input order."""
        texts = [_model_text(item) for item in items]
        languages = self.language.detect_many(texts)
        encoder = self.sentiment.encoder
        # One pass of the encoder: the last layer for sentiment, the ones the intent head reads.
        wanted = (encoder.depth, *(self.intent.encoder_layers if self.intent else ()))
        views = encoder.embed_layers(texts, wanted) if texts else {}
        sentiments = self.sentiment.predict_embeddings(views[encoder.depth]) if texts else []
        guesses = self.intent.predict_views(views) if self.intent and texts else []
        outputs = []
        for index, (item, text, language, sentiment) in enumerate(
            zip(items, texts, languages, sentiments, strict=True)
        ):
            guess = guesses[index] if guesses else None
            signals = Signals(
                text=text,
                language=language.code,
                p_negative=sentiment.probabilities["negative"],
                p_positive=sentiment.probabilities["positive"],
                rating=item.rating,
                reach=item.reach,
                engagement=item.engagement,
                vip=_handle_key(item.author_handle) in self.vip if item.author_handle else False,
                prior_contacts=item.prior_contacts,
                model_complaint=guess.complaint_probability if guess else None,
                model_labels=guess.labels if guess else None,
                model_urgent=guess.urgent if guess else None,
                model_urgent_if_serious=guess.urgent_if_serious if guess else None,
                model_urgent_if_other=guess.urgent_if_other if guess else None,
                model_probabilities=guess.probabilities if guess else None,
            )
            outputs.append(AnalysisOutput(language, sentiment, self.scorer.score(signals)))
        return outputs


def _model_text(item: AnalysisInput) -> str:
    # A review's title often carries the verdict ("Charged twice!"), so it is read with the body.
    if item.title and item.title.strip() and item.title.strip() not in item.text:
        return f"{item.title.strip()}. {item.text}"
    return item.text


def _handle_key(handle: str) -> str:
    return handle.strip().lstrip("@").casefold()
