"""Connector type names, as written in config.toml, mapped to their classes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from connectors.appstore import AppStoreConnector
from connectors.base import Connector
from connectors.bluesky import BlueskyConnector
from connectors.file import FileConnector
from connectors.google_business import GoogleBusinessConnector
from connectors.googleplay import GooglePlayConnector
from connectors.hackernews import HackerNewsConnector
from connectors.mastodon import MastodonConnector
from connectors.reddit import RedditConnector
from connectors.rss import RssConnector
from connectors.trustpilot import TrustpilotConnector
from connectors.webhook import WebhookConnector
from connectors.x import XConnector
from connectors.youtube import YouTubeConnector
from triage.config import ConfigError, ConnectorSettings

# A new connector adds its class here; the key is its `type` attribute.
_CONNECTORS: tuple[type[Connector], ...] = (
    FileConnector,
    RssConnector,
    HackerNewsConnector,
    MastodonConnector,
    RedditConnector,
    BlueskyConnector,
    XConnector,
    YouTubeConnector,
    WebhookConnector,
    GooglePlayConnector,
    AppStoreConnector,
    TrustpilotConnector,
    GoogleBusinessConnector,
)


def connector_types() -> dict[str, type[Connector]]:
    """Every known connector class by its type name."""
    return {cls.type: cls for cls in _CONNECTORS}


def build_connector(
    settings: ConnectorSettings,
    *,
    client: httpx.Client | None = None,
    sleep: Callable[[float], Any] = time.sleep,
) -> Connector:
    """The connector for one settings block; ConfigError for an unknown type or bad settings."""
    cls = connector_types().get(settings.type)
    if cls is None:
        raise ConfigError([_unknown_type(settings)])
    return cls(settings, client=client, sleep=sleep)


def polled(settings_list: Iterable[ConnectorSettings]) -> list[ConnectorSettings]:
    """The connectors the scheduler polls: all but those that receive pushes (webhooks)."""
    types = connector_types()
    return [
        settings
        for settings in settings_list
        if not (cls := types.get(settings.type)) or not cls.receives_pushes
    ]


def check_connectors(
    settings_list: Iterable[ConnectorSettings], *, surroundings: bool = True
) -> list[str]:
    """Problems in every connector block, for `triage check-config`; disabled ones only by type;
    with `surroundings`, also what is missing outside the settings (a file source's file)."""
    types = connector_types()
    problems: list[str] = []
    for settings in settings_list:
        cls = types.get(settings.type)
        if cls is None:
            problems.append(_unknown_type(settings))
        elif settings.enabled:
            found = cls.check_settings(settings)
            problems.extend(found or (cls.check_surroundings(settings) if surroundings else []))
    return problems


def _unknown_type(settings: ConnectorSettings) -> str:
    known = ", ".join(sorted(connector_types()))
    return (
        f"connectors[{settings.name}].type: unknown connector type {settings.type!r}; "
        f"expected one of {known}"
    )
