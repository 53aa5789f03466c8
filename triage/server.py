"""`triage serve`: the HTTP endpoints: inbound webhooks, and Slack's events when configured.

POST /webhooks/{name}   mentions pushed by another tool (connectors/webhook.py); 202
POST /slack/events      Slack's events, interactivity and /triage (triage/slack/transport.py)
GET  /healthz           "ok", for load balancers and container health checks
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from connectors.base import PayloadError
from connectors.webhook import (
    MAX_AGE_SECONDS,
    MAX_BODY_BYTES,
    SIGNATURE_HEADER,
    SignatureRejected,
    WebhookConnector,
)
from triage.config import Settings
from triage.domain import NewMention
from triage.inbound import BodyTooLarge, SeenSignatures, read_body
from triage.store import session_scope
from triage.store.queries import get_state, record_run, save_batch

log = logging.getLogger(__name__)


def create_app(settings: Settings, engine: sa.Engine, *, bot: object | None = None) -> Starlette:
    """The app with every route this configuration needs."""
    routes = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/webhooks/{name}", _webhook_endpoint(settings, engine), methods=["POST"]),
    ]
    if bot is not None and settings.slack.signing_secret:
        from triage.slack.transport import slack_routes

        routes += slack_routes(bot, settings.slack.signing_secret)  # type: ignore[arg-type]
    return Starlette(routes=routes)


async def _healthz(_request: Request) -> Response:
    return PlainTextResponse("ok")


def _webhook_endpoint(settings: Settings, engine: sa.Engine):
    hooks = {
        connector.name: connector
        for connector in settings.enabled_connectors()
        if connector.type == WebhookConnector.type
    }

    seen = SeenSignatures()

    async def receive(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in hooks:
            return PlainTextResponse(f"no enabled webhook named {name!r}", status_code=404)
        try:
            body = await read_body(request, MAX_BODY_BYTES)
        except BodyTooLarge:
            return PlainTextResponse("body larger than 1 MB", status_code=413)
        connector = WebhookConnector(hooks[name])
        try:
            stamp = connector.verify(body, request.headers)
        except SignatureRejected as exc:
            log.warning("webhook %s refused a request: %s", name, exc)
            return PlainTextResponse(f"unauthorized: {exc}", status_code=401)
        # Body-only signatures carry no time, so they cannot be remembered for a bounded while;
        # a replay of one only re-delivers mentions the store already has.
        key = f"{name}:{request.headers.get(SIGNATURE_HEADER, '')}"
        if stamp is not None and not seen.first_use(key, until=stamp + MAX_AGE_SECONDS):
            log.warning("webhook %s refused a replayed request", name)
            return PlainTextResponse(
                "unauthorized: this request was already received (replay?)", status_code=401
            )
        try:
            mentions = connector.parse(body)
        except PayloadError as exc:
            return PlainTextResponse(f"bad request: {exc}", status_code=400)
        try:
            new = await run_in_threadpool(_store, engine, name, mentions)
        except Exception:
            seen.forget(key)  # nothing was stored: the sender's retry must get through
            raise
        return JSONResponse({"received": len(mentions), "new": new}, status_code=202)

    return receive


def _store(engine: sa.Engine, name: str, mentions: list[NewMention]) -> int:
    with session_scope(engine) as session:
        cursor = get_state(session, name=name).cursor
        new = save_batch(session, source=name, mentions=mentions, cursor=cursor)
        record_run(session, name=name, error=None)
    return new
