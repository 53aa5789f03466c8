"""`triage serve`: the HTTP endpoints: inbound webhooks, and Slack's events when configured.

POST /webhooks/{name}   mentions pushed by another tool (connectors/webhook.py); 202
POST /slack/events      Slack's events, interactivity and /triage (triage/slack/transport.py)
GET  /healthz           "ok", for load balancers and container health checks
"""

from __future__ import annotations

import heapq
import logging
import threading

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
from triage.clock import utcnow
from triage.config import Settings
from triage.domain import NewMention
from triage.store import session_scope
from triage.store.queries import get_state, record_run, save_batch

log = logging.getLogger(__name__)

# Far more than one process sees in five minutes; past it the soonest-expiring are forgotten.
MAX_REMEMBERED = 100_000


class BodyTooLarge(Exception):
    """The request body passed the endpoint's cap; nothing more of it was read."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read as it streams in; BodyTooLarge as soon as it passes `limit` bytes."""
    # Unauthenticated callers reach this, so stop early instead of buffering first: a declared
    # length is trusted only to refuse sooner, and chunked bodies are counted as they arrive.
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 15 or int(declared) > limit):
        raise BodyTooLarge(f"body larger than {limit:,} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body larger than {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class SeenSignatures:
    """Signatures already accepted, each kept until its timestamp would fail the age check.

    Per process and in memory, which is enough for the one `triage serve` process triage runs:
    a signature only needs remembering while its timestamp is inside the 5-minute window. A
    restart forgets them (a request signed just before it could run once more), and several
    processes behind a load balancer would each need the others' memory: that needs a table.
    """

    def __init__(self, *, limit: int = MAX_REMEMBERED) -> None:
        self._until: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        self._limit = limit
        self._lock = threading.Lock()

    def first_use(self, signature: str, *, until: float, now: float | None = None) -> bool:
        """Remember `signature` until `until` (unix seconds); False if it is already known."""
        now = utcnow().timestamp() if now is None else now
        with self._lock:
            self._expire(now)
            if signature in self._until:
                return False
            while len(self._until) >= self._limit:
                self._drop_soonest()
            self._until[signature] = until
            heapq.heappush(self._expiry, (until, signature))
            return True

    def forget(self, signature: str) -> None:
        """Accept `signature` once more (its request failed on our side, the sender may retry)."""
        with self._lock:
            self._until.pop(signature, None)

    def __len__(self) -> int:
        return len(self._until)

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            self._drop_soonest()

    def _drop_soonest(self) -> None:
        until, signature = heapq.heappop(self._expiry)
        # A forgotten and re-accepted signature has a newer entry; drop only the matching one.
        if self._until.get(signature) == until:
            del self._until[signature]


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
