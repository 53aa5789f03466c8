"""The Connector base: page loop, repeated-token guard, retries, item mapping, settings checks."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import httpx
import pytest
import respx

from connectors.base import Connector, Page, PayloadError, TransientError
from triage.config import ConfigError, ConnectorSettings
from triage.domain import NewMention
from triage.http import RetryPolicy

API = "https://api.kestrel.example/mentions"


class PagedConnector(Connector):
    """A tiny JSON API: ?since=<cursor>&page=<token>, answering {"items", "next", "newest"}."""

    type = "paged"
    platform = "test"
    required_options = ("url",)
    optional_options = ("region",)
    required_credentials = ("token",)
    expected: ClassVar[dict[str, str]] = {"url": "the API URL", "token": "an API token"}
    retry_policy = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0, jitter=0.0)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, str | None, str | None]] = []

    def build_request(self, cursor: str | None, page_token: str | None) -> httpx.Request | None:
        self.seen.append(("request", cursor, page_token))
        params = {k: v for k, v in {"since": cursor, "page": page_token}.items() if v}
        return self.client.build_request("GET", self.options["url"], params=params)

    def parse_page(self, response: httpx.Response, cursor: str | None) -> Page:
        self.seen.append(("parse", cursor, None))
        body = response.json()
        items = self.map_items(body["items"], self.parse_item)
        return Page(items, body.get("next"), body.get("newest"))

    def parse_item(self, item: Any) -> NewMention:
        if not isinstance(item, dict):
            raise PayloadError(f"expected an object, got {type(item).__name__}")
        if not item.get("text"):
            raise PayloadError("no text")
        return NewMention(
            source=self.name, external_id=str(item["id"]), platform="test", text=item["text"]
        )


def settings(**overrides: Any) -> ConnectorSettings:
    values: dict[str, Any] = {
        "name": "kestrel-api",
        "type": "paged",
        "options": {"url": API},
        "credentials": {"token": "t0ken"},
    }
    values.update(overrides)
    return ConnectorSettings(**values)


def page(ids: list[int], next_token: str | None = None, newest: str | None = None) -> dict:
    items = [{"id": i, "text": f"Kestrel mention {i}"} for i in ids]
    return {"items": items, "next": next_token, "newest": newest}


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@respx.mock
def test_follows_page_tokens_and_yields_a_batch_per_page() -> None:
    respx.get(API, params={"since": "c0"}).mock(
        side_effect=[
            httpx.Response(200, json=page([1, 2], "p2", "c1")),
            httpx.Response(200, json=page([3], "p3")),
            httpx.Response(200, json=page([4], None, "c2")),
        ]
    )
    with PagedConnector(settings()) as connector:
        batches = list(connector.fetch("c0"))
    assert [[m.external_id for m in b.mentions] for b in batches] == [["1", "2"], ["3"], ["4"]]
    # A page without a new cursor carries the previous one forward.
    assert [b.cursor for b in batches] == ["c1", "c1", "c2"]
    # Every page asks the same question; parsing sees the cursor as of the previous page.
    assert connector.seen == [
        ("request", "c0", None),
        ("parse", "c0", None),
        ("request", "c0", "p2"),
        ("parse", "c1", None),
        ("request", "c0", "p3"),
        ("parse", "c1", None),
    ]


@respx.mock
def test_repeated_page_token_stops_the_loop_after_saving_what_was_read() -> None:
    route = respx.get(API).mock(
        side_effect=[
            httpx.Response(200, json=page([1], "A", "c1")),
            httpx.Response(200, json=page([2], "B", "c2")),
            httpx.Response(200, json=page([3], "A", "c3")),
        ]
    )
    with PagedConnector(settings()) as connector:
        batches = connector.fetch(None)
        read = [next(batches), next(batches), next(batches)]
        with pytest.raises(PayloadError, match="page token 'A' again"):
            next(batches)
    assert [b.cursor for b in read] == ["c1", "c2", "c3"]
    assert route.call_count == 3


@respx.mock
def test_max_pages_bounds_one_run(caplog: pytest.LogCaptureFixture) -> None:
    route = respx.get(API).mock(
        side_effect=[httpx.Response(200, json=page([n], f"p{n + 1}")) for n in range(1, 10)]
    )
    connector = PagedConnector(settings(options={"url": API, "max_pages": 2}))
    with caplog.at_level(logging.INFO, logger="triage.connectors.kestrel-api"):
        batches = list(connector.fetch(None))
    assert len(batches) == 2
    assert route.call_count == 2
    assert "stopped after 2 pages" in caplog.text


@respx.mock
def test_requests_go_through_the_retry_policy() -> None:
    respx.get(API).mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json=page([1], None, "c1"))]
    )
    sleeps = Sleeps()
    batches = list(PagedConnector(settings(), sleep=sleeps).fetch(None))
    assert [b.cursor for b in batches] == ["c1"]
    assert sleeps == [1.0]


@respx.mock
def test_exhausted_retries_raise_transient_error() -> None:
    respx.get(API).mock(return_value=httpx.Response(500))
    sleeps = Sleeps()
    with pytest.raises(TransientError):
        list(PagedConnector(settings(), sleep=sleeps).fetch(None))
    assert sleeps == [1.0, 2.0]


@respx.mock
def test_malformed_items_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    body = {
        "items": [
            {"id": 1, "text": "Kestrel signal dropped again"},
            {"id": 2, "text": ""},
            {"text": "no id at all"},
            "not even an object",
            {"id": 5, "text": "Kestrel support was great"},
        ]
    }
    respx.get(API).mock(return_value=httpx.Response(200, json=body))
    with caplog.at_level(logging.WARNING, logger="triage.connectors.kestrel-api"):
        (batch,) = PagedConnector(settings()).fetch(None)
    assert [m.external_id for m in batch.mentions] == ["1", "5"]
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "skipped item id=2: no text"
    assert messages[1] == "skipped an item without an id: missing field 'id'"
    assert messages[2] == "skipped an item without an id: expected an object, got str"
    assert {r.name for r in caplog.records} == {"triage.connectors.kestrel-api"}


def test_check_settings_lists_every_problem_with_its_key() -> None:
    bad = ConnectorSettings(
        name="kestrel-api",
        type="paged",
        queries=["kestrel"],
        options={"url": " ", "regoin": "eu", "max_pages": 0},
        credentials={"token": ""},
    )
    assert PagedConnector.check_settings(bad) == [
        "connectors[kestrel-api].options.url: required option is missing; expected the API URL",
        "connectors[kestrel-api].credentials.token: required credential is missing; "
        "expected an API token",
        "connectors[kestrel-api].options.regoin: unknown option; "
        "expected one of max_pages, region, url",
        "connectors[kestrel-api].options.max_pages: 0 is not valid; "
        "expected a whole number of pages per run, at least 1",
    ]
    assert PagedConnector.check_settings(settings()) == []


def test_queries_are_refused_by_types_that_ignore_them() -> None:
    class Feedish(PagedConnector):
        uses_queries = False

    problems = Feedish.check_settings(settings(queries=["kestrel"]))
    assert problems == [
        "connectors[kestrel-api].queries: paged connectors do not use queries; "
        "remove them; the source itself decides which mentions arrive"
    ]


def test_bad_settings_refuse_to_build() -> None:
    with pytest.raises(ConfigError) as caught:
        PagedConnector(settings(options={}))
    assert caught.value.problems == [
        "connectors[kestrel-api].options.url: required option is missing; expected the API URL"
    ]


def test_interval_is_the_type_default_unless_configured() -> None:
    assert PagedConnector(settings()).interval == Connector.default_interval
    assert PagedConnector(settings(interval="2h")).interval == 7200


def test_an_own_client_is_closed_but_a_borrowed_one_is_not() -> None:
    connector = PagedConnector(settings())
    own = connector.client
    connector.close()
    assert own.is_closed
    borrowed = httpx.Client()
    with PagedConnector(settings(), client=borrowed) as connector:
        assert connector.client is borrowed
    assert not borrowed.is_closed
    borrowed.close()


def test_unreadable_cursor_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    connector = PagedConnector(settings())
    with caplog.at_level(logging.WARNING, logger="triage.connectors.kestrel-api"):
        assert connector.load_cursor("{not json") == {}
        assert connector.load_cursor('["a list"]') == {}
    assert "ignoring unreadable cursor" in caplog.text
    state = {"b": 1, "a": "ż"}
    assert connector.load_cursor(connector.dump_cursor(state)) == state


def test_a_connector_without_pages_or_both_hooks_is_refused_when_defined() -> None:
    from connectors.base import Connector

    with pytest.raises(TypeError, match="must implement pages, or both build_request"):

        class HalfDone(Connector):
            type = "half"
            platform = "half"

            def build_request(self, cursor, page_token):
                return None
