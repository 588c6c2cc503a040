"""Batched writes of requests and Gateway-reported security events.

On PostgreSQL requests go in with one ``COPY … FROM STDIN`` per batch (text format, built in memory); elsewhere
(SQLite for a first run) with ``bulk_create``. Never a row-by-row save: this is the intake's hot path.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from django.db import connection

from logpipeline.events import LogEvent
from logpipeline.models import RequestLog, SecurityEvent

COLUMNS = ("gateway_instance", "timestamp", "request_id", "client_ip", "method", "host", "uri", "route",
           "status_code", "response_time_ms", "bytes_sent", "bytes_received", "user_agent", "headers", "waf_action",
           "waf_rule_id", "metadata")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": ""})
_seconds: dict[int, str] = {}


def _copy_text(value: str) -> str:
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value or "\x00" in value:
        return value.translate(_ESCAPES)
    return value


def _same(value: str) -> str:
    return value


def _copy_time(ts: float) -> str:
    whole = int(ts)
    prefix = _seconds.get(whole)
    if prefix is None:
        if len(_seconds) > 4096:
            _seconds.clear()
        prefix = _seconds[whole] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole))
    return f"{prefix}.{int((ts - whole) * 1e6):06d}+00"


def _json(value: Mapping[str, object]) -> str:
    if not value:
        return "{}"
    # jsonb refuses \u0000
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("\\u0000", "")


def _num(value: object) -> str:
    return "\\N" if value is None else str(value)


def store_requests(events: list[LogEvent]) -> int:
    """Insert request events into RequestLog in one statement; returns the number of rows."""
    if not events:
        return 0
    if connection.vendor != "postgresql":
        RequestLog.objects.bulk_create([_model(e) for e in events], batch_size=500)
        return len(events)
    buffer = io.StringIO()
    write = buffer.write
    for e in events:
        headers, metadata = _json(e.headers), _json(e.metadata)
        free = (e.instance + e.request_id + e.method + e.host + e.uri + e.route + e.user_agent + headers + e.waf_action
                + e.waf_rule_id + metadata)
        escape = _copy_text if ("\\" in free or "\t" in free or "\n" in free or "\r" in free
                                or "\x00" in free) else _same
        write("\t".join((
            escape(e.instance), _copy_time(e.ts), escape(e.request_id), e.client_ip or "\\N", escape(e.method),
            escape(e.host), escape(e.uri), escape(e.route),
            _num(e.status if e.status is None or 0 <= e.status <= 32767 else None), _num(e.response_time_ms),
            _num(e.bytes_sent), _num(e.bytes_received), escape(e.user_agent), escape(headers), escape(e.waf_action),
            escape(e.waf_rule_id), escape(metadata),
        )))
        write("\n")
    # JSON input may carry lone surrogates ("\ud800"): replaced, never a failed batch
    data = io.BytesIO(buffer.getvalue().encode("utf-8", errors="replace"))
    table = RequestLog._meta.db_table
    with connection.cursor() as cursor:
        cursor.copy_expert(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN", data)
    return len(events)


def _model(e: LogEvent) -> RequestLog:
    return RequestLog(
        gateway_instance=e.instance, timestamp=datetime.fromtimestamp(e.ts, UTC), request_id=e.request_id,
        client_ip=e.client_ip, method=e.method, host=e.host, uri=e.uri.replace("\x00", ""), route=e.route,
        status_code=e.status, response_time_ms=e.response_time_ms, bytes_sent=e.bytes_sent,
        bytes_received=e.bytes_received, user_agent=e.user_agent.replace("\x00", ""), headers=e.headers,
        waf_action=e.waf_action, waf_rule_id=e.waf_rule_id, metadata=e.metadata)


def _clean(text: str) -> str:
    return text.replace("\x00", "").encode("utf-8", errors="replace").decode("utf-8")


def store_security_events(events: list[LogEvent]) -> int:
    """The Gateway's own WAF lines, as SecurityEvent rows (one INSERT per batch)."""
    if not events:
        return 0
    rows = [
        SecurityEvent(
            timestamp=datetime.fromtimestamp(e.ts, UTC), gateway_instance=e.instance, event_type=e.event_type,
            severity="medium" if e.event_type == "waf_block" else "low", client_ip=e.client_ip,
            rule_id=e.waf_rule_id, subject=e.client_ip or "", description=_clean(e.message)[:1000],
            details={"level": e.level, **e.metadata})
        for e in events
    ]
    SecurityEvent.objects.bulk_create(rows, batch_size=500)
    return len(rows)
