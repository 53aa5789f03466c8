"""`POST /slack/events` against an attacker, and who may change what goes out (issue 12, 5-8)."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import httpx
import pytest
import respx
from sqlmodel import select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tests.slack.conftest import ADMIN, API, CARE, SENDER
from tests.slack.test_bot import _submit
from tests.test_server import stream_post
from triage.slack.bot import CHOICE_BLOCK, REPLY_BLOCK
from triage.slack.cards import APPROVE, ASSIGN, DISMISS, EDIT, ESCALATE, MARK_REPLIED
from triage.slack.transport import EVENTS_PATH, slack_routes
from triage.slack.verify import sign
from triage.store import AuditEvent, Case, CaseStatus, Draft, session_scope

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
STRANGER = "U0STRANGER"
FORM = "application/x-www-form-urlencoded"


def _signed(body: bytes, stamp: str | None = None) -> dict[str, str]:
    stamp = stamp or str(int(time.time()))
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sign(SECRET, stamp, body)}


def _interaction(payload: object) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def _click(action_id: str, user: str, case_id: int) -> bytes:
    value = {"selected_option": {"value": f"{case_id}:spam"}} if action_id == DISMISS else {}
    return _interaction(
        {
            "type": "block_actions",
            "user": {"id": user},
            "channel": {"id": CARE},
            "trigger_id": "1337.42.abcd",
            "actions": [{"action_id": action_id, "value": str(case_id), **value}],
        }
    )


@pytest.fixture
def app(bot):
    return Starlette(routes=slack_routes(bot, SECRET))


@pytest.fixture
def http(app):
    return TestClient(app, raise_server_exceptions=False)


def _audit(engine) -> list[tuple[str, str, str | None]]:
    with session_scope(engine) as session:
        events = session.exec(select(AuditEvent).order_by(AuditEvent.id))
        return [(event.actor, event.action, event.after) for event in events]


# -- 5: the body is capped while it streams in ------------------------------------------------


@pytest.mark.parametrize("declared", [None, "209715200"], ids=["chunked", "content-length"])
def test_a_huge_unsigned_body_is_refused_before_it_is_read(app, declared):
    headers = {"Content-Length": declared} if declared else {}
    status, read = stream_post(app, EVENTS_PATH, chunks=400, headers=headers)
    assert status == 413
    assert read <= 2  # of 400 pieces of 512 KiB on offer


# -- 6: timestamps and signatures that are not what they claim --------------------------------


@pytest.mark.parametrize(
    ("stamp", "signature", "problem"),
    [
        ("9" * 400, "v0=00", "X-Slack-Request-Timestamp is not a number of seconds"),
        ("1" * 13, "v0=00", "X-Slack-Request-Timestamp is not a number of seconds"),
        ("now", "v0=é", "the signature does not match the signing secret"),
    ],
    ids=["400-digits", "13-digits", "non-ascii-signature"],
)
def test_malformed_signature_headers_are_a_short_401_without_a_traceback(
    http, caplog, stamp, signature, problem
):
    body = b"payload=%7B%7D"
    stamp = str(int(time.time())) if stamp == "now" else stamp
    headers = {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature.encode("latin-1"),
        "Content-Type": FORM,
    }
    response = http.post(EVENTS_PATH, content=body, headers=headers)
    assert (response.status_code, response.text) == (401, f"invalid request: {problem}")
    assert not [record for record in caplog.records if record.exc_info]


# -- 7: a signed request runs once -------------------------------------------------------------


def test_a_replayed_signed_request_is_refused(http, engine, case_id):
    body = _click(ASSIGN, SENDER, case_id)
    headers = {**_signed(body), "Content-Type": FORM}
    assert http.post(EVENTS_PATH, content=body, headers=headers).status_code == 200
    replay = http.post(EVENTS_PATH, content=body, headers=headers)
    assert replay.status_code == 401 and "already received" in replay.text
    assert [action for _, action, _ in _audit(engine)] == ["assign"]


# -- 7: only senders change what goes out or who owns a case -----------------------------------


@respx.mock
@pytest.mark.parametrize("user", [STRANGER, ADMIN], ids=["stranger", "admin"])
@pytest.mark.parametrize(
    ("action_id", "audited"),
    [
        (APPROVE, "approve"),
        (EDIT, "edit"),
        (ASSIGN, "assign"),
        (ESCALATE, "escalate"),
        (DISMISS, "dismiss"),
        (MARK_REPLIED, "mark_replied"),
    ],
    ids=["approve", "edit", "assign", "escalate", "dismiss", "mark-replied"],
)
def test_a_non_sender_is_told_privately_nothing_changes_and_the_refusal_is_audited(
    http, slack, engine, case_id, user, action_id, audited
):
    state, _ = slack
    platform = respx.post(API).mock(return_value=httpx.Response(200, json={"id": "p-1"}))
    body = _click(action_id, user, case_id)
    response = http.post(EVENTS_PATH, content=body, headers={**_signed(body), "Content-Type": FORM})
    assert response.status_code == 200

    with session_scope(engine) as session:
        case = session.get(Case, case_id)
        assert (case.status, case.assignee) == (CaseStatus.POSTED, None)
        assert session.exec(select(Draft)).one().text == "Sorry Ana, we will fix it."
    assert platform.call_count == 0
    assert state.calls_to("views.open") == []
    assert state.messages.get("C0ESCAL001", []) == []
    [told] = [c.body for c in state.calls_to("chat.postEphemeral") if c.body["user"] == user]
    assert "not allowed to send replies or change cases" in told["text"]
    assert _audit(engine) == [(user, "refused", audited)]


@pytest.mark.parametrize(
    ("choice", "block", "audited"),
    [("save", REPLY_BLOCK, "edit_save"), ("send", CHOICE_BLOCK, "edit_send")],
)
def test_a_non_sender_cannot_save_or_send_an_edited_draft(
    bot, engine, case_id, choice, block, audited
):
    ack = _submit(bot, STRANGER, case_id, "Edited by a stranger: https://evil.example", choice)
    assert ack.body["response_action"] == "errors"
    assert "not allowed" in ack.body["errors"][block]
    ack.work()
    with session_scope(engine) as session:
        assert session.exec(select(Draft)).one().text == "Sorry Ana, we will fix it."
    assert _audit(engine) == [(STRANGER, "refused", audited)]


def test_a_refusal_for_a_case_that_does_not_exist_is_still_audited(bot, engine, case_id):
    ack = _submit(bot, STRANGER, case_id + 1000, "hello", "save")
    ack.work()
    with session_scope(engine) as session:
        [event] = session.exec(select(AuditEvent)).all()
    assert (event.action, event.case_id, event.detail["case"]) == ("refused", None, case_id + 1000)


# -- 8: signed but not shaped like Slack's payloads --------------------------------------------


def _block_actions(**overrides: object) -> dict:
    payload = {
        "type": "block_actions",
        "user": {"id": SENDER},
        "channel": {"id": CARE},
        "actions": [{"action_id": ASSIGN, "value": "1"}],
    }
    return {**payload, **overrides}


MALFORMED = {
    "json-list": ("application/json", b"[1, 2]"),
    "event-string": ("application/json", json.dumps({"type": "event_callback", "event": "x"})),
    "event-user-object": (
        "application/json",
        json.dumps({"type": "event_callback", "event": {"type": "app_home_opened", "user": {}}}),
    ),
    "payload-list": (FORM, _interaction([1])),
    "user-string": (FORM, _interaction(_block_actions(user="U0SENDER01"))),
    "user-id-number": (FORM, _interaction(_block_actions(user={"id": 7}))),
    "actions-object": (FORM, _interaction(_block_actions(actions={"action_id": ASSIGN}))),
    "actions-number": (FORM, _interaction(_block_actions(actions=3))),
    "action-string": (FORM, _interaction(_block_actions(actions=["triage.assign"]))),
    "action-value-number": (
        FORM,
        _interaction(_block_actions(actions=[{"action_id": ASSIGN, "value": 1}])),
    ),
    "dismiss-option-string": (
        FORM,
        _interaction(_block_actions(actions=[{"action_id": DISMISS, "selected_option": "1"}])),
    ),
    "channel-string": (FORM, _interaction(_block_actions(channel=CARE))),
    "view-string": (
        FORM,
        _interaction({"type": "view_submission", "user": {"id": SENDER}, "view": "x"}),
    ),
    "metadata-list": (
        FORM,
        _interaction(
            {
                "type": "view_submission",
                "user": {"id": SENDER},
                "view": {"callback_id": "triage.edit_modal", "private_metadata": "[1]"},
            }
        ),
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_signed_but_malformed_payload_is_a_400_without_a_traceback(
    http, engine, case_id, caplog, name
):
    content_type, body = MALFORMED[name]
    body = body.encode() if isinstance(body, str) else body
    response = http.post(
        EVENTS_PATH, content=body, headers={**_signed(body), "Content-Type": content_type}
    )
    assert response.status_code == 400
    assert response.text.startswith("unreadable request: ") and len(response.text) < 250
    assert not [record for record in caplog.records if record.exc_info]
    assert _audit(engine) == []
