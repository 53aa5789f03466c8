"""Spike detection on synthetic series, and one alert per spike in Slack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.reports.conftest import _add
from triage.config import Settings, SlackSettings
from triage.reports.figures import Row
from triage.reports.spikes import detect, share_z, spikes_cycle, volume_z
from triage.slack.client import make_slack_client

HOUR = datetime(2026, 11, 23, 14, tzinfo=UTC)  # a Monday afternoon


def _row(n: int, at: datetime, *, source="x", sentiment="neutral") -> Row:
    return Row(
        mention_id=n, created_at=at, source=source, platform=source, language="en",
        sentiment=sentiment, kind="complaint", priority="P3", urgency=40 + n % 50,
        intents=(), text=f"mention {n}", url=f"https://x.com/{n}", status=None,
        first_response_seconds=None, resolution_seconds=None, agent=None,
    )  # fmt: skip


def _history(per_hour: int, *, weeks: int = 4, sentiment="neutral") -> list[Row]:
    """`per_hour` mentions in every hour of the `weeks` before HOUR."""
    rows, n = [], 0
    start = HOUR - timedelta(weeks=weeks)
    for h in range(weeks * 7 * 24):
        for i in range(per_hour):
            n += 1
            at = start + timedelta(hours=h, minutes=i)
            rows.append(_row(n, at, sentiment="negative" if i == 0 else sentiment))
    return rows


def _burst(count: int, *, sentiment="neutral", source="x") -> list[Row]:
    return [
        _row(100000 + i, HOUR + timedelta(minutes=i % 60), sentiment=sentiment, source=source)
        for i in range(count)
    ]


def test_z_scores():
    assert volume_z(12, [3, 3, 3, 3]) == (3.0, (12 - 3) / 3**0.5)  # Poisson floor on the spread
    assert volume_z(5, []) == (0.0, 0.0)
    usual, z = share_z(8, 10, 10, 100)
    assert usual == 0.1 and round(z, 2) == round((0.8 - 0.1) / (0.1 * 0.9 / 10) ** 0.5, 2)


def test_a_normal_hour_is_no_spike():
    assert detect(_history(4) + _burst(4), HOUR) == []


def test_a_volume_spike_is_found_overall_and_for_its_source():
    spikes = detect(_history(4) + _burst(20, source="reddit"), HOUR)
    found = {(s.scope, s.metric) for s in spikes}
    assert ("all", "volume") in found and ("reddit", "volume") in found
    overall = next(s for s in spikes if (s.scope, s.metric) == ("all", "volume"))
    assert overall.observed == 20 and overall.expected == 4 and overall.z >= 3


def test_a_negative_share_spike_without_more_volume():
    spikes = detect(_history(6) + _burst(6, sentiment="negative"), HOUR)
    assert [(s.scope, s.metric) for s in spikes if s.scope == "all"] == [("all", "negative share")]
    share = spikes[0]
    assert share.observed == 1.0 and 0.15 < share.expected < 0.2


def test_few_mentions_are_never_a_spike():
    assert detect(_history(0) + _burst(4), HOUR) == []


def test_each_spike_is_alerted_once_to_care_and_reports(engine, slack):
    state, url = slack
    settings = Settings(
        slack=SlackSettings(
            bot_token="xoxb-test", care_channel="C0CARE0001", reports_channel="C0REPORTS1",
            api_url=url,
        )
    )  # fmt: skip
    for n in range(12):
        _add(engine, n, HOUR + timedelta(minutes=n), text=f"Outage again <!channel> {n}")
    client = make_slack_client(settings.slack)
    now = HOUR + timedelta(hours=1, minutes=5)
    alerted = spikes_cycle(engine, settings, client, now)
    assert {(s.scope, s.metric) for s in alerted} == {("all", "volume"), ("x", "volume")}
    posts = [c.body for c in state.calls_to("chat.postMessage")]
    assert {p["channel"] for p in posts} == {"C0CARE0001", "C0REPORTS1"} and len(posts) == 4
    assert "Spike in volume" in posts[0]["text"] and "<!channel>" not in posts[0]["text"]
    # The same spike, checked again, and the next hour of it: no new alert.
    assert spikes_cycle(engine, settings, client, now) == []
    for n in range(12, 24):
        _add(engine, n, HOUR + timedelta(hours=1, minutes=n))
    assert spikes_cycle(engine, settings, client, now + timedelta(hours=1)) == []
    assert len(state.calls_to("chat.postMessage")) == 4
