"""The HTTP door: ``POST /logs/ingest`` with newline-delimited JSON as Vector's and Fluent Bit's HTTP sinks send it.

- Auth: ``Authorization: Bearer <token>``, one token per Gateway instance (``manage.py log_intake_token
  INSTANCE``); events are tagged with that instance. 401 without a valid token.
- Body: ndjson (one object a line: a JSON access-log record, a ``LogEntry``, or a shipper envelope
  ``{"message": "<raw line>"}`` / ``{"log": "<raw line>"}``), or a JSON array of such objects, or raw log lines.
  ``Content-Encoding: gzip`` is accepted. ``?format=`` picks the parser (default ``auto``). Larger than
  ``LOG_INTAKE_MAX_BODY_BYTES`` once decompressed: 413.
- Backpressure: at most ``LOG_INTAKE_MAX_INFLIGHT`` batches are ingested at once across every web process (slots
  in a Redis sorted set, so a crashed process's slot times out); beyond that 429 with ``Retry-After``. Nothing is
  buffered: a batch is stored before its 200 is sent, so what the sender sees acknowledged is stored.
- Answer: 200 with the counts; malformed lines are counted and sampled but not an error (a retry would not fix
  them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
import zlib

import redis
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from logpipeline.models import IntakeSource
from logpipeline.parsers import FORMATS
from logpipeline.services import ingest

logger = logging.getLogger(__name__)

SLOT_KEY = "logpipeline:intake:slots"
SLOT_TIMEOUT_SECONDS = 300
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[3]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
_client: redis.Redis | None = None


class BodyTooLarge(Exception):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "lpt_" + secrets.token_urlsafe(32)


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    return _client


def _read_body(request: HttpRequest, limit: int) -> bytes:
    declared = request.META.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = request.read(limit + 1)
    if len(body) > limit:
        raise BodyTooLarge
    encoding = request.headers.get("Content-Encoding", "identity").lower().strip()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
    inflater = zlib.decompressobj(wbits=47 if encoding != "deflate" else 15)  # 47: gzip or zlib header
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ValueError(f"bad {encoding} body: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge
    return out


def split_records(body: bytes) -> list[bytes | dict[str, object]]:
    """ndjson lines (kept as bytes: ingest checks size and UTF-8 per line), or the objects of a JSON array."""
    stripped = body.lstrip()
    if stripped[:1] == b"[":
        try:
            items = json.loads(stripped)
        except ValueError:
            items = None
        if isinstance(items, list):
            return [item if isinstance(item, dict) else json.dumps(item).encode() for item in items]
    return [line for line in body.split(b"\n") if line.strip()]


@csrf_exempt
def intake(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return JsonResponse({"error": "POST ndjson here"}, status=405, headers={"Allow": "POST"})
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    source = (IntakeSource.objects.filter(kind="http", token_sha256=hash_token(token), enabled=True).first()
              if token else None)
    if source is None:
        return JsonResponse({"error": "a valid Bearer token is required"}, status=401,
                            headers={"WWW-Authenticate": 'Bearer realm="logs"'})
    fmt = request.GET.get("format", "auto")
    if fmt not in FORMATS:
        return JsonResponse({"error": f"format must be one of {', '.join(FORMATS)}"}, status=400)

    slot = secrets.token_hex(8)
    client = _redis()
    acquired = client.eval(_ACQUIRE, 1, SLOT_KEY, time.time(), settings.LOG_INTAKE_MAX_INFLIGHT,
                           SLOT_TIMEOUT_SECONDS, slot)
    if not acquired:
        retry = str(settings.LOG_INTAKE_RETRY_AFTER_SECONDS)
        return JsonResponse({"error": "intake is busy, retry later"}, status=429, headers={"Retry-After": retry})
    try:
        try:
            body = _read_body(request, settings.LOG_INTAKE_MAX_BODY_BYTES)
        except BodyTooLarge:
            return JsonResponse({"error": f"body larger than {settings.LOG_INTAKE_MAX_BODY_BYTES} bytes"},
                                status=413)
        except ValueError as exc:
            return JsonResponse({"error": str(exc)}, status=415)
        result = ingest("http", source.instance_id, split_records(body), fmt)
    finally:
        client.zrem(SLOT_KEY, slot)
    return JsonResponse({
        "accepted": result.accepted, "stored": result.stored, "security_events": result.security_events,
        "skipped": result.skipped, "malformed": result.malformed,
        "samples": [{"reason": s.reason, "excerpt": s.excerpt[:120]} for s in result.samples[:5]],
    })
