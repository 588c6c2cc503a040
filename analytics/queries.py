"""Reading rollups for reports, dashboards and metrics: rows of a period merged over instances and routes (counts
summed, sketches merged), never raw logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ddsketch import DDSketch

from analytics import sketches
from analytics.models import Granularity, TrafficRollup

STATUS_KEYS = ("2xx", "3xx", "4xx", "5xx", "other")
_STEP = {Granularity.MINUTE: timedelta(minutes=1), Granularity.HOUR: timedelta(hours=1),
         Granularity.DAY: timedelta(days=1)}


@dataclass
class Totals:
    requests: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUS_KEYS, 0))
    bytes_sent: int = 0
    waf_blocked: int = 0
    waf_logged: int = 0
    waf_rate_limited: int = 0
    waf_rules: dict[str, int] = field(default_factory=dict)
    sketch: DDSketch = field(default_factory=sketches.new_sketch)

    def add(self, row: dict[str, Any], sketch: DDSketch | None = None) -> None:
        self.requests += row["requests"]
        self.by_status["2xx"] += row["status_2xx"]
        self.by_status["3xx"] += row["status_3xx"]
        self.by_status["4xx"] += row["status_4xx"]
        self.by_status["5xx"] += row["status_5xx"]
        self.by_status["other"] += row["status_1xx"] + row["status_other"]
        self.bytes_sent += row["bytes_sent"]
        self.waf_blocked += row["waf_blocked"]
        self.waf_logged += row["waf_logged"]
        self.waf_rate_limited += row["waf_rate_limited"]
        for rule, n in (row["waf_rules"] or {}).items():
            self.waf_rules[rule] = self.waf_rules.get(rule, 0) + n
        if sketch is not None:
            self.sketch.merge(sketch)
        elif row["latency_sketch"]:
            self.sketch.merge(sketches.loads(row["latency_sketch"]))

    @property
    def percentiles(self) -> dict[str, float | None]:
        p50, p90, p99 = sketches.quantiles(self.sketch)
        return {"p50_ms": p50, "p90_ms": p90, "p99_ms": p99}

    @property
    def error_ratio(self) -> float:
        return self.by_status["5xx"] / self.requests if self.requests else 0.0


_FIELDS = ("bucket_start", "instance", "route", "requests", "status_1xx", "status_2xx", "status_3xx", "status_4xx",
           "status_5xx", "status_other", "bytes_sent", "waf_blocked", "waf_logged", "waf_rate_limited", "waf_rules",
           "latency_sketch")


def _rows(granularity: str, start: datetime, end: datetime, instance: str | None = None) -> Any:
    rows = TrafficRollup.objects.filter(granularity=granularity, bucket_start__gte=start, bucket_start__lt=end)
    if instance:
        rows = rows.filter(instance=instance)
    return rows.values(*_FIELDS).iterator(chunk_size=2000)


@dataclass
class Series:
    times: list[datetime]
    points: list[Totals]

    def status(self, key: str) -> list[int]:
        return [p.by_status[key] for p in self.points]

    def percentile(self, name: str) -> list[float | None]:
        return [p.percentiles[name] for p in self.points]


def series(granularity: str, start: datetime, end: datetime, instance: str | None = None) -> Series:
    """One point per bucket from ``start`` to ``end`` (empty buckets included, so charts show gaps as zero)."""
    step = _STEP[Granularity(granularity)]
    buckets: dict[datetime, Totals] = {}
    t = start
    while t < end:
        buckets[t] = Totals()
        t += step
    for row in _rows(granularity, start, end, instance):
        buckets.setdefault(row["bucket_start"], Totals()).add(row)
    times = sorted(buckets)
    return Series(times, [buckets[t] for t in times])


@dataclass
class Summary:
    fleet: Totals
    routes: dict[str, Totals]
    instances: dict[str, Totals]


def summary(granularity: str, start: datetime, end: datetime) -> Summary:
    """The period merged: the fleet, each route (over instances) and each instance (over routes)."""
    fleet = Totals()
    routes: dict[str, Totals] = {}
    instances: dict[str, Totals] = {}
    for row in _rows(granularity, start, end):
        sketch = sketches.loads(row["latency_sketch"])  # decoded once, merged three times
        fleet.add(row, sketch)
        routes.setdefault(row["route"], Totals()).add(row, sketch)
        instances.setdefault(row["instance"], Totals()).add(row, sketch)
    return Summary(fleet, routes, instances)
