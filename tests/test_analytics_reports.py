"""A weekly report from the log pipeline's corpus (stored through ``ingest``, correlated into incidents, rolled up
by the watermark reader): PDF and HTML written, pages rendered to PNG with pdftoppm and kept under
var/test-artifacts/analytics/ (look at them), the charts' colours found on their pages; stored, downloadable from
admin, announced once. And the fleet dashboard."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings
from django.urls import reverse
from matplotlib.image import imread

from analytics import reports, rollups
from analytics.models import Report
from certificates.models import Certificate
from integrations.models import Notification, NotificationChannel
from logpipeline import corpus
from logpipeline.services import ingest
from tests import analytics_support as support

pytestmark = pytest.mark.django_db
ARTIFACTS = Path(settings.BASE_DIR) / "var" / "test-artifacts" / "analytics"
WEEK_START = datetime(2026, 1, 5, tzinfo=UTC)  # the corpus starts Monday 2026-01-05 10:00 UTC


@pytest.fixture
def report_dir(tmp_path: Path):
    with override_settings(ANALYTICS_REPORT_DIR=str(tmp_path / "reports")):
        yield tmp_path / "reports"


@pytest.fixture
def week_of_traffic(detectors, make_engine) -> int:
    """The corpus spread over six and a half days (benign traffic thinned at night), every door's path: ingest
    (stored, correlated), then the periodic rollup reader. Returns the requests stored."""
    lines = corpus.generate(seed=7, benign_lines=60000, duration=6.5 * 86400)
    engine = make_engine()
    stored = 0
    for instance, fmt, group in support.batches(support.records(lines, diurnal=True)):
        stored += ingest("file", instance, group, fmt=fmt, engine=engine).stored
    rollups.rollup_new_requests()
    assert rollups.rollup_new_requests() == stored
    return stored


def colour_share(png: Path, rgb: str) -> float:
    """Share of the page's pixels within a small distance of ``rgb`` (#rrggbb)."""
    image = imread(png)[..., :3]
    if image.dtype != np.float32 and image.dtype != np.float64:
        image = image / 255.0
    target = np.array([int(rgb[i:i + 2], 16) / 255.0 for i in (1, 3, 5)])
    return float((np.abs(image - target).max(axis=-1) < 0.08).mean())


def test_weekly_report_from_the_corpus_as_pdf_with_charts(week_of_traffic: int, report_dir: Path, client) -> None:
    NotificationChannel.objects.create(name="ops-mail", kind="email", target="ops@example.invalid",
                                       min_severity="info")  # reports are informational
    Certificate.objects.create(name="shop", common_name="shop.example", domains=["shop.example"],
                               not_after=WEEK_START + timedelta(days=20))
    report = reports.generate_report(Report.Kind.WEEKLY, now=WEEK_START + timedelta(days=8, hours=1))
    assert (report.period_start, report.period_end) == (WEEK_START, WEEK_START + timedelta(days=7))
    assert report.status == Report.Status.READY
    body = report.body
    assert body["traffic"]["requests"] == week_of_traffic
    assert set(body["traffic"]["per_instance"]) == set(corpus.INSTANCES)
    assert body["latency"]["p50_ms"] and body["latency"]["p99_ms"] > body["latency"]["p50_ms"]
    routes = [r["route"] for r in body["top_routes"]]
    assert routes[:2] == ["/health", "/products/{id}"] and "/api/search" in routes  # the monitor, every 10 s
    # WAF: the attack lines' verdicts (requests) and the Gateway's WAF text lines (security events)
    by_rule = body["waf"]["by_rule"]
    assert by_rule["xss-block"] == 4 and by_rule["traversal-block"] == 4 and by_rule["scanner-ua"] == 8
    assert by_rule["sqli-block"] == 5 + 15 or by_rule["sqli-block"] + by_rule.get("(waf_block)", 0) == 20, by_rule
    incident_subjects = {i["subject"] for i in body["incidents"]}
    assert {"45.33.1.10", "91.240.1.7", "77.88.1.2"} <= incident_subjects
    assert [c["name"] for c in body["certificates_expiring"]] == ["shop"]

    pdf = Path(report.file_path)
    assert pdf.read_bytes().startswith(b"%PDF") and Path(report.html_path).is_file()
    html = Path(report.html_path).read_text()
    assert html.count('src="data:image/png;base64,') == 4 and "45.33.1.10" in html

    # the pages, as a person would see them: kept for looking at
    if shutil.which("pdftoppm") is None:
        pytest.fail("pdftoppm missing: apt-get install poppler-utils")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("weekly-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-png", "-r", "70", str(pdf), str(ARTIFACTS / "weekly")], check=True, timeout=120)
    pages = sorted(ARTIFACTS.glob("weekly-*.png"))
    assert len(pages) == 5  # summary, traffic, latency, WAF by rule, top routes
    summary, traffic, latency, waf, top = pages
    assert colour_share(traffic, "#3a923a") > 0.02  # the 2xx area
    assert colour_share(traffic, "#d62728") > 0.0001  # the 5xx band (the payment backend's failing minute)
    assert colour_share(latency, "#1f77b4") > 0.0005 and colour_share(latency, "#2ca02c") > 0.0005  # p50, p99 lines
    assert colour_share(waf, "#d62728") > 0.01  # the bars
    assert colour_share(top, "#4c72b0") > 0.02
    assert colour_share(summary, "#3a923a") == 0  # text only

    # stored once, announced once, downloadable by staff only
    assert reports.generate_report(Report.Kind.WEEKLY, now=WEEK_START + timedelta(days=9)).pk == report.pk
    notes = Notification.objects.filter(event_kind="analytics.report")
    assert notes.count() == 1
    link = reverse("admin:analytics_report_download", args=[report.pk, "pdf"])
    assert notes.get().body["download_path"] == link
    assert client.get(link).status_code == 302  # to the login page
    client.force_login(User.objects.create_superuser("root", "root@example.invalid", "pw"))
    response = client.get(link)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert b"".join(response.streaming_content).startswith(b"%PDF")
    listing = client.get(reverse("admin:analytics_report_changelist")).content.decode()
    assert link in listing


def test_daily_report_period_and_an_empty_day(report_dir: Path) -> None:
    report = reports.generate_report(Report.Kind.DAILY, now=datetime(2026, 2, 3, 0, 30, tzinfo=UTC))
    assert (report.period_start, report.period_end) == (datetime(2026, 2, 2, tzinfo=UTC),
                                                        datetime(2026, 2, 3, tzinfo=UTC))
    assert report.status == Report.Status.READY and report.body["traffic"]["requests"] == 0
    assert Path(report.file_path).read_bytes().startswith(b"%PDF")


def test_fleet_dashboard_shows_charts_to_staff(client) -> None:
    now = datetime.now(UTC).timestamp()
    rollups.add_batch([rollups.Request("gw-1", now - 600 + i, "/", 200 if i % 7 else 503, 10, 1, 5.0 + i % 30,
                                       "block" if i % 40 == 0 else "", "r1" if i % 40 == 0 else "")
                       for i in range(400)])
    url = reverse("admin:analytics_dashboard")
    assert client.get(url).status_code == 302
    client.force_login(User.objects.create_superuser("root", "root@example.invalid", "pw"))
    for query in ("", "?range=6h", "?range=7d&instance=gw-1", "?range=30d"):
        page = client.get(url + query)
        assert page.status_code == 200
        text = page.content.decode()
        assert text.count('src="data:image/png;base64,') == 4
    assert "gw-1" in text and "Fleet dashboard" in text
