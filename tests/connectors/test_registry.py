"""The registry: type names to classes, building connectors, checking every connector block."""

from __future__ import annotations

import pytest

from connectors.appstore import AppStoreConnector
from connectors.bluesky import BlueskyConnector
from connectors.file import FileConnector
from connectors.google_business import GoogleBusinessConnector
from connectors.googleplay import GooglePlayConnector
from connectors.hackernews import HackerNewsConnector
from connectors.mastodon import MastodonConnector
from connectors.reddit import RedditConnector
from connectors.registry import build_connector, check_connectors, connector_types
from connectors.rss import RssConnector
from connectors.trustpilot import TrustpilotConnector
from connectors.webhook import WebhookConnector
from connectors.x import XConnector
from connectors.youtube import YouTubeConnector
from triage.config import ConfigError, ConnectorSettings, default_settings

KNOWN = (
    "appstore, bluesky, file, google_business, googleplay, hackernews, mastodon, reddit, rss, "
    "trustpilot, webhook, x, youtube"
)


def test_known_types() -> None:
    assert connector_types() == {
        "file": FileConnector,
        "rss": RssConnector,
        "hackernews": HackerNewsConnector,
        "mastodon": MastodonConnector,
        "reddit": RedditConnector,
        "bluesky": BlueskyConnector,
        "x": XConnector,
        "youtube": YouTubeConnector,
        "webhook": WebhookConnector,
        "googleplay": GooglePlayConnector,
        "appstore": AppStoreConnector,
        "trustpilot": TrustpilotConnector,
        "google_business": GoogleBusinessConnector,
    }


def test_build_connector_picks_the_class_by_type() -> None:
    settings = ConnectorSettings(
        name="alerts", type="rss", options={"url": "https://feeds.example/kestrel.xml"}
    )
    with build_connector(settings) as connector:
        assert isinstance(connector, RssConnector)
        assert connector.name == "alerts"
    sample = default_settings().connector("sample")
    assert isinstance(build_connector(sample), FileConnector)


def test_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        build_connector(ConnectorSettings(name="tw", type="twitter"))
    assert caught.value.problems == [
        f"connectors[tw].type: unknown connector type 'twitter'; expected one of {KNOWN}"
    ]


def test_bad_settings_refuse_to_build() -> None:
    with pytest.raises(ConfigError, match=r"connectors\[alerts\]\.options\.url: required"):
        build_connector(ConnectorSettings(name="alerts", type="rss"))


def test_check_connectors_reports_every_block_and_spares_disabled_ones() -> None:
    problems = check_connectors(
        [
            ConnectorSettings(name="alerts", type="rss", options={"url": "ftp://x"}),
            ConnectorSettings(name="imports", type="file", queries=["kestrel"]),
            ConnectorSettings(name="later", type="rss", enabled=False),
            ConnectorSettings(name="old", type="myspace", enabled=False),
            ConnectorSettings(name="ok", type="file", options={"path": "mentions.csv"}),
        ],
        surroundings=False,  # the blocks alone; a missing file: tests/test_cli.py
    )
    assert problems == [
        "connectors[alerts].options.url: 'ftp://x' is not a web address; "
        "expected the feed URL (http:// or https://)",
        "connectors[imports].options.path: required option is missing; "
        "expected the path of a .jsonl or .csv file",
        "connectors[imports].queries: file connectors do not use queries; "
        "remove them; the source itself decides which mentions arrive",
        f"connectors[old].type: unknown connector type 'myspace'; expected one of {KNOWN}",
    ]
    assert check_connectors(default_settings().connectors) == []
