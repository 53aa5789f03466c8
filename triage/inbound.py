"""What every HTTP endpoint does before it trusts a request: a capped body, a replay memory.

Shared by the webhook endpoint (triage/server.py) and Slack's (triage/slack/transport.py).
"""

from __future__ import annotations

import heapq
import threading

from starlette.requests import Request

from triage.clock import utcnow

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
