"""Cards reach Slack worst first through the outbox: never twice, never lost, always escaped."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from slack_sdk.errors import SlackObjectFormationError
from sqlmodel import col, select

from tests.slack.conftest import CARE, CREATED_AT, ESCALATION, add_case
from tests.slack.fake_slack import Fault
from triage import notify
from triage.clock import utcnow
from triage.config import ConnectorSettings, DatabaseSettings, Settings, SlackSettings
from triage.notify import LEASE, METADATA_EVENT, Notifier
from triage.slack.cards import APPROVE, MARK_REPLIED
from triage.slack.client import make_slack_client
from triage.store import Case, CaseStatus, Mention, OutboxStatus, SlackMessage, session_scope


class Sleeps(list[float]):
    """Records requested sleeps and moves a fake clock on by them."""

    now = 100.0

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        self.now += seconds


@pytest.fixture
def notifier_for(engine, slack, tmp_path):
    _, url = slack
    (tmp_path / "in.jsonl").write_text("", encoding="utf-8")

    def build(**slack_options) -> tuple[Notifier, Sleeps]:
        settings = Settings(
            database=DatabaseSettings(url=str(engine.url)),
            slack=SlackSettings(
                bot_token="xoxb-test",
                care_channel=CARE,
                escalation_channel=ESCALATION,
                oncall_group="S0ONCALL01",
                api_url=url,
                **slack_options,
            ),
            connectors=[
                ConnectorSettings(
                    name=name, type="file", options={"path": str(tmp_path / "in.jsonl")}
                )
                for name in ("imports", "reviews")
            ],
        )
        sleeps = Sleeps()
        notifier = Notifier(
            settings,
            engine,
            make_slack_client(settings.slack),
            sleep=sleeps,
            monotonic=lambda: sleeps.now,
        )
        return notifier, sleeps

    return build


def _posted(state, channel: str) -> list[dict]:
    calls = state.calls_to("chat.postMessage")
    return [call.body for call in calls if call.body["channel"] == channel]


def _rows(engine) -> dict[str, SlackMessage]:
    with session_scope(engine) as session:
        return {row.key: row for row in session.exec(select(SlackMessage))}


def test_cards_go_out_worst_first_and_p1_also_to_escalation(engine, slack, notifier_for):
    state, _ = slack
    low = add_case(engine, external_id="a", text="meh", priority="P3", urgency=30)
    worst = add_case(
        engine, external_id="b", text="lawyer", priority="P1", urgency=95, escalate=True
    )
    middle = add_case(engine, external_id="c", text="refund?", priority="P2", urgency=60)
    notifier, _ = notifier_for()

    assert notifier.enqueue_cards() == 3
    assert notifier.enqueue_cards() == 0  # queued once
    assert notifier.flush() == 4

    care = _posted(state, CARE)
    assert [body["text"].split(":")[0] for body in care] == [
        "P1 (95) file",
        "P2 (60) file",
        "P3 (30) file",
    ]
    [escalated] = _posted(state, ESCALATION)
    assert "<!subteam^S0ONCALL01>" in escalated["blocks"][0]["text"]["text"]
    assert care[0]["metadata"] == {
        "event_type": METADATA_EVENT,
        "event_payload": {"key": f"card:{worst}"},
    }
    with session_scope(engine) as session:
        cases = {case.id: case for case in session.exec(select(Case))}
    for case_id in (low, worst, middle):
        assert cases[case_id].status == CaseStatus.POSTED
        assert cases[case_id].slack_channel == CARE
    assert cases[worst].slack_ts == state.messages[CARE][0]["ts"]
    assert notifier.flush() == 0
    assert len(state.calls_to("chat.postMessage")) == 4


def test_customer_text_pings_nobody_and_fakes_no_link(engine, slack, notifier_for):
    state, _ = slack
    add_case(
        engine,
        external_id="evil",
        text="<!channel> hey <@U123ABC> see <https://evil.example|kestrel.com> & <!here>",
    )
    notifier, _ = notifier_for()
    notifier.enqueue_cards()
    notifier.flush()
    [body] = _posted(state, CARE)
    sent = json.dumps(body)
    for raw in ("<!channel>", "<@U123ABC>", "<https://evil.example|", "<!here>"):
        assert raw not in sent
    mention_block = body["blocks"][1]["text"]["text"]
    assert "&lt;!channel&gt; hey &lt;@U123ABC&gt; see &lt;https://evil.example|kestrel.com&gt;" in (
        mention_block
    )
    assert "&amp; &lt;!here&gt;" in mention_block


def test_a_source_that_cannot_reply_offers_open_and_mark_replied(engine, slack, notifier_for):
    state, _ = slack
    add_case(engine, external_id="f", text="where is my parcel")
    notifier, _ = notifier_for()
    notifier.enqueue_cards()
    notifier.flush()
    [body] = _posted(state, CARE)
    actions = [element.get("action_id") for element in body["blocks"][-1]["elements"]]
    assert MARK_REPLIED in actions and APPROVE not in actions


def test_rate_limited_post_waits_and_goes_out_once(engine, slack, notifier_for):
    state, _ = slack
    add_case(engine, external_id="r", text="help")
    state.fail_next("chat.postMessage", Fault(status=429, error="ratelimited", retry_after=1))
    notifier, _ = notifier_for()
    notifier.enqueue_cards()
    assert notifier.flush() == 1
    assert len(state.calls_to("chat.postMessage")) == 2
    assert len(state.messages[CARE]) == 1


def test_a_lost_answer_is_found_in_history_not_posted_twice(engine, slack, notifier_for):
    state, _ = slack
    case_id = add_case(engine, external_id="l", text="help")
    state.fail_next("chat.postMessage", Fault(status=500, error="fatal_error", after_effect=True))
    notifier, _ = notifier_for()
    notifier.enqueue_cards()

    assert notifier.flush() == 0
    assert _rows(engine)[f"card:{case_id}"].status == OutboxStatus.PENDING
    assert notifier.flush() == 1

    assert len(state.messages[CARE]) == 1
    assert len(state.calls_to("chat.postMessage")) == 1
    [history] = state.calls_to("conversations.history")
    assert history.body["channel"] == CARE
    row = _rows(engine)[f"card:{case_id}"]
    assert (row.status, row.attempts) == (OutboxStatus.SENT, 2)
    assert row.ts == state.messages[CARE][0]["ts"]


@pytest.mark.parametrize("posted_before_crash", [True, False])
def test_a_crash_mid_post_then_restart_posts_exactly_once(
    engine, slack, notifier_for, posted_before_crash
):
    state, _ = slack
    case_id = add_case(engine, external_id="c", text="help")
    notifier, _ = notifier_for()
    notifier.enqueue_cards()
    key = f"card:{case_id}"
    if posted_before_crash:
        # The crashed worker's message reached Slack; the worker died before recording it.
        state.handle(
            "chat.postMessage",
            {
                **_rows(engine)[key].payload,
                "channel": CARE,
                "metadata": {"event_type": METADATA_EVENT, "event_payload": {"key": key}},
            },
        )
    with session_scope(engine) as session:
        row = session.exec(select(SlackMessage)).one()
        row.status, row.attempts = OutboxStatus.SENDING, 1
        row.attempt_at = utcnow() - timedelta(seconds=5)
        session.add(row)

    restarted, _ = notifier_for()
    assert restarted.flush() == 0  # the claim is fresh: the other worker may still be alive
    with session_scope(engine) as session:
        row = session.exec(select(SlackMessage)).one()
        row.attempt_at = utcnow() - LEASE - timedelta(seconds=1)
        session.add(row)
    assert restarted.flush() == 1

    assert len(state.messages[CARE]) == 1
    assert len(state.calls_to("chat.postMessage")) == (0 if posted_before_crash else 1)
    with session_scope(engine) as session:
        assert session.get(Case, case_id).slack_ts == state.messages[CARE][0]["ts"]


def test_a_refused_card_is_failed_and_not_retried(engine, slack, notifier_for):
    state, _ = slack
    case_id = add_case(engine, external_id="x", text="help")
    state.fail_next("chat.postMessage", Fault(status=200, error="channel_not_found"))
    notifier, _ = notifier_for()
    notifier.enqueue_cards()
    assert notifier.flush() == 0
    assert notifier.flush() == 0
    row = _rows(engine)[f"card:{case_id}"]
    assert (row.status, row.error) == (OutboxStatus.FAILED, "channel_not_found")
    assert len(state.calls_to("chat.postMessage")) == 1


def test_posts_to_one_channel_are_paced(engine, slack, notifier_for):
    for index in range(3):
        add_case(engine, external_id=f"p{index}", text="help")
    notifier, sleeps = notifier_for(post_interval="1.5s")
    notifier.enqueue_cards()
    assert notifier.flush() == 3
    assert sum(sleeps) == pytest.approx(3.0)  # three posts, 1.5 s apart


def test_a_p1_that_arrives_during_a_backlog_goes_out_next(engine, slack, notifier_for):
    state, _ = slack
    for index in range(4):
        add_case(engine, external_id=f"q{index}", text="meh", priority="P3", urgency=30)
    notifier, sleeps = notifier_for()
    arrived: list[int] = []

    def pace(seconds: float) -> None:
        # While the channel is paced, the pipeline opens a P1 case.
        sleeps.append(seconds)
        if not arrived:
            arrived.append(
                add_case(engine, external_id="fire", text="smoke", priority="P1", urgency=97)
            )

    notifier._sleep = pace
    notifier.enqueue_cards()
    assert notifier.flush(refill=True) == 6  # five cards and the P1's escalation copy
    care = [body["text"].split(":")[0] for body in _posted(state, CARE)]
    # Opened while the channel waited for its next post: that post, not the P3s queued before.
    assert care == ["P3 (30) file", "P1 (97) file", "P3 (30) file", "P3 (30) file", "P3 (30) file"]


def test_a_flush_stops_after_its_time_budget(engine, slack, notifier_for):
    for index in range(5):
        add_case(engine, external_id=f"b{index}", text="help")
    notifier, _ = notifier_for()
    clock = iter(range(100))
    notifier._monotonic = lambda: float(next(clock))
    notifier.enqueue_cards()
    sent = notifier.flush(budget=3.0)
    assert 1 <= sent < 5
    assert notifier.flush() == 5 - sent  # the rest, next time, nothing lost


ROUTED = "C0POLISH01"
APPS = "C0APPTEAM1"


def test_routes_send_cases_to_their_team_and_the_rest_to_the_care_channel(
    engine, slack, notifier_for
):
    from triage.config import SlackRoute

    state, _ = slack
    polish = add_case(engine, external_id="pl", text="pomocy", language="pl", urgency=50)
    fraud = add_case(
        engine, external_id="fr", text="charge", language="pl", intents=("fraud",), urgency=90,
        priority="P1", escalate=True,
    )  # fmt: skip
    review = add_case(engine, external_id="rv", text="1 star", source="reviews", urgency=40)
    other = add_case(engine, external_id="ot", text="help", urgency=45)
    notifier, sleeps = notifier_for(
        routes=[
            SlackRoute(channel=ESCALATION, intents=["fraud", "account_takeover"]),
            SlackRoute(channel=ROUTED, languages=["pl"]),
            SlackRoute(channel=APPS, sources=["reviews"]),
        ]
    )
    notifier.enqueue_cards()
    assert notifier.flush() == 5  # four cards and the P1's copy to the escalation channel
    with session_scope(engine) as session:
        channels = {case.id: case.slack_channel for case in session.exec(select(Case))}
    assert channels == {fraud: ESCALATION, polish: ROUTED, review: APPS, other: CARE}
    assert len(_posted(state, ESCALATION)) == 2
    # Four channels each post at their own pace: only the second post to one channel waited.
    assert sum(sleeps) == pytest.approx(1.0)


def test_a_paced_channel_does_not_hold_back_another(engine, slack, notifier_for):
    from triage.config import SlackRoute

    state, _ = slack
    for index in range(3):
        add_case(engine, external_id=f"c{index}", text="help", urgency=60 - index)
    add_case(engine, external_id="p", text="pomocy", language="pl", urgency=10)
    notifier, sleeps = notifier_for(routes=[SlackRoute(channel=ROUTED, languages=["pl"])])
    notifier.enqueue_cards()
    assert notifier.flush() == 4
    order = [(call.body["channel"], call.body["text"][:7]) for call in state.calls_to(
        "chat.postMessage"
    )]  # fmt: skip
    # The lower-ranked Polish card goes while the care channel waits out its second.
    assert order[:2] == [(CARE, "P3 (60)"), (ROUTED, "P3 (10)")]
    assert sum(sleeps) == pytest.approx(2.0)


def test_sla_reminder_at_three_quarters_and_one_breach_ping(engine, slack, notifier_for):
    state, _ = slack
    case_id = add_case(engine, external_id="s", text="help", priority="P2", urgency=60)
    notifier, _ = notifier_for(leads_group="S0LEADS001")
    notifier.enqueue_cards()
    notifier.flush()
    with session_scope(engine) as session:
        case = session.get(Case, case_id)
        created = CREATED_AT
    target = timedelta(hours=2)  # the default P2 first-response target

    assert notifier.check_sla(now=created + target * 0.5) == 0
    assert notifier.check_sla(now=created + target * 0.8) == 1
    assert notifier.check_sla(now=created + target * 0.9) == 0  # once
    assert notifier.check_sla(now=created + target + timedelta(minutes=10)) == 1
    assert notifier.check_sla(now=created + target * 3) == 0
    # Once pinged, the case is not even read again: the check's cost follows what is left to say.
    from triage.store.queries import sla_due_cases

    with session_scope(engine) as session:
        targets = {"P1": 1800.0, "P2": 7200.0, "P3": 28800.0, "P4": 86400.0}
        later = created + target * 30
        assert sla_due_cases(session, now=later, targets=targets, reminder_share=0.75) == []
    notifier.flush()

    thread = [m for m in state.messages[CARE] if m.get("thread_ts") == case.slack_ts]
    assert [m["text"] for m in thread] == [
        ":hourglass_flowing_sand: 24 min left to answer within the P2 target of 2 h.",
        "<!subteam^S0LEADS001> :rotating_light: SLA breached: no first response after 2 h 10 min "
        "(the P2 target is 2 h).",
    ]


def test_the_card_shows_what_the_draft_checker_found(engine, slack, notifier_for):
    state, _ = slack
    add_case(
        engine,
        external_id="hinted",
        text="You charged me twice!",
        draft="Unfortunately that is our policy. Reply here with your card number, {name}.",
    )
    notifier, _ = notifier_for()
    notifier.enqueue_cards()
    notifier.flush()
    [body] = _posted(state, CARE)
    draft_block = next(b["text"]["text"] for b in body["blocks"] if "Draft reply" in str(b))
    assert ":bulb: Blocks sending: unfilled placeholder {name}" in draft_block
    assert "sounds negative or blaming (“unfortunately”)" in draft_block
    assert "a complaint reply should say when we'll be back" in draft_block
    assert "asks for “card number” in a public reply" in draft_block


def _set_mention(engine, case_id: int, **changes) -> None:
    with session_scope(engine) as session:
        mention = session.get(Mention, session.get(Case, case_id).mention_id)
        for name, value in changes.items():
            setattr(mention, name, value)
        session.add(mention)


def _block_texts(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["text"]] if isinstance(node.get("text"), str) else []
        return own + [text for value in node.values() for text in _block_texts(value)]
    if isinstance(node, list):
        return [text for value in node for text in _block_texts(value)]
    return []


def test_a_mention_slack_would_refuse_as_is_gets_a_cut_card_and_stops_no_other(
    engine, slack, notifier_for
):
    state, _ = slack
    long_url = add_case(engine, external_id="u", text="see the link")
    _set_mention(engine, long_url, url="https://example.com/r?" + "x" * 4000)
    short_lines = add_case(engine, external_id="s", text="a\n" * 1400)
    long_title = add_case(engine, external_id="t", text="bad", priority="P2", urgency=60)
    _set_mention(engine, long_title, title="Worst app ever " * 300)
    plain = add_case(engine, external_id="p", text="help", priority="P2", urgency=70)
    notifier, _ = notifier_for()

    assert notifier.enqueue_cards() == 4
    assert notifier.flush() == 4

    cards = {body["metadata"]["event_payload"]["key"]: body for body in _posted(state, CARE)}
    assert set(cards) == {f"card:{case}" for case in (long_url, short_lines, long_title, plain)}
    for body in cards.values():
        assert max(len(text) for text in _block_texts(body["blocks"])) <= 3000
    [*_, actions] = cards[f"card:{long_url}"]["blocks"]
    assert all("url" not in element for element in actions["elements"])
    assert cards[f"card:{short_lines}"]["blocks"][1]["text"]["text"].endswith("|read the rest>")


def test_a_card_that_still_cannot_be_built_goes_out_as_plain_text(
    engine, slack, notifier_for, monkeypatch, caplog
):
    state, _ = slack
    broken = add_case(engine, external_id="b", text="the card of this one breaks", urgency=45)
    fine = add_case(engine, external_id="f", text="this one is fine")
    real_blocks = notify.card_blocks

    def card_blocks(view):
        if view.case_id == broken:
            raise SlackObjectFormationError("text attribute cannot exceed 3000 characters")
        return real_blocks(view)

    monkeypatch.setattr(notify, "card_blocks", card_blocks)
    notifier, _ = notifier_for()

    assert notifier.enqueue_cards() == 2
    assert notifier.flush() == 2

    cards = {body["metadata"]["event_payload"]["key"]: body for body in _posted(state, CARE)}
    assert "blocks" in cards[f"card:{fine}"]
    fallback = cards[f"card:{broken}"]
    assert "blocks" not in fallback
    assert fallback["text"].startswith("P3 (45) file: Ana @ana: the card of this one breaks")
    assert f"case {broken}" in fallback["text"]
    [line] = [r.getMessage() for r in caplog.records if "plain text" in r.getMessage()]
    assert f"case {broken}" in line and "cannot exceed 3000" in line


def _lose_first_answer(state) -> None:
    state.fail_next("chat.postMessage", Fault(status=500, error="fatal_error", after_effect=True))


@pytest.mark.parametrize(
    "fault",
    [Fault(status=500, error="fatal_error"), Fault(status=503, error="service_unavailable")],
)
def test_history_that_cannot_be_read_is_no_licence_to_post_again(
    engine, slack, notifier_for, fault
):
    state, _ = slack
    case_id = add_case(engine, external_id="h", text="help")
    notifier, _ = notifier_for()
    notifier.enqueue_cards()
    _lose_first_answer(state)
    assert notifier.flush() == 0

    state.fail_next("conversations.history", fault)
    assert notifier.flush() == 0
    row = _rows(engine)[f"card:{case_id}"]
    assert row.status == OutboxStatus.PENDING
    assert "history" in row.error and fault.error in row.error
    assert len(state.calls_to("chat.postMessage")) == 1

    assert notifier.flush() == 1  # history answers now: the card is found, not posted again
    assert len(state.messages[CARE]) == 1
    assert len(state.calls_to("chat.postMessage")) == 1
    assert _rows(engine)[f"card:{case_id}"].ts == state.messages[CARE][0]["ts"]


def test_history_the_bot_may_not_read_fails_the_row_instead_of_posting_blind(
    engine, slack, notifier_for
):
    state, _ = slack
    case_id = add_case(engine, external_id="m", text="help")
    notifier, _ = notifier_for()
    notifier.enqueue_cards()
    _lose_first_answer(state)
    notifier.flush()
    state.fail_next("conversations.history", Fault(status=200, error="missing_scope"))

    assert notifier.flush() == 0
    assert notifier.flush() == 0
    row = _rows(engine)[f"card:{case_id}"]
    assert row.status == OutboxStatus.FAILED and "missing_scope" in row.error
    assert len(state.calls_to("chat.postMessage")) == 1


def test_a_lost_thread_reply_is_found_in_its_thread_not_posted_twice(engine, slack, notifier_for):
    state, _ = slack
    case_id = add_case(engine, external_id="r", text="help", priority="P2", urgency=60)
    notifier, _ = notifier_for()
    notifier.enqueue_cards()
    notifier.flush()
    with session_scope(engine) as session:
        parent = session.get(Case, case_id).slack_ts
    # Replies come a page at a time: the parent alone on the first, the reminder on the second.
    state.page_size = 1
    assert notifier.check_sla(now=CREATED_AT + timedelta(hours=2) * 0.8) == 1
    _lose_first_answer(state)
    assert notifier.flush() == 0

    assert notifier.flush() == 1

    thread = [m for m in state.messages[CARE] if m.get("thread_ts") == parent]
    assert len(thread) == 1
    assert len(state.calls_to("chat.postMessage")) == 2  # the card, the reminder once
    lookups = state.calls_to("conversations.replies")
    assert [call.body.get("cursor") for call in lookups] == [None, "offset:1"]
    assert lookups[0].body["ts"] == parent
    assert _rows(engine)[f"sla-reminder:{case_id}"].ts == thread[0]["ts"]


def test_a_card_deep_in_a_busy_channel_is_found_on_a_later_page(engine, slack, notifier_for):
    state, _ = slack
    case_id = add_case(engine, external_id="d", text="help")
    notifier, _ = notifier_for()
    notifier.enqueue_cards()
    _lose_first_answer(state)
    notifier.flush()
    for index in range(12):  # other people's messages, newer than the card
        state.handle("chat.postMessage", {"channel": CARE, "text": f"chatter {index}"})
    state.page_size = 5

    assert notifier.flush() == 1

    assert len(state.calls_to("chat.postMessage")) == 1
    assert len(state.calls_to("conversations.history")) == 3
    row = _rows(engine)[f"card:{case_id}"]
    assert (row.status, row.ts) == (OutboxStatus.SENT, state.messages[CARE][0]["ts"])


def test_a_lookup_that_runs_out_of_pages_does_not_post_blind(engine, slack, notifier_for, caplog):
    state, _ = slack
    case_id = add_case(engine, external_id="c", text="help")
    notifier, _ = notifier_for()
    notifier.enqueue_cards()
    _lose_first_answer(state)
    notifier.flush()
    pages = notify.LOOKUP_PAGES
    for index in range(pages + 2):  # one message a page: the card is past the last page read
        state.handle("chat.postMessage", {"channel": CARE, "text": f"chatter {index}"})
    state.page_size = 1

    assert notifier.flush() == 0

    assert len(state.calls_to("conversations.history")) == pages
    assert len(state.calls_to("chat.postMessage")) == 1
    row = _rows(engine)[f"card:{case_id}"]
    assert row.status == OutboxStatus.FAILED and f"{pages} pages" in row.error
    assert any(
        f"{pages} pages" in r.getMessage() and row.key in r.getMessage() for r in caplog.records
    )


def test_a_claim_taken_over_during_the_lookup_is_not_posted(engine, slack, notifier_for):
    # A slow lookup outlasted the lease and another flush claimed the row: the first must not
    # post as well, or the card would be there twice.
    state, _ = slack
    case_id = add_case(engine, external_id="t", text="help")
    state.fail_next("chat.postMessage", Fault(status=500, error="fatal_error"))
    notifier, _ = notifier_for()
    notifier.enqueue_cards()
    assert notifier.flush() == 0
    lookup = notifier._find_posted

    def slow_lookup(row):
        found = lookup(row)
        with session_scope(engine) as session:
            stored = session.get(SlackMessage, row.id)
            stored.attempts += 1  # what another flush's claim does
            session.add(stored)
        return found

    notifier._find_posted = slow_lookup
    assert notifier.flush() == 0
    assert len(state.calls_to("chat.postMessage")) == 1 and state.messages[CARE] == []
    assert _rows(engine)[f"card:{case_id}"].status == OutboxStatus.SENDING


def test_the_lease_outlasts_the_longest_slack_call():
    from triage.slack.client import LONGEST_CALL_SECONDS

    assert LEASE.total_seconds() > LONGEST_CALL_SECONDS


@pytest.mark.parametrize(("retry_after", "waited"), [(3600, 30), (7, 7), ("soon", 1), (None, 1)])
def test_a_429_is_waited_out_as_asked_but_never_past_the_cap(slack, retry_after, waited):
    state, url = slack
    fault = Fault(status=429, error="ratelimited", retry_after=retry_after)
    state.fail_next("chat.postMessage", fault)
    sleeps = Sleeps()
    client = make_slack_client(SlackSettings(bot_token="xoxb-test", api_url=url), sleep=sleeps)
    client.chat_postMessage(channel=CARE, text="hello")
    assert len(state.calls_to("chat.postMessage")) == 2 and len(state.messages[CARE]) == 1
    [slept] = sleeps
    assert waited <= slept < waited + 1


def _digest_setup(engine, notifier_for, n: int = 12):
    for index in range(n):
        add_case(
            engine, external_id=f"d{index}", text=f"slow parcel {index}", priority="P3",
            urgency=40 - index, intents=("delivery",) if index % 3 else ("billing",),
            language="pl" if index % 4 == 0 else "en",
        )  # fmt: skip
    p1 = add_case(engine, external_id="hot", text="fire", priority="P1", urgency=95)
    # Ten seconds of posting fits in the digest threshold; twelve P3 cards do not.
    notifier, _ = notifier_for(digest_after="10s")
    return notifier, p1


def test_a_backlog_of_p3_cards_becomes_one_digest_and_p1_still_comes_as_a_card(
    engine, slack, notifier_for
):
    state, _ = slack
    notifier, p1 = _digest_setup(engine, notifier_for)
    notifier.enqueue_cards()
    assert notifier.digest() == 1
    assert notifier.digest() == 0  # once: nothing left waiting
    assert notifier.flush() == 3  # the P1, its escalation copy and the digest
    digest, first = _posted(state, CARE)
    assert first["text"].startswith("P1 (95)")
    assert digest["text"].startswith("Digest: 12 lower-priority cases")
    blocks = json.dumps(digest["blocks"])
    assert "*12 P3/P4 cases*" in blocks
    assert (
        "delivery 8" in blocks and "billing 4" in blocks and "en 9" in blocks and "pl 3" in blocks
    )
    assert "slow parcel 0" in blocks and "slow parcel 11" not in blocks  # the worst five
    rows = _rows(engine)
    held = [row for row in rows.values() if row.status == OutboxStatus.DIGESTED]
    assert len(held) == 12 and {row.digest for row in held} == {rows[digest_key(rows)].key}
    with session_scope(engine) as session:
        statuses = {case.id: case.status for case in session.exec(select(Case))}
    assert statuses.pop(p1) == CaseStatus.POSTED
    assert set(statuses.values()) == {CaseStatus.NEW}  # held, not lost


def digest_key(rows: dict[str, SlackMessage]) -> str:
    [key] = [key for key in rows if key.startswith("digest:")]
    return key


def test_a_digest_posts_its_cases_as_cards_in_its_thread_on_request(engine, slack, notifier_for):
    state, _ = slack
    notifier, _ = _digest_setup(engine, notifier_for)
    notifier.enqueue_cards()
    notifier.digest()
    notifier.flush()
    key = digest_key(_rows(engine))
    assert notifier.expand_digest(key) == 12
    assert notifier.expand_digest(key) == 0  # once
    assert notifier.flush() == 12
    digest_ts = _rows(engine)[key].ts
    thread = [m for m in state.messages[CARE] if m.get("thread_ts") == digest_ts]
    assert len(thread) == 12
    with session_scope(engine) as session:
        cases = list(session.exec(select(Case)))
    assert all(case.status == CaseStatus.POSTED for case in cases)
    assert {case.slack_ts for case in cases} >= {m["ts"] for m in thread}
    assert notifier.digest() == 0  # a digest's own cards are never grouped again


def test_back_to_single_cards_when_the_load_falls_and_one_digest_per_interval(
    engine, slack, notifier_for
):
    state, _ = slack
    notifier, _ = _digest_setup(engine, notifier_for)
    notifier.enqueue_cards()
    assert notifier.digest() == 1
    notifier.flush()
    for index in range(3):
        add_case(engine, external_id=f"calm{index}", text="meh", priority="P3", urgency=30)
    notifier.enqueue_cards()
    assert notifier.digest() == 0  # three fit in ten seconds: single cards again
    assert notifier.flush() == 3
    for index in range(15):
        add_case(engine, external_id=f"wave{index}", text="again", priority="P4", urgency=10)
    notifier.enqueue_cards()
    # Too many again, but a digest went out less than digest_every ago: cards, not a flood of
    # digests; the next wave after the interval is grouped.
    assert notifier.digest() == 0
    assert len([m for m in state.messages[CARE] if m["text"].startswith("Digest")]) == 1


def test_digests_can_be_turned_off(engine, slack, notifier_for):
    for index in range(30):
        add_case(engine, external_id=f"o{index}", text="meh", priority="P3", urgency=30)
    notifier, _ = notifier_for(digests=False)
    notifier.enqueue_cards()
    assert notifier.digest() == 0


def test_the_notify_cycle_posts_cases_as_they_come_and_stops_when_told(engine, slack, notifier_for):
    import threading
    import time

    state, _ = slack
    notifier, _ = notifier_for(post_interval="0.05s")
    notifier._monotonic, notifier._sleep = time.monotonic, time.sleep
    stop = threading.Event()
    opened: list[int] = []

    def open_case_later() -> None:
        time.sleep(0.3)  # the cycle is already waiting for work
        opened.append(add_case(engine, external_id="late", text="help", priority="P2"))

    thread = threading.Thread(target=open_case_later)
    thread.start()
    started = time.monotonic()
    assert notifier.cycle(budget=1.5, idle=0.05, stop=stop) == 1
    thread.join()
    assert 1.4 <= time.monotonic() - started < 5
    assert [body["text"][:2] for body in _posted(state, CARE)] == ["P2"]
    stop.set()
    started = time.monotonic()
    assert notifier.cycle(budget=60, stop=stop) == 0
    assert time.monotonic() - started < 5


def test_a_busy_care_channel_keeps_one_pinned_status_up_to_date_then_unpins_it(
    engine, slack, notifier_for
):
    from triage.notify import STATUS_EVERY

    state, _ = slack
    notifier, _ = _digest_setup(engine, notifier_for)
    assert notifier.crisis_status() == 0  # quiet: no status message
    notifier.enqueue_cards()
    notifier.digest()
    assert notifier.crisis_status() == 1
    assert notifier.crisis_status() == 0  # one status message, not one per cycle
    notifier.flush()
    [status] = [m for m in state.messages[CARE] if m["text"].startswith(":rotating_light:")]
    # Written when queued: the P1's card was still waiting then.
    assert "*Waiting:* 13 cases not yet posted (12 in digests)" in status["text"]
    assert "*Top topics:* delivery 8 · billing 5" in status["text"]
    assert "*Oldest P1 nobody has taken:* 0 min" in status["text"]
    assert notifier.crisis_status() == 1  # the pin, now that the message has its ts
    notifier.flush()
    assert state.pins[CARE] == {status["ts"]}

    later = utcnow() + STATUS_EVERY + timedelta(seconds=1)
    add_case(engine, external_id="fresh", text="fire again", priority="P1", urgency=96)
    assert notifier.crisis_status(now=later) == 1
    notifier.flush()
    assert "*Oldest P1 nobody has taken:* 1 min" in status["text"]  # updated in place
    assert len([m for m in state.messages[CARE] if m["text"].startswith(":rotating")]) == 1

    calm = utcnow() + timedelta(minutes=16)
    assert notifier.crisis_status(now=calm) == 2  # the last word and the unpin
    notifier.flush()
    assert status["text"].startswith(":white_check_mark: *Back to normal*")
    assert state.pins[CARE] == set()
    assert notifier.crisis_status(now=calm) == 0


def test_a_spike_alert_makes_the_care_channel_busy(engine, slack, notifier_for):
    from triage.store.queries import SPIKE_ALERTED, audit

    state, _ = slack
    notifier, _ = notifier_for()
    with session_scope(engine) as session:
        audit(session, actor="triage", action=SPIKE_ALERTED, after="all:volume:x")
    assert notifier.crisis_status() == 1
    notifier.flush()
    [status] = _posted(state, CARE)
    assert status["text"].startswith(":rotating_light: *Busy*")


def test_a_status_message_slack_refused_does_not_silence_the_next_crisis(
    engine, slack, notifier_for
):
    from triage.store.queries import SPIKE_ALERTED, audit

    state, _ = slack
    notifier, _ = notifier_for()
    with session_scope(engine) as session:
        audit(session, actor="triage", action=SPIKE_ALERTED, after="all:volume:x")
    state.fail_next("chat.postMessage", Fault(status=200, error="channel_not_found"))
    assert notifier.crisis_status() == 1
    notifier.flush()
    assert notifier.crisis_status() == 1  # a new status message, not silence
    notifier.flush()
    assert len(_posted(state, CARE)) == 2  # refused, then posted anew
    assert [m["text"][:16] for m in state.messages[CARE]] == [":rotating_light:"]


def _urgent_cases(engine, name: str, count: int, *, priority: str = "P2", worst: int = 80):
    """`count` open cases of `priority`, worst first by urgency."""
    return [
        add_case(engine, external_id=f"{name}{i}", text=name, priority=priority, urgency=worst - i)
        for i in range(count)
    ]


def _stack_setup(engine, count: int = 7) -> list[int]:
    """`count` P2 cases, worst first by urgency, and one P3."""
    cases = [
        add_case(engine, external_id=f"u{i}", text=f"urgent {i}", priority="P2", urgency=90 - i)
        for i in range(count)
    ]
    add_case(engine, external_id="calm", text="meh", priority="P3", urgency=30)
    return cases


def _card_ids(message: dict) -> list[str]:
    return [b["block_id"] for b in message["blocks"] if b.get("block_id", "").startswith("case-")]


def test_a_p1_p2_backlog_goes_out_stacked_worst_first_each_card_actionable(
    engine, slack, notifier_for
):
    state, _ = slack
    urgent = _stack_setup(engine, count=12)
    notifier, sleeps = notifier_for()  # one post a second: three waiting would take > 2 s

    notifier.enqueue_cards()
    # Two stacks of five; the two left fit in two seconds and go alone; then the P3.
    assert notifier.flush() == 5
    first, second, *singles, calm = _posted(state, CARE)
    assert _card_ids(first) == [f"case-{case}" for case in urgent[:5]]
    assert _card_ids(second) == [f"case-{case}" for case in urgent[5:10]]
    assert [_card_ids(m) for m in singles] == [[f"case-{case}"] for case in urgent[10:]]
    assert first["text"].startswith("5 urgent cases: P2 (90)")
    assert calm["text"].startswith("P3 (30)")
    assert sum(sleeps) == pytest.approx(4.0)  # still paced: five messages, not thirteen
    with session_scope(engine) as session:
        cases = {case.id: case for case in session.exec(select(Case))}
    assert {cases[c].slack_ts for c in urgent[:5]} == {state.messages[CARE][0]["ts"]}
    assert {cases[c].slack_ts for c in urgent[5:10]} == {state.messages[CARE][1]["ts"]}
    assert all(cases[c].status == CaseStatus.POSTED for c in urgent)
    assert notifier.stack() == 0 and notifier.flush() == 0

    # The load falls: two urgent cards fit in two seconds and go out alone.
    for index in range(2):
        add_case(engine, external_id=f"later{index}", text="help", priority="P2", urgency=70)
    notifier.enqueue_cards()
    assert notifier.stack() == 0
    assert notifier.flush() == 2
    assert all(len(_card_ids(m)) == 1 for m in _posted(state, CARE)[3:])


def test_cards_opened_while_the_channel_waits_join_its_next_stack(engine, slack, notifier_for):
    state, _ = slack
    waiting = _urgent_cases(engine, "help", 3)
    notifier, sleeps = notifier_for()
    notifier._last_post[CARE] = sleeps.now  # the channel has just posted: one second to wait
    came: list[int] = []

    def pace(seconds: float) -> None:
        sleeps(seconds)
        while len(came) < 2:  # the pipeline opens two more urgent cases meanwhile
            came.append(
                add_case(
                    engine, external_id=f"c{len(came)}", text="fire", priority="P2", urgency=85
                )
            )

    notifier._sleep = pace
    notifier.enqueue_cards()
    assert notifier.flush(refill=True) == 1
    [stack] = _posted(state, CARE)
    assert sorted(_card_ids(stack)) == sorted(f"case-{c}" for c in waiting + came)
    assert _card_ids(stack)[:2] == [f"case-{c}" for c in came]  # worst first


def test_a_stack_not_yet_sent_is_formed_again_when_worse_cards_come(engine, slack, notifier_for):
    state, _ = slack
    p2 = _urgent_cases(engine, "late", 3, worst=60)
    notifier, _ = notifier_for()
    notifier.enqueue_cards()
    assert notifier.stack() == 1  # three P2s, not sent yet
    p1 = _urgent_cases(engine, "fire", 3, priority="P1", worst=95)
    notifier.enqueue_cards()
    # Formed again with the P1s first; the P1s' copies for the escalation channel stack too.
    assert notifier.stack() == 2

    assert notifier.flush() == 3
    stack, single = _posted(state, CARE)
    assert _card_ids(stack) == [f"case-{c}" for c in p1 + p2[:2]]
    assert _card_ids(single) == [f"case-{p2[2]}"]
    with session_scope(engine) as session:
        stacks = session.exec(
            select(SlackMessage).where(col(SlackMessage.key).startswith("stack:"))
        ).all()
    # The first care stack is gone: one sent per channel.
    assert sorted(row.channel for row in stacks) == sorted([CARE, ESCALATION])
    assert {row.status for row in stacks} == {OutboxStatus.SENT}


def test_acting_on_a_stacked_card_updates_it_and_keeps_the_others(engine, slack, notifier_for):
    state, _ = slack
    urgent = _stack_setup(engine)
    notifier, _ = notifier_for()
    notifier.enqueue_cards()
    notifier.flush()

    assert notifier.update_cards(urgent[1], status_line=":eyes: taken by Ana") == 1
    assert notifier.update_cards(urgent[3], status_line=":arrow_up: escalated by Ben") == 1
    assert notifier.flush() == 2
    stack = state.messages[CARE][0]
    assert _card_ids(stack) == [f"case-{case}" for case in urgent[:5]]
    text = json.dumps(stack["blocks"])
    assert "taken by Ana" in text and "escalated by Ben" in text  # the first update kept
    assert state.calls_to("chat.update")[-1].body["ts"] == stack["ts"]


def test_a_stack_slack_refuses_sends_its_cards_one_by_one(engine, slack, notifier_for):
    state, _ = slack
    urgent = _stack_setup(engine, count=4)
    state.fail_next("chat.postMessage", Fault(status=200, error="invalid_blocks"))
    notifier, _ = notifier_for()
    notifier.enqueue_cards()

    notifier.flush()
    notifier.flush()

    singles = [m for m in _posted(state, CARE) if len(_card_ids(m)) == 1]
    assert {_card_ids(m)[0] for m in singles} == {f"case-{c}" for c in urgent} | {"case-5"}
    assert notifier.stack() == 0  # never stacked again
    with session_scope(engine) as session:
        assert all(session.get(Case, c).status == CaseStatus.POSTED for c in urgent)


def test_a_stack_whose_answer_was_lost_is_found_not_posted_twice(engine, slack, notifier_for):
    state, _ = slack
    urgent = _stack_setup(engine, count=4)
    state.fail_next("chat.postMessage", Fault(status=500, after_effect=True))
    notifier, _ = notifier_for()
    notifier.enqueue_cards()

    notifier.flush()
    notifier.flush()

    stacks = [m for m in state.messages[CARE] if len(_card_ids(m)) > 1]
    assert len(stacks) == 1 and _card_ids(stacks[0]) == [f"case-{c}" for c in urgent]
    with session_scope(engine) as session:
        assert {session.get(Case, c).slack_ts for c in urgent} == {stacks[0]["ts"]}


def test_stacks_can_be_turned_off(engine, slack, notifier_for):
    state, _ = slack
    _stack_setup(engine)
    notifier, _ = notifier_for(stacks=False)
    notifier.enqueue_cards()
    assert notifier.flush() == 8
    assert all(len(_card_ids(m)) == 1 for m in _posted(state, CARE))
