"""The bundled sentiment model on clear brand mentions in every first-class language."""

from __future__ import annotations

import numpy as np
import pytest

from models.sentiment import LABELS, SentimentModel, get_sentiment_model

pytestmark = pytest.mark.model

# Written for these tests; none of them is in the training data.
CLEAR = {
    "en": (
        [
            "@kestrel my order never arrived and nobody answers the phone. Absolutely useless.",
            "Kestrel took my money twice and refuses to refund me. Disgusting service.",
        ],
        [
            "Thank you @kestrel_help, the replacement arrived the next morning. Fantastic service!",
            "Honestly the best online shop I've used, fast delivery and lovely staff at Kestrel",
        ],
    ),
    "pl": (
        [
            "@kestrel zamówienie nie dotarło, a obsługa klienta nie odbiera telefonu. Tragedia.",
            "Kestrel pobrał pieniądze i nie chce ich zwrócić. Jestem wściekła, nigdy więcej!",
        ],
        [
            "Dziękuję @kestrel_help, wymiana dotarła już następnego dnia. Fantastyczna obsługa!",
            "Najlepszy sklep internetowy, szybka dostawa i bardzo miła obsługa w Kestrel",
        ],
    ),
    "lv": (
        [
            "@kestrel pasūtījums tā arī nepienāca, un klientu apkalpošana neceļ telefonu. Šausmas.",
            "Kestrel paņēma naudu un atsakās to atmaksāt. Esmu ļoti dusmīga, nekad vairs!",
        ],
        [
            "Paldies @kestrel_help, jaunā prece pienāca jau nākamajā rītā. Fantastiski!",
            "Labākais interneta veikals, ātra piegāde un ļoti jauki darbinieki Kestrel",
        ],
    ),
    "pt": (
        [
            "@kestrel a minha encomenda nunca chegou e ninguém atende o telefone. Uma vergonha.",
            "A Kestrel ficou com o meu dinheiro e recusa o reembolso. Serviço horrível!",
        ],
        [
            "Obrigado @kestrel_help, a troca chegou na manhã seguinte. Atendimento fantástico!",
            "A melhor loja online, entrega rápida e funcionários muito simpáticos na Kestrel",
        ],
    ),
    "es": (
        [
            "@kestrel mi pedido nunca llegó y nadie contesta el teléfono. Una vergüenza.",
            "Kestrel se quedó con mi dinero y se niega a devolverlo. ¡Servicio horrible!",
        ],
        [
            "Gracias @kestrel_help, el cambio llegó a la mañana siguiente. ¡Atención fantástica!",
            "La mejor tienda online, envío rapidísimo y un personal encantador en Kestrel",
        ],
    ),
    "de": (
        [
            "@kestrel meine Bestellung kam nie an und niemand geht ans Telefon. Eine Frechheit.",
            "Kestrel hat mein Geld kassiert und will es nicht erstatten. Furchtbarer Service!",
        ],
        [
            "Danke @kestrel_help, der Ersatz war am nächsten Morgen da. Fantastischer Service!",
            "Der beste Onlineshop, schnelle Lieferung und super freundliche Leute bei Kestrel",
        ],
    ),
    "fr": (
        [
            "@kestrel ma commande n'est jamais arrivée et personne ne répond. Honteux.",
            "Kestrel a encaissé mon argent et refuse de me rembourser. Service horrible !",
        ],
        [
            "Merci @kestrel_help, le remplacement est arrivé dès le lendemain. Service génial !",
            "La meilleure boutique en ligne, livraison rapide et personnel adorable chez Kestrel",
        ],
    ),
}


@pytest.mark.parametrize("lang", sorted(CLEAR))
def test_clear_mentions_get_the_obvious_label(sentiment_model: SentimentModel, lang: str) -> None:
    negatives, positives = CLEAR[lang]
    results = sentiment_model.predict([*negatives, *positives])
    labels = [r.label for r in results]
    assert labels == ["negative"] * len(negatives) + ["positive"] * len(positives), list(
        zip(labels, [*negatives, *positives], strict=True)
    )


def test_probabilities_cover_the_three_labels_and_sum_to_one(
    sentiment_model: SentimentModel,
) -> None:
    results = sentiment_model.predict(["Where is your store in Riga?", "great", "awful"])
    for result in results:
        assert set(result.probabilities) == set(LABELS)
        assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert result.label == max(result.probabilities, key=result.probabilities.__getitem__)


def test_embeddings_path_matches_text_path(sentiment_model: SentimentModel) -> None:
    texts = ["The app keeps crashing", "Love it"]
    emb = sentiment_model.encoder.embed(texts)
    via_embeddings = sentiment_model.predict_embeddings(emb)
    via_texts = sentiment_model.predict(texts)
    for a, b in zip(via_embeddings, via_texts, strict=True):
        assert a.label == b.label
        for label in LABELS:
            assert a.probabilities[label] == pytest.approx(b.probabilities[label], abs=1e-4)


def test_empty_input(sentiment_model: SentimentModel) -> None:
    assert sentiment_model.predict([]) == []
    assert sentiment_model.predict_embeddings(np.zeros((0, sentiment_model.encoder.dim))) == []


def test_wrong_embedding_width_is_refused(sentiment_model: SentimentModel) -> None:
    with pytest.raises(ValueError, match="embeddings"):
        sentiment_model.predict_embeddings(np.zeros((2, 7), dtype=np.float32))


def test_model_is_shared_and_versioned(sentiment_model: SentimentModel) -> None:
    assert get_sentiment_model() is sentiment_model
    assert sentiment_model.version.startswith(sentiment_model.encoder.version + "+sentiment@")
