"""Google Business Profile reviews: OAuth refresh token, per-location cursor, owner replies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from connectors.base import AuthError, ReplyNotAllowed, TransientError
from connectors.google_business import GoogleBusinessConnector
from triage.config import ConnectorSettings
from triage.domain import ReplyTarget

FIXTURES = Path(__file__).parent.parent / "fixtures" / "google_business"
ACCOUNT, LOCATION = "10923847561029384756", "4459203984756102938"
REVIEWS = f"https://mybusiness.googleapis.com/v4/accounts/{ACCOUNT}/locations/{LOCATION}/reviews"
TOKEN_URL = "https://oauth2.googleapis.com/token"
R1 = "AbFvOqlK3strelR1"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def connector(sleep: Sleeps | None = None) -> GoogleBusinessConnector:
    settings = ConnectorSettings(
        name="gbp",
        type="google_business",
        options={"account_id": ACCOUNT, "location_ids": [LOCATION]},
        credentials={"client_id": "cid", "client_secret": "cs", "refresh_token": "1//rt"},
    )
    return GoogleBusinessConnector(settings, sleep=sleep if sleep is not None else Sleeps())


def granted() -> respx.Route:
    return respx.post(TOKEN_URL).mock(
        return_value=httpx.Response(200, json={"access_token": "ya29.gbp", "expires_in": 3599})
    )


@respx.mock
def test_reviews_are_mapped_paged_and_the_cursor_moves_at_the_end(caplog):
    granted()
    route = respx.get(REVIEWS).mock(
        side_effect=[
            httpx.Response(200, json=load("reviews_page1.json")),
            httpx.Response(200, json=load("reviews_page2.json")),
        ]
    )
    first, second = connector().fetch(None)
    network, silent = first.mentions
    [praise] = second.mentions

    assert (network.external_id, network.rating, network.author_name) == (R1, 1.0, "Anna Schmidt")
    assert network.text.startswith("Seit drei Tagen kein Netz")
    assert network.raw["location_id"] == LOCATION and network.raw["has_comment"]
    assert (silent.text, silent.author_name) == ("(2-star rating without a comment)", None)
    assert praise.raw["owner_reply"] == "Dziękujemy, Piotrze!"
    assert "skipped review reviewId='AbFvOqlBroken'" in caplog.text
    assert json.loads(first.cursor) == {}
    assert json.loads(second.cursor) == {LOCATION: "2026-11-24T08:30:00.123456+00:00"}
    request = route.calls[0].request
    assert request.headers["Authorization"] == "Bearer ya29.gbp"
    assert dict(request.url.params) == {"pageSize": "50", "orderBy": "updateTime desc"}
    assert route.calls[1].request.url.params["pageToken"] == "CjwKOmFiY2RlZg"


@respx.mock
def test_the_next_run_stops_at_the_cursor():
    granted()
    route = respx.get(REVIEWS).mock(
        return_value=httpx.Response(200, json=load("reviews_page1.json"))
    )
    [batch] = connector().fetch(json.dumps({LOCATION: "2026-11-24T07:30:00+00:00"}))
    assert [m.external_id for m in batch.mentions] == [R1]
    assert route.call_count == 1


@respx.mock
def test_an_empty_location_keeps_its_mark_and_each_location_has_its_own():
    granted()
    other = "7781203984756102938"
    other_url = REVIEWS.replace(LOCATION, other)
    respx.get(REVIEWS).mock(return_value=httpx.Response(200, json={}))
    respx.get(other_url).mock(return_value=httpx.Response(200, json=load("reviews_page2.json")))
    settings = ConnectorSettings(
        name="gbp",
        type="google_business",
        options={"account_id": ACCOUNT, "location_ids": [LOCATION, other]},
        credentials={"client_id": "cid", "client_secret": "cs", "refresh_token": "1//rt"},
    )
    mark = {LOCATION: "2026-11-24T08:30:00.123456+00:00"}
    empty, second = GoogleBusinessConnector(settings, sleep=Sleeps()).fetch(json.dumps(mark))
    assert empty.mentions == [] and json.loads(empty.cursor) == mark
    assert [m.raw["location_id"] for m in second.mentions] == [other]
    assert json.loads(second.cursor) == {**mark, other: "2026-11-23T16:00:00+00:00"}


@respx.mock
def test_a_review_without_a_time_does_not_end_the_walk_early(caplog):
    granted()
    page1 = load("reviews_page1.json")
    page1["reviews"] = [{"reviewId": "AbFvNoTime", "starRating": "FIVE", "comment": "x"}]
    route = respx.get(REVIEWS).mock(
        side_effect=[
            httpx.Response(200, json=page1),
            httpx.Response(200, json=load("reviews_page2.json")),
        ]
    )
    first, second = connector().fetch(json.dumps({LOCATION: "2026-11-01T00:00:00+00:00"}))
    assert first.mentions == [] and "skipped review reviewId='AbFvNoTime'" in caplog.text
    assert len(second.mentions) == 1 and route.call_count == 2


@respx.mock
def test_429_waits_and_a_refused_token_names_the_credential():
    grant = granted()
    respx.get(REVIEWS).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(200, json={"reviews": []}),
            httpx.Response(401),
            httpx.Response(403, json={"error": {"code": 403, "status": "PERMISSION_DENIED"}}),
        ]
    )
    sleeps = Sleeps()
    list(connector(sleeps).fetch(None))
    assert sleeps == [2.0]
    with pytest.raises(AuthError, match=r"credentials\.refresh_token was refused"):
        list(connector().fetch(None))
    assert grant.call_count == 3  # one per connector, plus the renewal after the 401


def test_settings_want_numeric_ids():
    problems = GoogleBusinessConnector.check_settings(
        ConnectorSettings(
            name="gbp",
            type="google_business",
            options={"account_id": "accounts/1", "location_ids": "123"},
            credentials={"client_id": "c", "client_secret": "s", "refresh_token": "r"},
        )
    )
    assert [p.split(":")[0] for p in problems] == [
        "connectors[gbp].options.account_id",
        "connectors[gbp].options.location_ids",
    ]


def target() -> ReplyTarget:
    return ReplyTarget(
        external_id=R1, platform="google_business", raw={"review_id": R1, "location_id": LOCATION}
    )


@respx.mock
def test_reply_puts_the_owner_reply_within_4096_bytes():
    granted()
    route = respx.put(f"{REVIEWS}/{R1}/reply").mock(
        return_value=httpx.Response(
            200, json={"comment": "Es tut uns leid, Anna.", "updateTime": "2026-11-24T09:00:00Z"}
        )
    )
    sent = connector().reply(target(), "Es tut uns leid, Anna.", key="m-1")
    assert sent.external_id == R1
    assert json.loads(route.calls[0].request.content) == {"comment": "Es tut uns leid, Anna."}
    with pytest.raises(ReplyNotAllowed, match="4098 bytes"):
        connector().reply(target(), "ż" * 2049, key="m-1")
    assert route.call_count == 1
    assert GoogleBusinessConnector.reply_is_idempotent


@respx.mock
def test_a_5xx_is_uncertain_and_find_reply_reads_the_review():
    granted()
    respx.put(f"{REVIEWS}/{R1}/reply").mock(return_value=httpx.Response(500))
    with pytest.raises(TransientError) as raised:
        connector().reply(target(), "Hi", key="k")
    assert raised.value.uncertain
    review = load("reviews_page2.json")["reviews"][0]
    respx.get(f"{REVIEWS}/{R1}").mock(return_value=httpx.Response(200, json=review))
    found = connector().find_reply(target(), "k", text="Dziękujemy, Piotrze!")
    assert found is not None and found.already_there
    assert connector().find_reply(target(), "k", text="Other") is None
