"""The RSS/Atom connector against recorded feeds: mapping, conditional GET, retries, bad input."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from connectors import rss
from connectors.base import AuthError, PayloadError
from connectors.rss import RssConnector, html_to_text, unwrap_link
from triage.config import ConnectorSettings
from triage.domain import Batch

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rss"
FEED_URL = "https://www.google.com/alerts/feeds/04512837719235547210/13850716425730913645"
LOGGER = "triage.connectors.alerts"
XML = {"Content-Type": "application/atom+xml; charset=utf-8"}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def with_item(feed: bytes, item: str) -> bytes:
    """An RSS 2.0 feed with one more <item> appended to its channel."""
    return feed.replace(b"</channel>", item.encode() + b"</channel>")


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def connector(
    sleep: Sleeps | None = None, credentials: dict[str, str] | None = None, **options: Any
) -> RssConnector:
    settings = ConnectorSettings(
        name="alerts",
        type="rss",
        options={"url": FEED_URL, **options},
        credentials=credentials or {},
    )
    return RssConnector(settings, sleep=sleep if sleep is not None else Sleeps())


def fetch(source: RssConnector, cursor: str | None = None) -> Batch:
    (batch,) = source.fetch(cursor)
    return batch


@respx.mock
def test_google_alerts_entries_are_unwrapped_and_stripped() -> None:
    respx.get(FEED_URL).mock(return_value=httpx.Response(200, content=fixture("google_alerts.xml")))
    batch = fetch(connector())
    outage, review, latvian = batch.mentions
    assert outage.external_id == "tag:google.com,2013:googlealerts/feed:7240395614472841205"
    assert outage.url == (
        "https://www.baltictimes.example/kestrel-mobile-outage-leaves-thousands-without-data/"
    )
    assert outage.title == "Kestrel Mobile outage leaves thousands without data across the Baltics"
    assert outage.text == (
        "Kestrel Mobile outage leaves thousands without data across the Baltics\n\n"
        "Customers of Kestrel Mobile in Riga and Vilnius reported no mobile data from early "
        'Tuesday morning. The operator said engineers were "working on it" ...'
    )
    assert outage.created_at == datetime(2025, 3, 4, 7, 41, 22, tzinfo=UTC)
    assert outage.author_name is None
    assert (outage.source, outage.platform) == ("alerts", "rss")
    assert "K7's battery" in review.text and "slow & fails" in review.text
    assert "<b>" not in review.text and "&" + "nbsp;" not in review.text
    # The target's own query string arrives percent-encoded inside Google's and is decoded once.
    assert latvian.url == "https://www.delfi.example/bizness/raksts?id=4821&lang=lv"
    assert latvian.text.startswith("Kestrel paaugstina tarifus no aprīļa\n\n")


@respx.mock
def test_rss2_items_map_guid_link_author_and_date() -> None:
    respx.get(FEED_URL).mock(return_value=httpx.Response(200, content=fixture("rss2.xml")))
    esim, roaming, billing = fetch(connector()).mentions
    assert esim.external_id == "community.kestrel.example-topic-4821"
    assert esim.url == (
        "https://community.kestrel.example/t/esim-activation-stuck-on-pending-for-2-days/4821"
    )
    assert esim.author_name == "ruta.k"
    assert esim.text == (
        'eSIM activation stuck on "Pending" for 2 days\n\n'
        "I switched my number to Kestrel on Sunday and the eSIM still says Pending.\n"
        "Chat support keeps sending me the same link & nothing changes. Can anyone help?"
    )
    # content:encoded wins over description; a body repeating the title is not doubled.
    assert roaming.text == (
        "Roaming in Portugal: works great! Just wanted to say thanks, no setup needed.\n"
        "Speeds were around 80 Mbps in Lisbon."
    )
    assert roaming.created_at == datetime(2025, 3, 3, 18, 40, 2, tzinfo=UTC)
    # No guid: the link is the id.
    assert billing.external_id == billing.url
    assert billing.author_name is None


@respx.mock
def test_atom_entries_use_html_and_xhtml_content() -> None:
    respx.get(FEED_URL).mock(return_value=httpx.Response(200, content=fixture("atom.xml")))
    plan, returned = fetch(connector()).mentions
    assert plan.external_id == "https://mobilematters.example/2025/03/kestrel-unlimited-tested/"
    assert plan.author_name == "Ieva Ozola"
    assert plan.created_at == datetime(2025, 3, 4, 4, 30, tzinfo=UTC)  # published, not updated
    assert plan.text.endswith("Support answered in chat within 4 minutes — impressive.")
    assert "trackPageView" not in plan.text
    assert returned.created_at == datetime(2025, 3, 2, 21, 10, tzinfo=UTC)  # only <updated>
    assert returned.text.endswith("dropped calls every single day on Kestrel's own network.")


def test_conditional_get_and_not_modified() -> None:
    headers = {**XML, "ETag": 'W/"ga-7f3a"', "Last-Modified": "Tue, 04 Mar 2025 07:41:22 GMT"}
    with respx.mock:
        respx.get(FEED_URL).mock(
            return_value=httpx.Response(200, content=fixture("google_alerts.xml"), headers=headers)
        )
        first = fetch(connector())
    assert json.loads(first.cursor or "") == {
        "etag": 'W/"ga-7f3a"',
        "last_modified": "Tue, 04 Mar 2025 07:41:22 GMT",
        "newest": "2025-03-04T07:41:22+00:00",
    }

    with respx.mock:
        route = respx.get(FEED_URL).mock(return_value=httpx.Response(304))
        second = fetch(connector(), first.cursor)
    sent = route.calls.last.request.headers
    assert sent["If-None-Match"] == 'W/"ga-7f3a"'
    assert sent["If-Modified-Since"] == "Tue, 04 Mar 2025 07:41:22 GMT"
    assert second == Batch(mentions=[], cursor=first.cursor)


@respx.mock
def test_rate_limited_then_ok_waits_as_told() -> None:
    route = respx.get(FEED_URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "12"}),
            httpx.Response(200, content=fixture("google_alerts.xml")),
        ]
    )
    sleeps = Sleeps()
    assert len(fetch(connector(sleeps)).mentions) == 3
    assert route.call_count == 2
    assert sleeps == [12.0]


@respx.mock
def test_unavailable_then_ok_backs_off() -> None:
    respx.get(FEED_URL).mock(
        side_effect=[httpx.Response(503), httpx.Response(200, content=fixture("rss2.xml"))]
    )
    sleeps = Sleeps()
    assert len(fetch(connector(sleeps)).mentions) == 3
    assert len(sleeps) == 1 and 1.0 <= sleeps[0] <= 1.25


@respx.mock
def test_unauthorized_is_fatal_and_says_what_to_fix() -> None:
    route = respx.get(FEED_URL).mock(return_value=httpx.Response(401, text="Login required"))
    sleeps = Sleeps()
    with pytest.raises(AuthError) as caught:
        fetch(connector(sleeps))
    assert "HTTP 401" in str(caught.value)
    assert "check the credentials for connector 'alerts'" in str(caught.value)
    assert route.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("credentials", "authorization"),
    [
        ({"username": "kestrel", "password": "pa:ss"}, "Basic a2VzdHJlbDpwYTpzcw=="),
        ({"token": "t0k3n"}, "Bearer t0k3n"),
    ],
)
@respx.mock
def test_private_feeds_send_credentials(credentials: dict[str, str], authorization: str) -> None:
    route = respx.get(FEED_URL).mock(return_value=httpx.Response(200, content=fixture("atom.xml")))
    fetch(connector(credentials=credentials))
    assert route.calls.last.request.headers["Authorization"] == authorization


@respx.mock
def test_malformed_entries_are_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    feed = with_item(
        fixture("rss2.xml"),
        "<item><title>Kestrel shop opening hours?</title><description>No link, no guid"
        "</description></item><item><guid isPermaLink='false'>topic-4700</guid></item>",
    )
    respx.get(FEED_URL).mock(return_value=httpx.Response(200, content=feed))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        batch = fetch(connector())
    assert len(batch.mentions) == 3
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "skipped entry title='Kestrel shop opening hours?': entry has neither an id nor a link",
        "skipped entry id='topic-4700': entry has no title or text",
    ]


@respx.mock
def test_ill_formed_feed_keeps_readable_entries(caplog: pytest.LogCaptureFixture) -> None:
    feed = fixture("rss2.xml").replace(b"Roaming in Portugal: works great!</title>", b"R&D</title>")
    respx.get(FEED_URL).mock(return_value=httpx.Response(200, content=feed))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        batch = fetch(connector())
    assert len(batch.mentions) == 3
    assert "is not well-formed" in caplog.text


@respx.mock
def test_feed_served_as_html_is_read_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    respx.get(FEED_URL).mock(
        return_value=httpx.Response(
            200, content=fixture("rss2.xml"), headers={"Content-Type": "text/html; charset=utf-8"}
        )
    )
    with caplog.at_level(logging.INFO, logger=LOGGER):
        batch = fetch(connector())
    assert len(batch.mentions) == 3
    assert [r.levelno for r in caplog.records if r.name == LOGGER] == [logging.INFO]


@respx.mock
def test_html_page_instead_of_a_feed_is_a_payload_error() -> None:
    respx.get(FEED_URL).mock(
        return_value=httpx.Response(
            200, content=fixture("not_a_feed.html"), headers={"Content-Type": "text/html"}
        )
    )
    with pytest.raises(PayloadError, match="did not return an RSS or Atom feed \\(got text/html"):
        fetch(connector())


@respx.mock
def test_entries_older_than_the_cursor_minus_overlap_are_not_emitted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rss, "utcnow", lambda: datetime(2025, 3, 5, tzinfo=UTC))
    respx.get(FEED_URL).mock(return_value=httpx.Response(200, content=fixture("google_alerts.xml")))
    cursor = json.dumps({"newest": "2025-03-03T19:00:00+00:00"})
    batch = fetch(connector(overlap="2h"), cursor)
    # 18:02 is inside the two-hour overlap; 09:15 the day before is not.
    assert [m.created_at.hour for m in batch.mentions if m.created_at] == [7, 18]
    assert json.loads(batch.cursor or "")["newest"] == "2025-03-04T07:41:22+00:00"


@respx.mock
def test_future_dates_do_not_push_the_cursor_past_now(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
    monkeypatch.setattr(rss, "utcnow", lambda: now)
    feed = with_item(
        fixture("rss2.xml"),
        "<item><title>Kestrel 2099</title><guid>future</guid>"
        "<pubDate>Thu, 01 Jan 2099 00:00:00 +0000</pubDate></item>",
    )
    respx.get(FEED_URL).mock(return_value=httpx.Response(200, content=feed))
    batch = fetch(connector())
    assert json.loads(batch.cursor or "")["newest"] == now.isoformat()


@pytest.mark.parametrize(
    ("link", "target"),
    [
        (
            "https://www.google.com/url?rct=j&sa=t&url=https://news.example/a&ct=ga&cd=CA&usg=AO",
            "https://news.example/a",
        ),
        ("https://www.google.co.uk/url?q=https://news.example/b&sa=U", "https://news.example/b"),
        (
            "https://news.example/c?url=https://elsewhere.example",
            "https://news.example/c?url=https://elsewhere.example",
        ),
        (
            "https://www.google.com/url?url=javascript:alert(1)",
            "https://www.google.com/url?url=javascript:alert(1)",
        ),
        ("javascript:alert(1)", None),
        ("", None),
    ],
)
def test_unwrap_link(link: str, target: str | None) -> None:
    assert unwrap_link(link) == target


def test_html_to_text_keeps_words_apart_and_drops_scripts() -> None:
    html = "<p>Kestrel&nbsp;K7</p><p>dropped <b>calls</b> &amp; texts</p><style>p{}</style>"
    assert html_to_text(html) == "Kestrel K7\ndropped calls & texts"


def test_check_settings_wants_a_web_url_and_a_duration() -> None:
    def check(**options: Any) -> list[str]:
        return RssConnector.check_settings(
            ConnectorSettings(name="alerts", type="rss", options=options)
        )

    assert check() == [
        "connectors[alerts].options.url: required option is missing; "
        "expected the feed URL (http:// or https://)"
    ]
    assert check(url="feed://example.com/rss", overlap="soon") == [
        "connectors[alerts].options.url: 'feed://example.com/rss' is not a web address; "
        "expected the feed URL (http:// or https://)",
        "connectors[alerts].options.overlap: 'soon' is not a duration; "
        'expected e.g. 90, "90s", "15m", "2h" or "1d"',
    ]


def test_check_settings_wants_credentials_that_fit_together() -> None:
    def check(**credentials: str) -> list[str]:
        settings = ConnectorSettings(
            name="partner", type="rss", options={"url": FEED_URL}, credentials=credentials
        )
        return RssConnector.check_settings(settings)

    assert check(username="kestrel", password="secret") == []
    assert check(token="t") == []
    assert check(username="kestrel") == [
        "connectors[partner].credentials.password: required with username; "
        "expected the HTTP basic-auth password, with username"
    ]
    assert check(token="t", username="u", password="p") == [
        "connectors[partner].credentials: both a token and a username/password are set; "
        "expected one or the other"
    ]
    assert check(apikey="k") == [
        "connectors[partner].credentials.apikey: unknown credential; "
        "expected password, token, username"
    ]
