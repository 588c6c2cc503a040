"""The log pipeline's labelled corpus, as the analytics tests and the rollup benchmark feed it.

nginx combined carries no request time, so each request line is re-emitted as the nginx JSON access-log format
the reference agent configures (``logpipeline.parsers.NGINX_JSON_LOG_FORMAT``) with a seeded ``request_time``
(log-normal per route: static files fast, payments slow, 5xx slower) and, for the corpus's attack lines, the
WAF verdict a Gateway would log (``waf_action``/``waf_rule_id``). The Gateway's WAF text lines pass unchanged.
Everything else (time, address, request, status, size, agent, instance) is the corpus's own.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from logpipeline import corpus
from logpipeline.events import ProxyTrust
from logpipeline.parsers import Parser

_COMBINED = re.compile(r'^(?P<ip>\S+) - - \[[^\]]+\] "(?P<method>\S*) (?P<uri>\S*) [^"]*" (?P<status>\d{3}) '
                       r'(?P<size>\d+) "(?P<ref>[^"]*)" "(?P<ua>[^"]*)"')
# attack kind -> (WAF action, rule id) a Gateway logs for it
WAF_VERDICTS = {"sqli": ("block", "sqli-block"), "xss": ("block", "xss-block"),
                "traversal": ("block", "traversal-block"), "path_probing": ("log", "sensitive-path"),
                "bad_user_agent": ("block", "scanner-ua"), "distributed_probing": ("log", "sensitive-path")}
_MEDIAN_MS = (("/static/", 3.0), ("/api/payments/", 140.0), ("/api/search", 60.0), ("/api/orders", 90.0),
              ("/login", 45.0), ("/health", 1.5))


def latency_ms(rng: random.Random, uri: str, status: int) -> float:
    median = next((ms for prefix, ms in _MEDIAN_MS if uri.startswith(prefix)), 25.0)
    if status >= 500:
        median *= 12
    return median * math.exp(rng.gauss(0.0, 0.6))


def diurnal_keep(rng: random.Random, ts: float) -> bool:
    """Thin benign traffic at night (UTC), so a week-long corpus looks like a week of traffic."""
    hour = datetime.fromtimestamp(ts, UTC).hour + datetime.fromtimestamp(ts, UTC).minute / 60
    return rng.random() < 0.15 + 0.85 * math.sin(math.pi * max(0.0, hour - 5) / 19) ** 2


@dataclass(frozen=True)
class Record:
    instance: str
    fmt: str  # json | gateway-text
    record: str


def records(lines: list[corpus.CorpusLine], seed: int = 7, diurnal: bool = False) -> Iterator[Record]:
    rng = random.Random(seed)
    for line in lines:
        if line.fmt != "nginx-combined":
            yield Record(line.instance, line.fmt, line.line)
            continue
        if diurnal and line.label == "benign" and not diurnal_keep(rng, line.ts):
            continue
        m = _COMBINED.match(line.line)
        if m is None:  # the corpus only writes lines this matches
            raise AssertionError(f"unexpected corpus line {line.line!r}")
        status = int(m["status"])
        record = {"msec": round(line.ts, 3), "remote_addr": m["ip"], "method": m["method"],
                  "request_uri": m["uri"], "status": status, "body_bytes_sent": int(m["size"]),
                  "request_length": 400 + rng.randint(0, 400),
                  "request_time": round(latency_ms(rng, m["uri"], status) / 1000.0, 4),
                  "referer": m["ref"], "user_agent": m["ua"], "host": "shop.example"}
        kind = line.label.removeprefix("attack:")
        if line.label.startswith("attack:") and kind in WAF_VERDICTS:
            record["waf_action"], record["waf_rule_id"] = WAF_VERDICTS[kind]
        yield Record(line.instance, "json", json.dumps(record))


def batches(items: Iterator[Record], size: int = 2000) -> Iterator[tuple[str, str, list[str]]]:
    """(instance, fmt, records) groups of up to ``size`` records in time order, split per instance and format."""
    chunk: list[Record] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield from _groups(chunk)
            chunk = []
    yield from _groups(chunk)


def _groups(chunk: list[Record]) -> Iterator[tuple[str, str, list[str]]]:
    groups: dict[tuple[str, str], list[str]] = {}
    for item in chunk:
        groups.setdefault((item.instance, item.fmt), []).append(item.record)
    for (instance, fmt), group in groups.items():
        yield instance, fmt, group


def parse(instance: str, fmt: str, group: list[str]) -> list:
    """LogEvents as ``ingest`` would make them (without storing): what the pipeline would hand ``add_batch``."""
    parser = Parser(instance, ProxyTrust([]), time.time())
    return [e for e in (parser.parse(line, fmt) for line in group) if e is not None]
