"""The ML: offline encoder, language, sentiment, urgency."""
