"""Parsers: one line or record in, one ``LogEvent`` out (or None for a line that is neither a request nor a
security event, e.g. the Gateway's "server started"), or ``ParseError(reason)``.

Formats (``fmt``):

- ``nginx-combined``: ``$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
  "$http_referer" "$http_user_agent"``, optionally followed by ``"$http_x_forwarded_for"`` (nginx's ``main``).
- ``json``: one JSON object per line as nginx writes it with ``NGINX_JSON_LOG_FORMAT`` below (the format the
  reference agent configures); the usual alternative key names are accepted too (``remote_addr``/``client_ip``,
  ``request_uri``/``uri``/``path``, ``time``/``time_iso8601``/``timestamp``/``msec``, ``status``/``status_code``).
  A shipper's wrapper (Vector: ``{"message": "<raw line>", ...}``, Fluent Bit: ``{"log": "<raw line>", ...}``)
  is unwrapped and its line parsed by sniffing.
- ``gateway-entry``: the Gateway draft's ``LogEntry`` (FORMATS §e.2) as a dict with the proto's field names. Its
  ``timestamp`` unit is unspecified: seconds, ms, µs and ns are told apart by magnitude. A ``message`` that is a
  WAF line becomes a security event; an entry with neither a request nor a WAF message is skipped.
- ``gateway-text``: the Gateway's tracing output (FORMATS §d): ``<RFC 3339> <LEVEL> <message> [field=value…]``,
  ANSI colours allowed. ``Request blocked by WAF: …``, ``Request rate limited: …``, ``WAF rule <id> triggered:
  …`` and ``ModSecurity triggered: <msg> (Rule ID: <id>)`` become security events; other lines are skipped.
- ``auto``: dicts are a ``LogEntry`` when they carry ``gateway_id`` or ``source_ip``, else ``json``; text is
  ``json`` when it starts with ``{``, ``gateway-text`` when it starts with a timestamp, else ``nginx-combined``.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from logpipeline.events import LogEvent, ParseError, ProxyTrust, check_timestamp, enrich, normalise_ip

FORMATS = ("auto", "nginx-combined", "json", "gateway-entry", "gateway-text")

# The JSON access log the reference agent configures in its nginx (docs/logs.md). escape=json makes every value a
# valid JSON string; the numeric variables nginx always prints as numbers are written unquoted.
NGINX_JSON_LOG_FORMAT = (
    "log_format gateway_json escape=json '{"
    '"time":"$time_iso8601","msec":$msec,"remote_addr":"$remote_addr",'
    '"x_forwarded_for":"$http_x_forwarded_for","method":"$request_method","host":"$host",'
    '"request_uri":"$request_uri","protocol":"$server_protocol","status":$status,'
    '"body_bytes_sent":$body_bytes_sent,"request_length":$request_length,"request_time":$request_time,'
    '"referer":"$http_referer","user_agent":"$http_user_agent","request_id":"$request_id",'
    '"upstream_status":"$upstream_status","upstream_response_time":"$upstream_response_time"'
    "}';"
)

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                       "Dec"), start=1)}
_Q = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # a quoted field, backslash escapes allowed (unrolled: no backtracking)
_COMBINED = re.compile(
    r"^(\S+) \S+ (\S+) \[([^\]]{20,40})\] " + _Q + r" (\d{3}) (\d+|-) " + _Q + " " + _Q + r"(?: " + _Q + r")?"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GATEWAY_TEXT = re.compile(r"^(\d{4}-\d\d-\d\dT\S+)\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s+(.*)$")
_FIELD_IP = re.compile(r"\b(?:client_ip|source_ip|ip|remote_addr)=\"?([0-9A-Fa-f:.]+)")
_ANY_IPV4 = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3})\b")
_WAF_MESSAGES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Request blocked by WAF: (?P<reason>.*)"), "waf_block"),
    (re.compile(r"Request rate limited: (?P<reason>.*)"), "rate_limited"),
    (re.compile(r"WAF rule (?P<rule>\S+) triggered: (?P<reason>.*)"), "waf_rule"),
    (re.compile(r"ModSecurity triggered: (?P<reason>.*?) \(Rule ID: (?P<rule>[^)]*)\)"), "modsecurity"),
    (re.compile(r"ModSecurity rule (?P<rule>\S+) triggered: (?P<reason>.*)"), "modsecurity"),  # README's wording
]

_day_cache: dict[str, float] = {}


def _local_time(text: str) -> float:
    """``10/Oct/2000:13:55:36 -0700`` to epoch seconds (the day and zone part is cached: it rarely changes)."""
    day_key = text[:11] + text[20:]
    base = _day_cache.get(day_key)
    try:
        if base is None:
            day, mon, year = int(text[0:2]), _MONTHS[text[3:6]], int(text[7:11])
            sign, off_h, off_m = text[21], int(text[22:24]), int(text[24:26])
            if (text[2] != "/" or text[6] != "/" or text[11] != ":" or text[20] != " " or sign not in "+-"
                    or len(text) != 26 or not 1 <= day <= calendar.monthrange(year, mon)[1]):
                raise ValueError
            offset = (off_h * 3600 + off_m * 60) * (1 if sign == "+" else -1)
            base = float(calendar.timegm((year, mon, day, 0, 0, 0, 0, 0, 0)) - offset)
            if len(_day_cache) > 4096:
                _day_cache.clear()
            _day_cache[day_key] = base
        hour, minute, second = int(text[12:14]), int(text[15:17]), int(text[18:20])
        if hour > 23 or minute > 59 or second > 60 or text[14] != ":" or text[17] != ":":
            raise ValueError
    except (ValueError, KeyError, IndexError):
        raise ParseError("bad timestamp") from None
    return base + hour * 3600 + minute * 60 + second


def _iso_time(text: str) -> float:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ParseError("bad timestamp") from None
    if parsed.tzinfo is None:
        raise ParseError("timestamp without a time zone")
    return parsed.timestamp()


def _epoch_any_unit(value: float) -> float:
    """An epoch of unknown unit (the draft LogEntry says none): told apart by magnitude."""
    if value > 1e17:
        return value / 1e9
    if value > 1e14:
        return value / 1e6
    if value > 1e11:
        return value / 1e3
    return value


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "" or value == "-":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ParseError(f"not a number: {str(value)[:40]!r}") from None


def _float_or_none(value: Any) -> float | None:
    if value is None or value == "" or value == "-":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ParseError(f"not a number: {str(value)[:40]!r}") from None


def _scrub(value: Any) -> Any:
    """Strings from JSON may hold lone surrogates (``"\\ud800"``) no database or Redis accepts: replace them."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", errors="replace").decode("utf-8")
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


class Parser:
    """Parses records for one source; holds the proxy trust and the clock used to refuse future timestamps."""

    def __init__(self, instance: str, trust: ProxyTrust, now: float) -> None:
        self.instance = instance
        self.trust = trust
        self.now = now
        self.envelope_fmt = "auto"
        self.handlers: dict[str, Callable[[str], LogEvent | None]] = {
            "nginx-combined": self.nginx_combined, "json": self.json_line, "gateway-text": self.gateway_text,
            "gateway-entry": self.json_line,
        }

    def parse(self, record: Any, fmt: str) -> LogEvent | None:
        # a shipper's envelope ({"message": line} / {"log": line}) around a line of a text format is parsed as that
        self.envelope_fmt = fmt if fmt in ("nginx-combined", "gateway-text") else "auto"
        if isinstance(record, dict):
            record = _scrub(record)
            if fmt == "gateway-entry" or (fmt == "auto" and ("gateway_id" in record or "source_ip" in record)):
                return self.gateway_entry(record)
            return self.json_record(record)
        if not isinstance(record, str):
            raise ParseError("not text")
        if fmt in ("nginx-combined", "gateway-text") and record[:1] == "{":
            return self.json_line(record)
        return self.text(record, fmt)

    def text(self, line: str, fmt: str) -> LogEvent | None:
        line = line.rstrip("\r\n")
        if not line.strip():
            raise ParseError("empty line")
        if fmt == "auto":
            fmt = self.sniff(line)
        handler = self.handlers.get(fmt)
        if handler is None:
            raise ParseError(f"unknown format {fmt!r}")
        return handler(line)

    @staticmethod
    def sniff(line: str) -> str:
        head = line.lstrip()[:1]
        if head == "{":
            return "json"
        if _GATEWAY_TEXT.match(_ANSI.sub("", line[:64])) or line.startswith("\x1b["):
            return "gateway-text"
        return "nginx-combined"

    # --- nginx combined ---------------------------------------------------------------------------------------

    def nginx_combined(self, line: str) -> LogEvent:
        m = _COMBINED.match(line)
        if m is None:
            raise ParseError("not nginx combined")
        remote, user, time_local, request, status, size, referer, agent, xff = m.groups()
        peer = normalise_ip(remote)
        if peer is None:
            raise ParseError("remote_addr is not an IP address")
        ts = check_timestamp(_local_time(time_local), self.now)
        parts = request.split(" ")
        if len(parts) == 3:
            method, uri = parts[0], parts[1]
        elif len(parts) == 2:
            method, uri = parts  # HTTP/0.9
        else:
            method, uri = "", ""  # "-" or garbage nginx logged as a 400: still a request that happened
        event = LogEvent(
            instance=self.instance, ts=ts, client_ip=self.trust.client_ip(peer, xff) if xff else peer,
            method=method[:16], uri=uri, status=int(status), bytes_sent=None if size == "-" else int(size),
            user_agent="" if agent == "-" else agent, referer="" if referer == "-" else referer,
        )
        if user != "-":
            event.metadata["remote_user"] = user
        if xff and xff != "-":
            event.headers["X-Forwarded-For"] = xff
        if not method:
            event.metadata["request_line"] = request[:200]
        return enrich(event)

    # --- JSON access logs -------------------------------------------------------------------------------------

    def json_line(self, line: str) -> LogEvent | None:
        try:
            record = json.loads(line)
        except ValueError:
            raise ParseError("invalid JSON") from None
        if not isinstance(record, dict):
            raise ParseError("JSON that is not an object")
        record = _scrub(record)
        if "gateway_id" in record or "source_ip" in record:
            return self.gateway_entry(record)
        return self.json_record(record)

    def json_record(self, record: dict[str, Any]) -> LogEvent | None:
        wrapped = record.get("message", record.get("log"))
        if isinstance(wrapped, str) and not any(k in record for k in ("status", "status_code", "request_uri")):
            return self.text(wrapped, self.envelope_fmt)  # a shipper's envelope around a raw line
        if self.envelope_fmt != "auto":
            raise ParseError(f"a JSON object where {self.envelope_fmt} text was expected")
        ts = self._record_time(record)
        peer_raw = record.get("remote_addr", record.get("client_ip", record.get("source_ip")))
        peer = normalise_ip(str(peer_raw)) if peer_raw is not None else None
        if peer is None:
            raise ParseError("no client address")
        xff = record.get("x_forwarded_for", record.get("http_x_forwarded_for"))
        method = str(record.get("method", record.get("request_method", "")))
        uri = str(record.get("request_uri", record.get("uri", record.get("path", ""))))
        if not method and isinstance(record.get("request"), str):
            parts = record["request"].split(" ")
            if len(parts) >= 2:
                method, uri = parts[0], parts[1]
        request_time = _float_or_none(record.get("request_time"))
        latency = _float_or_none(record.get("response_time_ms", record.get("latency_ms")))
        event = LogEvent(
            instance=self.instance, ts=ts, client_ip=self.trust.client_ip(peer, xff if isinstance(xff, str) else None),
            method=method[:16], host=str(record.get("host", ""))[:253], uri=uri,
            status=_int_or_none(record.get("status", record.get("status_code"))),
            bytes_sent=_int_or_none(record.get("body_bytes_sent", record.get("bytes_sent"))),
            bytes_received=_int_or_none(record.get("request_length", record.get("bytes_received"))),
            response_time_ms=request_time * 1000.0 if request_time is not None else latency,
            user_agent=str(record.get("user_agent", record.get("http_user_agent", "")) or ""),
            referer=str(record.get("referer", "") or ""), request_id=str(record.get("request_id", "") or "")[:128],
            waf_action=str(record.get("waf_action", "") or "")[:16],
            waf_rule_id=str(record.get("waf_rule_id", "") or "")[:64],
        )
        if isinstance(xff, str) and xff:
            event.headers["X-Forwarded-For"] = xff
        for key in ("upstream_status", "upstream_response_time", "protocol"):
            if record.get(key):
                event.metadata[key] = str(record[key])[:100]
        return enrich(event)

    def _record_time(self, record: dict[str, Any]) -> float:
        if "msec" in record:
            ts = _float_or_none(record["msec"])
        elif "time" in record or "time_iso8601" in record or "timestamp" in record or "date" in record:
            raw = record.get("time", record.get("time_iso8601", record.get("timestamp", record.get("date"))))
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                ts = _epoch_any_unit(float(raw))
            elif isinstance(raw, str) and raw.replace(".", "", 1).isdigit():
                ts = _epoch_any_unit(float(raw))
            elif isinstance(raw, str):
                ts = _iso_time(raw)
            else:
                raise ParseError("bad timestamp")
        else:
            raise ParseError("no timestamp")
        if ts is None:
            raise ParseError("no timestamp")
        return check_timestamp(ts, self.now)

    # --- the Gateway draft's LogEntry ---------------------------------------------------------------------------

    def gateway_entry(self, record: dict[str, Any]) -> LogEvent | None:
        raw_ts = record.get("timestamp")
        if not isinstance(raw_ts, int | float) or isinstance(raw_ts, bool):
            if isinstance(raw_ts, str) and raw_ts.isdigit():
                raw_ts = int(raw_ts)
            else:
                raise ParseError("LogEntry without a numeric timestamp")
        ts = check_timestamp(_epoch_any_unit(float(raw_ts)), self.now)
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ParseError("LogEntry metadata is not a map")
        metadata = {str(k)[:100]: str(v)[:1000] for k, v in metadata.items()}
        message = str(record.get("message", "") or "")
        peer = normalise_ip(str(record.get("source_ip", "") or ""))
        method, path = str(record.get("method", "") or ""), str(record.get("path", "") or "")
        claimed = str(record.get("gateway_id", "") or "")
        if claimed and claimed != self.instance:
            metadata["claimed_gateway_id"] = claimed[:128]
        if not method and not path:
            security = self._waf_message(message, ts, str(record.get("level", "")), peer)
            if security is not None:
                security.metadata.update(metadata)
            return security
        xff = metadata.get("x_forwarded_for") or metadata.get("X-Forwarded-For")
        status = _int_or_none(record.get("status_code"))
        event = LogEvent(
            instance=self.instance, ts=ts, client_ip=self.trust.client_ip(peer, xff) if peer else None,
            method=method[:16], host=str(record.get("target_host", "") or "")[:253], uri=path,
            status=status or None, bytes_sent=_int_or_none(record.get("bytes_sent")),
            bytes_received=_int_or_none(record.get("bytes_received")),
            response_time_ms=_float_or_none(record.get("response_time_ms")),
            user_agent=str(record.get("user_agent", "") or ""), request_id=metadata.pop("request_id", "")[:128],
            waf_action=metadata.pop("waf_action", "")[:16], waf_rule_id=metadata.pop("waf_rule_id", "")[:64],
            level=str(record.get("level", "") or "")[:16], message=message[:1000], metadata=metadata,
        )
        if record.get("session_id"):
            event.metadata["session_id"] = str(record["session_id"])[:128]
        if xff:
            event.headers["X-Forwarded-For"] = xff
        return enrich(event)

    # --- the Gateway's tracing text -----------------------------------------------------------------------------

    def gateway_text(self, line: str) -> LogEvent | None:
        clean = _ANSI.sub("", line)
        m = _GATEWAY_TEXT.match(clean)
        if m is None:
            raise ParseError("not a Gateway log line")
        ts = check_timestamp(_iso_time(m.group(1)), self.now)
        message = m.group(3).strip()
        ip_match = _FIELD_IP.search(message)
        peer = normalise_ip(ip_match.group(1)) if ip_match else None
        return self._waf_message(message, ts, m.group(2), peer)

    def _waf_message(self, message: str, ts: float, level: str, peer: str | None) -> LogEvent | None:
        for pattern, event_type in _WAF_MESSAGES:
            m = pattern.search(message)
            if m is None:
                continue
            groups = m.groupdict()
            reason = groups.get("reason") or ""
            if peer is None:
                any_ip = _ANY_IPV4.search(reason)
                peer = normalise_ip(any_ip.group(1)) if any_ip else None
            event = LogEvent(
                instance=self.instance, ts=ts, kind="security", client_ip=peer, event_type=event_type,
                waf_action="block" if event_type == "waf_block" else ("rate_limit" if event_type == "rate_limited"
                                                                      else "log"),
                waf_rule_id=(groups.get("rule") or "")[:64], level=level[:16], message=message[:1000],
            )
            return enrich(event)
        return None
