"""The Slack bot: what each button, modal, slash command and App Home visit does.

Transports (triage/slack/transport.py: the HTTP endpoint on `triage serve`, Socket Mode) hand
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
    EXPAND_DIGEST,
    MARK_REPLIED,
    card_blocks,
    card_text,
)
from triage.slack.home import home_view
from triage.slack.text import escape, link
from triage.store import Case, DismissReason, session_scope
from triage.store.queries import audit, case_with_details, set_paused

log = logging.getLogger(__name__)

EDIT_MODAL = "triage.edit_modal"
REPLY_BLOCK, REPLY_INPUT = "reply", "text"
CHOICE_BLOCK, CHOICE_INPUT = "choice", "action"
# How long a user group's member list is trusted before it is read again.
GROUP_CACHE_SECONDS = 300.0
# Actions that change what goes out or who owns a case: only `[slack] senders` may take them.
SENDER_ACTIONS = {
    APPROVE: "approve",
    EDIT: "edit",
    ASSIGN: "assign",
    ESCALATE: "escalate",
    DISMISS: "dismiss",
    MARK_REPLIED: "mark_replied",
}
HELP = (
    "*/triage* commands: `queue` (top open cases), `stats` (today), `connectors` (health), "
    "`pause NAME` / `resume NAME` (admins), `report 7d` (the sentiment report here; 24h..90d)"
)


class MalformedRequest(ValueError):
    """A request that is not shaped the way Slack sends it; transports answer 400."""


def as_object(value: Any, what: str) -> dict[str, Any]:
    """`value` if it is a JSON object, {} if it is missing; else MalformedRequest."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedRequest(f"{what} is a {type(value).__name__}, not an object")
    return value


def as_text(value: Any, what: str) -> str:
    """`value` if it is a string, "" if it is missing; else MalformedRequest."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedRequest(f"{what} is a {type(value).__name__}, not a string")
    return value


def dig(value: Any, *path: str) -> Any:
    """`value[path[0]][path[1]]...`, each step an object (None if a key is missing)."""
    for depth, key in enumerate(path):
        value = as_object(value, ".".join(path[:depth]) or "payload").get(key)
    return value


def case_number(text: str) -> int | None:
    """The case id in a button's value, or None when it is not a plain number."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


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
        """A button, menu or modal submission; MalformedRequest if it is not shaped like one."""
        kind = dig(payload, "type")
        user = as_text(dig(payload, "user", "id"), "user.id")
        if kind in ("block_actions", "view_submission") and not 0 < len(user) <= 64:
            raise MalformedRequest("user.id is missing or too long")
        if kind == "block_actions":
            channel = as_text(dig(payload, "channel", "id"), "channel.id") or as_text(
                dig(payload, "container", "channel_id"), "container.channel_id"
            )
            actions = payload.get("actions") or []
            if not isinstance(actions, list):
                raise MalformedRequest(f"actions is a {type(actions).__name__}, not a list")
            trigger_id = as_text(payload.get("trigger_id"), "trigger_id") or None
            # Every action is checked before any runs, so a malformed one changes nothing.
            works = [
                self._action(as_object(action, "an action"), user, channel, trigger_id)
                for action in actions
            ]
            todo = [work for work in works if work is not None]
            return Ack(work=(lambda: [work() for work in todo]) if todo else None)
        if kind == "view_submission":
            view = as_object(payload.get("view"), "view")
            if view.get("callback_id") == EDIT_MODAL:
                return self._edit_submitted(view, user)
        return Ack()

    def _action(
        self, action: dict[str, Any], user: str, channel: str, trigger_id: str | None
    ) -> Callable[[], None] | None:
        action_id = as_text(action.get("action_id"), "action_id")
        if action_id == DISMISS:
            value = as_text(dig(action, "selected_option", "value"), "selected_option.value")
            case_text, _, reason = value.partition(":")
            dismissed = case_number(case_text)
            if dismissed is None:
                return None
            return self._gated(
                DISMISS,
                dismissed,
                user,
                channel,
                lambda: self._dismiss(dismissed, reason, user, channel),
            )
        if action_id == EXPAND_DIGEST:
            key = as_text(action.get("value"), "value")
            if not key.startswith("digest:"):
                return None
            # Anyone in the channel may see the cases as cards; acting on them is gated as usual.
            return lambda: log.info(
                "%s asked for the %d cards of %s", user, self.notifier.expand_digest(key), key
            )
        case_id = case_number(as_text(action.get("value"), "value"))
        if case_id is None:
            return None
        handlers: dict[str, Callable[[], None]] = {
            APPROVE: lambda: self._approve(case_id, user, channel),
            EDIT: lambda: self._open_editor(case_id, user, channel, trigger_id),
            ASSIGN: lambda: self._assign(case_id, user, channel),
            ESCALATE: lambda: self._escalate(case_id, user, channel),
            MARK_REPLIED: lambda: self._mark_replied(case_id, user, channel),
        }
        if action_id not in handlers:
            return None  # OPEN is a link button: Slack opens the URL itself
        return self._gated(action_id, case_id, user, channel, handlers[action_id])

    def _gated(
        self, action_id: str, case_id: int, user: str, channel: str, handler: Callable[[], None]
    ) -> Callable[[], None]:
        """`handler`, run only for a sender; anyone else is refused and nothing changes."""

        def work() -> None:
            # Checked in the work, not before the ack: a user group lookup may call Slack.
            if self.may_send(user):
                handler()
            else:
                self._refuse(SENDER_ACTIONS[action_id], case_id, user, channel)

        return work

    def _refuse(
        self, action: str, case_id: int, user: str, channel: str, *, tell: bool = True
    ) -> None:
        """Audit a non-sender's attempt at `action` and, unless the modal said so, tell them."""
        log.info("refused %s on case %s by %s: not in [slack] senders", action, case_id, user)
        with session_scope(self.engine) as session:
            known = session.get(Case, case_id) is not None
            audit(
                session,
                actor=user,
                action="refused",
                case_id=case_id if known else None,
                after=action,
                detail={"why": "not in [slack] senders", "case": case_id},
            )
        if tell:
            self._say(channel, user, self._not_a_sender())
            self.notifier.flush()

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
        meta = as_object(
            json.loads(as_text(view.get("private_metadata"), "private_metadata") or "{}"),
            "private_metadata",
        )
        case_id = case_number(str(meta.get("case", "")))
        if case_id is None:
            raise MalformedRequest("private_metadata names no case")
        channel = as_text(meta.get("channel"), "private_metadata.channel")
        values = dig(view, "state", "values")
        text = as_text(dig(values, REPLY_BLOCK, REPLY_INPUT, "value"), "the reply")
        choice = as_text(
            dig(values, CHOICE_BLOCK, CHOICE_INPUT, "selected_option", "value"), "the choice"
        )
        choice = choice or "save"
        if not self.may_send(user):
            # Saving matters as much as sending: a sender's Approve sends the saved draft.
            block = CHOICE_BLOCK if choice == "send" else REPLY_BLOCK
            action = "edit_send" if choice == "send" else "edit_save"
            return Ack(
                body=_errors(block, self._not_a_sender()),
                work=lambda: self._refuse(action, case_id, user, channel, tell=False),
            )
        with session_scope(self.engine) as session:
            found = case_with_details(session, case_id=case_id)
        if found is None:
            return Ack(body=_errors(REPLY_BLOCK, "This case no longer exists."))
        mention = found[1]
        if choice == "send":
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
        """Events API callbacks: App Home opened; MalformedRequest if not shaped like one."""
        event = as_object(event, "event")
        if event.get("type") == "app_home_opened" and event.get("tab", "home") == "home":
            user = as_text(event.get("user"), "event.user")
            if not 0 < len(user) <= 64:
                raise MalformedRequest("event.user is missing or too long")
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
            "You are not allowed to send replies or change cases. Ask an admin to add you (or "
            "your user group) to `[slack] senders`."
        )


def build_bot(settings: Settings, engine: sa.Engine) -> SlackBot | None:
    """The bot when `[slack]` has a bot token and a care channel; None otherwise."""
    from triage.slack.client import make_slack_client

    if not settings.slack.bot_token or not settings.slack.care_channel:
        return None
    return SlackBot(settings, engine, make_slack_client(settings.slack))


def _option(value: str, label: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": label}, "value": value}


def _errors(block: str, message: str) -> dict[str, Any]:
    return {"response_action": "errors", "errors": {block: message[:150]}}
