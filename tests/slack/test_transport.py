"""Slack reaches the bot over signed HTTP or Socket Mode; unsigned and stale ones are refused."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import httpx
import pytest
import respx
from slack_sdk.socket_mode.request import SocketModeRequest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tests.slack.conftest import API, SENDER
from triage.slack.cards import APPROVE
from triage.slack.transport import EVENTS_PATH, slack_routes, socket_mode_listener
from triage.slack.verify import SignatureError, sign, verify
from triage.store import Case, CaseStatus, session_scope

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def _signed(body: bytes, *, age: int = 0, secret: str = SECRET) -> dict[str, str]:
    stamp = str(int(time.time()) - age)
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(secret, stamp, body),
    }


def test_slacks_documented_example_signature():
    # The worked example in Slack's "Verifying requests from Slack" guide.
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
        b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
        b"command=%2Fwebhook-collect&text=&"
        b"response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
        b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    assert sign(SECRET, "1531420618", body) == (
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    )


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({}, "missing"),
        ({"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=1"}, "not a number"),
        ("stale", "more than five minutes old"),
        ("wrong-secret", "does not match"),
    ],
)
def test_unsigned_stale_or_forged_requests_are_refused(headers, problem):
    body = b"payload=%7B%7D"
    if headers == "stale":
        headers = _signed(body, age=301)
    elif headers == "wrong-secret":
        headers = _signed(body, secret="not-the-secret")
    with pytest.raises(SignatureError, match=problem):
        verify(SECRET, headers, body)


@pytest.fixture
def http(bot):
    return TestClient(Starlette(routes=slack_routes(bot, SECRET)))


@respx.mock
def test_a_signed_approval_over_http_is_acknowledged_and_sent(http, engine, case_id):
    route = respx.post(API).mock(return_value=httpx.Response(200, json={"id": "p-9"}))
    payload = {
        "type": "block_actions",
        "user": {"id": SENDER},
        "channel": {"id": "C0CARE0001"},
        "actions": [{"action_id": APPROVE, "value": str(case_id)}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = {**_signed(body), "Content-Type": "application/x-www-form-urlencoded"}

    forged = http.post(EVENTS_PATH, content=body, headers={**headers, "X-Slack-Signature": "v0=0"})
    assert forged.status_code == 401
    assert route.call_count == 0

    response = http.post(EVENTS_PATH, content=body, headers=headers)
    assert response.status_code == 200
    assert route.call_count == 1
    with session_scope(engine) as session:
        assert session.get(Case, case_id).status == CaseStatus.REPLIED


def test_url_verification_and_a_slash_command_over_http(http, case_id):
    challenge = json.dumps({"type": "url_verification", "challenge": "3eZbrw1aB"}).encode()
    answer = http.post(
        EVENTS_PATH,
        content=challenge,
        headers={**_signed(challenge), "Content-Type": "application/json"},
    )
    assert answer.json() == {"challenge": "3eZbrw1aB"}

    command = urlencode({"command": "/triage", "text": "queue", "user_id": SENDER}).encode()
    queue = http.post(
        EVENTS_PATH,
        content=command,
        headers={**_signed(command), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert queue.json()["response_type"] == "ephemeral"
    assert "You charged me twice!" in queue.json()["text"]


class Recorder:
    def __init__(self):
        self.responses = []

    def send_socket_mode_response(self, response):
        self.responses.append(response)


@respx.mock
def test_socket_mode_acknowledges_then_works(bot, engine, case_id):
    route = respx.post(API).mock(return_value=httpx.Response(200, json={"id": "p-10"}))
    listener = socket_mode_listener(bot)
    client = Recorder()
    listener(
        client,
        SocketModeRequest(
            type="interactive",
            envelope_id="57d6a792-4d35-4d0b-b6aa-3361493e1caf",
            payload={
                "type": "block_actions",
                "user": {"id": SENDER},
                "channel": {"id": "C0CARE0001"},
                "actions": [{"action_id": APPROVE, "value": str(case_id)}],
            },
        ),
    )
    listener(
        client,
        SocketModeRequest(
            type="slash_commands",
            envelope_id="e2",
            payload={"command": "/triage", "text": "help", "user_id": SENDER},
        ),
    )
    assert [r.envelope_id for r in client.responses] == [
        "57d6a792-4d35-4d0b-b6aa-3361493e1caf",
        "e2",
    ]
    assert client.responses[0].payload is None
    assert "queue" in client.responses[1].payload["text"]
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ({"action_id": "triage.assign"}, CaseStatus.CLAIMED),
        ({"action_id": "triage.escalate"}, CaseStatus.ESCALATED),
        ({"action_id": "triage.mark_replied"}, CaseStatus.REPLIED),
        ({"action_id": "triage.dismiss", "selected_option": "spam"}, CaseStatus.DISMISSED),
    ],
    ids=["assign", "escalate", "mark-replied", "dismiss"],
)
def test_every_action_arrives_signed_over_http(http, engine, case_id, action, expected):
    action = {"value": str(case_id), **action}
    if "selected_option" in action:
        action["selected_option"] = {"value": f"{case_id}:{action['selected_option']}"}
    payload = {
        "type": "block_actions",
        "user": {"id": SENDER},
        "channel": {"id": "C0CARE0001"},
        "trigger_id": "1.2.3",
        "actions": [action],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stale = {**_signed(body, age=400), "Content-Type": "application/x-www-form-urlencoded"}
    assert http.post(EVENTS_PATH, content=body, headers=stale).status_code == 401
    with session_scope(engine) as session:
        assert session.get(Case, case_id).status == CaseStatus.POSTED

    fresh = {**_signed(body), "Content-Type": "application/x-www-form-urlencoded"}
    assert http.post(EVENTS_PATH, content=body, headers=fresh).status_code == 200
    with session_scope(engine) as session:
        assert session.get(Case, case_id).status == expected
