"""The Slack bot: what each button, modal, slash command and App Home visit does.

Transports (the HTTP endpoint in triage/server.py, Socket Mode in triage/slack/socket.py) hand
each verified request to `interaction`, `command` or `event`. Each returns an `Ack`: the body to
answer Slack with at once, and the work to run after answering (Slack wants an answer within
3 seconds; sending a reply can take longer). Messages go out through the notifier's outbox.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from connectors.base import Connector
from connectors.registry import build_connector
from connectors.reply import ReplyNotAllowed
from triage.act import (
    CaseActions,
    CaseClosed,
    Replies,
    ReplyRefused,
    handled_by,
    reply_target,
)
from triage.config import ConfigError, Settings
from triage.drafts.check import check_draft, errors
from triage.drafts.render import sign
from triage.http import ConnectorError
from triage.notify import Notifier, duration_text
from triage.slack.cards import (
    APPROVE,
    ASSIGN,
    DISMISS,
    EDIT,
    ESCALATE,
    MARK_REPLIED,
    OPEN,
    card_blocks,
    card_text,
)
from triage.slack.home import home_view
from triage.slack.text import escape, link
from triage.store import DismissReason, session_scope
from triage.store.queries import case_with_details, set_paused

log = logging.getLogger(__name__)

EDIT_MODAL = "triage.edit_modal"
REPLY_BLOCK, REPLY_INPUT = "reply", "text"
CHOICE_BLOCK, CHOICE_INPUT = "choice", "action"
# How long a user group's member list is trusted before it is read again.
GROUP_CACHE_SECONDS = 300.0
HELP = (
    "*/triage* commands: `queue` (top open cases), `stats` (today), `connectors` (health), "
    "`pause NAME` / `resume NAME` (admins), `report 7d` (the sentiment report here; 24h..90d)"
)


@dataclass(frozen=True, slots=True)
class Ack:
    """What to answer Slack with now, and what to do right after."""

    body: dict[str, Any] | None = None
    work: Callable[[], None] | None = None


class SlackBot:
    """Routes Slack requests to the act stage and answers through the outbox."""

    def __init__(
        self,
        settings: Settings,
        engine: sa.Engine,
        client: WebClient,
        *,
        connector_for: Callable[[str], Connector] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self.engine = engine
        self.client = client
        self._connector_for = connector_for or (lambda s: build_connector(settings.connector(s)))
        self.notifier = Notifier(settings, engine, client, connector_for=self._connector_for)
        self.replies = Replies(engine, self._connector_for)
        self.cases = CaseActions(engine)
        self._monotonic = monotonic
        self._groups: dict[str, tuple[float, set[str]]] = {}
        # `/triage NAME ...` handlers later stages register (reports), so the bot needs no
        # import of them: (bot, words after NAME, the command's form) -> Ack.
        self.commands: dict[str, Callable[[SlackBot, list[str], dict[str, str]], Ack]] = {}
        self._names: dict[str, str | None] = {}

    # -- who may do what -------------------------------------------------------------------

    def may_send(self, user: str) -> bool:
        """Whether `user` is one of `[slack] senders`, directly or through a user group."""
        return self._listed(user, self.settings.slack.senders)

    def is_admin(self, user: str) -> bool:
        return self._listed(user, self.settings.slack.admins)

    def _listed(self, user: str, allowed: list[str]) -> bool:
        if user in allowed:
            return True
        return any(user in self._group_members(g) for g in allowed if g.startswith("S"))

    def _group_members(self, group: str) -> set[str]:
        cached = self._groups.get(group)
        if cached and self._monotonic() - cached[0] < GROUP_CACHE_SECONDS:
            return cached[1]
        try:
            members = set(self.client.usergroups_users_list(usergroup=group).get("users") or [])
        except SlackClientError as exc:
            log.warning("could not read the members of user group %s: %s", group, exc)
            members = cached[1] if cached else set()
        self._groups[group] = (self._monotonic(), members)
        return members

    # -- interactivity -----------------------------------------------------------------------

    def interaction(self, payload: dict[str, Any]) -> Ack:
        """A button, menu or modal submission."""
        kind = payload.get("type")
        user = (payload.get("user") or {}).get("id", "")
        if kind == "block_actions":
            channel = (payload.get("channel") or {}).get("id") or (
                payload.get("container") or {}
            ).get("channel_id", "")
            works = [
                self._action(action, user, channel, payload.get("trigger_id"))
                for action in payload.get("actions") or []
            ]
            todo = [work for work in works if work is not None]
            return Ack(work=(lambda: [work() for work in todo]) if todo else None)
        if kind == "view_submission":
            view = payload.get("view") or {}
            if view.get("callback_id") == EDIT_MODAL:
                return self._edit_submitted(view, user)
        return Ack()

    def _action(
        self, action: dict[str, Any], user: str, channel: str, trigger_id: str | None
    ) -> Callable[[], None] | None:
        action_id = action.get("action_id")
        if action_id == DISMISS:
            value = (action.get("selected_option") or {}).get("value", "")
            case_text, _, reason = value.partition(":")
            return lambda: self._dismiss(int(case_text), reason, user, channel)
        try:
            case_id = int(action.get("value") or "")
        except ValueError:
            return None
        handlers: dict[str, Callable[[], None]] = {
            APPROVE: lambda: self._approve(case_id, user, channel),
            EDIT: lambda: self._open_editor(case_id, user, channel, trigger_id),
            ASSIGN: lambda: self._assign(case_id, user, channel),
            ESCALATE: lambda: self._escalate(case_id, user, channel),
            MARK_REPLIED: lambda: self._mark_replied(case_id, user, channel),
        }
        if action_id == OPEN:
            return None  # a link button: Slack opens the URL itself
        return handlers.get(str(action_id))

    def _approve(self, case_id: int, user: str, channel: str) -> None:
        found = self._details(case_id, user, channel)
        if found is None:
            return
        _case, mention, _analysis, draft = found
        if draft is None or not draft.text.strip():
            self._say(channel, user, "This case has no draft yet: use *Edit* to write the reply.")
            return
        self._send(case_id, mention.id or 0, draft.text, user, channel)

    def _send(self, case_id: int, mention_id: int, text: str, user: str, channel: str) -> None:
        if not self.may_send(user):
            self._say(channel, user, self._not_a_sender())
            self.notifier.flush()
            return
        text = self._signed(text, user)
        try:
            result = self.replies.send(mention_id, text, actor=user)
        except CaseClosed:
            self._say(channel, user, f"Nothing sent: {handled_by(self.engine, case_id)}.")
        except ReplyRefused as exc:
            self._say(channel, user, f"Nothing sent: {escape(str(exc))}")
        except ReplyNotAllowed as exc:
            self._say(channel, user, f"Nothing sent: {escape(str(exc))}")
        except ConnectorError as exc:
            if exc.uncertain:
                message = (
                    ":warning: The platform did not answer clearly; the reply may have gone "
                    "out. Press *Approve & send* again: triage checks before it posts twice."
                )
            else:
                message = f"Nothing sent: the platform refused it ({escape(str(exc))[:300]})."
            self._say(channel, user, message)
        else:
            if result.already_sent and result.sent_by != user:
                self._say(channel, user, f"Nothing sent: <@{result.sent_by}> already replied.")
            self.notifier.update_cards(case_id, outcome=self._replied_line(case_id, result))
        self.notifier.flush()

    def _replied_line(self, case_id: int, result: Any) -> str:
        with session_scope(self.engine) as session:
            found = case_with_details(session, case_id=case_id)
        seconds = found[0].first_response_seconds if found else None
        after = f" after {duration_text(seconds)}" if seconds is not None else ""
        where = f" · {link(result.url, 'view the reply')}" if result.url else ""
        quoted = "\n".join("> " + line for line in escape(result.text).splitlines())
        return f":white_check_mark: *Replied by <@{result.sent_by}>*{after}{where}\n{quoted}"

    def _assign(self, case_id: int, user: str, channel: str) -> None:
        try:
            case = self.cases.assign(case_id, actor=user)
        except ReplyRefused:
            self._say(channel, user, f"{handled_by(self.engine, case_id)}.")
        else:
            self.notifier.update_cards(case_id, status_line=self._status_line(case))
        self.notifier.flush()

    def _escalate(self, case_id: int, user: str, channel: str) -> None:
        try:
            case = self.cases.escalate(case_id, actor=user)
        except CaseClosed:
            self._say(channel, user, f"{handled_by(self.engine, case_id)}.")
        except ReplyRefused as exc:
            self._say(channel, user, escape(str(exc)))
        else:
            target = self.settings.slack.escalation_channel
            found = self._details(case_id, user, channel)
            if target and found:
                view = self.notifier.card_view(*found)
                leads = self.settings.slack.leads_group
                ping = f"<!subteam^{leads}> " if leads else ""
                self.notifier.enqueue(
                    key=f"escalation:{case_id}",
                    method="chat.postMessage",
                    channel=target,
                    case_id=case_id,
                    payload={
                        "text": f"{ping}Escalated by <@{user}>: {card_text(view)}",
                        "blocks": [
                            {
                                "type": "section",
                                "text": {
                                    "type": "mrkdwn",
                                    "text": f"{ping}:rotating_light: Escalated by <@{user}>",
                                },
                            },
                            *card_blocks(view),
                        ],
                        "unfurl_links": False,
                    },
                )
            self.notifier.update_cards(case_id, status_line=self._status_line(case))
        self.notifier.flush()

    def _dismiss(self, case_id: int, reason: str, user: str, channel: str) -> None:
        if not self.may_send(user):
            self._say(channel, user, self._not_a_sender())
            self.notifier.flush()
            return
        try:
            self.cases.dismiss(case_id, actor=user, reason=reason)
        except CaseClosed:
            self._say(channel, user, f"{handled_by(self.engine, case_id)}.")
        except ReplyRefused as exc:
            self._say(channel, user, escape(str(exc)))
        else:
            label = DismissReason(reason).label
            self.notifier.update_cards(
                case_id, outcome=f":no_entry_sign: *Dismissed by <@{user}>*: {label}"
            )
        self.notifier.flush()

    def _mark_replied(self, case_id: int, user: str, channel: str) -> None:
        if not self.may_send(user):
            self._say(channel, user, self._not_a_sender())
            self.notifier.flush()
            return
        found = self._details(case_id, user, channel)
        if found is None:
            return
        try:
            self.replies.mark_replied(found[1].id or 0, actor=user)
        except ReplyRefused:
            self._say(channel, user, f"{handled_by(self.engine, case_id)}.")
        else:
            self.notifier.update_cards(
                case_id, outcome=f":white_check_mark: *Marked as replied by <@{user}>*"
            )
        self.notifier.flush()

    # -- the edit modal ----------------------------------------------------------------------

    def _open_editor(self, case_id: int, user: str, channel: str, trigger_id: str | None) -> None:
        found = self._details(case_id, user, channel)
        if found is None or not trigger_id:
            return
        case, mention, analysis, draft = found
        rules, cannot_reply = self._rules(mention.source)
        limit_note = (
            f"{mention.platform} allows {rules.max_length} {rules.unit.label}"
            + (f"; {rules.note}" if rules.note else "")
            if rules
            else cannot_reply or ""
        )
        element: dict[str, Any] = {
            "type": "plain_text_input",
            "action_id": REPLY_INPUT,
            "multiline": True,
            "initial_value": draft.text if draft else "",
        }
        if rules:
            element["max_length"] = rules.max_length
        view = {
            "type": "modal",
            "callback_id": EDIT_MODAL,
            "private_metadata": json.dumps({"case": case_id, "channel": channel}),
            "title": {"type": "plain_text", "text": "Edit the reply"},
            "submit": {"type": "plain_text", "text": "Done"},
            "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": [
                {
                    "type": "context",
                    "elements": [
                        {
                            "type": "mrkdwn",
                            "text": escape(f"{analysis.language} · {limit_note}")[:2000],
                        }
                    ],
                },
                {
                    "type": "input",
                    "block_id": REPLY_BLOCK,
                    "label": {"type": "plain_text", "text": f"Reply to {mention.platform}"},
                    "element": element,
                },
                {
                    "type": "input",
                    "block_id": CHOICE_BLOCK,
                    "label": {"type": "plain_text", "text": "Then"},
                    "element": {
                        "type": "radio_buttons",
                        "action_id": CHOICE_INPUT,
                        "initial_option": _option("send", "Send now"),
                        "options": [_option("send", "Send now"), _option("save", "Save the draft")],
                    },
                },
            ],
        }
        if cannot_reply:
            view["blocks"] = view["blocks"][:2]
        try:
            self.client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            log.warning("could not open the editor for case %s: %s", case.id, exc)

    def _edit_submitted(self, view: dict[str, Any], user: str) -> Ack:
        meta = json.loads(view.get("private_metadata") or "{}")
        case_id, channel = int(meta.get("case", 0)), str(meta.get("channel", ""))
        values = (view.get("state") or {}).get("values") or {}
        text = ((values.get(REPLY_BLOCK) or {}).get(REPLY_INPUT) or {}).get("value") or ""
        choice = (
            ((values.get(CHOICE_BLOCK) or {}).get(CHOICE_INPUT) or {}).get("selected_option") or {}
        ).get("value", "save")
        with session_scope(self.engine) as session:
            found = case_with_details(session, case_id=case_id)
        if found is None:
            return Ack(body=_errors(REPLY_BLOCK, "This case no longer exists."))
        mention = found[1]
        if choice == "send":
            if not self.may_send(user):
                return Ack(body=_errors(CHOICE_BLOCK, self._not_a_sender()))
            problems = self._check(mention, self._signed(text, user))
            if problems:
                return Ack(body=_errors(REPLY_BLOCK, "; ".join(problems)))

        def work() -> None:
            try:
                self.cases.edit_draft(case_id, text, actor=user)
            except ReplyRefused:
                self._say(channel, user, f"Not saved: {handled_by(self.engine, case_id)}.")
                self.notifier.flush()
                return
            if choice == "send":
                self._send(case_id, mention.id or 0, text, user, channel)
            else:
                self.notifier.update_cards(case_id, status_line=f":pencil2: edited by <@{user}>")
                self.notifier.flush()

        return Ack(work=work)

    def _signed(self, text: str, user: str) -> str:
        brand = self.settings.brand
        return sign(text, brand.sign_off, self._agent_name(user), brand.name)

    def _agent_name(self, user: str) -> str | None:
        """The agent's name as Slack shows it, for the sign-off (cached; None if unknown)."""
        if user not in self._names:
            try:
                found = self.client.users_info(user=user).get("user") or {}
            except SlackClientError as exc:
                log.warning("cannot read the name of %s for the sign-off: %s", user, exc)
                return None
            profile = found.get("profile") or {}
            self._names[user] = (
                profile.get("real_name") or found.get("real_name") or found.get("name") or None
            )
        return self._names[user]

    def _check(self, mention: Any, text: str) -> list[str]:
        # The checker's hard errors first (an unfilled placeholder), then the platform's rules.
        blocking = [f.message for f in errors(check_draft(text, language="und", kind="reply"))]
        if blocking:
            return blocking
        try:
            with self._connector_for(mention.source) as connector:
                unavailable = connector.reply_unavailable()
                if unavailable:
                    return [unavailable]
                return connector.check_reply(reply_target(mention), text)
        except (KeyError, ConfigError) as exc:
            return [f"connector {mention.source!r} cannot be used: {exc}"]

    def _rules(self, source: str) -> tuple[Any, str | None]:
        return self.notifier.reply_info(source)

    # -- slash command and App Home ------------------------------------------------------------

    def command(self, form: dict[str, str]) -> Ack:
        """`/triage ...`: answered at once, visible only to the person who asked."""
        from triage.slack.commands import run_command

        words = form.get("text", "").split()
        handler = self.commands.get(words[0].lower()) if words else None
        if handler is not None:
            return handler(self, words[1:], form)
        text = run_command(self, form.get("text", ""), form.get("user_id", ""))
        return Ack(body={"response_type": "ephemeral", "text": text})

    def event(self, event: dict[str, Any]) -> Ack:
        """Events API callbacks: App Home opened."""
        if event.get("type") == "app_home_opened" and event.get("tab", "home") == "home":
            user = event.get("user", "")
            return Ack(work=lambda: self.publish_home(user))
        return Ack()

    def publish_home(self, user: str) -> None:
        view = home_view(
            self.engine,
            user=user,
            admin=self.is_admin(user),
            connectors=list(self.settings.connectors),
        )
        try:
            self.client.views_publish(user_id=user, view=view)
        except SlackApiError as exc:
            log.warning("could not publish App Home for %s: %s", user, exc)

    def pause(self, name: str, *, paused: bool) -> str:
        try:
            self.settings.connector(name)
        except KeyError:
            known = ", ".join(c.name for c in self.settings.connectors) or "none"
            return f"There is no connector named `{escape(name)}` (configured: {escape(known)})."
        with session_scope(self.engine) as session:
            set_paused(session, name=name, paused=paused)
        return f"Connector `{escape(name)}` is {'paused' if paused else 'running again'}."

    # -- helpers -------------------------------------------------------------------------------

    def _details(self, case_id: int, user: str, channel: str) -> Any:
        with session_scope(self.engine) as session:
            found = case_with_details(session, case_id=case_id)
        if found is None:
            self._say(channel, user, f"There is no case {case_id}.")
            self.notifier.flush()
        return found

    def _status_line(self, case: Any) -> str | None:
        if case.status == "escalated":
            return ":rotating_light: escalated"
        return None

    def _say(self, channel: str, user: str, text: str) -> None:
        if channel and user:
            self.notifier.say(channel, user, text)

    def _not_a_sender(self) -> str:
        if not self.settings.slack.senders:
            return (
                "Nobody may send replies yet: an admin adds Slack user ids or user groups to "
                "`[slack] senders` in config.toml."
            )
        return (
            "You are not allowed to send replies or close cases. Ask an admin to add you (or "
            "your user group) to `[slack] senders`."
        )


def build_bot(settings: Settings, engine: sa.Engine) -> SlackBot | None:
    """The bot when `[slack]` has a bot token and a care channel; None otherwise."""
    from triage.slack.client import make_slack_client

    if not settings.slack.bot_token or not settings.slack.care_channel:
        return None
    return SlackBot(settings, engine, make_slack_client(settings.slack))


def notify_cycle(notifier: Notifier) -> None:
    """One pass of the notify stage: new cards, SLA reminders, then send the outbox."""
    notifier.enqueue_cards()
    notifier.check_sla()
    notifier.flush()


def _option(value: str, label: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": label}, "value": value}


def _errors(block: str, message: str) -> dict[str, Any]:
    return {"response_action": "errors", "errors": {block: message[:150]}}
