"""Traffic patterns: seasonal baselines per route (same hour of week), anomalies, capacity forecasts.

Robust statistics only: a route-hour is compared with the same hour of week (and the hours either side) over the
previous ``ANALYTICS_BASELINE_WEEKS`` weeks — median and MAD, so one bad week in the history does not move the
baseline. Everything is read from hour rollups (merged across instances; latency from merged sketches), never from
raw logs. Forecasts fit a Theil–Sen line (median of pairwise slopes) to each scope's daily peak rate.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from analytics import sketches
from analytics.models import Anomaly, CapacityForecast, Granularity, TrafficRollup

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution × this = its standard deviation
MIN_HISTORY = 3  # baseline values needed before an hour is judged
HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)


@dataclass
class RouteHour:
    requests: int = 0
    errors: int = 0
    sketch: Any = None

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99(self) -> float | None:
        return sketches.quantiles(self.sketch)[2] if self.sketch is not None and self.sketch.count else None


@dataclass(frozen=True)
class Baseline:
    median: float
    scale: float
    samples: int

    def score(self, value: float) -> float:
        return (value - self.median) / self.scale


def robust_baseline(history: Sequence[float], floor: float) -> Baseline | None:
    """Median and 1.4826 × MAD of ``history`` (the scale floored: a flat history would make every wobble huge)."""
    if len(history) < MIN_HISTORY:
        return None
    median = statistics.median(history)
    mad = statistics.median(abs(v - median) for v in history)
    return Baseline(median, max(MAD_TO_SIGMA * mad, floor), len(history))


def baseline_hours(hour: datetime, weeks: int) -> list[datetime]:
    """Same hour of week and the hours either side, in each of the ``weeks`` weeks before ``hour``."""
    return [hour - w * WEEK + d * HOUR for w in range(1, weeks + 1) for d in (-1, 0, 1)]


def route_hours(buckets: Iterable[datetime]) -> dict[tuple[str, datetime], RouteHour]:
    """Hour rollups merged across instances, per (route, hour)."""
    result: dict[tuple[str, datetime], RouteHour] = {}
    rows = TrafficRollup.objects.filter(granularity=Granularity.HOUR, bucket_start__in=list(buckets)).values_list(
        "route", "bucket_start", "requests", "status_5xx", "latency_sketch")
    for route, bucket, requests, errors, blob in rows.iterator(chunk_size=2000):
        item = result.setdefault((route, bucket), RouteHour(sketch=sketches.new_sketch()))
        item.requests += requests
        item.errors += errors
        if blob:
            item.sketch.merge(sketches.loads(blob))
    return result


def detect_anomalies(end: datetime | None = None, hours: int = 1) -> list[Anomaly]:
    """Judge every route in the ``hours`` closed hours before ``end`` (default: now) against its baseline; record
    each new anomaly (once per route, metric and hour) and notify it. Returns the anomalies created."""
    end = (end or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    judged = [end - (i + 1) * HOUR for i in range(hours)]
    weeks = settings.ANALYTICS_BASELINE_WEEKS
    wanted = set(judged)
    for hour in judged:
        wanted.update(baseline_hours(hour, weeks))
    data = route_hours(wanted)
    min_requests = settings.ANALYTICS_ANOMALY_MIN_REQUESTS
    threshold = settings.ANALYTICS_ANOMALY_THRESHOLD
    created: list[Anomaly] = []
    for hour in judged:
        for route in sorted({r for r, b in data if b == hour}):
            now = data[(route, hour)]
            past = [data[(route, b)] for b in baseline_hours(hour, weeks) if (route, b) in data]
            # an hour of the baseline with no row had no traffic: it counts as 0 requests for the rate
            rates = [float(p.requests) for p in past] + [0.0] * (len(baseline_hours(hour, weeks)) - len(past))
            checks: list[tuple[str, float, Baseline | None, bool]] = []
            base = robust_baseline(rates, floor=max(5.0, 0.1 * statistics.median(rates)) if rates else 5.0)
            if now.requests >= min_requests or (base and base.median >= min_requests):
                checks.append((Anomaly.Metric.RATE, float(now.requests), base, True))
            busy = [p for p in past if p.requests >= min_requests]
            if now.requests >= min_requests:
                checks.append((Anomaly.Metric.ERROR_RATIO, now.error_ratio,
                               robust_baseline([p.error_ratio for p in busy], floor=0.02), False))
                p99s = [p.p99 for p in busy if p.p99 is not None]
                if now.p99 is not None:
                    checks.append((Anomaly.Metric.LATENCY, now.p99, robust_baseline(
                        p99s, floor=max(1.0, 0.1 * statistics.median(p99s)) if p99s else 1.0), False))
            for metric, value, baseline, both_ways in checks:
                if baseline is None:
                    continue
                score = baseline.score(value)
                if score > threshold or (both_ways and score < -threshold):
                    anomaly = _record(route, metric, hour, value, baseline, score, now, len(past))
                    if anomaly is not None:
                        created.append(anomaly)
    return created


def _record(route: str, metric: str, hour: datetime, value: float, baseline: Baseline, score: float,
            now: RouteHour, history_hours: int) -> Anomaly | None:
    from integrations.services import Severity, notify

    severity = "high" if abs(score) > 2 * settings.ANALYTICS_ANOMALY_THRESHOLD else "medium"
    evidence = {
        "value": value, "baseline_median": baseline.median, "scale": baseline.scale, "score": round(score, 2),
        "baseline_samples": baseline.samples, "history_hours_with_traffic": history_hours,
        "requests": now.requests, "errors_5xx": now.errors, "p99_ms": now.p99,
        "threshold": settings.ANALYTICS_ANOMALY_THRESHOLD, "weeks": settings.ANALYTICS_BASELINE_WEEKS,
    }
    with transaction.atomic():
        anomaly, created = Anomaly.objects.get_or_create(
            route=route, metric=metric, bucket_start=hour,
            defaults={"value": value, "baseline": baseline.median, "scale": baseline.scale, "score": score,
                      "severity": severity, "evidence": evidence})
        if not created:
            return None
        label = Anomaly.Metric(metric).label
        notify("analytics.anomaly", Severity(severity),
               f"{label} anomaly on {route} at {hour:%Y-%m-%d %H:00} UTC",
               f"{label} {value:.4g} against a baseline of {baseline.median:.4g} (robust z {score:.1f})",
               dedup_key=f"anomaly:{anomaly.pk}", context={"anomaly": anomaly.pk, **evidence})
    return anomaly


def theil_sen(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Slope and intercept: median of pairwise slopes, median of the residual intercepts (robust to outliers)."""
    slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1:] if x2 != x1]
    slope = statistics.median(slopes) if slopes else 0.0
    intercept = statistics.median(y - slope * x for x, y in points)
    return slope, intercept


def forecast_capacity(now: datetime | None = None) -> list[CapacityForecast]:
    """Per instance and per route: the daily peak hourly rate over ``ANALYTICS_FORECAST_DAYS``, its trend, and the
    days until ``ANALYTICS_CAPACITY_RPS`` (per instance; a route's capacity is the fleet's)."""
    now = now or datetime.now(UTC)
    start = (now - timedelta(days=settings.ANALYTICS_FORECAST_DAYS)).replace(hour=0, minute=0, second=0,
                                                                              microsecond=0)
    per_instance: dict[str, dict[datetime, int]] = {}
    per_route: dict[str, dict[datetime, int]] = {}
    rows = TrafficRollup.objects.filter(granularity=Granularity.HOUR, bucket_start__gte=start,
                                        bucket_start__lt=now).values_list("instance", "route", "bucket_start",
                                                                          "requests")
    for instance, route, bucket, requests in rows.iterator(chunk_size=5000):
        hours = per_instance.setdefault(instance, {})
        hours[bucket] = hours.get(bucket, 0) + requests
        hours = per_route.setdefault(route, {})
        hours[bucket] = hours.get(bucket, 0) + requests
    capacity = settings.ANALYTICS_CAPACITY_RPS
    fleet_capacity = capacity * max(1, len(per_instance))
    results: list[CapacityForecast] = []
    with transaction.atomic():
        for prefix, table, cap in (("instance", per_instance, capacity), ("route", per_route, fleet_capacity)):
            for name, hours in table.items():
                results.append(_forecast(f"{prefix}:{name}", hours, cap, now))
    return results


def _forecast(scope: str, hours: dict[datetime, int], capacity: float, now: datetime) -> CapacityForecast:
    peaks: dict[datetime, float] = {}
    for bucket, requests in hours.items():
        day = bucket.replace(hour=0)
        peaks[day] = max(peaks.get(day, 0.0), requests / 3600.0)
    first = min(peaks)
    points = sorted(((day - first).days, rps) for day, rps in peaks.items())
    slope, intercept = theil_sen(points)
    last_x = points[-1][0]
    current = max(0.0, slope * last_x + intercept)
    if current >= capacity:
        days: float | None = 0.0
    elif slope > 0 and len(points) >= 3:
        days = (capacity - current) / slope
    else:
        days = None
    forecast, _ = CapacityForecast.objects.update_or_create(scope=scope[:340], defaults={
        "computed_at": now, "days_observed": len(points), "peak_rps": points[-1][1],
        "slope_rps_per_day": slope, "capacity_rps": capacity, "days_until_capacity": days})
    return forecast
