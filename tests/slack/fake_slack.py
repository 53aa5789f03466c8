"""A local fake of the Slack Web API: real HTTP on 127.0.0.1, every request recorded.

It keeps posted messages per channel (with their metadata, for conversations.history and, for
thread replies, conversations.replies; both paginated like Slack's, `page_size` at a time), and can
be told to answer the next call of a method with a 429 and Retry-After, a 500, an error such as
channel_not_found, or to post the message and then answer 500 (a reply lost on the way back), and
to keep Slack's pace (`min_post_interval`: a post to a channel sooner than that gets a 429).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Call:
    method: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.time)
    status: int = 0  # the HTTP status it was answered with


@dataclass
class Fault:
    status: int = 200
    error: str | None = None
    retry_after: int | str | None = None
    # Carry the call out, then answer with the fault (the answer is lost, the effect is not).
    after_effect: bool = False


@dataclass
class FakeSlack:
    """State shared with the handler thread; read it from tests."""

    calls: list[Call] = field(default_factory=list)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    groups: dict[str, list[str]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # users.info: id -> real name
    # The external upload flow: file id -> (filename, bytes uploaded); completed shares.
    uploads: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    shared: list[dict[str, Any]] = field(default_factory=list)
    pins: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    base: str = ""
    # Most messages one conversations.history / conversations.replies page holds (Slack: 999).
    page_size: int = 999
    # Slack's pace: a post to a channel sooner than this after the last one gets a 429.
    min_post_interval: float = 0.0
    _last_post: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _clock: float = field(default_factory=time.time)

    def fail_next(self, method: str, fault: Fault) -> None:
        with self.lock:
            self.faults[method].append(fault)

    def calls_to(self, method: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.method == method]

    def handle(self, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], Fault | None]:
        with self.lock:
            fault = self.faults[method].popleft() if self.faults[method] else None
            if fault is not None and not fault.after_effect:
                return fault.status, {"ok": False, "error": fault.error or "fatal_error"}, fault
            if method == "chat.postMessage" and self.min_post_interval:
                now, channel = time.monotonic(), str(body.get("channel"))
                if now - self._last_post.get(channel, -1e9) < self.min_post_interval:
                    limited = Fault(status=429, error="ratelimited", retry_after=1)
                    return 429, {"ok": False, "error": "ratelimited"}, limited
                self._last_post[channel] = now
            result = self._effect(method, body)
            if fault is not None:
                return fault.status, {"ok": False, "error": fault.error or "fatal_error"}, fault
            return 200, result, None

    def _effect(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        channel = body.get("channel")
        if method in ("chat.postMessage", "chat.update") and not _valid_blocks(body):
            return {"ok": False, "error": "invalid_blocks"}
        if method == "auth.test":
            return {"ok": True, "user_id": "UBOT0001", "team_id": "T0001", "bot_id": "B0001"}
        if method in ("chat.postMessage", "chat.postEphemeral"):
            self._clock += 1
            ts = f"{self._clock:.6f}"
            message = {"type": "message", "ts": ts, **body}
            if method == "chat.postMessage":
                self.messages[channel].append(message)
                return {"ok": True, "channel": channel, "ts": ts, "message": message}
            return {"ok": True, "message_ts": ts}
        if method == "chat.update":
            for message in self.messages[channel]:
                if message["ts"] == body.get("ts"):
                    message.update({key: value for key, value in body.items() if key != "ts"})
                    return {"ok": True, "channel": channel, "ts": body["ts"]}
            return {"ok": False, "error": "message_not_found"}
        if method in ("pins.add", "pins.remove"):
            if not any(m["ts"] == body.get("timestamp") for m in self.messages[channel]):
                return {"ok": False, "error": "message_not_found"}
            pinned = self.pins[channel]
            if method == "pins.add":
                pinned.add(str(body["timestamp"]))
            else:
                pinned.discard(str(body["timestamp"]))
            return {"ok": True}
        if method == "files.getUploadURLExternal":
            file_id = f"F{len(self.uploads) + 1:07d}"
            self.uploads[file_id] = (str(body.get("filename")), b"")
            return {"ok": True, "upload_url": f"{self.base}upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = body.get("files")
            files = json.loads(files) if isinstance(files, str) else files or []
            missing = [f["id"] for f in files if not self.uploads.get(f["id"], ("", b""))[1]]
            if missing:
                return {"ok": False, "error": "file_upload_not_complete"}
            self.shared.append({**body, "files": files})
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}
        if method == "users.info":
            user = body.get("user", "")
            name = self.names.get(user)
            if name is None:
                return {"ok": False, "error": "user_not_found"}
            return {
                "ok": True,
                "user": {"id": user, "name": name.split()[0].lower(), "real_name": name,
                         "profile": {"real_name": name, "display_name": name.split()[0]}},
            }  # fmt: skip
        if method == "usergroups.users.list":
            return {"ok": True, "users": self.groups.get(body.get("usergroup", ""), [])}
        if method == "conversations.history":
            oldest = float(body.get("oldest") or 0)
            # Like Slack: newest first, and thread replies stay in their thread.
            found = [
                m
                for m in reversed(self.messages[channel])
                if float(m["ts"]) > oldest and m.get("thread_ts", m["ts"]) == m["ts"]
            ]
            return self._page(found, body)
        if method == "conversations.replies":
            thread = [
                m for m in self.messages[channel] if body.get("ts") in (m["ts"], m.get("thread_ts"))
            ]
            if not thread:
                return {"ok": False, "error": "thread_not_found"}
            return self._page(thread, body)
        return {"ok": True}

    def _page(self, found: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
        """One page of messages, with Slack's has_more and response_metadata.next_cursor."""
        include = str(body.get("include_all_metadata", "")).lower() in ("1", "true")
        start = int(str(body.get("cursor") or "offset:0").split(":")[1])
        size = min(int(body.get("limit") or 100), self.page_size)
        page = found[start : start + size]
        more = start + size < len(found)
        return {
            "ok": True,
            "messages": [
                m if include else {k: v for k, v in m.items() if k != "metadata"} for m in page
            ],
            "has_more": more,
            "response_metadata": {"next_cursor": f"offset:{start + size}" if more else ""},
        }


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        if self.path.startswith("/upload/"):
            self._upload(self.path.rsplit("/", 1)[-1])
            return
        method = self.path.rsplit("/", 1)[-1]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8")
        if self.headers.get("Content-Type", "").startswith("application/json"):
            body = json.loads(raw) if raw else {}
        else:
            body = {key: values[-1] for key, values in parse_qs(raw).items()}
        state = self.server.state
        call = Call(method, body, dict(self.headers))
        with state.lock:
            state.calls.append(call)
        status, answer, fault = state.handle(method, body)
        call.status, call.at = status, time.time()
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        if fault is not None and fault.retry_after is not None:
            self.send_header("Retry-After", str(fault.retry_after))
        self.end_headers()
        self.wfile.write(payload)

    def _upload(self, file_id: str) -> None:
        """Step two of the external upload flow: the raw bytes, posted to the upload URL."""
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        state = self.server.state
        with state.lock:
            known = file_id in state.uploads
            if known:
                state.uploads[file_id] = (state.uploads[file_id][0], data)
        answer = f"OK - {len(data)}".encode() if known else b"unknown file"
        self.send_response(200 if known else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeSlack


def start_fake_slack() -> tuple[_Server, str]:
    """Start the server on a free port; returns it and its API base URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = FakeSlack()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    server.state.base = f"http://{host}:{port}/"
    return server, f"http://{host}:{port}/api/"


def _valid_blocks(body: dict[str, Any]) -> bool:
    """Block Kit's message rules Slack enforces: at most 50 blocks, block ids unique."""
    blocks = body.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    ids = [block["block_id"] for block in blocks if "block_id" in block]
    return len(blocks) <= 50 and len(ids) == len(set(ids))
