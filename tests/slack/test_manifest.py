"""The Slack app manifest asks for exactly what the bot uses."""

from __future__ import annotations

from pathlib import Path

import yaml

from triage.slack.transport import EVENTS_PATH

MANIFEST = Path(__file__).parent.parent.parent / "slack-manifest.yaml"


def test_manifest_has_the_scopes_events_and_command_the_bot_uses():
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    # chat.postMessage/update/postEphemeral, conversations.history, usergroups.users.list,
    # users.info (the sign-off), /triage
    assert scopes == {
        "chat:write",
        "channels:history",
        "groups:history",
        "commands",
        "usergroups:read",
        "users:read",
        "files:write",
        "pins:write",
    }
    settings = manifest["settings"]
    assert settings["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["interactivity"]["request_url"].endswith(EVENTS_PATH)
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/triage" and command["url"].endswith(EVENTS_PATH)
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
