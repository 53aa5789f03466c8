"""Sources of brand mentions: one module per platform on one small base class."""
