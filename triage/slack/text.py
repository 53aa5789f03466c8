"""The one escape function for text that goes into Slack, and cutting text to Block Kit limits."""

from __future__ import annotations

from triage.links import web_url

# Block Kit limits (https://api.slack.com/reference/block-kit/blocks).
SECTION_TEXT_LIMIT = 3000
FIELD_TEXT_LIMIT = 2000
BUTTON_TEXT_LIMIT = 75
CONTEXT_ELEMENT_LIMIT = 10
URL_LIMIT = 3000  # a button's url; a longer link is left off rather than break the message


def escape(text: str) -> str:
    """Make customer text inert: `<!channel>`, `<@U123>` and `<url|label>` show as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str | None, label: str) -> str:
    """A mrkdwn link whose label cannot break out of the link syntax; the bare label when `url`
    is no usable web address (javascript:, over-long)."""
    web = usable_url(url)
    if web is None:
        return escape(label)
    safe_url = web.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C").replace(" ", "%20")
    return f"<{safe_url}|{escape(label).replace('|', '¦')}>"


def cut(text: str, limit: int, *, more_url: str | None = None) -> str:
    """Escape `text` and cut it to `limit` characters, ending with a link to the rest."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    tail = _tail(more_url, limit)
    return _whole_entities(escaped[: max(0, limit - len(tail))]).rstrip() + tail


def quote(text: str, limit: int | None = None, *, more_url: str | None = None) -> str:
    """Escape `text` as a mrkdwn quote ("> " per line), cut to `limit` characters once quoted."""
    lines = [f"> {line}" if line else ">" for line in escape(text).splitlines()]
    quoted = "\n".join(lines) or ">"
    if limit is None or len(quoted) <= limit:
        return quoted
    tail = _tail(more_url, limit)
    room = limit - len(tail)
    kept: list[str] = []
    used = -1  # the first line has no newline before it
    for line in lines:
        if used + 1 + len(line) > room:
            part = _whole_entities(line[: max(0, room - used - 1)]).rstrip()
            if len(part) > 1:  # more than the bare quote mark
                kept.append(part)
            break
        kept.append(line)
        used += 1 + len(line)
    return ("\n".join(kept) or ">") + tail


def fit(mrkdwn: str, limit: int) -> str:
    """Cut mrkdwn built elsewhere (already escaped) to `limit`, keeping entities and links whole."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    head = _whole_entities(mrkdwn[: max(0, limit - 2)])
    opened = head.rfind("<")
    if opened > head.rfind(">"):
        head = head[:opened]
    return head.rstrip() + " …"


def usable_url(url: str | None) -> str | None:
    """`url`, or None when it is no http(s) address or too long for Slack to take as a link."""
    return url if web_url(url) and url and len(url) <= URL_LIMIT else None


def _tail(more_url: str | None, limit: int) -> str:
    if usable_url(more_url):
        tail = " … " + link(more_url, "read the rest")
        # A link that would crowd out the text it stands for is left off.
        if len(tail) <= min(URL_LIMIT, limit // 2):
            return tail
    return " …"


def _whole_entities(head: str) -> str:
    """`head` without a trailing entity such as &amp; cut in half."""
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        return head[:amp]
    return head
