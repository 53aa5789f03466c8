"""Trustpilot reviews: API key reads, domain lookup, paging and cursor, business-user replies."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from connectors.base import AuthError, ReplyNotAllowed, TransientError
from connectors.trustpilot import TrustpilotConnector
from triage.config import ConnectorSettings
from triage.domain import ReplyTarget

FIXTURES = Path(__file__).parent.parent / "fixtures" / "trustpilot"
UNIT = "5f3a1b2c4d5e6f0012345678"
REVIEWS = f"https://api.trustpilot.com/v1/business-units/{UNIT}/reviews"
TOKEN = "https://api.trustpilot.com/v1/oauth/oauth-business-users-for-applications/accesstoken"
R1 = "6543a1b2c3d4e5f600000001"
REPLY = f"https://api.trustpilot.com/v1/private/reviews/{R1}/reply"
KEY = "kestrelApiKey"
REPLY_CREDENTIALS = {
    "api_secret": "kestrelSecret",
    "username": "care@kestrel.com",
    "password": "s3cr3t-pass",
    "business_user_id": "5a1b2c3d4e5f6a0012340001",
}


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def connector(sleep: Sleeps | None = None, replies: bool = False, **options: Any):
    settings = ConnectorSettings(
        name="tp",
        type="trustpilot",
        options=options or {"business_unit_id": UNIT},
        credentials={"api_key": KEY, **(REPLY_CREDENTIALS if replies else {})},
    )
    return TrustpilotConnector(settings, sleep=sleep if sleep is not None else Sleeps())


@respx.mock
def test_reviews_are_mapped_paged_and_a_bad_one_skipped(caplog):
    route = respx.get(url__startswith=REVIEWS).mock(
        side_effect=[
            httpx.Response(200, json=load("reviews_page1.json")),
            httpx.Response(200, json=load("reviews_page2.json")),
        ]
    )
    first, second = connector().fetch(None)
    [charged] = first.mentions
    [praise] = second.mentions

    assert (charged.external_id, charged.rating, charged.title) == (R1, 1.0, "Pobraliście dwa razy")
    assert charged.author_name == "Marta Kowalska" and charged.engagement == 2
    assert charged.url == f"https://www.trustpilot.com/reviews/{R1}"
    assert charged.raw["language"] == "pl" and charged.raw["consumer_reviews"] == 14
    assert praise.raw["company_reply"] == "Thanks John!"
    assert "skipped item id='6543a1b2c3d4e5f600000002'" in caplog.text
    assert first.cursor is None
    assert json.loads(second.cursor) == {"created": "2026-11-24T09:10:11+00:00"}
    request = route.calls[0].request
    assert request.headers["apikey"] == KEY
    assert dict(request.url.params) == {
        "perPage": "100",
        "orderBy": "createdat.desc",
        "page": "1",
    }
    assert route.calls[1].request.url.params["page"] == "2"


@respx.mock
def test_the_next_run_stops_at_the_cursor_and_an_empty_page_keeps_it():
    respx.get(url__startswith=REVIEWS).mock(
        side_effect=[
            httpx.Response(200, json=load("reviews_page1.json")),
            httpx.Response(200, json=load("reviews_empty.json")),
        ]
    )
    [batch] = connector().fetch(json.dumps({"created": "2026-11-24T08:30:00+00:00"}))
    assert [m.external_id for m in batch.mentions] == [R1]
    [empty] = connector().fetch('{"created": "2026-11-24T09:10:11+00:00"}')
    assert empty.mentions == [] and json.loads(empty.cursor) == {
        "created": "2026-11-24T09:10:11+00:00"
    }


@respx.mock
def test_the_business_unit_is_found_by_domain_once():
    find = respx.get("https://api.trustpilot.com/v1/business-units/find").mock(
        return_value=httpx.Response(200, json=load("find.json"))
    )
    respx.get(url__startswith=REVIEWS).mock(
        return_value=httpx.Response(200, json=load("reviews_empty.json"))
    )
    source = connector(domain="kestrel.com")
    list(source.fetch(None))
    list(source.fetch(None))
    assert find.call_count == 1
    assert dict(find.calls[0].request.url.params) == {"name": "kestrel.com"}


@respx.mock
def test_429_waits_and_401_names_the_api_key():
    respx.get(url__startswith=REVIEWS).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "4"}),
            httpx.Response(200, json=load("reviews_empty.json")),
            httpx.Response(401, json={"fault": {"faultstring": "Invalid ApiKey"}}),
        ]
    )
    sleeps = Sleeps()
    list(connector(sleeps).fetch(None))
    assert sleeps == [4.0]
    with pytest.raises(AuthError, match=r"credentials\.api_key was refused"):
        list(connector().fetch(None))


def test_settings_need_a_business_unit_or_domain():
    problems = TrustpilotConnector.check_settings(
        ConnectorSettings(name="tp", type="trustpilot", credentials={"api_key": KEY})
    )
    assert problems == [
        "connectors[tp].options: set business_unit_id (the business unit id (Trustpilot "
        "Business > Integrations > API)) or domain (the domain your Trustpilot profile is "
        "listed under, e.g. kestrel.com)"
    ]


def target() -> ReplyTarget:
    return ReplyTarget(external_id=R1, platform="trustpilot", raw={"review_id": R1})


@respx.mock
def test_reply_logs_in_as_the_business_user_once_and_posts_the_message():
    login = respx.post(TOKEN).mock(return_value=httpx.Response(200, json=load("token.json")))
    route = respx.post(REPLY).mock(return_value=httpx.Response(201))
    source = connector(replies=True)
    source.reply(target(), "Przepraszamy, Marto! Zwrot jest w drodze.", key="m-1")
    sent = source.reply(target(), "Zwrot zlecony.", key="m-1")

    assert sent.external_id == R1 and sent.url == f"https://www.trustpilot.com/reviews/{R1}"
    assert login.call_count == 1
    grant = login.calls[0].request
    assert (
        grant.headers["Authorization"]
        == "Basic " + base64.b64encode(f"{KEY}:kestrelSecret".encode()).decode()
    )
    assert parse_qs(grant.content.decode()) == {
        "grant_type": ["password"],
        "username": ["care@kestrel.com"],
        "password": ["s3cr3t-pass"],
    }
    request = route.calls[0].request
    assert request.headers["Authorization"] == "Bearer AccessTokenK3strel"
    assert json.loads(request.content) == {
        "authorBusinessUserId": "5a1b2c3d4e5f6a0012340001",
        "message": "Przepraszamy, Marto! Zwrot jest w drodze.",
    }


def test_reply_needs_the_business_login():
    with pytest.raises(ReplyNotAllowed, match=r"credentials\.api_secret"):
        connector().reply(target(), "hi", key="k")


@respx.mock
def test_over_the_limit_sends_nothing_and_a_5xx_is_uncertain():
    respx.post(TOKEN).mock(return_value=httpx.Response(200, json=load("token.json")))
    route = respx.post(REPLY).mock(return_value=httpx.Response(503))
    with pytest.raises(ReplyNotAllowed, match="2001 characters long; trustpilot allows 2000"):
        connector(replies=True).reply(target(), "x" * 2001, key="k")
    assert route.call_count == 0
    with pytest.raises(TransientError) as raised:
        connector(replies=True).reply(target(), "hi", key="k")
    assert raised.value.uncertain and route.call_count == 1


@respx.mock
def test_find_reply_reads_the_company_reply():
    review = load("reviews_page2.json")["reviews"][0]
    respx.get(f"https://api.trustpilot.com/v1/reviews/{R1}").mock(
        return_value=httpx.Response(200, json=review)
    )
    found = connector().find_reply(target(), "k", text="Thanks John!")
    assert found is not None and found.already_there
    assert connector().find_reply(target(), "k", text="Other") is None
