"""The retry policy: the classification table, server-requested waits, backoff, and send()."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from triage import __version__
from triage.http import (
    AuthError,
    PayloadError,
    PermanentError,
    RateLimitedError,
    RetryPolicy,
    TransientError,
    classify,
    make_client,
    parse_reset,
    parse_retry_after,
    send,
    server_wait,
)

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
URL = "https://api.kestrel.example/v1/mentions"
FAST = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=30.0, jitter=0.0)


class Sleeps(list[float]):
    """Records requested sleeps instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.mark.parametrize(
    ("status", "error", "retriable"),
    [
        (401, AuthError, False),
        (403, AuthError, False),
        (404, PermanentError, False),
        (400, PermanentError, False),
        (418, PermanentError, False),
        (408, TransientError, True),
        (429, RateLimitedError, True),
        (500, TransientError, True),
        (502, TransientError, True),
        (503, TransientError, True),
        (504, TransientError, True),
        (501, PermanentError, False),
        (522, TransientError, True),
    ],
)
def test_status_codes_are_classified_by_the_table(
    status: int, error: type[Exception], retriable: bool
) -> None:
    rule = classify(status)
    assert rule is not None
    assert rule.error is error
    assert rule.error.retriable is retriable


@pytest.mark.parametrize("status", [200, 201, 204, 301, 304])
def test_success_and_redirect_statuses_are_not_errors(status: int) -> None:
    assert classify(status) is None


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ConnectTimeout("slow"), TransientError),
        (httpx.ReadTimeout("slow"), TransientError),
        (httpx.ConnectError("refused"), TransientError),
        (httpx.RemoteProtocolError("dropped"), TransientError),
        (httpx.UnsupportedProtocol("ftp"), PermanentError),
        (httpx.TooManyRedirects("loop"), PermanentError),
        (httpx.DecodingError("gzip"), PayloadError),
    ],
)
def test_transport_errors_are_classified_along_their_mro(
    exc: Exception, error: type[Exception]
) -> None:
    rule = classify(exc)
    assert rule is not None and rule.error is error


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after("120", now=NOW) == 120.0
    assert parse_retry_after(" 0 ", now=NOW) == 0.0
    assert parse_retry_after("-5", now=NOW) == 0.0


def test_retry_after_as_http_date() -> None:
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=NOW) == 90.0
    earlier = format_datetime(NOW - timedelta(minutes=5), usegmt=True)
    assert parse_retry_after(earlier, now=NOW) == 0.0


def test_unreadable_retry_after_is_ignored() -> None:
    assert parse_retry_after("soon", now=NOW) is None
    assert parse_retry_after("nan", now=NOW) is None


def test_reset_values_in_every_form_platforms_send() -> None:
    epoch = str(int((NOW + timedelta(seconds=300)).timestamp()))
    assert parse_reset(epoch, now=NOW) == 300.0  # GitHub, X: epoch seconds
    assert parse_reset("42", now=NOW) == 42.0  # Reddit: seconds left in the window
    assert parse_reset("42.5", now=NOW) == 42.5
    iso = (NOW + timedelta(seconds=60)).isoformat().replace("+00:00", "Z")
    assert parse_reset(iso, now=NOW) == 60.0  # Mastodon: a timestamp


def test_rate_limit_headers_count_only_when_nothing_is_left() -> None:
    reset = str(int((NOW + timedelta(seconds=120)).timestamp()))
    exhausted = httpx.Response(
        429, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    )
    assert server_wait(exhausted, now=NOW) == 120.0
    reddit = httpx.Response(
        429, headers={"x-ratelimit-remaining": "0.0", "x-ratelimit-reset": "37"}
    )
    assert server_wait(reddit, now=NOW) == 37.0
    x_api = httpx.Response(
        429, headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset": reset}
    )
    assert server_wait(x_api, now=NOW) == 120.0
    left = httpx.Response(429, headers={"X-RateLimit-Remaining": "10", "X-RateLimit-Reset": reset})
    assert server_wait(left, now=NOW) is None


def test_retry_after_wins_over_rate_limit_headers() -> None:
    response = httpx.Response(
        429,
        headers={"Retry-After": "5", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "99"},
    )
    assert server_wait(response, now=NOW) == 5.0


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=2.0, max_delay=10.0, jitter=0.0)
    assert [policy.backoff(n) for n in (1, 2, 3, 4, 5)] == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_adds_at_most_its_fraction_and_never_passes_the_cap() -> None:
    policy = RetryPolicy(base_delay=4.0, max_delay=100.0, jitter=0.5)
    assert policy.backoff(1, rand=lambda: 0.0) == 4.0
    assert policy.backoff(1, rand=lambda: 1.0) == 6.0
    capped = RetryPolicy(base_delay=4.0, max_delay=5.0, jitter=0.5)
    assert capped.backoff(1, rand=lambda: 1.0) == 5.0


def test_client_has_user_agent_timeouts_and_follows_redirects() -> None:
    with make_client(timeout=30.0) as client:
        assert client.headers["User-Agent"] == (
            f"triage/{__version__} (+https://github.com/triage-care/triage)"
        )
        assert client.follow_redirects is True
        assert client.timeout.read == 30.0
        assert client.timeout.connect == 10.0
    with make_client(user_agent="kestrel-care/1.0", headers={"X-Extra": "1"}) as client:
        assert client.headers["User-Agent"] == "kestrel-care/1.0"
        assert client.headers["X-Extra"] == "1"


@respx.mock
def test_send_sleeps_for_retry_after_then_succeeds() -> None:
    route = respx.get(URL).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200)]
    )
    sleeps = Sleeps()
    with make_client() as client:
        response = send(client, client.build_request("GET", URL), policy=FAST, sleep=sleeps)
    assert response.status_code == 200
    assert route.call_count == 2
    assert sleeps == [7.0]


@respx.mock
def test_send_backs_off_exponentially_on_server_errors() -> None:
    respx.get(URL).mock(side_effect=[httpx.Response(503), httpx.Response(502), httpx.Response(200)])
    sleeps = Sleeps()
    with make_client() as client:
        send(client, client.build_request("GET", URL), policy=FAST, sleep=sleeps)
    assert sleeps == [1.0, 2.0]


@respx.mock
def test_send_retries_timeouts_and_gives_up_with_transient_error() -> None:
    route = respx.get(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    sleeps = Sleeps()
    with make_client() as client, pytest.raises(TransientError, match="timed out") as caught:
        send(client, client.build_request("GET", URL), policy=FAST, sleep=sleeps)
    assert route.call_count == FAST.max_attempts
    assert sleeps == [1.0, 2.0]
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


@respx.mock
def test_send_raises_rate_limited_when_attempts_run_out() -> None:
    respx.get(URL).mock(return_value=httpx.Response(429, headers={"Retry-After": "3"}))
    sleeps = Sleeps()
    with make_client() as client, pytest.raises(RateLimitedError) as caught:
        send(client, client.build_request("GET", URL), policy=FAST, sleep=sleeps)
    assert caught.value.status == 429
    assert caught.value.retry_after == 3.0
    assert sleeps == [3.0, 3.0]


@respx.mock
def test_send_does_not_sleep_through_a_wait_longer_than_the_cap() -> None:
    route = respx.get(URL).mock(return_value=httpx.Response(429, headers={"Retry-After": "900"}))
    sleeps = Sleeps()
    with make_client() as client, pytest.raises(RateLimitedError) as caught:
        send(client, client.build_request("GET", URL), policy=FAST, sleep=sleeps)
    assert caught.value.retry_after == 900.0
    assert route.call_count == 1
    assert sleeps == []


@respx.mock
def test_auth_error_is_not_retried_and_says_what_to_fix() -> None:
    route = respx.get(URL).mock(return_value=httpx.Response(401, json={"error": "invalid_token"}))
    sleeps = Sleeps()
    with make_client() as client, pytest.raises(AuthError) as caught:
        send(
            client,
            client.build_request("GET", URL, params={"api_key": "s3cret"}),
            policy=FAST,
            sleep=sleeps,
            connector="kestrel-reddit",
        )
    message = str(caught.value)
    assert "check the credentials for connector 'kestrel-reddit'" in message
    assert "invalid_token" in message
    assert "s3cret" not in message  # the query string can hold keys
    assert route.call_count == 1
    assert sleeps == []


@respx.mock
def test_other_client_errors_are_permanent_and_not_retried() -> None:
    route = respx.get(URL).mock(return_value=httpx.Response(404))
    with make_client() as client, pytest.raises(PermanentError) as caught:
        send(client, client.build_request("GET", URL), policy=FAST, sleep=Sleeps())
    assert caught.value.status == 404
    assert route.call_count == 1


@respx.mock
@pytest.mark.parametrize(
    "outcome",
    [httpx.Response(500), httpx.Response(502), httpx.Response(408), httpx.ReadTimeout("slow")],
    ids=["500", "502", "408", "read-timeout"],
)
def test_a_post_that_may_have_acted_is_not_retried_and_is_marked_uncertain(outcome) -> None:
    route = respx.post(URL).mock(side_effect=[outcome, httpx.Response(201)])
    sleeps = Sleeps()
    with make_client() as client, pytest.raises(TransientError) as caught:
        send(client, client.build_request("POST", URL), policy=FAST, sleep=sleeps, idempotent=False)
    assert route.call_count == 1
    assert sleeps == []
    assert caught.value.uncertain is True


@respx.mock
@pytest.mark.parametrize(
    "refusal",
    [httpx.Response(429, headers={"Retry-After": "3"}), httpx.ConnectError("refused")],
    ids=["429", "connect-error"],
)
def test_a_post_the_server_surely_refused_is_retried(refusal) -> None:
    route = respx.post(URL).mock(side_effect=[refusal, httpx.Response(201)])
    with make_client() as client:
        response = send(
            client, client.build_request("POST", URL), policy=FAST, sleep=Sleeps(), idempotent=False
        )
    assert response.status_code == 201
    assert route.call_count == 2


@respx.mock
def test_an_error_keeps_the_response_body_for_the_connector() -> None:
    body = '{"error": "ExpiredToken", "message": "Token has expired"}'
    respx.get(URL).mock(return_value=httpx.Response(400, text=body))
    with make_client() as client, pytest.raises(PermanentError) as caught:
        send(client, client.build_request("GET", URL), policy=FAST, sleep=Sleeps())
    assert caught.value.body == body
    assert caught.value.status == 400
    assert caught.value.uncertain is False
