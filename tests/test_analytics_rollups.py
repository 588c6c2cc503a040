"""Rollups: sketches merge exactly and stay within their relative error; counting is idempotent; hour and day rows
are merges of the minute rows; the watermark reader counts every stored request once; /metrics shows them."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics import rollups, sketches
from analytics.models import Granularity, RollupBatch, TrafficRollup
from analytics.rollups import Request
from logpipeline import corpus
from logpipeline.services import ingest
from tests import analytics_support as support

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()


def exact(values: np.ndarray, q: float) -> float:
    """The value DDSketch aims at: the element of rank floor(q × (n - 1))."""
    ordered = np.sort(values)
    return float(ordered[int(math.floor(q * (len(ordered) - 1)))])


def per_instance_requests(seed: int = 3) -> dict[str, list[Request]]:
    """Three instances with different latency shapes (fast, slow, bimodal) over two hours of one route."""
    rng = random.Random(seed)
    shapes = {"gw-1": lambda: rng.lognormvariate(2.5, 0.5), "gw-2": lambda: rng.lognormvariate(4.5, 0.9),
              "gw-3": lambda: rng.choice((rng.lognormvariate(1.0, 0.3), rng.lognormvariate(6.0, 0.4)))}
    out: dict[str, list[Request]] = {}
    for instance, draw in shapes.items():
        out[instance] = [Request(instance, T0 + rng.uniform(0, 7200), "/api/orders", rng.choice((200, 200, 500)),
                                 1000, 200, draw(), "", "") for _ in range(6000)]
    return out


def test_merged_per_instance_sketches_match_the_raw_union_within_the_relative_error() -> None:
    data = per_instance_requests()
    union = np.array([r.latency_ms for reqs in data.values() for r in reqs])
    for instance, reqs in data.items():
        rollups.add_batch(reqs, key=f"merge-test:{instance}")
    # per-instance hour rows (2 hours × 3 instances) merged: the fleet over the whole period
    rows = TrafficRollup.objects.filter(granularity=Granularity.HOUR)
    assert rows.count() == 6
    merged = sketches.merge_all(sketches.loads(r.latency_sketch) for r in rows)
    assert merged.count == len(union) == 18000
    for q, got in zip(sketches.QUANTILES, sketches.quantiles(merged), strict=True):
        want = exact(union, q)
        assert got is not None
        assert abs(got - want) <= sketches.RELATIVE_ACCURACY * want, (q, got, want)
    # the day rows too, and a merge of sketches is the sketch of the union: same bins, bit for bit
    day = sketches.merge_all(sketches.loads(r.latency_sketch)
                             for r in TrafficRollup.objects.filter(granularity=Granularity.DAY))
    direct = sketches.sketch_from_values(union)
    assert sketches.dumps(day)[sketches._HEADER.size:] == sketches.dumps(direct)[sketches._HEADER.size:]
    assert sketches.quantiles(day) == sketches.quantiles(direct) == sketches.quantiles(merged)


def test_hour_and_day_rows_are_merges_of_the_minute_rows() -> None:
    for instance, reqs in per_instance_requests(seed=5).items():
        rollups.add_batch(reqs, key=f"hier:{instance}")
    for gran in (Granularity.HOUR, Granularity.DAY):
        for row in TrafficRollup.objects.filter(granularity=gran):
            step = 3600 if gran == Granularity.HOUR else 86400
            minutes = TrafficRollup.objects.filter(
                granularity=Granularity.MINUTE, instance=row.instance, route=row.route,
                bucket_start__gte=row.bucket_start, bucket_start__lt=row.bucket_start + timedelta(seconds=step))
            assert row.requests == sum(m.requests for m in minutes)
            assert row.status_5xx == sum(m.status_5xx for m in minutes)
            merged = sketches.merge_all(sketches.loads(m.latency_sketch) for m in minutes)
            assert sketches.quantiles(sketches.loads(row.latency_sketch)) == sketches.quantiles(merged)
            assert (row.p50_ms, row.p90_ms, row.p99_ms) == sketches.quantiles(merged)


def test_a_batch_counted_twice_is_counted_once() -> None:
    reqs = per_instance_requests()["gw-1"][:500]
    assert rollups.add_batch(reqs, key="pipeline:batch-1") == 500
    assert rollups.add_batch(reqs, key="pipeline:batch-1") == 0  # redelivered with its key
    assert rollups.add_batch(reqs[:200]) == 200  # no key: its content names it
    assert rollups.add_batch(reqs[:200]) == 0
    totals = TrafficRollup.objects.filter(granularity=Granularity.DAY)
    assert sum(r.requests for r in totals) == 700
    assert sketches.loads(totals.get().latency_sketch).count == 700
    assert RollupBatch.objects.count() == 2


def test_statuses_bytes_waf_verdicts_and_404_routes_are_counted() -> None:
    reqs = [Request("gw-1", T0 + i, "/login", s, 100, 10, 5.0, a, r) for i, (s, a, r) in enumerate(
        [(200, "", ""), (401, "", ""), (403, "block", "sqli-block"), (429, "rate_limit", "rl"), (200, "log", "sp"),
         (503, "", ""), (None, "", "")])]
    reqs.append(Request("gw-1", T0, rollups._route("/random/probe", 404), 404, 0, 0, None, "", ""))
    rollups.add_batch(reqs)
    row = TrafficRollup.objects.get(granularity=Granularity.DAY, route="/login")
    assert (row.requests, row.status_2xx, row.status_4xx, row.status_5xx, row.status_other) == (7, 2, 3, 1, 1)
    assert (row.waf_blocked, row.waf_logged, row.waf_rate_limited) == (1, 1, 1)
    assert row.waf_rules == {"sqli-block": 1, "rl": 1, "sp": 1}
    assert (row.bytes_sent, row.bytes_received) == (700, 70)
    assert TrafficRollup.objects.get(granularity=Granularity.DAY, route="<404>").requests == 1


def test_the_watermark_reader_counts_every_stored_request_once() -> None:
    lines = corpus.generate(seed=11, benign_lines=3000)
    stored = 0
    for instance, fmt, group in support.batches(support.records(lines)):
        stored += ingest("file", instance, group, fmt=fmt, correlate=False).stored
    assert rollups.rollup_new_requests() == 0  # the first run only sets the horizon (see rollup_new_requests)
    assert rollups.rollup_new_requests(limit=1000) == stored
    assert rollups.rollup_new_requests() == 0  # nothing new: nothing counted twice
    day = TrafficRollup.objects.filter(granularity=Granularity.DAY)
    assert sum(r.requests for r in day) == stored
    assert {r.instance for r in day} == set(corpus.INSTANCES)
    more = [support.Record("gw-1", "json", r.record) for r in support.records(lines[:50]) if r.fmt == "json"]
    ingest("file", "gw-1", [r.record for r in more], fmt="json", correlate=False)
    rollups.rollup_new_requests()
    assert rollups.rollup_new_requests() == len(more)
    assert sum(r.requests for r in TrafficRollup.objects.filter(granularity=Granularity.DAY)) == stored + len(more)


def test_add_batch_takes_the_pipelines_events() -> None:
    lines = corpus.generate(seed=11, benign_lines=500)
    counted = 0
    for instance, fmt, group in support.batches(support.records(lines)):
        events = support.parse(instance, fmt, group)
        counted += rollups.add_batch(events)
    requests = sum(1 for line in lines if line.fmt == "nginx-combined")
    assert counted == requests  # the Gateway's WAF text lines are security events, not requests
    assert sum(r.requests for r in TrafficRollup.objects.filter(granularity=Granularity.DAY)) == requests


def test_a_batch_costs_a_fixed_number_of_queries() -> None:
    """Insert-missing, one locking SELECT per granularity, bulk update: not one query per row."""
    reqs = per_instance_requests()["gw-2"][:3000]
    with CaptureQueriesContext(connection) as ctx:
        rollups.add_batch(reqs, key="q")
    assert len(ctx.captured_queries) <= 12, [q["sql"][:80] for q in ctx.captured_queries]


def test_metrics_export_the_headline_gauges(client) -> None:
    now = datetime.now(UTC)
    start = (now - timedelta(minutes=4)).replace(second=0, microsecond=0).timestamp()
    rng = random.Random(1)
    reqs = [Request("gw-1", start + rng.uniform(0, 120), "/", 500 if i % 10 == 0 else 200, 10, 1,
                    rng.lognormvariate(3, 0.5), "block" if i % 50 == 0 else "", "") for i in range(600)]
    rollups.add_batch(reqs)
    text = client.get("/metrics").content.decode()
    assert 'gw_metrics_collector_up{collector="analytics",store="database"} 1.0' in text
    assert 'gw_traffic_requests_per_second{instance="gw-1"} 2.0' in text  # 600 over 5 minutes
    assert 'gw_traffic_error_ratio{instance="gw-1"} 0.1' in text
    assert 'gw_traffic_waf_blocked_per_second{instance="gw-1"} 0.04' in text
    assert 'gw_traffic_latency_milliseconds{quantile="0.99"}' in text
