"""Daily and weekly reports: figures gathered from rollups and the other apps' tables, charts drawn with
matplotlib, written as PDF (``PdfPages``: a summary page, then one chart per page with its table) and as one HTML
file with the charts inline, stored as a ``Report`` row plus files under ``ANALYTICS_REPORT_DIR``, and announced
through ``integrations.services.notify`` with a link to the admin download.

Idempotent: one row per (kind, period); a report already ``ready`` is returned as it is, a failed one is redone.
"""

from __future__ import annotations

import html
import logging
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.template.loader import render_to_string
from django.urls import reverse
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from analytics import charts, queries
from analytics.models import Anomaly, Granularity, Report

logger = logging.getLogger(__name__)
TOP_ROUTES = 10


def period_for(kind: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last complete period: yesterday (UTC) for daily, last Monday-to-Monday week for weekly."""
    today = (now or datetime.now(UTC)).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == Report.Kind.DAILY:
        return today - timedelta(days=1), today
    if kind == Report.Kind.WEEKLY:
        monday = today - timedelta(days=today.weekday())
        return monday - timedelta(days=7), monday
    raise ValueError(f"unknown report kind {kind!r}; daily or weekly")


def gather(start: datetime, end: datetime) -> dict[str, Any]:
    """Every figure a report shows, JSON-ready (kept in ``Report.body``)."""
    summary = queries.summary(Granularity.HOUR, start, end)
    fleet = summary.fleet
    top = sorted(summary.routes.items(), key=lambda item: -item[1].requests)[:TOP_ROUTES]
    return {
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "traffic": {"requests": fleet.requests, "bytes_sent": fleet.bytes_sent, "by_status": fleet.by_status,
                    "error_ratio": round(fleet.error_ratio, 5),
                    "per_instance": {name: t.requests for name, t in sorted(summary.instances.items())}},
        "latency": fleet.percentiles,
        "top_routes": [{"route": route, "requests": t.requests, "errors_5xx": t.by_status["5xx"], **t.percentiles}
                       for route, t in top],
        "waf": {"blocked": fleet.waf_blocked, "logged": fleet.waf_logged, "rate_limited": fleet.waf_rate_limited,
                "by_rule": _waf_by_rule(fleet.waf_rules, start, end)},
        "incidents": _incidents(start, end),
        "anomalies": [{"route": a.route, "metric": a.metric, "hour": a.bucket_start.isoformat(),
                       "value": a.value, "baseline": a.baseline, "score": round(a.score, 1)}
                      for a in Anomaly.objects.filter(bucket_start__gte=start, bucket_start__lt=end)[:50]],
        "certificates_expiring": _certificates(end),
        "deployments": _deployments(start, end),
    }


def _waf_by_rule(from_requests: dict[str, int], start: datetime, end: datetime) -> dict[str, int]:
    """Requests a rule acted on (rollups) plus the Gateway's own WAF lines (security events), by rule."""
    from logpipeline.models import SecurityEvent

    rules = dict(from_requests)
    events = (SecurityEvent.objects.filter(timestamp__gte=start, timestamp__lt=end, detector="",
                                           event_type__in=("waf_block", "waf_rule", "modsecurity"))
              .order_by().values_list("rule_id", "event_type").annotate(n=Count("id")))
    for rule_id, event_type, n in events:
        name = rule_id or f"({event_type})"
        rules[name] = rules.get(name, 0) + n
    return dict(sorted(rules.items(), key=lambda item: -item[1]))


def _incidents(start: datetime, end: datetime) -> list[dict[str, Any]]:
    from logpipeline.models import Incident

    # opened in the period, or with detections whose event time is in it (an imported log is judged as it happened)
    ids = set(Incident.objects.filter(opened_at__gte=start, opened_at__lt=end).values_list("pk", flat=True)[:100])
    ids |= set(Incident.objects.filter(events__timestamp__gte=start, events__timestamp__lt=end)
               .values_list("pk", flat=True).distinct()[:100])
    rows = Incident.objects.filter(pk__in=ids).order_by("opened_at", "pk")
    return [{"id": i.pk, "title": i.title, "severity": i.severity, "state": i.state, "subject": i.subject,
             "opened_at": i.opened_at.isoformat()} for i in rows]


def _certificates(end: datetime) -> list[dict[str, Any]]:
    from certificates.models import Certificate

    horizon = end + timedelta(days=settings.ANALYTICS_CERT_EXPIRY_DAYS)
    rows = Certificate.objects.filter(not_after__isnull=False, not_after__lt=horizon).order_by("not_after")[:100]
    return [{"name": c.name, "not_after": c.not_after.isoformat(), "state": c.state,
             "days_left": round((c.not_after - end).total_seconds() / 86400, 1)} for c in rows if c.not_after]


def _deployments(start: datetime, end: datetime) -> list[dict[str, Any]]:
    from waf_config.models import Deployment

    rows = (Deployment.objects.filter(created_at__gte=start, created_at__lt=end).select_related("version")
            .order_by("created_at")[:100])
    return [{"id": d.pk, "version": str(d.version), "state": d.state, "created_at": d.created_at.isoformat(),
             "rollback": d.rollback_of_id is not None} for d in rows]


def figures(kind: str, start: datetime, end: datetime, body: dict[str, Any]) -> list[tuple[str, Figure]]:
    """(caption, figure) in report order."""
    span = queries.series(Granularity.HOUR, start, end)
    name = "Daily" if kind == Report.Kind.DAILY else "Weekly"
    traffic = charts.traffic_chart(span.times, {k: span.status(k) for k in queries.STATUS_KEYS},
                                   f"{name} traffic, requests per hour by status", size=charts.A4_LANDSCAPE)
    latency = charts.latency_chart(span.times, {q: span.percentile(f"{q}_ms") for q in ("p50", "p90", "p99")},
                                   "Latency percentiles per hour (merged sketches, fleet)", size=charts.A4_LANDSCAPE)
    rules = list(body["waf"]["by_rule"].items())[:15]
    blocks = charts.bar_chart([r for r, _ in rules], [n for _, n in rules], "WAF actions by rule", "requests / events",
                              colour="#d62728", size=charts.A4_LANDSCAPE)
    top = body["top_routes"]
    routes = charts.bar_chart([r["route"] for r in top], [r["requests"] for r in top], "Top routes", "requests",
                              size=charts.A4_LANDSCAPE)
    return [("Traffic", traffic), ("Latency", latency), ("WAF blocks by rule", blocks), ("Top routes", routes)]


def _summary_page(kind: str, body: dict[str, Any]) -> Figure:
    fig = Figure(figsize=charts.A4_LANDSCAPE)
    t, lat = body["traffic"], body["latency"]
    lines = [f"gateway-worker {kind} report", f"{body['period']['start']}  to  {body['period']['end']}", "",
             f"Requests: {t['requests']:,}   bytes sent: {t['bytes_sent']:,}   5xx ratio: {t['error_ratio']:.3%}",
             "Status: " + ", ".join(f"{k} {v:,}" for k, v in t["by_status"].items()),
             "Latency: " + ", ".join(f"{k[:3]} {_ms(v)}" for k, v in lat.items()),
             f"WAF: blocked {body['waf']['blocked']:,}, logged {body['waf']['logged']:,}, "
             f"rate-limited {body['waf']['rate_limited']:,}", "",
             f"Incidents opened: {len(body['incidents'])}"]
    lines += [f"  #{i['id']} [{i['severity']}] {i['title'][:90]} ({i['state']})" for i in body["incidents"][:12]]
    lines += ["", f"Anomalies: {len(body['anomalies'])}"]
    lines += [f"  {a['hour'][:13]}h {a['route'][:50]} {a['metric']} {a['value']:.4g} vs {a['baseline']:.4g}"
              for a in body["anomalies"][:6]]
    lines += ["", f"Certificates expiring within {settings.ANALYTICS_CERT_EXPIRY_DAYS} days: "
              f"{len(body['certificates_expiring'])}"]
    lines += [f"  {c['name']} {c['not_after'][:10]} ({c['days_left']} days)" for c in body["certificates_expiring"][:6]]
    lines += ["", f"Deployments: {len(body['deployments'])}"]
    lines += [f"  {d['created_at'][:16]} {d['version'][:60]} {d['state']}" for d in body["deployments"][:6]]
    fig.text(0.05, 0.95, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=9)
    return fig


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def render_pdf(kind: str, body: dict[str, Any], figs: list[tuple[str, Figure]], path: Path) -> None:
    with PdfPages(path, metadata={"Title": f"gateway-worker {kind} report", "Creator": "gateway-worker"}) as pdf:
        pdf.savefig(_summary_page(kind, body))
        for _, fig in figs:
            pdf.savefig(fig)


def render_html(kind: str, body: dict[str, Any], figs: list[tuple[str, Figure]]) -> str:
    return render_to_string("analytics/report.html", {
        "kind": kind, "body": body, "charts": [(caption, charts.png_data_uri(fig)) for caption, fig in figs],
        "cert_days": settings.ANALYTICS_CERT_EXPIRY_DAYS,
    })


def _write(path: Path, data: bytes) -> None:
    """Written to a temporary name beside it and renamed: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate_report(kind: str, start: datetime | None = None, end: datetime | None = None, *,
                    now: datetime | None = None) -> Report:
    """Build (or return the already built) report of ``kind`` for [start, end) — by default the last complete
    period — store it and announce it once."""
    if start is None or end is None:
        start, end = period_for(kind, now)
    report, _ = Report.objects.get_or_create(kind=kind, period_start=start, period_end=end)
    if report.status == Report.Status.READY:
        return report
    try:
        body = gather(start, end)
        figs = figures(kind, start, end, body)
        base = Path(settings.ANALYTICS_REPORT_DIR) / kind / f"{kind}-{start:%Y-%m-%d}"
        pdf_path, html_path = base.with_suffix(".pdf"), base.with_suffix(".html")
        pdf_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=pdf_path.parent, prefix=f".{pdf_path.name}.")
        os.close(fd)
        try:
            render_pdf(kind, body, figs, Path(tmp))
            os.replace(tmp, pdf_path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        _write(html_path, render_html(kind, body, figs).encode("utf-8"))
    except Exception as exc:
        logger.exception("%s report for %s failed", kind, start)
        Report.objects.filter(pk=report.pk).update(status=Report.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    with transaction.atomic():
        updated = Report.objects.filter(pk=report.pk).exclude(status=Report.Status.READY).update(
            status=Report.Status.READY, body=body, file_path=str(pdf_path), html_path=str(html_path), error="")
        if updated:  # the one run that made it ready announces it
            _distribute(report.pk, kind, start, end, body, pdf_path)
    report.refresh_from_db()
    return report


def _distribute(pk: int, kind: str, start: datetime, end: datetime, body: dict[str, Any], pdf_path: Path) -> None:
    from integrations.services import Severity, notify

    link = reverse("admin:analytics_report_download", args=[pk, "pdf"])
    traffic = body["traffic"]
    notify("analytics.report", Severity.INFO, f"{kind.capitalize()} report {start:%Y-%m-%d}",
           html.unescape(f"{traffic['requests']:,} requests, 5xx ratio {traffic['error_ratio']:.3%}, "
                         f"{len(body['incidents'])} incidents. PDF: {link}"),
           dedup_key=f"report:{pk}",
           context={"report": pk, "kind": kind, "period_start": start.isoformat(), "period_end": end.isoformat(),
                    "download_path": link, "attachment": str(pdf_path)})
