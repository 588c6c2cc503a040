"""/metrics beyond the PostgreSQL test database: the default SQLite stack (its own database file, in a
subprocess, since the suite's connection is PostgreSQL), and a collector whose store fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from tests.test_health import metric_value

ROOT = Path(__file__).resolve().parent.parent

# Runs with DATABASE_URL=sqlite:///...: migrate, one certificate with a served version and a failed order,
# scrape; then lose the orders table and scrape again. Prints both bodies as JSON.
_SQLITE_SCRAPES = """
import json
import django

django.setup()
from django.core.management import call_command
from django.db import connection
from django.test import Client

from certificates.models import AcmeAccount, AcmeOrder, OrderStatus
from tests.certificates_support import install_expiring_version, make_certificate

call_command("migrate", verbosity=0)
account = AcmeAccount.objects.create(name="ca", directory_url="https://ca.example.test/dir", key_pem="-")
cert = make_certificate(["shop.example.test"], account)
install_expiring_version(cert, days_left=5)
AcmeOrder.objects.create(certificate=cert, account=account, status=OrderStatus.FAILED, domains=cert.domains,
                         challenge_type="http-01", deadline=cert.created_at)
first = Client().get("/metrics").content.decode()
with connection.cursor() as cur:
    cur.execute("DROP TABLE certificates_acmeorder")
second = Client().get("/metrics")
print(json.dumps({"first": first, "second": second.content.decode(), "status": second.status_code}))
"""


def _run_on_sqlite(tmp_path: Path) -> tuple[dict[str, str], str]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", "REDIS_URL": settings.REDIS_URL,
           "WORKER_ENV": "test", "WORKER_VAR_DIR": str(tmp_path), "LOG_FORMAT": "text"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run([sys.executable, "-c", _SQLITE_SCRAPES], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_certificate_metrics_on_sqlite_and_a_failing_collector_shows_up_0(tmp_path: Path) -> None:
    scrapes, stderr = _run_on_sqlite(tmp_path)

    body = scrapes["first"]
    assert 4.9 * 86400 < metric_value(body, "gw_certificate_expiry_seconds",
                                      'certificate="' + _cert_name(body) + '",temporary="false"') <= 5 * 86400
    assert metric_value(body, "gw_certificates", 'state="valid"') == 1
    assert metric_value(body, "gw_certificate_renewals_total", 'result="failed"') == 1
    assert metric_value(body, "gw_metrics_collector_up", 'collector="certificates",store="database"') == 1
    assert metric_value(body, "gw_metrics_collector_up", 'collector="job_history",store="database"') == 1

    body = scrapes["second"]  # the orders table is gone: that collector says so, the others still answer
    assert scrapes["status"] == 200
    assert metric_value(body, "gw_metrics_collector_up", 'collector="certificates",store="database"') == 0
    assert metric_value(body, "gw_metrics_collector_up", 'collector="job_history",store="database"') == 1
    assert "gw_certificates{" not in body
    warnings = [line for line in stderr.splitlines() if "metrics: certificates unavailable" in line]
    assert len(warnings) == 1 and "no such table: certificates_acmeorder" in warnings[0], stderr[-3000:]
    assert "Traceback" not in stderr, "one line per failed scrape, no traceback"


def _cert_name(body: str) -> str:
    line = next(x for x in body.splitlines() if x.startswith("gw_certificate_expiry_seconds{"))
    return line.split('certificate="', 1)[1].split('"', 1)[0]
