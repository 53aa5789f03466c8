"""Scheduled reports reach Slack once per slot, charts through the external upload flow."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.slack.fake_slack import Fault
from triage.config import ReportSettings, Settings, SlackSettings
from triage.reports.post import due_slots, reports_cycle
from triage.slack.client import make_slack_client

REPORTS = "C0REPORTS1"


def _settings(url: str, **reports) -> Settings:
    return Settings(
        slack=SlackSettings(bot_token="xoxb-test", reports_channel=REPORTS, api_url=url),
        reports=ReportSettings(**reports),
    )


def test_the_latest_daily_and_weekly_slots():
    schedule = ReportSettings(daily_at="08:00", weekly_on="monday", weekly_at="09:30")
    wednesday_7am = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
    daily, weekly = due_slots(schedule, wednesday_7am)
    assert (daily.since, daily.until) == (
        datetime(2026, 11, 23, 8, tzinfo=UTC),
        datetime(2026, 11, 24, 8, tzinfo=UTC),
    )
    assert (weekly.since, weekly.until) == (
        datetime(2026, 11, 16, 9, 30, tzinfo=UTC),
        datetime(2026, 11, 23, 9, 30, tzinfo=UTC),
    )
    at_eight = due_slots(schedule, datetime(2026, 11, 25, 8, 0, tzinfo=UTC))[0]
    assert at_eight.until == datetime(2026, 11, 25, 8, tzinfo=UTC)
    assert due_slots(ReportSettings(daily_at="", weekly_at=""), wednesday_7am) == []


def test_a_report_is_posted_once_per_slot_with_its_charts(known, slack):
    state, url = slack
    settings = _settings(url, daily_at="00:00", weekly_at="")
    client = make_slack_client(settings.slack)
    now = datetime(2026, 11, 11, 12, 0, tzinfo=UTC)  # the daily slot 10 Nov 00:00 - 11 Nov 00:00
    [slot] = reports_cycle(known, settings, client, now)
    assert slot.key == "daily:2026-11-11T00:00:00+00:00"
    [message] = [c.body for c in state.calls_to("chat.postMessage")]
    assert message["channel"] == REPORTS
    assert message["text"].startswith("*Daily report, 10 Nov – 11 Nov 2026*\n3 mentions in 1 day")
    [share] = state.shared
    assert share["channel_id"] == REPORTS and len(share["files"]) == 7
    uploaded = {name: data for name, data in state.uploads.values()}
    assert set(uploaded) >= {"sentiment-over-time.png", "first-response.png", "report.html"}
    pngs = [data for name, data in uploaded.items() if name.endswith(".png")]
    assert len(pngs) == 6 and all(data.startswith(b"\x89PNG") for data in pngs)
    assert uploaded["report.html"].startswith(b"<!doctype html>")

    assert reports_cycle(known, settings, client, now) == []  # same slot: nothing new
    assert len(state.shared) == 1 and len(state.calls_to("chat.postMessage")) == 1
    tomorrow = datetime(2026, 11, 12, 12, 0, tzinfo=UTC)
    assert [s.key for s in reports_cycle(known, settings, client, tomorrow)] == [
        "daily:2026-11-12T00:00:00+00:00"
    ]


def test_a_failed_upload_is_tried_again_next_cycle(known, slack):
    state, url = slack
    settings = _settings(url, daily_at="00:00", weekly_at="")
    client = make_slack_client(settings.slack)
    now = datetime(2026, 11, 11, 12, 0, tzinfo=UTC)
    state.fail_next("files.completeUploadExternal", Fault(error="internal_error"))
    assert reports_cycle(known, settings, client, now) == []
    assert len(reports_cycle(known, settings, client, now)) == 1
    assert len(state.shared) == 1


def test_no_reports_channel_posts_nothing(known, slack):
    state, url = slack
    settings = Settings(slack=SlackSettings(bot_token="xoxb-test", api_url=url))
    assert reports_cycle(known, settings, make_slack_client(settings.slack)) == []
    assert state.calls == []


def test_slash_report_answers_at_once_and_posts_the_report_where_asked(known, slack):
    from triage.reports.post import register
    from triage.slack.bot import SlackBot

    state, url = slack
    settings = _settings(url)
    bot = SlackBot(settings, known, make_slack_client(settings.slack))
    register(bot)
    ack = bot.command({"text": "report 30d", "user_id": "U0ASKER01", "channel_id": "C0MARKET1"})
    assert ack.body == {
        "response_type": "ephemeral",
        "text": "Preparing the report: it appears here shortly.",
    }
    assert state.calls == []  # nothing slow before Slack's 3-second deadline
    ack.work()
    [message] = [c.body for c in state.calls_to("chat.postMessage")]
    assert message["channel"] == "C0MARKET1"
    assert message["text"].startswith("*Report for the last 30d* (asked by <@U0ASKER01>)\n")
    assert state.shared[0]["channel_id"] == "C0MARKET1"
    bad = bot.command({"text": "report forever", "user_id": "U0ASKER01"})
    assert "Usage: `/triage report 7d`" in bad.body["text"] and bad.work is None
