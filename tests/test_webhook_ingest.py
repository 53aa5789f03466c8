"""Webhook deliveries with odd mentions: the good ones are stored, the request still succeeds."""

from __future__ import annotations

import json
import logging
import time

from sqlmodel import select
from starlette.testclient import TestClient

from connectors.webhook import sign
from triage.config import Settings
from triage.server import create_app
from triage.store import Mention, session_scope

SECRET = "whsec_9b1e77c2a4d04f18"


def _client(engine) -> TestClient:
    settings = Settings.model_validate(
        {
            "database": {"url": str(engine.url)},
            "connectors": [
                {"name": "zapier", "type": "webhook", "credentials": {"secret": SECRET}}
            ],
        }
    )
    return TestClient(create_app(settings, engine))


def _post(client: TestClient, body: bytes):
    stamp = str(int(time.time()))
    headers = {
        "X-Triage-Timestamp": stamp,
        "X-Triage-Signature": "sha256=" + sign(SECRET.encode(), stamp, body),
        "Content-Type": "application/json",
    }
    return client.post("/webhooks/zapier", content=body, headers=headers)


def test_nul_surrogates_and_extreme_values_do_not_cost_the_good_mentions(engine, caplog) -> None:
    items = [
        {"id": "good", "text": "Refund still missing after two weeks", "author_reach": 5000},
        {"id": "nul", "text": "NUL\x00 inside", "author_name": "Bo\x00b", "extra": {"k\x00": 1}},
        {"id": "far", "text": "time out of range", "created_at": "9999-12-31T23:59:59-05:00"},
        {"id": "big", "text": "a lot of followers", "author_reach": 10**20},
        {"id": "plat", "text": "long platform name", "platform": "z" * 40},
    ]
    # json.dumps cannot write an unpaired surrogate or Infinity as a sender might: splice them in.
    body = json.dumps(items)[:-1].encode() + (
        b', {"id": "half", "text": "half an emoji \\ud83d"}'
        b', {"id": "inf", "text": "infinite reach", "author_reach": 1e400}]'
    )
    with caplog.at_level(logging.INFO):
        response = _post(_client(engine), body)
    assert response.status_code == 202
    assert response.json() == {"received": 5, "new": 5}

    with session_scope(engine) as session:
        stored = {m.external_id: m for m in session.exec(select(Mention))}
    assert sorted(stored) == ["big", "good", "half", "nul", "plat"]
    assert stored["good"].author_reach == 5000
    assert (stored["nul"].text, stored["nul"].author_name) == ("NUL inside", "Bob")
    assert stored["nul"].raw["extra"] == {"k": 1}
    assert stored["half"].text == "half an emoji "
    assert stored["big"].author_reach == 2**31 - 1
    assert stored["plat"].platform == "z" * 32
    assert "skipped item id='far'" in caplog.text
    assert "skipped item id='inf'" in caplog.text
