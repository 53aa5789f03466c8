"""Session-wide model fixtures: the real encoder is loaded once per test session."""

from __future__ import annotations

import pytest

from models.encoder import Encoder, get_encoder
from models.sentiment import SentimentModel, get_sentiment_model


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    """The bundled encoder (converted once per machine into the normal cache, then reused)."""
    return get_encoder()


@pytest.fixture(scope="session")
def sentiment_model(encoder: Encoder) -> SentimentModel:
    """The bundled sentiment head over the session encoder."""
    return get_sentiment_model()
