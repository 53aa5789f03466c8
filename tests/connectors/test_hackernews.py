"""The Hacker News connector on recorded Algolia responses: mapping, paging, cursor, retries."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from connectors import hackernews
from connectors.hackernews import SEARCH_URL, HackerNewsConnector
from triage.config import ConnectorSettings
from triage.domain import Batch

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hackernews"
LOGGER = "triage.connectors.hn"
NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
WEEK_AGO = int(NOW.timestamp()) - 7 * 24 * 3600


@pytest.fixture(autouse=True)
def _frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hackernews, "utcnow", lambda: NOW)


def payload(name: str, **changes: Any) -> dict[str, Any]:
    body = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    body.update(changes)
    return body


def ok(name: str, **changes: Any) -> httpx.Response:
    return httpx.Response(200, json=payload(name, **changes))


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def connector(
    sleep: Sleeps | None = None, queries: list[str] | None = None, **options: Any
) -> HackerNewsConnector:
    settings = ConnectorSettings(
        name="hn", type="hackernews", queries=queries or ["kestrel"], options=options
    )
    return HackerNewsConnector(settings, sleep=sleep if sleep is not None else Sleeps())


def params(call: Any) -> dict[str, str]:
    return dict(call.request.url.params)


def cursor_of(batch: Batch) -> dict[str, Any]:
    return json.loads(batch.cursor or "")


@respx.mock
def test_first_page_maps_stories_and_comments() -> None:
    route = respx.get(SEARCH_URL).mock(
        side_effect=[ok("search_page0.json"), ok("search_page1.json")]
    )
    first, _ = list(connector().fetch(None))
    assert params(route.calls[0]) == {
        "query": "kestrel",
        "tags": "(story,comment)",
        "hitsPerPage": "100",
        "numericFilters": f"created_at_i>{WEEK_AGO}",
        "page": "0",
    }
    comment, story = first.mentions
    assert (comment.source, comment.platform) == ("hn", "hackernews")
    assert comment.external_id == "42818102"
    assert comment.url == "https://news.ycombinator.com/item?id=42818102"
    assert comment.text == (
        'Kestrel support told me the outage was "planned". Nobody got an SMS about it.\n'
        "Three hours without data & no refund: https://status.kestrel.example"
    )
    assert comment.author_handle == "lvdm"
    assert comment.created_at == datetime(2025, 3, 4, 9, 12, 40, tzinfo=UTC)
    assert (comment.thread_id, comment.parent_id) == ("42817730", "42817911")
    assert comment.engagement is None and comment.title is None

    assert story.external_id == "42817730"
    assert story.title == "Ask HN: Is Kestrel eSIM activation broken for anyone else?"
    assert story.text == (
        "Ask HN: Is Kestrel eSIM activation broken for anyone else?\n\n"
        "My eSIM has said Pending for two days.\n"
        "Support keeps sending the same link & nothing changes."
    )
    assert story.engagement == 31 + 12
    assert (story.thread_id, story.parent_id) == ("42817730", None)
    assert story.author_handle == "ruta_k"
    assert story.raw["_tags"] == ["story", "author_ruta_k", "story_42817730", "ask_hn"]


@respx.mock
def test_next_page_asks_the_same_question_and_the_cursor_moves_only_when_done() -> None:
    route = respx.get(SEARCH_URL).mock(
        side_effect=[ok("search_page0.json"), ok("search_page1.json")]
    )
    first, second = list(connector().fetch(None))
    assert params(route.calls[1]) == {**params(route.calls[0]), "page": "1"}
    assert route.call_count == 2
    # Mid-query: hits older than the oldest one read so far are still to come.
    assert cursor_of(first) == {
        "kestrel": {"since": WEEK_AGO, "until": 1741078502, "newest": 1741079560}
    }
    (prices,) = second.mentions
    assert prices.text == "Kestrel Mobile raises prices from April"
    assert prices.url == "https://news.ycombinator.com/item?id=42810044"
    assert prices.engagement == 2
    assert cursor_of(second) == {"kestrel": {"since": 1741079560}}


@respx.mock
def test_empty_result_keeps_the_cursor() -> None:
    route = respx.get(SEARCH_URL).mock(return_value=ok("search_empty.json"))
    saved = json.dumps({"kestrel": {"since": 1741079560}})
    (batch,) = connector().fetch(saved)
    assert batch.mentions == []
    assert cursor_of(batch) == {"kestrel": {"since": 1741079560}}
    assert route.call_count == 1


@respx.mock
def test_rate_limited_then_ok_waits_as_told() -> None:
    route = respx.get(SEARCH_URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}),
            ok("search_page1.json", nbPages=1),
        ]
    )
    sleeps = Sleeps()
    (batch,) = connector(sleeps).fetch(None)
    assert len(batch.mentions) == 1
    assert route.call_count == 2
    assert sleeps == [7.0]


@respx.mock
def test_unavailable_then_ok_backs_off() -> None:
    route = respx.get(SEARCH_URL).mock(
        side_effect=[httpx.Response(503), ok("search_page1.json", nbPages=1)]
    )
    sleeps = Sleeps()
    (batch,) = connector(sleeps).fetch(None)
    assert len(batch.mentions) == 1
    assert route.call_count == 2
    assert len(sleeps) == 1 and 1.0 <= sleeps[0] <= 1.25


@respx.mock
def test_malformed_hits_are_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    body = payload("search_page0.json", nbPages=1)
    body["hits"] += [
        {"_tags": ["comment"], "author": "ghost", "comment_text": "Kestrel?", "created_at_i": 1},
        {"_tags": ["story"], "objectID": "42819999", "title": "", "created_at_i": 1741079000},
    ]
    respx.get(SEARCH_URL).mock(return_value=httpx.Response(200, json=body))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (batch,) = connector().fetch(None)
    assert [m.external_id for m in batch.mentions] == ["42818102", "42817730"]
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "skipped hit author='ghost': hit has no objectID",
        "skipped hit objectID='42819999': hit has no title or text",
    ]


@respx.mock
def test_second_run_resumes_from_the_saved_cursor() -> None:
    route = respx.get(SEARCH_URL).mock(
        side_effect=[ok("search_page0.json", nbPages=1, nbHits=2), ok("search_empty.json")]
    )
    (first,) = connector().fetch(None)
    (second,) = connector().fetch(first.cursor)
    assert params(route.calls[1])["numericFilters"] == "created_at_i>1741079560"
    assert params(route.calls[1])["page"] == "0"
    assert second.mentions == []
    assert second.cursor == first.cursor


@respx.mock
def test_run_stopped_by_max_pages_resumes_below_the_oldest_hit_read() -> None:
    route = respx.get(SEARCH_URL).mock(
        side_effect=[ok("search_page0.json"), ok("search_page1.json", page=0, nbPages=1)]
    )
    (first,) = connector(max_pages=1).fetch(None)
    (second,) = connector(max_pages=1).fetch(first.cursor)
    assert params(route.calls[1])["numericFilters"] == (
        f"created_at_i>{WEEK_AGO},created_at_i<=1741078502"
    )
    assert params(route.calls[1])["page"] == "0"
    assert [m.external_id for m in second.mentions] == ["42810044"]
    assert cursor_of(second) == {"kestrel": {"since": 1741079560}}


@respx.mock
def test_more_hits_than_algolia_pages_through_read_on_below_the_oldest() -> None:
    route = respx.get(SEARCH_URL).mock(
        side_effect=[
            ok("search_page0.json", nbPages=1, nbHits=1500),
            ok("search_page1.json", nbPages=1, nbHits=1),
        ]
    )
    first, second = list(connector().fetch(None))
    assert params(route.calls[1])["numericFilters"] == (
        f"created_at_i>{WEEK_AGO},created_at_i<=1741078502"
    )
    assert params(route.calls[1])["page"] == "0"
    assert cursor_of(first)["kestrel"]["until"] == 1741078502
    assert cursor_of(second) == {"kestrel": {"since": 1741079560}}


@respx.mock
def test_each_query_has_its_own_cursor() -> None:
    route = respx.get(SEARCH_URL).mock(
        side_effect=[ok("search_page1.json", nbPages=1), ok("search_empty.json")]
    )
    saved = json.dumps({"kestrel": {"since": 1741000000}})
    first, second = list(connector(queries=["kestrel", "kestrel.example"]).fetch(saved))
    assert [params(call)["query"] for call in route.calls] == ["kestrel", "kestrel.example"]
    assert params(route.calls[0])["numericFilters"] == "created_at_i>1741000000"
    assert params(route.calls[1])["numericFilters"] == f"created_at_i>{WEEK_AGO}"
    assert cursor_of(first) == {
        "kestrel": {"since": 1741027202},
        "kestrel.example": {"since": WEEK_AGO},
    }
    assert second.cursor == first.cursor


def test_check_settings_wants_a_query() -> None:
    def check(queries: list[str]) -> list[str]:
        settings = ConnectorSettings(name="hn", type="hackernews", queries=queries)
        return HackerNewsConnector.check_settings(settings)

    assert check(["kestrel"]) == []
    expected = [
        "connectors[hn].queries: at least one query is required; "
        'expected search terms such as ["kestrel mobile"]'
    ]
    assert check([]) == expected
    assert check(["  "]) == expected
