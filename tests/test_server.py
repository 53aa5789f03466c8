"""`triage serve`: signed webhook deliveries are stored once; anything else is refused."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import httpx
import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from connectors.webhook import sign
from triage.config import Settings
from triage.pipeline import Pipeline
from triage.scheduler import ConnectorScheduler
from triage.server import create_app
from triage.store import ConnectorState, Mention, session_scope

SECRET = "whsec_3f9a1c0b7d2e4f60a8b5"


def _settings(engine, **webhook_options) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": str(engine.url)},
            "connectors": [
                {
                    "name": "zapier",
                    "type": "webhook",
                    "options": {"platform": "trustpilot", **webhook_options},
                    "credentials": {"secret": SECRET},
                },
                {
                    "name": "old-hook",
                    "type": "webhook",
                    "enabled": False,
                    "credentials": {"secret": SECRET},
                },
            ],
        }
    )


@pytest.fixture
def client(engine):
    return TestClient(create_app(_settings(engine), engine))


def _post(
    client,
    body: bytes,
    *,
    age: int = 0,
    secret: str = SECRET,
    name: str = "zapier",
    at: int | None = None,
):
    stamp = str((int(time.time()) if at is None else at) - age)
    headers = {
        "X-Triage-Timestamp": stamp,
        "X-Triage-Signature": "sha256=" + sign(secret.encode(), stamp, body),
        "Content-Type": "application/json",
    }
    return client.post(f"/webhooks/{name}", content=body, headers=headers)


def _stored(engine) -> list[Mention]:
    with session_scope(engine) as session:
        return list(session.exec(select(Mention).order_by(Mention.external_id)))


REVIEW = {
    "id": "tp-5f1c",
    "text": "Charged twice and no answer from support.",
    "url": "https://www.trustpilot.com/reviews/5f1c",
    "author_name": "Marta K.",
    "rating": 1,
    "created_at": "2026-11-24T08:15:00Z",
    "title": "Double charge",
}


def test_a_signed_delivery_is_stored_once_and_marks_the_webhook_healthy(client, engine):
    body = json.dumps({"mentions": [REVIEW]}).encode()
    now = int(time.time())
    first = _post(client, body, at=now)
    assert first.status_code == 202 and first.json() == {"received": 1, "new": 1}
    # A redelivery is signed afresh (another timestamp, whatever second the clock has reached).
    again = _post(client, body, at=now - 1)
    assert again.json() == {"received": 1, "new": 0}

    [mention] = _stored(engine)
    assert (mention.source, mention.platform, mention.rating) == ("zapier", "trustpilot", 1.0)
    assert mention.created_at.isoformat() == "2026-11-24T08:15:00+00:00"
    assert mention.title == "Double charge" and mention.author_name == "Marta K."
    with session_scope(engine) as session:
        state = session.get(ConnectorState, "zapier")
        assert state.last_success_at is not None and state.consecutive_failures == 0


def test_one_malformed_mention_is_skipped_and_the_rest_kept(client, engine, caplog):
    body = json.dumps(
        [REVIEW, {"id": "bad", "text": ""}, {"text": "no id"}, {**REVIEW, "id": "tp-2"}]
    ).encode()
    response = _post(client, body)
    assert response.json() == {"received": 2, "new": 2}
    assert [m.external_id for m in _stored(engine)] == ["tp-2", "tp-5f1c"]
    assert "skipped item id='bad'" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"secret": "not-the-secret-at-all"}, 401, "does not match"),
        ({"age": 600}, 401, "five minutes"),
        ({"name": "nobody"}, 404, "no enabled webhook"),
        ({"name": "old-hook"}, 404, "no enabled webhook"),
    ],
)
def test_forged_stale_unknown_and_disabled_are_refused(client, engine, kwargs, status, reason):
    response = _post(client, json.dumps(REVIEW).encode(), **kwargs)
    assert response.status_code == status and reason in response.text
    assert _stored(engine) == []


def test_unsigned_not_json_empty_and_too_large_bodies(client, engine):
    unsigned = client.post("/webhooks/zapier", content=json.dumps(REVIEW).encode())
    assert unsigned.status_code == 401
    assert _post(client, b"<xml/>").status_code == 400
    assert "no mention" in _post(client, b"[]").text
    huge = json.dumps({**REVIEW, "text": "x" * 1_100_000}).encode()
    assert _post(client, huge).status_code == 413
    assert _stored(engine) == []


def test_body_only_signatures_when_the_sender_cannot_timestamp(engine):
    client = TestClient(create_app(_settings(engine, signature="body"), engine))
    body = json.dumps(REVIEW).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    ok = client.post(
        "/webhooks/zapier", content=body, headers={"X-Hub-Signature-256": f"sha256={digest}"}
    )
    assert ok.status_code == 202
    bad = client.post(
        "/webhooks/zapier", content=body, headers={"X-Hub-Signature-256": "sha256=00"}
    )
    assert bad.status_code == 401


def test_healthz(client):
    assert client.get("/healthz").text == "ok"


def test_webhooks_are_never_polled(engine):
    settings = _settings(engine)
    scheduler = ConnectorScheduler(Pipeline(settings, engine))
    scheduler.start(paused=True)
    try:
        assert [job.id for job in scheduler._scheduler.get_jobs() if job.id != "analyze"] == []
    finally:
        scheduler.stop()
    assert Pipeline(settings, engine).run_once().ingests == []


def test_a_short_secret_or_unknown_signature_is_a_config_error():
    from connectors.webhook import WebhookConnector
    from triage.config import ConnectorSettings

    problems = WebhookConnector.check_settings(
        ConnectorSettings(
            name="hook",
            type="webhook",
            options={"signature": "md5"},
            credentials={"secret": "short"},
        )
    )
    assert problems == [
        "connectors[hook].credentials.secret: only 5 characters; expected a random shared "
        "secret of at least 16 characters (e.g. from `openssl rand -hex 32`)",
        "connectors[hook].options.signature: 'md5' is not valid; "
        'expected one of "timestamped" (default) or "body"',
    ]


def stream_post(app, path: str, *, chunks: int, headers: dict[str, str] | None = None):
    """POST `chunks` pieces of 512 KiB as one streamed body: the status and the pieces read."""
    piece = b"x" * 512 * 1024
    read = 0

    async def body():
        nonlocal read
        for _ in range(chunks):
            read += 1
            yield piece

    async def post() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://triage") as client:
            response = await client.post(path, content=body(), headers=headers or {})
        return response.status_code

    return asyncio.run(post()), read


@pytest.mark.parametrize("declared", [None, "209715200"], ids=["chunked", "content-length"])
def test_a_huge_unsigned_body_is_refused_before_it_is_read(engine, declared):
    # 400 pieces (200 MiB) on offer; the 1 MB cap is passed at the second.
    app = create_app(_settings(engine), engine)
    headers = {"Content-Length": declared} if declared else {}
    status, read = stream_post(app, "/webhooks/zapier", chunks=400, headers=headers)
    assert status == 413
    assert read <= 2


@pytest.mark.parametrize(
    "stamp",
    ["9" * 400, "1" * 13, "-1", "¹²³"],
    ids=["400-digits", "13-digits", "negative", "superscript"],
)
def test_a_malformed_timestamp_is_a_short_401_without_a_traceback(engine, caplog, stamp):
    client = TestClient(create_app(_settings(engine), engine), raise_server_exceptions=False)
    body = json.dumps(REVIEW).encode()
    headers = {
        "X-Triage-Timestamp": stamp.encode("latin-1"),
        "X-Triage-Signature": "sha256=" + sign(SECRET.encode(), stamp, body),
    }
    response = client.post("/webhooks/zapier", content=body, headers=headers)
    assert response.status_code == 401
    assert response.text == "unauthorized: x-triage-timestamp is not unix seconds"
    assert not [record for record in caplog.records if record.exc_info]
    assert _stored(engine) == []


def test_a_replayed_delivery_is_refused_within_the_window(client, engine):
    body = json.dumps(REVIEW).encode()
    stamp = str(int(time.time()))
    headers = {
        "X-Triage-Timestamp": stamp,
        "X-Triage-Signature": "sha256=" + sign(SECRET.encode(), stamp, body),
    }
    assert client.post("/webhooks/zapier", content=body, headers=headers).status_code == 202
    replay = client.post("/webhooks/zapier", content=body, headers=headers)
    assert replay.status_code == 401 and "already received" in replay.text
    # The same mention signed afresh (a genuine redelivery) still gets through.
    assert _post(client, body, age=2).json() == {"received": 1, "new": 0}


def test_a_delivery_that_failed_to_store_may_be_sent_again(engine, monkeypatch):
    import triage.server

    client = TestClient(create_app(_settings(engine), engine), raise_server_exceptions=False)
    store = triage.server._store
    calls = []

    def flaky(*args):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("database unavailable")
        return store(*args)

    monkeypatch.setattr(triage.server, "_store", flaky)
    body = json.dumps(REVIEW).encode()
    stamp = str(int(time.time()))
    headers = {
        "X-Triage-Timestamp": stamp,
        "X-Triage-Signature": "sha256=" + sign(SECRET.encode(), stamp, body),
    }
    assert client.post("/webhooks/zapier", content=body, headers=headers).status_code == 500
    retry = client.post("/webhooks/zapier", content=body, headers=headers)
    assert retry.json() == {"received": 1, "new": 1}


def test_seen_signatures_expire_with_their_window_and_stay_bounded():
    from triage.inbound import SeenSignatures

    seen = SeenSignatures(limit=2)
    assert seen.first_use("a", until=100, now=0)
    assert not seen.first_use("a", until=100, now=50)
    assert seen.first_use("a", until=400, now=101)  # past its window: a new request
    assert seen.first_use("b", until=300, now=101)
    assert seen.first_use("c", until=500, now=101)  # full: the soonest to expire (b) goes
    assert len(seen) == 2
    assert not seen.first_use("a", until=400, now=102)
    assert not seen.first_use("c", until=500, now=102)
