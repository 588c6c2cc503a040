from __future__ import annotations

from django.contrib import admin

from analytics.models import Report, TrafficRollup
from worker_project.admin_base import ReadOnlyAdmin


@admin.register(TrafficRollup)
class TrafficRollupAdmin(ReadOnlyAdmin):
    list_display = ("bucket_start", "granularity", "scope", "requests", "status_2xx", "status_4xx", "status_5xx",
                    "blocked", "p50_ms", "p95_ms", "p99_ms")
    list_filter = ("granularity",)
    search_fields = ("scope",)
    date_hierarchy = "bucket_start"
    exclude = ("latency_sketch",)  # binary: meaningless on screen
    show_full_result_count = False


@admin.register(Report)
class ReportAdmin(ReadOnlyAdmin):
    list_display = ("kind", "period_start", "period_end", "status", "file_path", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("kind", "file_path")
    date_hierarchy = "period_start"
