"""Local HTTP servers that record every request (Python's http.server in a thread): receivers for webhooks,
Slack and PagerDuty, and a feed server that honours ETag / If-Modified-Since. No mocks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the server answered
    bytes_sent: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    """``answers``: statuses to answer POSTs with, in order (then ``default_status``). ``feed``: what GET serves."""

    requests: list[Recorded] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    default_status: int = 202
    feed_body: bytes = b""
    feed_etag: str = '"v1"'
    feed_last_modified: str = "Mon, 30 Nov 2026 10:00:00 GMT"
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def posts(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]

    def gets(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == "GET"]

    def serve_feed(self, body: str | bytes, etag: str) -> None:
        self.feed_body = body.encode() if isinstance(body, str) else body
        self.feed_etag = etag


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with recorder.lock:
                status = recorder.answers.pop(0) if recorder.answers else recorder.default_status
                recorder.requests.append(Recorded("POST", self.path, dict(self.headers.items()), body, status))
            reply = b'{"status":"success","message":"Event processed"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def do_GET(self) -> None:
            headers = dict(self.headers.items())
            unchanged = (self.headers.get("If-None-Match") == recorder.feed_etag
                         or (not self.headers.get("If-None-Match")
                             and self.headers.get("If-Modified-Since") == recorder.feed_last_modified))
            body = b"" if unchanged else recorder.feed_body
            status = 304 if unchanged else 200
            with recorder.lock:
                recorder.requests.append(Recorded("GET", self.path, headers, b"", status, len(body)))
            self.send_response(status)
            self.send_header("ETag", recorder.feed_etag)
            self.send_header("Last-Modified", recorder.feed_last_modified)
            if status == 200:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

    return Handler


@pytest.fixture
def receiver() -> Iterator[Recorder]:
    recorder = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    recorder.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


# The PagerDuty Events API v2 request schema, from the public spec (developer.pagerduty.com, "Send an Alert
# Event" / "Acknowledge and Resolve"): routing_key (32 characters for real keys; any non-empty string here),
# event_action one of trigger/acknowledge/resolve, dedup_key (required for acknowledge/resolve, at most 255),
# payload required for trigger with summary (<= 1024), source, severity (critical/error/warning/info) and the
# optional timestamp (ISO 8601), component, group, class, custom_details; optional top-level client, client_url,
# links, images.
PD_ACTIONS = {"trigger", "acknowledge", "resolve"}
PD_SEVERITIES = {"critical", "error", "warning", "info"}
PD_TOP = {"routing_key", "event_action", "dedup_key", "payload", "client", "client_url", "links", "images"}
PD_PAYLOAD = {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}


def pagerduty_schema_errors(event: Any) -> list[str]:
    errors: list[str] = []
    if not isinstance(event, dict):
        return ["event is not a JSON object"]
    errors += [f"unknown top-level field {k!r}" for k in event if k not in PD_TOP]
    if not isinstance(event.get("routing_key"), str) or not event.get("routing_key"):
        errors.append("routing_key missing or not a string")
    action = event.get("event_action")
    if action not in PD_ACTIONS:
        errors.append(f"event_action {action!r} not one of {sorted(PD_ACTIONS)}")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not 0 < len(dedup) <= 255):
        errors.append("dedup_key must be a string of 1..255 characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append(f"{action} needs a dedup_key")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return errors + ["trigger needs a payload object"]
        errors += [f"unknown payload field {k!r}" for k in payload if k not in PD_PAYLOAD]
        for key in ("summary", "source", "severity"):
            if not isinstance(payload.get(key), str) or not payload.get(key):
                errors.append(f"payload.{key} missing")
        if len(payload.get("summary") or "") > 1024:
            errors.append("payload.summary longer than 1024")
        if payload.get("severity") not in PD_SEVERITIES:
            errors.append(f"payload.severity {payload.get('severity')!r} not one of {sorted(PD_SEVERITIES)}")
        if "custom_details" in payload and not isinstance(payload["custom_details"], dict | list | str):
            errors.append("payload.custom_details must be JSON")
    return errors
