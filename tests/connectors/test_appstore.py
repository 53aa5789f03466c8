"""App Store reviews: App Store Connect with an ES256 key (read and reply) or the public feed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.appstore import AppStoreConnector
from connectors.base import AuthError, ReplyNotAllowed, SentReply, TransientError
from triage.config import ConnectorSettings
from triage.domain import ReplyTarget

FIXTURES = Path(__file__).parent.parent / "fixtures" / "appstore"
APP = "1451234567"
REVIEWS = f"https://api.appstoreconnect.apple.com/v1/apps/{APP}/customerReviews"
RESPONSES = "https://api.appstoreconnect.apple.com/v1/customerReviewResponses"
FEED = (
    "https://itunes.apple.com/{}/rss/customerreviews/page={}/id=" + APP + "/sortby=mostrecent/json"
)
ISSUER = "57246542-96fe-1a63-e053-0824d011072a"
KEY_ID = "2X9R4HXF34"
R1 = "00000053-4b8e-2c11-7d15-4e2b00000001"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def api(key, **options: Any) -> AppStoreConnector:
    settings = ConnectorSettings(
        name="ios",
        type="appstore",
        options={"app_id": APP, **options},
        credentials={"issuer_id": ISSUER, "key_id": KEY_ID, "private_key": pem(key)},
    )
    return AppStoreConnector(settings, sleep=Sleeps())


def feed(sleep: Sleeps | None = None, **options: Any) -> AppStoreConnector:
    settings = ConnectorSettings(name="ios", type="appstore", options={"app_id": APP, **options})
    return AppStoreConnector(settings, sleep=sleep if sleep is not None else Sleeps())


@respx.mock
def test_api_reviews_are_read_with_an_es256_token_and_paged(key, caplog):
    route = respx.get(url__startswith=REVIEWS).mock(
        side_effect=[
            httpx.Response(200, json=load("reviews_page1.json")),
            httpx.Response(200, json=load("reviews_page2.json")),
        ]
    )
    first, second = api(key).fetch(None)
    lv, love = first.mentions
    [slow] = second.mentions

    assert (lv.external_id, lv.rating, lv.title) == (R1, 1.0, "Rēķins divreiz")
    assert lv.text == "Jūs divreiz noņēmāt naudu par novembri. Lūdzu atmaksājiet!"
    assert lv.author_name == "ruta_k" and lv.created_at.isoformat() == "2026-11-24T15:41:22+00:00"
    assert lv.url == f"https://apps.apple.com/lv/app/id{APP}?see-all=reviews"
    assert love.rating == 5.0 and slow.raw["territory"] == "GBR"
    assert slow.url == f"https://apps.apple.com/gb/app/id{APP}?see-all=reviews"
    assert "skipped review id='00000053-4b8e-2c11-7d15-4e2b00000002'" in caplog.text
    assert first.cursor is None
    assert json.loads(second.cursor) == {"api": "2026-11-24T15:41:22+00:00", "api_ids": [R1]}

    request = route.calls[0].request
    assert dict(request.url.params) == {"sort": "-createdDate", "limit": "200"}
    assert route.calls[1].request.url.params["cursor"] == "Mg.AN2pZ0M"
    token = request.headers["Authorization"].removeprefix("Bearer ")
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
    claims = jwt.decode(
        token, key.public_key(), algorithms=["ES256"], audience="appstoreconnect-v1"
    )
    assert claims["iss"] == ISSUER and claims["exp"] - claims["iat"] == 1200
    assert route.calls[1].request.headers["Authorization"] == request.headers["Authorization"]


@respx.mock
def test_the_next_api_run_stops_at_the_cursor(key):
    route = respx.get(url__startswith=REVIEWS).mock(
        return_value=httpx.Response(200, json=load("reviews_page1.json"))
    )
    [batch] = api(key).fetch(json.dumps({"api": "2026-11-24T13:30:00+00:00"}))
    assert [m.external_id for m in batch.mentions] == [R1]
    assert route.call_count == 1


@respx.mock
def test_a_refused_key_names_the_credentials(key):
    respx.get(url__startswith=REVIEWS).mock(
        return_value=httpx.Response(
            401,
            json={"errors": [{"status": "401", "code": "NOT_AUTHORIZED", "title": "Auth failed"}]},
        )
    )
    with pytest.raises(AuthError, match=r"credentials\.issuer_id, key_id and private_key"):
        list(api(key).fetch(None))


@respx.mock
def test_the_public_feed_per_country_without_a_key(caplog):
    us = respx.get(FEED.format("us", 1)).mock(
        return_value=httpx.Response(200, json=load("feed_us.json"))
    )
    respx.get(FEED.format("us", 2)).mock(
        return_value=httpx.Response(200, json=load("feed_empty.json"))
    )
    lv = respx.get(FEED.format("lv", 1)).mock(
        return_value=httpx.Response(200, json=load("feed_empty.json"))
    )
    batches = list(feed(countries=["us", "lv"]).fetch(None))
    mentions = [m for b in batches for m in b.mentions]
    assert [m.external_id for m in mentions] == ["11223344556", "11223344550"]
    charged = mentions[0]
    assert (charged.title, charged.rating, charged.author_name) == (
        "Charged twice",
        1.0,
        "frustrated_dad",
    )
    assert charged.engagement == 4 and charged.raw["version"] == "4.12.0"
    assert "skipped review id='11223344555'" in caplog.text
    assert json.loads(batches[-1].cursor) == {
        "feed": {"us": {"at": "2026-11-24T14:12:03+00:00", "at_ids": ["11223344556"]}}
    }
    assert us.call_count == 1 and lv.call_count == 1


@respx.mock
def test_a_single_feed_entry_arrives_as_an_object():
    data = load("feed_us.json")
    data["feed"]["entry"] = data["feed"]["entry"][1]
    respx.get(FEED.format("us", 1)).mock(return_value=httpx.Response(200, json=data))
    respx.get(FEED.format("us", 2)).mock(
        return_value=httpx.Response(200, json=load("feed_empty.json"))
    )
    mentions = [m for b in feed().fetch(None) for m in b.mentions]
    assert [m.external_id for m in mentions] == ["11223344556"]


@respx.mock
def test_feed_entries_without_their_own_time_take_the_feeds():
    data = load("feed_us.json")
    for entry in data["feed"]["entry"]:
        entry.pop("updated", None)
    respx.get(FEED.format("us", 1)).mock(return_value=httpx.Response(200, json=data))
    respx.get(FEED.format("us", 2)).mock(
        return_value=httpx.Response(200, json=load("feed_empty.json"))
    )
    batches = list(feed().fetch(None))
    mentions = [m for b in batches for m in b.mentions]
    assert [m.external_id for m in mentions] == ["11223344556", "11223344550"]
    assert {m.created_at.isoformat() for m in mentions} == {"2026-11-24T15:00:00+00:00"}
    # The cursor moves, so the next run does not read the same reviews as new.
    assert json.loads(batches[-1].cursor)["feed"]["us"]["at"] == "2026-11-24T15:00:00+00:00"


@respx.mock
def test_feed_429_then_ok():
    respx.get(FEED.format("us", 1)).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(200, json=load("feed_empty.json")),
        ]
    )
    sleeps = Sleeps()
    [batch] = feed(sleeps).fetch(None)
    assert batch.mentions == [] and sleeps == [3.0]


def test_settings_catch_partial_keys_and_bad_values(key):
    def check(options: dict, credentials: dict) -> list[str]:
        return AppStoreConnector.check_settings(
            ConnectorSettings(name="ios", type="appstore", options=options, credentials=credentials)
        )

    assert check({"app_id": APP}, {}) == []
    assert check({"app_id": "kestrel", "countries": ["usa"]}, {}) == [
        "connectors[ios].options.app_id: 'kestrel' is not valid; expected the app's numeric "
        "Apple ID, e.g. 1451234567 (App Store Connect > App Information, or the number in its "
        "App Store link)",
        "connectors[ios].options.countries: ['usa'] is not valid; expected a list of two-letter "
        'store codes for the public feed, e.g. ["us", "lv"]',
    ]
    partial = check({"app_id": APP}, {"issuer_id": ISSUER})
    assert partial[0].startswith("connectors[ios].credentials.key_id: required with an App")
    assert partial[1].startswith("connectors[ios].credentials.private_key: required with issuer")
    rsa_like = check({"app_id": APP}, {"issuer_id": ISSUER, "key_id": KEY_ID, "private_key": "x"})
    assert rsa_like == [
        "connectors[ios].credentials.private_key: not a PEM private key (the text of the .p8 file)"
    ]


def target() -> ReplyTarget:
    return ReplyTarget(
        external_id=R1,
        platform="appstore",
        url=f"https://apps.apple.com/lv/app/id{APP}?see-all=reviews",
        raw={"review_id": R1},
    )


@respx.mock
def test_reply_creates_a_customer_review_response(key):
    route = respx.post(RESPONSES).mock(
        return_value=httpx.Response(201, json=load("response_created.json"))
    )
    text = "Atvainojiet, Rūta! Atmaksa ir ceļā."
    sent = api(key).reply(target(), text, key="mention-4")
    assert sent == SentReply(
        external_id="6f4c2d3e-1a2b-4c5d-8e9f-0a1b2c3d4e5f",
        url=f"https://apps.apple.com/lv/app/id{APP}?see-all=reviews",
    )
    assert json.loads(route.calls[0].request.content) == {
        "data": {
            "type": "customerReviewResponses",
            "attributes": {"responseBody": text},
            "relationships": {"review": {"data": {"type": "customerReviews", "id": R1}}},
        }
    }
    with pytest.raises(ReplyNotAllowed, match="5971 characters long; appstore allows 5970"):
        api(key).reply(target(), "x" * 5971, key="mention-4")
    assert route.call_count == 1


def test_the_public_feed_cannot_reply():
    with pytest.raises(ReplyNotAllowed, match="need an App Store Connect API key"):
        feed().reply(target(), "hi", key="k")


@respx.mock
def test_a_5xx_is_uncertain_and_find_reply_reads_the_response(key):
    respx.post(RESPONSES).mock(return_value=httpx.Response(500))
    with pytest.raises(TransientError) as raised:
        api(key).reply(target(), "Sorry", key="k")
    assert raised.value.uncertain

    lookup = respx.get(f"https://api.appstoreconnect.apple.com/v1/customerReviews/{R1}/response")
    lookup.mock(return_value=httpx.Response(200, json=load("response_created.json")))
    found = api(key).find_reply(target(), "k", text="Atvainojiet, Rūta! Atmaksa ir ceļā.")
    assert found is not None and found.already_there
    lookup.mock(return_value=httpx.Response(404, json={"errors": [{"status": "404"}]}))
    assert api(key).find_reply(target(), "k") is None


@respx.mock
def test_a_review_at_the_cursor_time_with_a_new_id_is_kept(key):
    page = load("reviews_page1.json")
    twin = json.loads(json.dumps(page["data"][0]))
    twin["id"] = "00000053-4b8e-2c11-7d15-4e2b00000009"
    page["data"] = [twin, page["data"][0]]
    route = respx.get(url__startswith=REVIEWS).mock(return_value=httpx.Response(200, json=page))
    cursor = json.dumps({"api": "2026-11-24T15:41:22+00:00", "api_ids": [R1]})
    [batch] = api(key).fetch(cursor)
    assert [m.external_id for m in batch.mentions] == [twin["id"]]
    assert json.loads(batch.cursor)["api_ids"] == [R1, twin["id"]]
    assert route.call_count == 1


@respx.mock
def test_an_empty_api_page_keeps_the_cursor(key):
    respx.get(url__startswith=REVIEWS).mock(
        return_value=httpx.Response(200, json={"data": [], "links": {"self": REVIEWS}})
    )
    cursor = json.dumps({"api": "2026-11-24T15:41:22+00:00", "api_ids": [R1]})
    [batch] = api(key).fetch(cursor)
    assert batch.mentions == [] and json.loads(batch.cursor) == json.loads(cursor)
    [fresh] = api(key).fetch(None)
    assert fresh.mentions == [] and fresh.cursor is None


@respx.mock
def test_api_429_waits_per_retry_after_then_reads(key):
    respx.get(url__startswith=REVIEWS).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(200, json=load("reviews_page2.json")),
        ]
    )
    connector = api(key)
    [batch] = connector.fetch(None)
    assert [m.raw["territory"] for m in batch.mentions] == ["GBR"]
    assert connector._sleep == [7.0]


@respx.mock
def test_a_crash_mid_walk_rereads_instead_of_skipping(key):
    respx.get(url__startswith=REVIEWS).mock(
        side_effect=[
            httpx.Response(200, json=load("reviews_page1.json")),
            httpx.Response(500),
            httpx.Response(500),
            httpx.Response(500),
            httpx.Response(500),
        ]
    )
    batches = api(key).fetch(json.dumps({"api": "2026-11-20T00:00:00+00:00"}))
    first = next(batches)
    assert json.loads(first.cursor) == {"api": "2026-11-20T00:00:00+00:00"}
    with pytest.raises(TransientError):
        next(batches)


@respx.mock
def test_the_token_is_reused_until_shortly_before_it_expires(key, monkeypatch):
    from datetime import UTC, datetime, timedelta

    import connectors.appstore as appstore

    now = [datetime(2026, 11, 25, 1, 0, tzinfo=UTC)]
    monkeypatch.setattr(appstore, "utcnow", lambda: now[0])
    connector = api(key)
    first = connector._token()
    now[0] += timedelta(minutes=18)
    assert connector._token() == first
    now[0] += timedelta(minutes=1, seconds=30)
    renewed = connector._token()
    assert renewed != first
    claims = jwt.decode(
        renewed,
        key.public_key(),
        algorithms=["ES256"],
        audience="appstoreconnect-v1",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iat"] == int(now[0].timestamp())


@respx.mock
def test_the_next_feed_run_stops_at_the_country_cursor():
    page1 = respx.get(FEED.format("us", 1)).mock(
        return_value=httpx.Response(200, json=load("feed_us.json"))
    )
    page2 = respx.get(FEED.format("us", 2))
    cursor = json.dumps({"feed": {"us": {"at": "2026-11-24T14:12:03+00:00", "at_ids": []}}})
    [batch] = feed().fetch(cursor)
    assert [m.external_id for m in batch.mentions] == ["11223344556"]
    [again] = feed().fetch(batch.cursor)
    assert again.mentions == [] and again.cursor == batch.cursor
    assert page1.call_count == 2 and page2.call_count == 0


@respx.mock
def test_feed_401_is_an_auth_error():
    respx.get(FEED.format("us", 1)).mock(return_value=httpx.Response(401))
    with pytest.raises(AuthError):
        list(feed().fetch(None))


def test_settings_need_an_app_id_and_an_ec_key(key, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa

    def check(options: dict, credentials: dict) -> list[str]:
        return AppStoreConnector.check_settings(
            ConnectorSettings(name="ios", type="appstore", options=options, credentials=credentials)
        )

    [missing] = check({}, {})
    assert missing.startswith("connectors[ios].options.app_id: required option is missing")
    rsa_pem = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    creds = {"issuer_id": ISSUER, "key_id": KEY_ID}
    assert check({"app_id": APP}, {**creds, "private_key": rsa_pem}) == [
        "connectors[ios].credentials.private_key: not an EC P-256 key; App Store Connect keys are"
    ]
    p8 = tmp_path / f"AuthKey_{KEY_ID}.p8"
    p8.write_text(pem(key), encoding="utf-8")
    assert check({"app_id": APP, "private_key_path": str(p8)}, creds) == []
    [gone] = check({"app_id": APP, "private_key_path": str(tmp_path / "nope.p8")}, creds)
    assert gone.startswith("connectors[ios].credentials.private_key: cannot read")


def test_reply_unavailable_names_the_missing_credentials():
    reason = feed().reply_unavailable()
    assert reason is not None
    assert "connectors[ios].credentials.issuer_id, key_id and private_key" in reason
    assert "public feed" in reason


@respx.mock
def test_a_repeated_reply_overwrites_instead_of_adding(key):
    route = respx.post(RESPONSES).mock(
        return_value=httpx.Response(201, json=load("response_created.json"))
    )
    connector = api(key)
    assert connector.reply_is_idempotent
    one = connector.reply(target(), "Sorry", key="k")
    two = connector.reply(target(), "Sorry", key="k")
    assert one.external_id == two.external_id
    bodies = [json.loads(call.request.content) for call in route.calls]
    assert bodies[0] == bodies[1]
    auth = route.calls[0].request.headers["Authorization"]
    assert auth.startswith("Bearer ") and route.calls[0].request.headers["Content-Type"] == (
        "application/json"
    )


@respx.mock
def test_an_unmapped_territory_links_the_country_less_store_page(key):
    page = load("reviews_page2.json")
    page["data"][0]["attributes"]["territory"] = "ZZZ"
    respx.get(url__startswith=REVIEWS).mock(return_value=httpx.Response(200, json=page))
    [batch] = api(key).fetch(None)
    assert batch.mentions[0].url == f"https://apps.apple.com/app/id{APP}?see-all=reviews"
