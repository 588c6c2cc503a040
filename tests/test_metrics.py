"""/metrics beyond one test process: the default SQLite stack (its own database file, in a subprocess, since
the suite's connection is PostgreSQL), a collector whose store fails, and a real gunicorn with two workers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.push_support import wait_until
from tests.test_health import free_port, metric_value

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


# ---- gunicorn: one counter for the web role, not one per worker ------------------------------------------

def _database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class Gunicorn:
    """The Procfile's web command: gunicorn with worker_project.gunicorn_conf and two workers."""

    def __init__(self, var_dir: Path) -> None:
        self.port = free_port()
        self.metrics_dir = var_dir / "prometheus-web"
        env = {**os.environ, "DATABASE_URL": _database_url(), "REDIS_URL": settings.REDIS_URL,
               "WORKER_ENV": "test", "WORKER_VAR_DIR": str(var_dir)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log = var_dir / "gunicorn.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "python:worker_project.gunicorn_conf",
                 "worker_project.wsgi:application", "--bind", f"127.0.0.1:{self.port}", "--workers", "2"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.ok = 0  # 200 answers received so far: what gw_http_requests_total must say

    def get(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as response:  # loaded CI
                body = response.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return None
        self.ok += 1
        return body

    def worker_pids_with_counters(self) -> set[str]:
        return {m.group(1) for p in self.metrics_dir.glob("counter_*.db") if (m := re.match(r"counter_(\d+)", p.name))}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


@pytest.mark.django_db(transaction=True)  # gunicorn's workers read the (committed, empty) test database
def test_request_counter_is_the_sum_over_gunicorn_workers(tmp_path: Path) -> None:
    stale = tmp_path / "prometheus-web" / "counter_1.db"
    stale.parent.mkdir()
    stale.write_bytes(b"a previous run")
    server = Gunicorn(tmp_path)
    try:
        wait_until(lambda: server.get("/health") is not None, timeout=60, message=f"gunicorn ({server.log})")
        assert not stale.exists(), "the directory is emptied at start"
        # until both workers have answered (the kernel picks which one accepts)
        wait_until(lambda: server.get("/health") is not None and len(server.worker_pids_with_counters()) >= 2,
                   timeout=60, interval=0, message="requests served by both workers")
        for _ in range(5):
            expected = server.ok
            body = server.get("/metrics")
            assert body is not None
            assert metric_value(body, "gw_http_requests_total", 'method="GET",status="200"') == expected
            assert metric_value(body, "gw_http_request_seconds_count", 'method="GET"') == expected
        assert metric_value(body, "gw_metrics_collector_up", 'collector="job_history",store="database"') == 1
    finally:
        server.stop()
