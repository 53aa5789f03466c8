"""Google Play reviews via the Android Publisher API: service account, paging, cursor, replies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.base import AuthError, RateLimitedError, ReplyNotAllowed, TransientError
from connectors.googleplay import GooglePlayConnector
from triage.config import ConnectorSettings
from triage.domain import ReplyTarget

FIXTURES = Path(__file__).parent.parent / "fixtures" / "googleplay"
PACKAGE = "com.kestrel.mobile"
API = f"https://androidpublisher.googleapis.com/androidpublisher/v3/applications/{PACKAGE}/reviews"
TOKEN_URL = "https://oauth2.googleapis.com/token"
REVIEW = "gp:AOqpTOGQ9bC1xk3strelM0b1leR3v1ew0001"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def key_json(key) -> str:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "kestrel-play",
            "private_key": pem,
            "client_email": "triage@kestrel-play.iam.gserviceaccount.com",
            "token_uri": TOKEN_URL,
        }
    )


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def connector(key_json: str, sleep: Sleeps | None = None) -> GooglePlayConnector:
    settings = ConnectorSettings(
        name="play",
        type="googleplay",
        options={"package_name": PACKAGE},
        credentials={"service_account_json": key_json},
    )
    return GooglePlayConnector(settings, sleep=sleep if sleep is not None else Sleeps())


def granted() -> respx.Route:
    return respx.post(TOKEN_URL).mock(
        return_value=httpx.Response(200, json={"access_token": "ya29.play", "expires_in": 3599})
    )


@respx.mock
def test_first_page_maps_reviews_and_skips_a_malformed_one(key, key_json, caplog):
    grant = granted()
    route = respx.get(API).mock(
        side_effect=[
            httpx.Response(200, json=load("reviews_page1.json")),
            httpx.Response(200, json=load("reviews_page2.json")),
        ]
    )
    first, second = connector(key_json).fetch(None)
    crash, praise = first.mentions

    assert crash.external_id == f"{REVIEW}@1795597200"
    assert crash.thread_id == REVIEW and crash.raw["review_id"] == REVIEW
    assert (crash.title, crash.text) == (
        "Nestrādā",
        "Pēc atjauninājuma lietotne avarē katru reizi, kad atveru rēķinus.",
    )
    assert (crash.rating, crash.author_name, crash.engagement) == (1.0, "Jānis Bērziņš", 3)
    assert crash.created_at.isoformat() == "2026-11-25T09:00:00+00:00"
    assert crash.url == f"https://play.google.com/store/apps/details?id={PACKAGE}&reviewId={REVIEW}"
    assert crash.raw["language"] == "lv" and crash.raw["app_version_name"] == "4.12.0"
    assert praise.title is None and praise.raw["developer_reply"] == "Obrigado, Ana!"
    assert "skipped review reviewId='gp:AOqpTOBroken'" in caplog.text

    # Page 1 keeps the old cursor; the walk's end records the newest edit.
    assert first.cursor is None
    assert json.loads(second.cursor) == {"seconds": 1795597200, "ids": [REVIEW]}
    request = route.calls[0].request
    assert request.headers["Authorization"] == "Bearer ya29.play"
    assert dict(request.url.params) == {"maxResults": "100"}
    assert dict(route.calls[1].request.url.params) == {
        "maxResults": "100",
        "token": "Cg0I4Nq2uQYQgNbW8gE",
    }
    form = parse_qs(grant.calls[0].request.content.decode())
    claims = jwt.decode(
        form["assertion"][0], key.public_key(), algorithms=["RS256"], audience=TOKEN_URL
    )
    assert claims["scope"] == "https://www.googleapis.com/auth/androidpublisher"


@respx.mock
def test_the_next_run_stops_at_what_it_has_seen(key_json):
    granted()
    route = respx.get(API).mock(return_value=httpx.Response(200, json=load("reviews_page1.json")))
    seen = {"seconds": 1795593600, "ids": ["gp:AOqpTOHk3strelM0b1leR3v1ew0002"]}
    [batch] = connector(key_json).fetch(json.dumps(seen))
    assert [m.external_id for m in batch.mentions] == [f"{REVIEW}@1795597200"]
    assert json.loads(batch.cursor) == {"seconds": 1795597200, "ids": [REVIEW]}
    assert route.call_count == 1


@respx.mock
def test_a_review_edited_in_the_cursor_second_is_not_skipped(key_json):
    granted()
    respx.get(API).mock(return_value=httpx.Response(200, json=load("reviews_page1.json")))
    # The last run saw another review at 1795593600; Ana's edit in that second is still new.
    seen = {"seconds": 1795593600, "ids": ["gp:AOqpTOSameSecond"]}
    [batch] = connector(key_json).fetch(json.dumps(seen))
    assert [m.external_id for m in batch.mentions] == [
        f"{REVIEW}@1795597200",
        "gp:AOqpTOHk3strelM0b1leR3v1ew0002@1795593600",
    ]


@respx.mock
def test_a_review_without_a_time_does_not_end_the_walk_early(key_json, caplog):
    granted()
    page1 = load("reviews_page1.json")
    page1["reviews"] = [{"reviewId": "gp:NoTime", "comments": [{"userComment": {"text": "x"}}]}]
    route = respx.get(API).mock(
        side_effect=[
            httpx.Response(200, json=page1),
            httpx.Response(200, json=load("reviews_page2.json")),
        ]
    )
    first, second = connector(key_json).fetch('{"seconds": 1795400000, "ids": []}')
    assert first.mentions == [] and "skipped review reviewId='gp:NoTime'" in caplog.text
    assert [m.external_id for m in second.mentions] == ["gp:AOqpTOOlderR3v1ew0003@1795500000"]
    assert json.loads(second.cursor) == {"seconds": 1795500000, "ids": ["gp:AOqpTOOlderR3v1ew0003"]}
    assert route.call_count == 2


@respx.mock
def test_an_empty_page_keeps_the_cursor(key_json):
    granted()
    respx.get(API).mock(return_value=httpx.Response(200, json=load("reviews_empty.json")))
    [batch] = connector(key_json).fetch('{"seconds": 1795500000}')
    assert batch.mentions == [] and json.loads(batch.cursor) == {"seconds": 1795500000}


@respx.mock
def test_429_waits_then_reads(key_json):
    granted()
    respx.get(API).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "9"}),
            httpx.Response(200, json=load("reviews_empty.json")),
        ]
    )
    sleeps = Sleeps()
    list(connector(key_json, sleeps).fetch(None))
    assert sleeps == [9.0]


@respx.mock
def test_401_renews_the_token_once_then_names_the_credential(key_json):
    grant = granted()
    respx.get(API).mock(return_value=httpx.Response(401, json={"error": {"code": 401}}))
    with pytest.raises(AuthError, match=r"credentials\.service_account_json was refused"):
        list(connector(key_json).fetch(None))
    assert grant.call_count == 2


def test_settings_name_a_bad_key_and_package(tmp_path):
    problems = GooglePlayConnector.check_settings(
        ConnectorSettings(
            name="play",
            type="googleplay",
            options={"package_name": "kestrel"},
            credentials={"service_account_json": "{not json"},
        )
    )
    assert problems[0].startswith("connectors[play].options.package_name: 'kestrel' is not")
    assert problems[1].startswith(
        "connectors[play].credentials.service_account_json: not a service-account JSON key"
    )
    missing = GooglePlayConnector.check_settings(
        ConnectorSettings(
            name="play",
            type="googleplay",
            options={"package_name": PACKAGE},
            credentials={"service_account_json": str(tmp_path / "nope.json")},
        )
    )
    assert "cannot read" in missing[0]
    keyless = GooglePlayConnector.check_settings(
        ConnectorSettings(
            name="play",
            type="googleplay",
            options={"package_name": PACKAGE},
            credentials={"service_account_json": '{"client_email": "a@b.iam.gserviceaccount.com"}'},
        )
    )
    assert keyless[0].startswith(
        "connectors[play].credentials.service_account_json: the JSON key has no private_key"
    )


def test_a_key_file_path_works(key_json, tmp_path):
    path = tmp_path / "play.json"
    path.write_text(key_json, encoding="utf-8")
    settings = ConnectorSettings(
        name="play",
        type="googleplay",
        options={"package_name": PACKAGE},
        credentials={"service_account_json": str(path)},
    )
    assert GooglePlayConnector.check_settings(settings) == []


def target() -> ReplyTarget:
    return ReplyTarget(
        external_id=f"{REVIEW}@1795597200",
        platform="googleplay",
        url=f"https://play.google.com/store/apps/details?id={PACKAGE}&reviewId={REVIEW}",
        thread_id=REVIEW,
        raw={"review_id": REVIEW},
    )


@respx.mock
def test_reply_posts_the_text_and_is_limited_to_350(key_json):
    granted()
    route = respx.post(f"{API}/{REVIEW}:reply").mock(
        return_value=httpx.Response(200, json=load("reply_result.json"))
    )
    text = "Atvainojiet, Jāni! Labojums būs 4.12.1 versijā."
    sent = connector(key_json).reply(target(), text, key="mention-1")
    assert sent.external_id == REVIEW
    assert json.loads(route.calls[0].request.content) == {"replyText": text}
    with pytest.raises(ReplyNotAllowed, match="351 characters long; googleplay allows 350"):
        connector(key_json).reply(target(), "x" * 351, key="mention-1")
    assert route.call_count == 1
    assert GooglePlayConnector.reply_is_idempotent


@respx.mock
def test_reply_errors_are_clear_and_a_5xx_is_uncertain(key_json):
    granted()
    respx.post(f"{API}/{REVIEW}:reply").mock(
        side_effect=[
            httpx.Response(400, json={"error": {"code": 400, "message": "Invalid request"}}),
            httpx.Response(500),
            httpx.Response(429, headers={"Retry-After": "1"}),
            httpx.Response(429, headers={"Retry-After": "1"}),
            httpx.Response(429, headers={"Retry-After": "1"}),
            httpx.Response(429, headers={"Retry-After": "1"}),
        ]
    )
    with pytest.raises(ReplyNotAllowed, match="refused the reply"):
        connector(key_json).reply(target(), "hi", key="k")
    with pytest.raises(TransientError) as raised:
        connector(key_json).reply(target(), "hi", key="k")
    assert raised.value.uncertain
    with pytest.raises(RateLimitedError) as limited:
        connector(key_json).reply(target(), "hi", key="k")
    assert not limited.value.uncertain


@respx.mock
def test_find_reply_reads_the_developer_comment(key_json):
    granted()
    review = load("reviews_page1.json")["reviews"][1]
    respx.get(f"{API}/{REVIEW}").mock(return_value=httpx.Response(200, json=review))
    found = connector(key_json).find_reply(target(), "k", text="Obrigado, Ana!")
    assert found is not None and found.already_there
    assert connector(key_json).find_reply(target(), "k", text="Other") is None
