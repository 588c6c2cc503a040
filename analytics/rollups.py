"""Rollups: requests reduced per (granularity, bucket, Gateway instance, route) into ``TrafficRollup`` rows.

Two ways in, both through ``add_batch``:

- the log pipeline hands a stored batch's request events to ``add_batch(events)`` (in the transaction that stored
  them, so what is stored is counted once; see docs/analytics.md for the one line), or
- the periodic ``rollup_new_requests`` reads ``RequestLog`` rows past an id watermark (the default while the
  pipeline does not call ``add_batch``: ``ANALYTICS_ROLLUP_FROM_REQUESTLOG``).

Idempotent: a batch's key (given, or the SHA-256 of its content) is inserted into ``RollupBatch`` in the same
transaction as its counts; a batch seen again hits the unique key and changes nothing. A batch is reduced in memory
first (one sketch per minute key, built with numpy; hour and day sketches are merges of the minute ones), then each
touched row is locked (``SELECT … FOR UPDATE`` in primary-key order, so two workers never deadlock), merged and
written back with one ``bulk_update``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from ddsketch import DDSketch
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from analytics import sketches
from analytics.models import Granularity, RollupBatch, RollupWatermark, TrafficRollup

NOT_FOUND_ROUTE = "<404>"  # every 404 counts here: random probe paths mint no rows (as the traffic-spike detector)
_SECONDS = {Granularity.MINUTE: 60, Granularity.HOUR: 3600, Granularity.DAY: 86400}
COUNT_FIELDS = ("requests", "status_1xx", "status_2xx", "status_3xx", "status_4xx", "status_5xx", "status_other",
                "bytes_sent", "bytes_received", "waf_blocked", "waf_logged", "waf_rate_limited")
_REQUESTS, _STATUS_OTHER, _BYTES_SENT, _BYTES_RECEIVED = 0, 6, 7, 8
_STATUS_INDEX = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}  # status // 100 -> index in Agg.counts
_WAF_INDEX = {"block": 9, "log": 10, "rate_limit": 11}


class Request(NamedTuple):
    """The fields a rollup reads from a request (a ``LogEvent``, or a ``RequestLog`` row)."""

    instance: str
    ts: float
    route: str
    status: int | None
    bytes_sent: int | None
    bytes_received: int | None
    latency_ms: float | None
    waf_action: str
    waf_rule_id: str


@dataclass
class Agg:
    counts: list[int] = field(default_factory=lambda: [0] * len(COUNT_FIELDS))
    waf_rules: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    sketch: DDSketch | None = None

    def add_counts(self, other: Agg) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        for rule, n in other.waf_rules.items():
            self.waf_rules[rule] = self.waf_rules.get(rule, 0) + n


Key = tuple[str, int, str, str]  # granularity, bucket start (epoch seconds), instance, route


def from_event(event: Any) -> Request | None:
    """A ``logpipeline.events.LogEvent`` (requests only; the Gateway's WAF text lines are not requests)."""
    if getattr(event, "kind", "request") != "request":
        return None
    return Request(event.instance, float(event.ts), _route(event.route, event.status), event.status,
                   event.bytes_sent, event.bytes_received, event.response_time_ms, event.waf_action or "",
                   event.waf_rule_id or "")


def _route(route: str, status: int | None) -> str:
    return NOT_FOUND_ROUTE if status == 404 else (route or "/")[:300]


def reduce(requests: Iterable[Request]) -> dict[Key, Agg]:
    """Counts and sketches per minute, hour and day key of one batch (no database)."""
    minutes: dict[Key, Agg] = {}
    for r in requests:
        bucket = int(r.ts // 60) * 60
        key = (Granularity.MINUTE.value, bucket, r.instance, r.route)
        agg = minutes.get(key)
        if agg is None:
            agg = minutes[key] = Agg()
        c = agg.counts
        c[_REQUESTS] += 1
        c[_STATUS_INDEX.get(r.status // 100, _STATUS_OTHER) if r.status else _STATUS_OTHER] += 1
        if r.bytes_sent and r.bytes_sent > 0:
            c[_BYTES_SENT] += r.bytes_sent
        if r.bytes_received and r.bytes_received > 0:
            c[_BYTES_RECEIVED] += r.bytes_received
        if r.waf_action:
            index = _WAF_INDEX.get(r.waf_action)
            if index is not None:
                c[index] += 1
            if r.waf_rule_id:
                agg.waf_rules[r.waf_rule_id] = agg.waf_rules.get(r.waf_rule_id, 0) + 1
        if r.latency_ms is not None:
            agg.latencies.append(r.latency_ms)
    result: dict[Key, Agg] = {}
    for key, agg in minutes.items():
        agg.sketch = sketches.sketch_from_values(agg.latencies)
        agg.latencies = []
        result[key] = agg
        _, bucket, instance, route = key
        for gran in (Granularity.HOUR, Granularity.DAY):
            step = _SECONDS[gran]
            up_key = (gran.value, bucket // step * step, instance, route)
            up = result.get(up_key)
            if up is None:
                up = result[up_key] = Agg(sketch=sketches.new_sketch())
            up.add_counts(agg)
            assert up.sketch is not None
            up.sketch.merge(agg.sketch)
    return result


def batch_key(requests: Sequence[Request]) -> str:
    digest = hashlib.sha256()
    for r in requests:
        digest.update(repr(tuple(r)).encode())
    return f"sha256:{digest.hexdigest()}"


def add_batch(events: Iterable[Any], *, key: str | None = None) -> int:
    """Count a batch of request events (``LogEvent`` or ``Request``) once; returns the requests counted, 0 when the
    batch (its ``key``, or its content when no key is given) was counted before."""
    requests = [r if isinstance(r, Request) else from_event(r) for r in events]
    return add_requests([r for r in requests if r is not None], key=key)


def add_requests(requests: Sequence[Request], *, key: str | None = None) -> int:
    if not requests:
        return 0
    key = key or batch_key(requests)
    aggs = reduce(requests)
    with transaction.atomic():
        try:
            with transaction.atomic():
                RollupBatch.objects.create(key=key[:200], events=len(requests))
        except IntegrityError:
            return 0
        merge_into_rows(aggs)
    return len(requests)


def merge_into_rows(aggs: dict[Key, Agg]) -> None:
    """Add a batch's aggregates to their rows (in the caller's transaction).

    Rows that do not exist yet are inserted with the batch's figures (``ON CONFLICT DO NOTHING``: a row another
    worker inserted first is merged below instead); existing rows are locked, merged and written back.
    """
    if connection.vendor == "postgresql":
        inserted = insert_new_rows(aggs)
        aggs = {key: agg for key, agg in aggs.items() if key not in inserted}
    else:
        TrafficRollup.objects.bulk_create(
            [TrafficRollup(granularity=g, bucket_start=_dt(b), instance=i, route=r) for g, b, i, r in aggs],
            ignore_conflicts=True, batch_size=1000)
    if not aggs:
        return
    changed: list[TrafficRollup] = []
    by_gran: dict[str, set[int]] = {}
    for g, b, _, _ in aggs:
        by_gran.setdefault(g, set()).add(b)
    instances = {i for _, _, i, _ in aggs}
    routes = {r for _, _, _, r in aggs}
    for gran, buckets in by_gran.items():
        rows = (TrafficRollup.objects.select_for_update()
                .filter(granularity=gran, bucket_start__in=[_dt(b) for b in buckets], instance__in=instances,
                        route__in=routes).order_by("pk"))
        for row in rows:
            agg = aggs.get((gran, int(row.bucket_start.timestamp()), row.instance, row.route))
            if agg is None:
                continue
            for name, n in zip(COUNT_FIELDS, agg.counts, strict=True):
                if n:
                    setattr(row, name, getattr(row, name) + n)
            if agg.waf_rules:
                rules = dict(row.waf_rules)
                for rule, n in agg.waf_rules.items():
                    rules[rule] = rules.get(rule, 0) + n
                row.waf_rules = rules
            assert agg.sketch is not None
            if agg.sketch.count:
                sketch = sketches.loads(row.latency_sketch)
                sketch.merge(agg.sketch)
                row.latency_sketch = sketches.dumps(sketch)
                row.p50_ms, row.p90_ms, row.p99_ms = sketches.quantiles(sketch)
            changed.append(row)
    write_rows(changed)


_WRITTEN = [*COUNT_FIELDS, "waf_rules", "latency_sketch", "p50_ms", "p90_ms", "p99_ms"]
_VALUES = ("%s::bigint, " * len(COUNT_FIELDS)
           + "%s::jsonb, %s::bytea, %s::double precision, %s::double precision, %s::double precision")


def _values(counts: Sequence[int], rules: dict[str, int], sketch: DDSketch | bytes | memoryview,
            percentiles: Sequence[float | None]) -> tuple[Any, ...]:
    from psycopg2 import Binary

    blob = bytes(sketch) if isinstance(sketch, bytes | memoryview) else sketches.dumps(sketch)
    return (*counts, json.dumps(rules), Binary(blob), *percentiles)


def insert_new_rows(aggs: dict[Key, Agg]) -> set[Key]:
    """PostgreSQL: insert the rows no one has yet, with the batch's figures; returns the keys inserted."""
    from psycopg2.extras import execute_values

    table = TrafficRollup._meta.db_table
    sql = (f"INSERT INTO {table} (granularity, bucket_start, instance, route, {', '.join(_WRITTEN)}, "  # noqa: S608
           "updated_at) VALUES %s ON CONFLICT (granularity, bucket_start, instance, route) DO NOTHING "
           "RETURNING granularity, bucket_start, instance, route")
    template = f"(%s, %s, %s, %s, {_VALUES}, now())"
    values = []
    for (gran, bucket, instance, route), agg in aggs.items():
        assert agg.sketch is not None
        values.append((gran, _dt(bucket), instance, route,
                       *_values(agg.counts, agg.waf_rules, agg.sketch, sketches.quantiles(agg.sketch))))
    with connection.cursor() as cursor:
        inserted = execute_values(cursor.cursor, sql, values, template=template, page_size=1000, fetch=True)
    return {(gran, int(bucket.timestamp()), instance, route) for gran, bucket, instance, route in inserted}


def write_rows(rows: list[TrafficRollup]) -> None:
    """Write back merged rows: one ``UPDATE … FROM (VALUES …)`` per 1,000 rows on PostgreSQL (Django's
    ``bulk_update`` builds a CASE per field and row: 100x slower here); ``bulk_update`` elsewhere (SQLite)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        TrafficRollup.objects.bulk_update(rows, _WRITTEN, batch_size=500)
        return
    from psycopg2.extras import execute_values

    table = TrafficRollup._meta.db_table
    assignments = ", ".join(f"{name} = v.{name}" for name in _WRITTEN)
    sql = (f"UPDATE {table} AS t SET {assignments}, updated_at = now() "  # noqa: S608 - names are ours, values bound
           f"FROM (VALUES %s) AS v(id, {', '.join(_WRITTEN)}) WHERE t.id = v.id")
    template = f"(%s::bigint, {_VALUES})"
    values = [(row.pk, *_values([getattr(row, name) for name in COUNT_FIELDS], row.waf_rules, row.latency_sketch,
                                (row.p50_ms, row.p90_ms, row.p99_ms))) for row in rows]
    with connection.cursor() as cursor:
        execute_values(cursor.cursor, sql, values, template=template, page_size=1000)


def _dt(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


WATERMARK = "requestlog"


def rollup_new_requests(limit: int | None = None) -> int:
    """Roll up ``RequestLog`` rows past the watermark; returns the rows counted.

    Reads ids in (last_id, horizon_id], where horizon_id is the highest id the previous run saw: an id is taken
    from the sequence before its COPY commits, so a batch still committing below the newest id gets one run's time
    (a minute) before it is read. The watermark moves in the transaction that adds the counts.
    """
    from logpipeline.models import RequestLog

    limit = limit or settings.ANALYTICS_ROLLUP_BATCH
    counted = 0
    while True:
        with transaction.atomic():
            mark, _ = RollupWatermark.objects.select_for_update().get_or_create(name=WATERMARK)
            rows = list(RequestLog.objects.filter(pk__gt=mark.last_id, pk__lte=mark.horizon_id).order_by("pk")
                        .values_list("pk", "gateway_instance", "timestamp", "route", "status_code", "bytes_sent",
                                     "bytes_received", "response_time_ms", "waf_action", "waf_rule_id")[:limit])
            if not rows:
                newest = RequestLog.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
                RollupWatermark.objects.filter(pk=mark.pk).update(horizon_id=max(newest, mark.horizon_id))
                return counted
            requests = [Request(inst, ts.timestamp(), _route(route, status), status, sent, received, latency,
                                action, rule) for _, inst, ts, route, status, sent, received, latency, action, rule
                        in rows]
            first, last = rows[0][0], rows[-1][0]
            counted += add_requests(requests, key=f"{WATERMARK}:{first}-{last}")
            RollupWatermark.objects.filter(pk=mark.pk).update(last_id=last)


def purge_minute_rollups(days: int | None = None) -> int:
    """Minute rows older than ANALYTICS_MINUTE_RETENTION_DAYS (hours and days stay), and old batch keys."""
    days = days or settings.ANALYTICS_MINUTE_RETENTION_DAYS
    cutoff = datetime.now(UTC) - timedelta(days=days)
    deleted, _ = TrafficRollup.objects.filter(granularity=Granularity.MINUTE, bucket_start__lt=cutoff).delete()
    RollupBatch.objects.filter(created_at__lt=cutoff).delete()
    return deleted
