"""The act stage sends each approved reply once, whatever retries, crashes and double clicks do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
import respx
from sqlmodel import select

from connectors.base import Connector, Page
from connectors.mastodon import MastodonConnector
from connectors.reply import ReplyNotAllowed, ReplyRules, SentReply
from triage.act import (
    LEASE,
    CaseActions,
    CaseClosed,
    Replies,
    ReplyInProgress,
    ReplyOutcomeUnknown,
    ReplyRefused,
    handled_by,
    reply_key,
)
from triage.clock import utcnow
from triage.config import ConnectorSettings
from triage.domain import NewMention, ReplyTarget
from triage.http import TransientError
from triage.store import AuditEvent, Case, CaseStatus, OutboundReply, ReplyStatus, session_scope
from triage.store.queries import save_batch

API = "https://replies.example/api/reply"
CREATED = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


class EchoConnector(Connector):
    """A platform whose replies are POSTs to API; it cannot say what it already has."""

    type = "echo"
    platform = "echo"
    uses_queries = False
    reply_rules: ClassVar[ReplyRules | None] = ReplyRules(max_length=20)

    def pages(self, cursor: str | None) -> Iterator[Page]:
        return iter(())  # these tests only reply

    def post_reply(self, target: ReplyTarget, text: str, *, key: str) -> SentReply:
        request = self.client.build_request(
            "POST", API, json={"parent": target.external_id, "text": text, "key": key}
        )
        body = self.send_once(request).json()
        return SentReply(external_id=body["id"], url=f"https://echo.example/{body['id']}")


class LookingConnector(EchoConnector):
    """The same platform with an API that lists our replies to a post."""

    def find_reply(
        self, target: ReplyTarget, key: str, text: str | None = None
    ) -> SentReply | None:
        params = {"key": key, "text": text or ""}
        body = self.send(self.client.build_request("GET", API, params=params)).json()
        if not body:
            return None
        return SentReply(external_id=body[0]["id"], url=None, already_there=True)


def _connector(cls: type[Connector]):
    def build(name: str) -> Connector:
        return cls(ConnectorSettings(name=name, type=cls.type), sleep=lambda _s: None)

    return build


@pytest.fixture
def mention_id(engine) -> int:
    mention = NewMention(
        source="echo-main",
        external_id="post-1",
        platform="echo",
        text="you charged me twice",
        url="https://echo.example/post-1",
        author_handle="@ana",
        created_at=CREATED,
    )
    return _posted_case(engine, mention)


def _posted_case(engine, mention: NewMention) -> int:
    """Store the mention with a posted case; its id."""
    with session_scope(engine) as session:
        save_batch(session, source=mention.source, mentions=[mention], cursor=None)
    with session_scope(engine) as session:
        from triage.store import Mention

        stored = session.exec(select(Mention)).one()
        session.add(Case(mention_id=stored.id, status=CaseStatus.POSTED))
        return stored.id


def _rows(engine) -> list[OutboundReply]:
    with session_scope(engine) as session:
        return list(session.exec(select(OutboundReply)).all())


def _case(engine) -> Case:
    with session_scope(engine) as session:
        return session.exec(select(Case)).one()


def _actions(engine) -> list[str]:
    with session_scope(engine) as session:
        return [event.action for event in session.exec(select(AuditEvent).order_by(AuditEvent.id))]


@respx.mock
def test_a_reply_goes_out_once_and_closes_the_case(engine, mention_id):
    route = respx.post(API).mock(return_value=httpx.Response(201, json={"id": "r-9"}))
    replies = Replies(engine, _connector(EchoConnector))

    first = replies.send(mention_id, "Sorry, Ana!", actor="U_AGENT")
    again = replies.send(mention_id, "Sorry, Ana!", actor="U_OTHER")

    assert route.call_count == 1
    assert first.already_sent is False and first.external_id == "r-9"
    assert again.already_sent is True and again.sent_by == "U_AGENT"
    assert json.loads(route.calls[0].request.content) == {
        "parent": "post-1",
        "text": "Sorry, Ana!",
        "key": reply_key(mention_id),
    }
    case = _case(engine)
    assert case.status == CaseStatus.REPLIED
    assert case.reply_text == "Sorry, Ana!"
    assert case.reply_url == "https://echo.example/r-9"
    assert case.first_response_seconds == pytest.approx((case.replied_at - CREATED).total_seconds())
    assert _actions(engine) == ["reply_sent"]


@respx.mock
def test_a_second_agent_clicking_during_the_send_is_told_and_sends_nothing(engine, mention_id):
    replies = Replies(engine, _connector(EchoConnector))
    refusals: list[str] = []

    def second_click(request: httpx.Request) -> httpx.Response:
        try:
            replies.send(mention_id, "Other text", actor="U_B")
        except ReplyInProgress as exc:
            refusals.append(str(exc))
        return httpx.Response(201, json={"id": "r-1"})

    route = respx.post(API).mock(side_effect=second_click)
    result = replies.send(mention_id, "First text", actor="U_A")

    assert route.call_count == 1
    assert refusals == ["U_A is sending a reply to this mention right now"]
    assert result.text == "First text"
    [row] = _rows(engine)
    assert (row.status, row.attempts, row.requested_by) == (ReplyStatus.SENT, 1, "U_A")


@respx.mock
def test_a_refused_reply_is_recorded_and_can_be_fixed_and_sent(engine, mention_id):
    route = respx.post(API).mock(return_value=httpx.Response(201, json={"id": "r-2"}))
    replies = Replies(engine, _connector(EchoConnector))

    with pytest.raises(ReplyNotAllowed, match="allows 20"):
        replies.send(mention_id, "This reply is far too long for echo", actor="U_A")
    assert route.call_count == 0
    [row] = _rows(engine)
    assert row.status == ReplyStatus.FAILED and "allows 20" in row.error
    assert _case(engine).status == CaseStatus.POSTED

    result = replies.send(mention_id, "Short one", actor="U_A")
    assert route.call_count == 1 and result.text == "Short one"
    assert _actions(engine) == ["reply_failed", "reply_sent"]


@respx.mock
def test_an_unanswered_post_is_looked_up_before_it_is_tried_again(engine, mention_id):
    post = respx.post(API).mock(return_value=httpx.Response(502))
    lookup = respx.get(API).mock(return_value=httpx.Response(200, json=[{"id": "r-3"}]))
    replies = Replies(engine, _connector(LookingConnector))

    with pytest.raises(TransientError) as raised:
        replies.send(mention_id, "Sorry, Ana!", actor="U_A")
    assert raised.value.uncertain
    assert post.call_count == 1  # a 502 on a POST is not retried: it may have gone out
    assert _rows(engine)[0].status == ReplyStatus.UNKNOWN

    result = replies.send(mention_id, "Sorry, Ana!", actor="U_A")
    assert result.already_sent and result.external_id == "r-3"
    assert post.call_count == 1 and lookup.call_count == 1
    assert lookup.calls[0].request.url.params["text"] == "Sorry, Ana!"
    assert _case(engine).status == CaseStatus.REPLIED
    assert _actions(engine) == ["reply_unknown", "reply_found"]


@respx.mock
def test_an_unknown_outcome_on_a_platform_that_cannot_be_asked_needs_force(engine, mention_id):
    post = respx.post(API).mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(201, json={"id": "r-4"})]
    )
    replies = Replies(engine, _connector(EchoConnector))
    with pytest.raises(TransientError):
        replies.send(mention_id, "Sorry, Ana!", actor="U_A")

    with pytest.raises(ReplyOutcomeUnknown, match=r"https://echo\.example/post-1"):
        replies.send(mention_id, "Sorry, Ana!", actor="U_A")
    assert post.call_count == 1
    assert _rows(engine)[0].status == ReplyStatus.UNKNOWN

    result = replies.send(mention_id, "Sorry, Ana!", actor="U_A", force=True)
    assert post.call_count == 2 and result.external_id == "r-4"


@respx.mock
def test_a_crashed_send_is_treated_as_unknown_once_its_lease_runs_out(engine, mention_id):
    respx.get(API).mock(return_value=httpx.Response(200, json=[]))
    post = respx.post(API).mock(return_value=httpx.Response(201, json={"id": "r-5"}))
    with session_scope(engine) as session:
        session.add(
            OutboundReply(
                idempotency_key=reply_key(mention_id),
                mention_id=mention_id,
                source="echo-main",
                text="Sorry",
                status=ReplyStatus.SENDING,
                attempts=1,
                requested_by="U_CRASHED",
                attempt_at=utcnow() - timedelta(seconds=30),
            )
        )
    replies = Replies(engine, _connector(LookingConnector))
    with pytest.raises(ReplyInProgress, match="U_CRASHED"):
        replies.send(mention_id, "Sorry", actor="U_A")

    with session_scope(engine) as session:
        row = session.exec(select(OutboundReply)).one()
        row.attempt_at = utcnow() - LEASE - timedelta(seconds=1)
        session.add(row)
    result = replies.send(mention_id, "Sorry", actor="U_A")
    assert result.external_id == "r-5" and post.call_count == 1
    assert _rows(engine)[0].attempts == 2


def test_mark_replied_closes_the_case_once(engine, mention_id):
    replies = Replies(engine, _connector(EchoConnector))
    case = replies.mark_replied(mention_id, actor="U_A", url="https://echo.example/answer")
    assert case.status == CaseStatus.REPLIED and case.reply_url == "https://echo.example/answer"
    assert case.first_response_seconds is not None
    with pytest.raises(ReplyRefused, match="already marked replied"):
        replies.mark_replied(mention_id, actor="U_B")
    assert _actions(engine) == ["mark_replied"]


def test_a_source_without_replies_says_to_open_and_mark(engine):
    from connectors.hackernews import HackerNewsConnector

    connector = HackerNewsConnector(
        ConnectorSettings(name="hn", type="hackernews", queries=["kestrel"])
    )
    target = ReplyTarget(external_id="1", platform="hackernews")
    with pytest.raises(ReplyNotAllowed, match="open the mention, answer there"):
        connector.reply(target, "hi", key="k")


def _case_id(engine) -> int:
    return _case(engine).id


@respx.mock
def test_a_dismissed_case_refuses_a_reply_and_says_who_dismissed_it(engine, mention_id):
    route = respx.post(API).mock(return_value=httpx.Response(201, json={"id": "r-6"}))
    actions = CaseActions(engine)
    case = actions.dismiss(_case_id(engine), actor="U_LEAD", reason="not_about_us")
    assert (case.status, case.dismiss_reason) == (CaseStatus.DISMISSED, "not_about_us")

    with pytest.raises(CaseClosed):
        Replies(engine, _connector(EchoConnector)).send(mention_id, "Sorry", actor="U_A")
    assert route.call_count == 0
    assert handled_by(engine, case.id).startswith("this case was already dismissed by <@U_LEAD> at")
    with pytest.raises(CaseClosed):
        actions.assign(case.id, actor="U_A")


def test_assign_escalate_and_edit_are_audited_with_before_and_after(engine, mention_id):
    actions = CaseActions(engine)
    case_id = _case_id(engine)
    assert actions.assign(case_id, actor="U_A").status == CaseStatus.CLAIMED
    assert actions.assign(case_id, actor="U_A", assignee="U_B").assignee == "U_B"
    assert actions.escalate(case_id, actor="U_B", note="legal threat").status == (
        CaseStatus.ESCALATED
    )
    with pytest.raises(ReplyRefused, match="already escalated"):
        actions.escalate(case_id, actor="U_B")
    draft = actions.edit_draft(case_id, "Hi Ana, we are on it.", actor="U_B")
    assert draft.text == "Hi Ana, we are on it." and draft.generator == "edited by U_B"
    with pytest.raises(ReplyRefused, match="not a dismiss reason"):
        actions.dismiss(case_id, actor="U_B", reason="boring")
    with session_scope(engine) as session:
        events = [
            (event.action, event.actor, event.before, event.after)
            for event in session.exec(select(AuditEvent).order_by(AuditEvent.id))
        ]
    assert events == [
        ("assign", "U_A", None, "U_A"),
        ("assign", "U_A", "U_A", "U_B"),
        ("escalate", "U_B", None, "legal threat"),
        ("edit", "U_B", None, "Hi Ana, we are on it."),
    ]


@respx.mock
def test_a_reply_with_an_unfilled_placeholder_is_refused_before_anything_is_sent(
    engine, mention_id
):
    route = respx.post(API).mock(return_value=httpx.Response(201, json={"id": "r-1"}))
    replies = Replies(engine, _connector(EchoConnector))
    with pytest.raises(ReplyRefused, match=r"unfilled placeholder \{name\}; edit it first"):
        replies.send(mention_id, "Hi {name}, sorry!", actor="U_AGENT")
    assert route.call_count == 0
    assert _rows(engine) == []
    assert _case(engine).status != CaseStatus.REPLIED


# A Mastodon server that ignores the Idempotency-Key (or a retry after its hour) must still
# get one reply: the act stage asks the thread before sending again.
FEDI = "https://mastodon.social"
TOOT = "114107382239857233"
MASTODON_FIXTURES = Path(__file__).parent / "fixtures" / "mastodon"


def _fixture(name: str):
    return json.loads((MASTODON_FIXTURES / name).read_text("utf-8"))


def _mastodon(_name: str) -> Connector:
    settings = ConnectorSettings(
        name="fedi",
        type="mastodon",
        options={"instance": FEDI},
        credentials={"access_token": "token"},
    )
    return MastodonConnector(settings, sleep=lambda _s: None)


@pytest.fixture
def toot_id(engine) -> int:
    mention = NewMention(
        source="fedi",
        external_id=TOOT,
        platform="mastodon",
        text="@kestrel no signal since Monday",
        author_handle="@ruta_k",
        raw={"visibility": "public"},
        created_at=CREATED,
    )
    return _posted_case(engine, mention)


class _ForgetfulServer:
    """Creates a status for every POST, ignoring the Idempotency-Key; the first answer is lost."""

    def __init__(self) -> None:
        self.created: list[dict] = []

    def post(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        status = {
            **_fixture("status_created.json"),
            "id": f"1141075112004500{len(self.created) + 71}",
            "content": f"<p>{body['status']}</p>",
        }
        self.created.append(status)
        return httpx.Response(500) if len(self.created) == 1 else httpx.Response(200, json=status)

    def context(self, _request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ancestors": [], "descendants": self.created})


@respx.mock
def test_mastodon_ignoring_the_idempotency_key_still_gets_one_reply(engine, toot_id):
    server = _ForgetfulServer()
    post = respx.post(f"{FEDI}/api/v1/statuses").mock(side_effect=server.post)
    respx.get(f"{FEDI}/api/v1/accounts/verify_credentials").mock(
        return_value=httpx.Response(200, json=_fixture("account_verify_credentials.json"))
    )
    respx.get(f"{FEDI}/api/v1/statuses/{TOOT}/context").mock(side_effect=server.context)
    replies = Replies(engine, _mastodon)

    with pytest.raises(TransientError) as raised:
        replies.send(toot_id, "Sorry, Rūta: we are on it.", actor="U_A")
    assert raised.value.uncertain and len(server.created) == 1

    result = replies.send(toot_id, "Sorry, Rūta: we are on it.", actor="U_A")
    assert result.already_sent and result.external_id == server.created[0]["id"]
    assert post.call_count == 1 and len(server.created) == 1
    assert _case(engine).status == CaseStatus.REPLIED
    assert _actions(engine) == ["reply_unknown", "reply_found"]


@respx.mock
def test_a_thread_that_cannot_be_read_sends_nothing_and_says_so(engine, toot_id):
    server = _ForgetfulServer()
    post = respx.post(f"{FEDI}/api/v1/statuses").mock(side_effect=server.post)
    respx.get(f"{FEDI}/api/v1/accounts/verify_credentials").mock(
        return_value=httpx.Response(200, json=_fixture("account_verify_credentials.json"))
    )
    context = respx.get(f"{FEDI}/api/v1/statuses/{TOOT}/context").mock(
        side_effect=[httpx.Response(200, text="<html>busy</html>"), server.context]
    )
    replies = Replies(engine, _mastodon)
    with pytest.raises(TransientError):
        replies.send(toot_id, "On it.", actor="U_A")

    with pytest.raises(ReplyOutcomeUnknown, match="could not be asked"):
        replies.send(toot_id, "On it.", actor="U_A")
    assert post.call_count == 1
    [row] = _rows(engine)
    assert row.status == ReplyStatus.UNKNOWN and "look-up failed" in (row.error or "")

    # Once the thread can be read, the earlier reply is found: still one post.
    result = replies.send(toot_id, "On it.", actor="U_A")
    assert result.already_sent and post.call_count == 1 and context.call_count == 2
