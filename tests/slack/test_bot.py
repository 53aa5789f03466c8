"""The bot's buttons, modal, slash command and App Home, against the fake Slack server."""

from __future__ import annotations

import json
import threading
import time

import httpx
import respx
from sqlmodel import select

from tests.slack.conftest import ADMIN, AGENTS, API, CARE, ESCALATION, OTHER, SENDER, add_case
from triage.slack.bot import (
    CHOICE_BLOCK,
    CHOICE_INPUT,
    EDIT_MODAL,
    REPLY_BLOCK,
    REPLY_INPUT,
    SlackBot,
)
from triage.slack.cards import APPROVE, ASSIGN, DISMISS, EDIT, ESCALATE, EXPAND_DIGEST
from triage.store import AuditEvent, Case, CaseStatus, ConnectorState, Draft, session_scope


def click(bot: SlackBot, action_id: str, user: str, value: str, **extra) -> None:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "channel": {"id": CARE},
        "trigger_id": "1337.42.abcd",
        "actions": [{"action_id": action_id, "value": value, **extra}],
    }
    ack = bot.interaction(payload)
    assert ack.body is None
    if ack.work:
        ack.work()


def _ephemerals(state, user: str) -> list[str]:
    return [c.body["text"] for c in state.calls_to("chat.postEphemeral") if c.body["user"] == user]


def _last_card(state) -> dict:
    return state.messages[CARE][0]


def _case(engine) -> Case:
    with session_scope(engine) as session:
        return session.exec(select(Case)).one()


@respx.mock
def test_approve_sends_once_and_the_card_shows_who_replied_without_buttons(
    bot, slack, engine, case_id
):
    state, _ = slack
    route = respx.post(API).mock(return_value=httpx.Response(200, json={"id": "p-77"}))
    click(bot, APPROVE, SENDER, str(case_id))

    assert route.call_count == 1
    assert json.loads(route.calls[0].request.content) == {
        "in_reply_to": "m1",
        "text": "Sorry Ana, we will fix it.",
    }
    card = _last_card(state)
    assert [block["type"] for block in card["blocks"]][-1] == "section"
    assert "actions" not in [block["type"] for block in card["blocks"]]
    outcome = card["blocks"][-1]["text"]["text"]
    assert outcome.startswith(f":white_check_mark: *Replied by <@{SENDER}>* after ")
    assert "<https://chat.example/p/p-77|view the reply>" in outcome
    assert _case(engine).status == CaseStatus.REPLIED


@respx.mock
def test_someone_outside_the_senders_is_told_and_nothing_is_sent(bot, slack, engine, case_id):
    state, _ = slack
    route = respx.post(API).mock(return_value=httpx.Response(200, json={"id": "p-1"}))
    click(bot, APPROVE, "U0STRANGER", str(case_id))
    assert route.call_count == 0
    [message] = _ephemerals(state, "U0STRANGER")
    assert "not allowed to send replies" in message
    assert _case(engine).status == CaseStatus.POSTED


@respx.mock
def test_a_member_of_a_sender_group_may_send(bot, slack, case_id):
    state, _ = slack
    route = respx.post(API).mock(return_value=httpx.Response(200, json={"id": "p-2"}))
    click(bot, APPROVE, OTHER, str(case_id))
    assert route.call_count == 1
    [lookup] = state.calls_to("usergroups.users.list")
    assert lookup.body["usergroup"] == AGENTS


@respx.mock
def test_two_agents_approving_at_once_send_exactly_one_reply(bot, slack, engine, case_id):
    state, _ = slack

    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(0.3)
        return httpx.Response(200, json={"id": "p-3"})

    route = respx.post(API).mock(side_effect=slow)
    threads = [
        threading.Thread(target=click, args=(bot, APPROVE, user, str(case_id)))
        for user in (SENDER, OTHER)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert route.call_count == 1
    told = _ephemerals(state, SENDER) + _ephemerals(state, OTHER)
    assert len(told) == 1
    assert "sending a reply to this mention right now" in told[0] or "already" in told[0]
    assert _case(engine).status == CaseStatus.REPLIED


def test_dismiss_records_the_reason_and_closes_the_card(bot, slack, engine, case_id):
    state, _ = slack
    click(
        bot,
        DISMISS,
        SENDER,
        "",
        selected_option={"value": f"{case_id}:not_about_us"},
    )
    case = _case(engine)
    assert (case.status, case.dismiss_reason) == (CaseStatus.DISMISSED, "not_about_us")
    outcome = _last_card(state)["blocks"][-1]["text"]["text"]
    assert outcome == f":no_entry_sign: *Dismissed by <@{SENDER}>*: Not about us"

    click(bot, APPROVE, OTHER, str(case_id))
    [told] = _ephemerals(state, OTHER)
    assert told.startswith(f"Nothing sent: this case was already dismissed by <@{SENDER}> at")


def test_assign_shows_the_assignee_and_escalate_posts_to_the_leads(bot, slack, engine, case_id):
    state, _ = slack
    click(bot, ASSIGN, OTHER, str(case_id))
    card = _last_card(state)
    assert {"type": "mrkdwn", "text": f":bust_in_silhouette: <@{OTHER}>"} in card["blocks"][-2][
        "elements"
    ]

    click(bot, ESCALATE, OTHER, str(case_id))
    [escalated] = state.messages[ESCALATION]
    assert escalated["text"].startswith(f"<!subteam^S0LEADS001> Escalated by <@{OTHER}>")
    assert _case(engine).status == CaseStatus.ESCALATED
    with session_scope(engine) as session:
        actions = [e.action for e in session.exec(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions == ["assign", "escalate"]


def _submit(bot: SlackBot, user: str, case_id: int, text: str, choice: str):
    return bot.interaction(
        {
            "type": "view_submission",
            "user": {"id": user},
            "view": {
                "callback_id": EDIT_MODAL,
                "private_metadata": json.dumps({"case": case_id, "channel": CARE}),
                "state": {
                    "values": {
                        REPLY_BLOCK: {REPLY_INPUT: {"type": "plain_text_input", "value": text}},
                        CHOICE_BLOCK: {
                            CHOICE_INPUT: {
                                "type": "radio_buttons",
                                "selected_option": {"value": choice},
                            }
                        },
                    }
                },
            },
        }
    )


@respx.mock
def test_edit_opens_a_modal_with_the_limit_and_sends_the_edited_text(bot, slack, engine, case_id):
    state, _ = slack
    route = respx.post(API).mock(return_value=httpx.Response(200, json={"id": "p-4"}))
    click(bot, EDIT, SENDER, str(case_id))
    [opened] = state.calls_to("views.open")
    view = (
        opened.body["view"]
        if isinstance(opened.body["view"], dict)
        else json.loads(opened.body["view"])
    )
    element = view["blocks"][1]["element"]
    assert (element["initial_value"], element["max_length"]) == ("Sorry Ana, we will fix it.", 40)

    too_long = _submit(bot, SENDER, case_id, "x" * 41, "send")
    assert too_long.body == {
        "response_action": "errors",
        "errors": {REPLY_BLOCK: "the reply is 41 characters long; chat allows 40"},
    }
    assert too_long.work is None

    ack = _submit(bot, SENDER, case_id, "Ana, refund is on its way.", "send")
    assert ack.body is None
    ack.work()
    assert json.loads(route.calls[0].request.content)["text"] == "Ana, refund is on its way."
    with session_scope(engine) as session:
        edit = session.exec(select(AuditEvent).where(AuditEvent.action == "edit")).one()
    assert (edit.before, edit.after) == ("Sorry Ana, we will fix it.", "Ana, refund is on its way.")


@respx.mock
def test_an_unfilled_placeholder_blocks_sending_from_the_modal_and_approve(
    bot, slack, engine, case_id
):
    route = respx.post(API).mock(return_value=httpx.Response(200, json={"id": "p-6"}))
    ack = _submit(bot, SENDER, case_id, "Hi {name}, on it", "send")
    assert ack.body == {
        "response_action": "errors",
        "errors": {REPLY_BLOCK: "unfilled placeholder {name}"},
    }
    _submit(bot, SENDER, case_id, "Hi [NAME], on it", "save").work()
    click(bot, APPROVE, SENDER, str(case_id))
    assert route.call_count == 0
    said = _ephemerals(slack[0], SENDER)
    assert any("Nothing sent: the reply has an unfilled placeholder [NAME]" in t for t in said)


@respx.mock
def test_edit_and_save_keeps_the_draft_and_sends_nothing(bot, slack, engine, case_id):
    route = respx.post(API).mock(return_value=httpx.Response(200, json={"id": "p-5"}))
    ack = _submit(bot, OTHER, case_id, "Better draft", "save")
    ack.work()
    assert route.call_count == 0
    with session_scope(engine) as session:
        assert session.exec(select(Draft)).one().text == "Better draft"
    assert _case(engine).status == CaseStatus.POSTED


def test_a_stranger_cannot_send_from_the_modal(bot, case_id):
    ack = _submit(bot, "U0STRANGER", case_id, "hi", "send")
    assert ack.body["response_action"] == "errors"
    assert "not allowed" in ack.body["errors"][CHOICE_BLOCK]


def test_slash_command_queue_connectors_and_admin_only_pause(bot, engine, case_id):
    queue = bot.command({"text": "queue", "user_id": OTHER}).body
    assert queue["response_type"] == "ephemeral"
    assert "*1 open* (P2 1)" in queue["text"] and "You charged me twice!" in queue["text"]

    refused = bot.command({"text": "pause chat-main", "user_id": OTHER}).body["text"]
    assert refused.startswith("Only admins")
    done = bot.command({"text": "pause chat-main", "user_id": ADMIN}).body["text"]
    assert done == "Connector `chat-main` is paused."
    with session_scope(engine) as session:
        assert session.get(ConnectorState, "chat-main").paused is True
    unknown = bot.command({"text": "resume nope", "user_id": ADMIN}).body["text"]
    assert "no connector named `nope`" in unknown
    health = bot.command({"text": "connectors", "user_id": OTHER}).body["text"]
    assert "`chat-main` :double_vertical_bar: paused" in health or "not run yet" in health
    assert "queue" in bot.command({"text": "", "user_id": OTHER}).body["text"]


def test_app_home_shows_my_cases(bot, slack, case_id):
    state, _ = slack
    bot.cases.assign(case_id, actor=SENDER, assignee=ADMIN)  # admins are not senders
    ack = bot.event({"type": "app_home_opened", "user": ADMIN, "tab": "home"})
    ack.work()
    [published] = state.calls_to("views.publish")
    view = published.body["view"]
    view = view if isinstance(view, dict) else json.loads(view)
    texts = json.dumps(view["blocks"])
    assert "You charged me twice!" in texts and "Connectors" in texts


def test_stats_counts_today_and_breaches(bot, engine, case_id):
    from datetime import timedelta

    from triage.clock import utcnow
    from triage.slack.commands import stats_text

    now = utcnow()
    with session_scope(engine) as session:
        case = session.get(Case, case_id)
        case.status = CaseStatus.REPLIED
        case.replied_at = now
        case.first_response_seconds = (3 * timedelta(hours=1)).total_seconds()  # P2 target: 2 h
        session.add(case)
    text = stats_text(bot.settings, engine, now=now)
    assert "• 1 mentions; negative 100%, neutral 0%, positive 0%; net sentiment -100%" in text
    assert "• 1 replied; median first response 180 min" in text
    assert "• 1 replied after their SLA target" in text


@respx.mock
def test_the_sign_off_carries_the_sending_agents_initials(bot, slack, engine, case_id):
    from triage.config import BrandSettings

    state, _ = slack
    state.names[SENDER] = "Ana Lima"
    route = respx.post(API).mock(return_value=httpx.Response(200, json={"id": "p-7"}))
    settings = bot.settings.model_copy(update={"brand": BrandSettings(sign_off="^{initials}")})
    signing = SlackBot(settings, engine, bot.client, connector_for=bot._connector_for)
    click(signing, APPROVE, SENDER, str(case_id))
    assert json.loads(route.calls[0].request.content)["text"] == "Sorry Ana, we will fix it. ^AL"
    assert [c.body["user"] for c in state.calls_to("users.info")] == [SENDER]


def test_anyone_in_the_channel_can_open_a_digest_as_cards_in_its_thread(bot, slack, engine):
    from triage.store import OutboxStatus, SlackMessage

    state, _ = slack
    with session_scope(engine) as session:
        session.add(
            SlackMessage(
                key="digest:C0CARE0001:abc", method="chat.postMessage", channel=CARE,
                payload={"text": "Digest"}, status=OutboxStatus.SENT, ts="1700000000.000100",
            )
        )  # fmt: skip
    held = add_case(engine, external_id="held", text="slow parcel", priority="P4", urgency=5)
    with session_scope(engine) as session:
        session.add(
            SlackMessage(
                key=f"card:{held}", method="chat.postMessage", channel=CARE, case_id=held,
                rank=3095, payload={"text": "P4 card"}, status=OutboxStatus.DIGESTED,
                digest="digest:C0CARE0001:abc",
            )
        )  # fmt: skip
    click(bot, EXPAND_DIGEST, "U0STRANGER", "digest:C0CARE0001:abc")
    click(bot, EXPAND_DIGEST, "U0STRANGER", "not-a-digest")  # ignored
    assert bot.notifier.flush() == 1
    [card] = [m for m in state.messages[CARE] if m["text"] == "P4 card"]
    assert card["thread_ts"] == "1700000000.000100"
    assert _case(engine).status == CaseStatus.POSTED
