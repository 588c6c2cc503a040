"""Analytics in admin: rollups and anomalies (read-only), reports with their PDF/HTML downloads, and the fleet
dashboard (traffic, latency, blocks) at admin/analytics/trafficrollup/dashboard/ — staff only, like all admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib import admin
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from analytics import charts, queries
from analytics.models import (
    Anomaly,
    CapacityForecast,
    Granularity,
    Report,
    RollupBatch,
    RollupWatermark,
    TrafficRollup,
)
from worker_project.admin_base import ReadOnlyAdmin

DASHBOARD_RANGES = {"6h": (timedelta(hours=6), Granularity.MINUTE), "24h": (timedelta(hours=24), Granularity.HOUR),
                    "7d": (timedelta(days=7), Granularity.HOUR), "30d": (timedelta(days=30), Granularity.DAY)}


@admin.register(TrafficRollup)
class TrafficRollupAdmin(ReadOnlyAdmin):
    list_display = ("bucket_start", "granularity", "instance", "route", "requests", "status_2xx", "status_4xx",
                    "status_5xx", "waf_blocked", "p50_ms", "p90_ms", "p99_ms")
    list_filter = ("granularity", "instance")
    search_fields = ("route", "instance")
    date_hierarchy = "bucket_start"
    exclude = ("latency_sketch",)  # binary: meaningless on screen
    show_full_result_count = False
    change_list_template = "analytics/rollup_change_list.html"

    def get_urls(self) -> list[URLPattern]:
        return [path("dashboard/", self.admin_site.admin_view(self.dashboard_view),
                     name="analytics_dashboard"), *super().get_urls()]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        key = request.GET.get("range", "24h")
        if key not in DASHBOARD_RANGES:
            key = "24h"
        span, granularity = DASHBOARD_RANGES[key]
        instance = request.GET.get("instance") or None
        end = _ceil(datetime.now(UTC), granularity)
        start = end - span
        data = queries.series(granularity, start, end, instance)
        summary = queries.summary(granularity, start, end)
        rules = sorted(summary.fleet.waf_rules.items(), key=lambda item: -item[1])[:12]
        blocked = [p.waf_blocked for p in data.points]
        figures = [
            ("Fleet traffic", charts.traffic_chart(data.times, {k: data.status(k) for k in queries.STATUS_KEYS},
                                                   f"Requests per {granularity} by status")),
            ("Latency", charts.latency_chart(data.times, {q: data.percentile(f"{q}_ms") for q in ("p50", "p90", "p99")},
                                             "Latency percentiles (merged sketches)")),
            ("WAF blocks", charts.counts_chart(data.times, blocked, f"WAF blocks per {granularity}", "requests")),
            ("Blocks by rule", charts.bar_chart([r for r, _ in rules], [n for _, n in rules],
                                                "WAF actions by rule", "requests", colour="#d62728")),
        ]
        context = {
            **self.admin_site.each_context(request), "title": "Fleet dashboard", "opts": self.model._meta,
            "ranges": list(DASHBOARD_RANGES), "range": key, "instance": instance or "",
            "instances": sorted(summary.instances), "totals": summary.fleet,
            "percentiles": summary.fleet.percentiles,
            "charts": [(caption, charts.png_data_uri(fig)) for caption, fig in figures],
            "top_routes": sorted(summary.routes.items(), key=lambda item: -item[1].requests)[:10],
            "anomalies": Anomaly.objects.filter(bucket_start__gte=start)[:20],
            "forecasts": CapacityForecast.objects.filter(days_until_capacity__isnull=False)[:10],
        }
        return TemplateResponse(request, "analytics/dashboard.html", context)


def _ceil(moment: datetime, granularity: str) -> datetime:
    if granularity == Granularity.MINUTE:
        floor = moment.replace(second=0, microsecond=0)
        return floor + timedelta(minutes=1)
    floor = moment.replace(minute=0, second=0, microsecond=0)
    if granularity == Granularity.HOUR:
        return floor + timedelta(hours=1)
    return floor.replace(hour=0) + timedelta(days=1)


@admin.register(Anomaly)
class AnomalyAdmin(ReadOnlyAdmin):
    list_display = ("bucket_start", "route", "metric", "value", "baseline", "score", "severity")
    list_filter = ("metric", "severity")
    search_fields = ("route",)
    date_hierarchy = "bucket_start"


@admin.register(CapacityForecast)
class CapacityForecastAdmin(ReadOnlyAdmin):
    list_display = ("scope", "peak_rps", "slope_rps_per_day", "capacity_rps", "days_until_capacity", "computed_at")
    search_fields = ("scope",)


@admin.register(Report)
class ReportAdmin(ReadOnlyAdmin):
    list_display = ("kind", "period_start", "period_end", "status", "downloads", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("kind", "file_path")
    date_hierarchy = "period_start"

    def get_urls(self) -> list[URLPattern]:
        return [path("<int:pk>/download/<str:fmt>/", self.admin_site.admin_view(self.download_view),
                     name="analytics_report_download"), *super().get_urls()]

    @admin.display(description="download")
    def downloads(self, obj: Report) -> str:
        if obj.status != Report.Status.READY:
            return "-"
        return format_html('<a href="{}">PDF</a> · <a href="{}">HTML</a>',
                           reverse("admin:analytics_report_download", args=[obj.pk, "pdf"]),
                           reverse("admin:analytics_report_download", args=[obj.pk, "html"]))

    def download_view(self, request: HttpRequest, pk: int, fmt: str) -> FileResponse:
        if not self.has_view_permission(request):
            raise Http404
        report = Report.objects.filter(pk=pk, status=Report.Status.READY).first()
        if report is None or fmt not in ("pdf", "html"):
            raise Http404("no such report")
        name = report.file_path if fmt == "pdf" else report.html_path
        file = Path(name)
        root = Path(settings.ANALYTICS_REPORT_DIR).resolve()
        if not name or not file.resolve().is_relative_to(root) or not file.is_file():
            raise Http404("report file missing")
        content_type = "application/pdf" if fmt == "pdf" else "text/html; charset=utf-8"
        return FileResponse(file.open("rb"), as_attachment=fmt == "pdf", filename=file.name,
                            content_type=content_type)


@admin.register(RollupBatch)
class RollupBatchAdmin(ReadOnlyAdmin):
    """Batches already counted into the rollups (a batch seen twice is not counted twice)."""

    list_display = ("key", "events", "created_at")
    search_fields = ("key",)


@admin.register(RollupWatermark)
class RollupWatermarkAdmin(ReadOnlyAdmin):
    """How far the periodic rollup has read the stored requests."""

    list_display = ("name", "last_id", "horizon_id", "updated_at")
