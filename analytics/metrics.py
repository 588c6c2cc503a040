"""/metrics for analytics: the rollups' headline gauges over the last complete minutes, read on scrape with one
query over the minute rows (a handful per instance and route) and one count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.core import GaugeMetricFamily, Metric

from analytics import sketches

WINDOW_MINUTES = 5  # the gauges average the last five complete minutes


def read_rollup_metrics(now: datetime | None = None) -> list[Metric]:
    from analytics.models import Anomaly, Granularity, TrafficRollup

    now = now or datetime.now(UTC)
    end = now.replace(second=0, microsecond=0)  # the current minute is still filling
    start = end - timedelta(minutes=WINDOW_MINUTES)
    rate = GaugeMetricFamily("gw_traffic_requests_per_second",
                             f"Requests per second over the last {WINDOW_MINUTES} complete minutes",
                             labels=["instance"])
    errors = GaugeMetricFamily("gw_traffic_error_ratio", "5xx share of requests over the same minutes",
                               labels=["instance"])
    blocked = GaugeMetricFamily("gw_traffic_waf_blocked_per_second", "WAF blocks per second over the same minutes",
                                labels=["instance"])
    latency = GaugeMetricFamily("gw_traffic_latency_milliseconds",
                                "Fleet latency quantiles over the same minutes (merged DDSketch, 1% relative error)",
                                labels=["quantile"])
    newest = GaugeMetricFamily("gw_rollup_newest_minute_age_seconds",
                               "Seconds since the start of the newest minute rolled up (+Inf: none)")
    anomalies = GaugeMetricFamily("gw_traffic_anomalies_24h", "Anomalies recorded for hours of the last 24 h")
    per_instance: dict[str, list[int]] = {}
    fleet = sketches.new_sketch()
    rows = TrafficRollup.objects.filter(granularity=Granularity.MINUTE, bucket_start__gte=start,
                                        bucket_start__lt=end).values_list("instance", "requests", "status_5xx",
                                                                          "waf_blocked", "latency_sketch")
    for instance, requests, errors_5xx, waf_blocked, blob in rows.iterator(chunk_size=2000):
        totals = per_instance.setdefault(instance, [0, 0, 0])
        totals[0] += requests
        totals[1] += errors_5xx
        totals[2] += waf_blocked
        if blob:
            fleet.merge(sketches.loads(blob))
    seconds = WINDOW_MINUTES * 60.0
    for instance, (requests, errors_5xx, waf_blocked) in sorted(per_instance.items()):
        rate.add_metric([instance], requests / seconds)
        errors.add_metric([instance], errors_5xx / requests if requests else 0.0)
        blocked.add_metric([instance], waf_blocked / seconds)
    for q, value in zip(sketches.QUANTILES, sketches.quantiles(fleet), strict=True):
        if value is not None:
            latency.add_metric([str(q)], value)
    last = (TrafficRollup.objects.filter(granularity=Granularity.MINUTE).order_by("-bucket_start")
            .values_list("bucket_start", flat=True).first())
    newest.add_metric([], float("inf") if last is None else max(0.0, (now - last).total_seconds()))
    anomalies.add_metric([], Anomaly.objects.filter(bucket_start__gte=now - timedelta(hours=24)).count())
    return [rate, errors, blocked, latency, newest, anomalies]


def register_reader() -> None:
    from worker_project.metrics import add_reader

    add_reader("analytics", "database", read_rollup_metrics)
