"""Seasonal baselines (same hour of week, median/MAD), anomalies with their evidence, capacity forecasts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from analytics import patterns, rollups
from analytics.models import Anomaly, CapacityForecast
from analytics.rollups import Request
from integrations.models import Notification, NotificationChannel

pytestmark = pytest.mark.django_db
JUDGED = datetime(2026, 3, 30, 14, 0, tzinfo=UTC)  # a Monday afternoon


def hour_of(route: str, hour: datetime, n: int, rng: random.Random, error_every: int = 0,
            slow: float = 1.0) -> list[Request]:
    start = hour.timestamp()
    return [Request(f"gw-{1 + i % 2}", start + rng.uniform(0, 3599), route,
                    503 if error_every and i % error_every == 0 else 200, 500, 100,
                    rng.lognormvariate(3.0, 0.4) * slow, "", "") for i in range(n)]


def history(route: str, rng: random.Random, weeks: int = 4) -> None:
    """The baseline hours (same hour of week ±1 h, four weeks back) with ordinary traffic: ~300 requests an hour,
    0.5 % errors."""
    batch: list[Request] = []
    for hour in patterns.baseline_hours(JUDGED, weeks):
        batch += hour_of(route, hour, rng.randint(270, 330), rng, error_every=200)
    rollups.add_batch(batch)


def test_robust_baseline_ignores_one_bad_week() -> None:
    base = patterns.robust_baseline([300, 310, 290, 305, 295, 5000], floor=5)
    assert base is not None and 295 <= base.median <= 310
    assert base.scale < 20  # the 5000 does not widen the band
    assert patterns.robust_baseline([300, 310], floor=5) is None  # too little history: not judged


def test_an_hour_far_from_its_hour_of_week_baseline_is_recorded_with_evidence_and_notified() -> None:
    rng = random.Random(4)
    NotificationChannel.objects.create(name="ops", kind="webhook", target="http://127.0.0.1:9/hook")
    history("/api/search", rng)
    history("/api/orders", rng)
    # now: search gets 6x its traffic; orders fails (25 % 5xx) and slows down 8x; nothing else changes
    rollups.add_batch(hour_of("/api/search", JUDGED, 1800, rng, error_every=200)
                      + hour_of("/api/orders", JUDGED, 300, rng, error_every=4, slow=8.0))
    created = patterns.detect_anomalies(end=JUDGED + timedelta(hours=1))
    found = {(a.route, a.metric) for a in created}
    assert found == {("/api/search", "rate"), ("/api/orders", "error_ratio"), ("/api/orders", "latency_p99")}
    rate = Anomaly.objects.get(route="/api/search", metric="rate")
    assert rate.bucket_start == JUDGED and rate.value == 1800
    assert 270 <= rate.baseline <= 330 and rate.score > 6
    assert rate.evidence["baseline_samples"] == 12 and rate.evidence["requests"] == 1800
    errors = Anomaly.objects.get(metric="error_ratio")
    assert errors.value == pytest.approx(0.25) and errors.evidence["errors_5xx"] == 75
    assert Notification.objects.filter(event_kind="analytics.anomaly").count() == 3
    # judged again (the task looks back two hours): recorded and notified once
    assert patterns.detect_anomalies(end=JUDGED + timedelta(hours=2), hours=2) == []
    assert Notification.objects.filter(event_kind="analytics.anomaly").count() == 3


def test_an_ordinary_hour_and_a_quiet_route_are_not_anomalies() -> None:
    rng = random.Random(5)
    history("/api/search", rng)
    rollups.add_batch(hour_of("/api/search", JUDGED, 320, rng, error_every=200)
                      + hour_of("/rare", JUDGED, 3, rng, error_every=1))  # 3 requests, all 5xx: too few to judge
    assert patterns.detect_anomalies(end=JUDGED + timedelta(hours=1)) == []


def test_traffic_that_stops_is_an_anomaly_too() -> None:
    rng = random.Random(6)
    history("/api/search", rng)
    rollups.add_batch(hour_of("/api/search", JUDGED, 5, rng))
    assert [(a.metric, a.value) for a in patterns.detect_anomalies(end=JUDGED + timedelta(hours=1))] == [("rate", 5)]


def test_capacity_forecast_finds_the_growth_and_the_days_left() -> None:
    """gw-1's busiest hour grows 36,000 requests (10 rps) a day from 100 rps; capacity 500 rps: ~30 days left.
    gw-2 stays flat: no date."""
    rng = random.Random(7)
    day0 = datetime(2026, 3, 1, tzinfo=UTC)
    batch: list[Request] = []
    for d in range(14):
        peak = day0 + timedelta(days=d, hours=15)
        for instance, per_hour in (("gw-1", 360_000 + 36_000 * d), ("gw-2", 100_000)):
            # one Request stands for 1,000 requests (see the capacity below)
            batch += [Request(instance, peak.timestamp() + rng.uniform(0, 3599), "/api", 200, 1, 1, 5.0, "", "")
                      for _ in range(per_hour // 1000)]
    rollups.add_batch(batch)
    # at 1/1000 scale gw-1 runs 0.1 + 0.01/day rps: a capacity of 0.5 rps keeps the same shape
    with override_settings(ANALYTICS_CAPACITY_RPS=0.5):
        patterns.forecast_capacity(now=day0 + timedelta(days=14))
    gw1 = CapacityForecast.objects.get(scope="instance:gw-1")
    assert gw1.slope_rps_per_day == pytest.approx(0.01, rel=0.01)
    assert gw1.days_observed == 14
    assert gw1.days_until_capacity == pytest.approx((0.5 - 0.23) / 0.01, rel=0.02)
    assert CapacityForecast.objects.get(scope="instance:gw-2").days_until_capacity is None
    assert CapacityForecast.objects.get(scope="route:/api").capacity_rps == 1.0  # the fleet: two instances
