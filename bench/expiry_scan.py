"""Benchmark: the beat scan's due query over 1,000,000 certificate rows with a few hundred due, on PostgreSQL,
against the baseline of a Python loop over every row.

    python bench/expiry_scan.py [--rows 1000000] [--due 300] [--runs 5]

Uses its own database (BENCH_SCAN_DATABASE_URL, default postgres://postgres:postgres@127.0.0.1:5432/gw_bench_scan),
dropped and recreated each run. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._db import recreate_database  # noqa: E402  (after the path is set)

DEFAULT_URL = "postgres://postgres:postgres@127.0.0.1:5432/gw_bench_scan"


def _fill(rows: int, due: int) -> float:
    """``rows`` certificates: ``due`` due now (spread over the last day), a few backing off, the rest due in
    1..1000 days. One INSERT … SELECT generate_series; returns seconds taken."""
    from django.db import connection

    start = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("""
            INSERT INTO certificates_certificate
              (name, common_name, domains, key_type, challenge_type, profile, auto_renew, state, not_after,
               renew_after, next_attempt_at, consecutive_failures, last_error, created_at, updated_at)
            SELECT 'cert-' || g, 'c' || g || '.example.test', jsonb_build_array('c' || g || '.example.test'),
                   'ec256', 'http-01', '', (g %% 50 <> 7), 'valid',
                   now() + ((g %% 1000) + 31) * interval '1 day',
                   CASE WHEN g <= %(due)s THEN now() - (g %% 1440) * interval '1 minute'
                        ELSE now() + ((g %% 1000) + 1) * interval '1 day' END,
                   CASE WHEN g <= %(due)s AND g %% 10 = 0 THEN now() + interval '1 hour' END,
                   0, '', now(), now()
              FROM generate_series(1, %(rows)s) AS g
        """, {"rows": rows, "due": due})
        cur.execute("ANALYZE certificates_certificate")
    return time.perf_counter() - start


def _python_loop(now) -> list[int]:  # type: ignore[no-untyped-def]
    """The baseline: read every row and decide in Python (what a naive scan does)."""
    from certificates.models import Certificate

    due = []
    for pk, auto_renew, renew_after, next_attempt_at in (
        Certificate.objects.values_list("id", "auto_renew", "renew_after", "next_attempt_at")
        .iterator(chunk_size=20000)
    ):
        if auto_renew and renew_after is not None and renew_after <= now and (
                next_attempt_at is None or next_attempt_at <= now):
            due.append(pk)
    return due


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    url = os.environ.get("BENCH_SCAN_DATABASE_URL", DEFAULT_URL)
    recreate_database(url)
    os.environ.update({"DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "worker_project.settings",
                       "LOG_LEVEL": "WARNING"})
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from certificates.services.policy import due_certificates

    call_command("migrate", verbosity=0)
    fill_seconds = _fill(args.rows, args.due)

    now = timezone.now()
    expected = sorted(_python_loop(now))
    scan_times, ids = [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        ids = list(due_certificates(now).values_list("id", flat=True))
        scan_times.append(time.perf_counter() - start)
    loop_times = []
    for _ in range(max(1, args.runs // 2)):
        start = time.perf_counter()
        loop_ids = _python_loop(now)
        loop_times.append(time.perf_counter() - start)
    assert sorted(ids) == expected == sorted(loop_ids), "the indexed scan and the loop disagree"

    sql, params = due_certificates(now).values_list("id", flat=True).query.sql_with_params()
    with connection.cursor() as cur:
        cur.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        plan = [row[0] for row in cur.fetchall()]
    result = {
        "rows": args.rows, "due": len(ids), "fill_seconds": round(fill_seconds, 1),
        "indexed_scan_seconds_median": round(statistics.median(scan_times), 4),
        "indexed_scan_seconds_max": round(max(scan_times), 4),
        "python_loop_seconds_median": round(statistics.median(loop_times), 3),
        "speedup": round(statistics.median(loop_times) / statistics.median(scan_times), 1),
        "uses_index": any("cert_due_idx" in line for line in plan),
        "plan": plan,
    }
    print(json.dumps(result, indent=2))
    return 0 if result["indexed_scan_seconds_max"] < 1.0 and result["uses_index"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
