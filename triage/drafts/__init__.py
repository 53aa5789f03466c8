"""Reply drafts in the customer's language; a human approves every one before it is sent."""

from triage.drafts.render import DraftRequest, DraftText, render_draft

__all__ = ["DraftRequest", "DraftText", "render_draft"]
