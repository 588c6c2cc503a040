"""A real ``celery worker`` SIGKILLed while an order is in flight: a new worker gets the redelivered task,
resumes the stored order and ends with exactly one new certificate version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from certificates.models import AcmeOrder, Certificate, CertificateVersion, DnsUpdateServer, OrderStatus
from certificates.tasks import renew_certificate
from tests.certificates_support import assert_resumed_at_the_ca, make_account, make_certificate, unique
from worker_project import queues

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


def _database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def _start_worker(tmp_path: Path, name: str, **env: str) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, "DATABASE_URL": _database_url(), "REDIS_URL": settings.REDIS_URL,
                "WORKER_ENV": "test", "CERT_RENEW_LOCK_SECONDS": "4", **env}
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.certificates_celery", "worker", "-Q", queues.CERTIFICATES,
         "-P", "threads", "-c", "1", "-n", f"{name}@%h", "--without-heartbeat", "--without-mingle",
         "--without-gossip", "-l", "INFO"],
        cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def test_sigkill_mid_order_then_restart_gives_exactly_one_version(pebble, bind_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    redis.Redis.from_url(settings.REDIS_URL).delete(queues.CERTIFICATES)  # no stale messages in this test's queue
    server = DnsUpdateServer.objects.create(
        name=unique("bind"), server=bind_server.host, port=bind_server.port, zone=bind_server.zone,
        tsig_key_name=bind_server.tsig_key_name, tsig_secret=bind_server.tsig_secret, propagation_timeout_seconds=10)
    cert = make_certificate([f"{unique('crash')}.{bind_server.zone}"], make_account(pebble),
                            challenge_type="dns-01", dns_server=server)

    first = _start_worker(tmp_path, "doomed", CERT_TEST_HOLD="finalizing:300")
    second = None
    try:
        renew_certificate.delay(cert.pk)
        _wait(lambda: AcmeOrder.objects.filter(certificate=cert, status=OrderStatus.FINALIZING).exists(), 60,
              "the order to be finalized (and held) by the first worker")
        _stop(first, signal.SIGKILL)  # mid-order: finalized at the CA, nothing downloaded or stored
        assert not CertificateVersion.objects.filter(certificate=cert).exists()
        ca_order_url = AcmeOrder.objects.get(certificate=cert).order_url
        assert ca_order_url

        second = _start_worker(tmp_path, "survivor")
        _wait(lambda: Certificate.objects.get(pk=cert.pk).current_version_id is not None, 90,
              "the redelivered task to finish the order on the second worker")
    finally:
        _stop(first, signal.SIGKILL)
        if second is not None:
            _stop(second)

    order = AcmeOrder.objects.get(certificate=cert)  # still exactly one order: it was resumed, not redone
    assert order.status == OrderStatus.VALID
    version = CertificateVersion.objects.get(certificate=cert)  # exactly one version
    assert version.order_id == order.pk and version.key_pem == order.key_pem
    assert Certificate.objects.get(pk=cert.pk).current_version_id == version.pk
    assert_resumed_at_the_ca(order.pk, ca_order_url, version)
    assert order.dns_records == [], "the TXT records were removed and forgotten"
