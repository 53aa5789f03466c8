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

from triage.inbound import BodyTooLarge, SeenSignatures, read_body
from triage.slack.bot import Ack, MalformedRequest, SlackBot, as_object, as_text
from triage.slack.verify import MAX_AGE_SECONDS, SignatureError, verify

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
# Slack's events, button clicks and modal submissions are a few kilobytes (a modal's state with
# a 10,000-character reply stays far below this); anything bigger is not from Slack.
MAX_BODY_BYTES = 1_000_000


def dispatch(bot: SlackBot, body: bytes, content_type: str) -> Ack:
    """Route one verified request body (events, interactivity or a slash command) to the bot.

    MalformedRequest (a ValueError) when the body is not shaped the way Slack sends it.
    """
    if content_type.startswith("application/json"):
        envelope = as_object(json.loads(body or b"{}"), "the body")
        if envelope.get("type") == "url_verification":
            return Ack(body={"challenge": as_text(envelope.get("challenge"), "challenge")})
        if envelope.get("type") == "event_callback":
            return bot.event(as_object(envelope.get("event"), "event"))
        return Ack()
    form = {key: values[-1] for key, values in parse_qs(body.decode("utf-8")).items()}
    if "payload" in form:
        return bot.interaction(as_object(json.loads(form["payload"]), "payload"))
    if "command" in form:
        return bot.command(form)
    return Ack()


def slack_routes(bot: SlackBot, signing_secret: str) -> list[Route]:
    """`POST /slack/events` for Events API, interactivity and slash commands."""
    seen = SeenSignatures()

    async def events(request: Request) -> Response:
        try:
            body = await read_body(request, MAX_BODY_BYTES)
        except BodyTooLarge as exc:
            return PlainTextResponse(str(exc), status_code=413)
        try:
            stamp = verify(signing_secret, request.headers, body)
        except SignatureError as exc:
            log.warning("refused a request to %s: %s", EVENTS_PATH, exc)
            return PlainTextResponse(f"invalid request: {exc}", status_code=401)
        signature = request.headers.get("x-slack-signature", "")
        if not seen.first_use(signature, until=stamp + MAX_AGE_SECONDS):
            log.warning("refused a replayed request to %s", EVENTS_PATH)
            return PlainTextResponse(
                "invalid request: this request was already received (replay?)", status_code=401
            )
        try:
            ack = dispatch(bot, body, request.headers.get("content-type", ""))
        except (ValueError, KeyError) as exc:
            # Signed by Slack yet not shaped like Slack's payloads: say so, without a traceback.
            log.warning("unreadable request to %s: %s", EVENTS_PATH, str(exc)[:200])
            return PlainTextResponse(f"unreadable request: {str(exc)[:200]}", status_code=400)
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
        try:
            if request.type == "events_api":
                ack = bot.event(as_object(payload.get("event"), "event"))
            elif request.type == "interactive":
                ack = bot.interaction(payload)
            elif request.type == "slash_commands":
                ack = bot.command({key: str(value) for key, value in payload.items()})
            else:
                ack = Ack()
        except MalformedRequest as exc:
            log.warning("unreadable Socket Mode request: %s", str(exc)[:200])
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
