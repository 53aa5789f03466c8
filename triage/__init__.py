"""triage: brand mentions ranked by urgency, with reply drafts, for social-care teams."""

__version__ = "0.1.0"
