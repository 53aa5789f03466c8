"""How Slack reaches the bot: an HTTP endpoint (signed requests) or Socket Mode (no public URL).

Both answer at once with the bot's `Ack.body` and run `Ack.work` afterwards, so Slack gets its
answer within 3 seconds however long a reply to a platform takes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from slack_sdk import WebClient
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from triage.slack.bot import Ack, SlackBot
from triage.slack.verify import SignatureError, verify

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


def dispatch(bot: SlackBot, body: bytes, content_type: str) -> Ack:
    """Route one verified request body (events, interactivity or a slash command) to the bot."""
    if content_type.startswith("application/json"):
        envelope = json.loads(body or b"{}")
        if envelope.get("type") == "url_verification":
            return Ack(body={"challenge": envelope.get("challenge", "")})
        if envelope.get("type") == "event_callback":
            return bot.event(envelope.get("event") or {})
        return Ack()
    form = {key: values[-1] for key, values in parse_qs(body.decode("utf-8")).items()}
    if "payload" in form:
        return bot.interaction(json.loads(form["payload"]))
    if "command" in form:
        return bot.command(form)
    return Ack()


def slack_routes(bot: SlackBot, signing_secret: str) -> list[Route]:
    """`POST /slack/events` for Events API, interactivity and slash commands."""

    async def events(request: Request) -> Response:
        body = await request.body()
        try:
            verify(signing_secret, request.headers, body)
        except SignatureError as exc:
            log.warning("refused a request to %s: %s", EVENTS_PATH, exc)
            return PlainTextResponse(f"invalid request: {exc}", status_code=401)
        try:
            ack = dispatch(bot, body, request.headers.get("content-type", ""))
        except (ValueError, KeyError) as exc:
            return PlainTextResponse(f"unreadable request: {exc}", status_code=400)
        task = BackgroundTask(_run, ack.work) if ack.work else None
        if ack.body is None:
            return Response(status_code=200, background=task)
        return JSONResponse(ack.body, background=task)

    return [Route(EVENTS_PATH, events, methods=["POST"])]


def _run(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:  # a failed action must not take the server down
        log.exception("a Slack action failed")


def socket_mode_listener(bot: SlackBot) -> Callable[[Any, SocketModeRequest], None]:
    """The Socket Mode request listener: acknowledge with the bot's answer, then work."""

    def listener(client: Any, request: SocketModeRequest) -> None:
        payload = request.payload if isinstance(request.payload, dict) else {}
        if request.type == "events_api":
            ack = bot.event(payload.get("event") or {})
        elif request.type == "interactive":
            ack = bot.interaction(payload)
        elif request.type == "slash_commands":
            ack = bot.command({key: str(value) for key, value in payload.items()})
        else:
            ack = Ack()
        client.send_socket_mode_response(
            SocketModeResponse(envelope_id=request.envelope_id, payload=ack.body)
        )
        if ack.work:
            _run(ack.work)

    return listener


def run_socket_mode(bot: SlackBot, app_token: str, web_client: WebClient) -> SocketModeClient:
    """Connect over Socket Mode in background threads; close the returned client to stop."""
    client = SocketModeClient(app_token=app_token, web_client=web_client)
    client.socket_mode_request_listeners.append(socket_mode_listener(bot))
    client.connect()
    log.info("connected to Slack over Socket Mode")
    return client
