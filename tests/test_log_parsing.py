"""Parsers and enrichment of the log pipeline: each format, UTC normalisation, X-Forwarded-For trust, classes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from logpipeline.detectors import is_sensitive_path, payload_class
from logpipeline.events import ParseError, ProxyTrust, network_of, query_params, split_uri, ua_class
from logpipeline.parsers import NGINX_JSON_LOG_FORMAT, Parser

NOW = time.time()


def parser(trusted: tuple[str, ...] = ()) -> Parser:
    return Parser("gw-a", ProxyTrust(list(trusted)), now=NOW)


def test_nginx_combined_with_offset_is_normalised_to_utc() -> None:
    line = ('203.0.113.9 - alice [10/Oct/2024:13:55:36 -0700] "GET /api/users/123?sort=name&q=a%20b HTTP/1.1" 200 '
            '2326 "https://ex.example/" "Mozilla/5.0 (X11; Linux x86_64)"')
    event = parser().parse(line, "nginx-combined")
    assert event is not None
    assert event.timestamp == datetime(2024, 10, 10, 20, 55, 36, tzinfo=UTC)
    assert (event.instance, event.client_ip, event.method, event.status, event.bytes_sent) == (
        "gw-a", "203.0.113.9", "GET", 200, 2326)
    assert event.path == "/api/users/123" and event.route == "/api/users/{id}"
    assert event.query_params() == {"sort": ["name"], "q": ["a b"]}
    assert event.ua_class == "browser" and event.network == "203.0.113.0/24"
    assert event.metadata["remote_user"] == "alice" and event.referer == "https://ex.example/"


def test_nginx_main_format_xff_only_trusted_from_configured_proxies() -> None:
    line = ('10.0.0.5 - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 1 "-" "curl/8.0" '
            '"198.51.100.7, 10.0.0.9"')
    assert parser().parse(line, "auto").client_ip == "10.0.0.5"  # no proxies configured: header ignored
    trusted = parser(("10.0.0.0/8",)).parse(line, "auto")
    assert trusted.client_ip == "198.51.100.7"  # right-most hop outside the proxies
    spoof = line.replace("10.0.0.5", "192.0.2.50", 1)  # a client that is not a proxy cannot choose its address
    assert parser(("10.0.0.0/8",)).parse(spoof, "auto").client_ip == "192.0.2.50"
    assert ProxyTrust(["10.0.0.0/8"]).client_ip("10.0.0.1", "garbage, 10.0.0.2") == "10.0.0.2"


def test_nginx_json_format_as_the_agent_configures_it() -> None:
    assert "escape=json" in NGINX_JSON_LOG_FORMAT and '"request_uri":"$request_uri"' in NGINX_JSON_LOG_FORMAT
    record = {"time": "2024-10-10T22:55:36+02:00", "msec": 1728593736.123, "remote_addr": "2001:db8::1",
              "x_forwarded_for": "", "method": "POST", "host": "api.example", "request_uri": "/login",
              "protocol": "HTTP/2.0", "status": 401, "body_bytes_sent": 12, "request_length": 300,
              "request_time": 0.015, "referer": "", "user_agent": "python-requests/2.31", "request_id": "abc",
              "upstream_status": "401", "upstream_response_time": "0.014"}
    event = parser().parse(json.dumps(record), "json")
    assert event.ts == pytest.approx(1728593736.123)
    assert (event.client_ip, event.status, event.response_time_ms, event.ua_class) == (
        "2001:db8::1", 401, pytest.approx(15.0), "tool")
    assert event.network == "2001:db8::/64" and event.host == "api.example" and event.request_id == "abc"
    iso_only = {k: v for k, v in record.items() if k != "msec"}
    assert parser().parse(iso_only, "json").timestamp == datetime(2024, 10, 10, 20, 55, 36, tzinfo=UTC)


def test_shipper_envelopes_are_unwrapped() -> None:
    raw = '198.51.100.3 - - [10/Oct/2024:13:55:36 +0000] "GET /x HTTP/1.1" 404 0 "-" "-"'
    vector = {"message": raw, "timestamp": "2024-10-10T13:55:37Z", "host": "web-1", "file": "/var/log/a.log"}
    fluent = {"date": 1728568537.0, "log": raw}
    for envelope in (vector, fluent):
        event = parser().parse(envelope, "auto")
        assert (event.client_ip, event.status, event.uri) == ("198.51.100.3", 404, "/x")


def test_gateway_log_entry_units_and_identity() -> None:
    entry = {"gateway_id": "someone-else", "timestamp": 1728568536123, "level": "INFO", "message": "",
             "source_ip": "192.0.2.1", "target_host": "api.example", "method": "GET", "path": "/a?b=1",
             "status_code": 200, "response_time_ms": 7, "bytes_sent": 10, "bytes_received": 20,
             "user_agent": "Mozilla/5.0", "session_id": "s1", "metadata": {"request_id": "r1", "waf_action": "block"}}
    event = parser().parse(entry, "gateway-entry")
    assert event.instance == "gw-a" and event.metadata["claimed_gateway_id"] == "someone-else"
    assert event.ts == pytest.approx(1728568536.123) and event.waf_action == "block" and event.request_id == "r1"
    for value in (1728568536, 1728568536_000_000, 1728568536_000_000_000):
        assert parser().parse({**entry, "timestamp": value}, "auto").ts == pytest.approx(1728568536, abs=1)
    waf = {"gateway_id": "gw-a", "timestamp": 1728568536, "level": "WARN",
           "message": "Request blocked by WAF: SQL injection from 192.0.2.8", "source_ip": "", "metadata": {}}
    security = parser().parse(waf, "auto")
    assert security.kind == "security" and security.event_type == "waf_block" and security.client_ip == "192.0.2.8"
    assert parser().parse({**waf, "message": "Server started"}, "auto") is None


@pytest.mark.parametrize(("line", "event_type", "rule"), [
    ("2025-08-07T10:30:00.123456Z  WARN Request blocked by WAF: Rule sqli-1 matched client_ip=192.0.2.4",
     "waf_block", ""),
    ("\x1b[2m2025-08-07T10:30:00.123456Z\x1b[0m \x1b[32m INFO\x1b[0m WAF rule xss-2 triggered: XSS in query",
     "waf_rule", "xss-2"),
    ("2025-08-07T10:30:00Z  INFO ModSecurity triggered: SQL Injection Attack (Rule ID: 942100)", "modsecurity",
     "942100"),
    ("2025-08-07T10:30:00Z  WARN Request rate limited: too many requests", "rate_limited", ""),
])
def test_gateway_waf_text_lines_become_security_events(line: str, event_type: str, rule: str) -> None:
    event = parser().parse(line, "gateway-text")
    assert event.kind == "security" and event.event_type == event_type and event.waf_rule_id == rule
    assert event.timestamp == datetime(2025, 8, 7, 10, 30, 0, event.timestamp.microsecond, tzinfo=UTC)
    assert parser().parse(line, "auto").event_type == event_type


def test_other_gateway_lines_are_skipped_not_malformed() -> None:
    assert parser().parse("2025-08-07T10:30:00Z  INFO Gateway server listening", "gateway-text") is None


@pytest.mark.parametrize(("line", "reason"), [
    ("hello world", "not nginx combined"),
    ('1.2.3.4 - - [99/Foo/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 1 "-" "-"', "bad timestamp"),
    ('1.2.3.4 - - [10/Oct/2999:13:55:36 +0000] "GET / HTTP/1.1" 200 1 "-" "-"', "timestamp in the future"),
    ('nope - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 1 "-" "-"', "remote_addr is not an IP address"),
    ("{not json", "invalid JSON"),
    ("[1, 2]", "not nginx combined"),
])
def test_malformed_lines_name_their_reason(line: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parser().parse(line, "auto")


def test_enrichment_helpers() -> None:
    assert split_uri("/a//b/./c/%2e%2e/%252e%252e/etc") == ("/a/b/c/../../etc", "/a/b/c/../../etc")
    assert split_uri("/u/550e8400-e29b-41d4-a716-446655440000/x/deadbeefdeadbeef")[1] == "/u/{id}/x/{id}"
    assert query_params("/s?a=1&a=2&b=%3Cx%3E") == {"a": ["1", "2"], "b": ["<x>"]}
    assert network_of("2001:db8:1:2:3::4") == "2001:db8:1:2::/64" and network_of("192.0.2.77") == "192.0.2.0/24"
    assert [ua_class(u) for u in ("", "sqlmap/1.7", "Googlebot/2.1 (+http://www.google.com/bot.html)",
                                  "Mozilla/5.0 (compatible; bingbot/2.0)", "curl/8.1", "Mozilla/5.0 Firefox",
                                  "weird")] == ["empty", "scanner", "crawler", "crawler", "tool", "browser", "other"]


def test_payload_classes_and_their_benign_look_alikes() -> None:
    assert payload_class("/item?id=1%27%20OR%20%271%27=%271") == "sqli"
    assert payload_class("/item?id=1+UNION+SELECT+password+FROM+users") == "sqli"
    assert payload_class("/s?q=%3Cscript%3Ealert(1)%3C/script%3E") == "xss"
    assert payload_class("/s?q=%253Csvg%2520onload%253Dalert(1)%253E") == "xss"  # double-encoded
    assert payload_class("/download?file=../../../../etc/passwd") == "traversal"
    for benign in ("/people?name=O%27Brien", "/search?q=select+a+union+rep", "/docs/..hidden", "/a?q=rock+%27n%27+roll",
                   "/blog/2024/10/how-to-select-a-framework", "/s?q=script+writing"):
        assert payload_class(benign) is None, benign
    assert is_sensitive_path("/.env") and is_sensitive_path("/.git/config") and is_sensitive_path("/wp-login.php")
    assert not is_sensitive_path("/products/42") and not is_sensitive_path("/robots.txt")
