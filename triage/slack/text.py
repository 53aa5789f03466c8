"""The one escape function for text that goes into Slack, and cutting text to Block Kit limits."""

from __future__ import annotations

# Block Kit limits (https://api.slack.com/reference/block-kit/blocks).
SECTION_TEXT_LIMIT = 3000
FIELD_TEXT_LIMIT = 2000
BUTTON_TEXT_LIMIT = 75
CONTEXT_ELEMENT_LIMIT = 10


def escape(text: str) -> str:
    """Make customer text inert: `<!channel>`, `<@U123>` and `<url|label>` show as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    """A mrkdwn link whose label cannot break out of the link syntax."""
    safe_url = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C").replace(" ", "%20")
    return f"<{safe_url}|{escape(label).replace('|', '¦')}>"


def cut(text: str, limit: int, *, more_url: str | None = None) -> str:
    """Escape `text` and cut it to `limit` characters, ending with a link to the rest."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    tail = " … " + link(more_url, "read the rest") if more_url else " …"
    room = max(0, limit - len(tail))
    head = escaped[:room]
    # Never cut an entity such as &amp; in half.
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    return head.rstrip() + tail
