"""The HTTP and file doors, and retention with archival."""

from __future__ import annotations

import gzip
import io
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.conf import settings
from django.core.management import call_command

from logpipeline import corpus
from logpipeline.archive import purge_request_logs
from logpipeline.http import SLOT_KEY
from logpipeline.importer import import_file
from logpipeline.models import ImportCheckpoint, IntakeSource, LogArchive, RequestLog

pytestmark = pytest.mark.django_db


def combined(n: int, ts: float | None = None, ip: str = "198.51.100.9") -> str:
    when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(ts or time.time() - 30))
    return f'{ip} - - [{when}] "GET /p/{n} HTTP/1.1" 200 {n} "-" "Mozilla/5.0 (X11)"'


@pytest.fixture
def token(db) -> str:
    out = io.StringIO()
    call_command("log_intake_token", "gw-http", stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


@pytest.fixture
def slots():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(SLOT_KEY)
    yield client
    client.delete(SLOT_KEY)
    client.close()


def post(client, body: bytes, token: str, **headers: str):
    return client.post("/logs/ingest", data=body, content_type="application/x-ndjson",
                       headers={"Authorization": f"Bearer {token}", **headers})


def test_http_door_takes_vector_and_fluent_bit_ndjson_gzip_included(client, token, slots, detectors) -> None:
    vector = [{"message": combined(i), "timestamp": "2026-01-01T00:00:00Z", "host": "web-1"} for i in range(50)]
    fluent = [{"date": time.time(), "log": combined(100 + i)} for i in range(50)]
    access = [{"time": datetime.now(UTC).isoformat(), "remote_addr": "192.0.2.3", "method": "GET",
               "request_uri": f"/j/{i}", "status": 200, "body_bytes_sent": 1000 + i, "request_time": 0.002,
               "user_agent": "curl/8"} for i in range(50)]
    body = "\n".join(json.dumps(r) for r in vector + fluent + access).encode() + b"\nnot json at all\n"
    answer = post(client, body, token)
    assert answer.status_code == 200, answer.content
    assert answer.json()["stored"] == 150 and answer.json()["malformed"] == 1

    gz = gzip.compress("\n".join(json.dumps(r) for r in vector[:10]).encode())
    answer = post(client, gz, token, **{"Content-Encoding": "gzip"})
    assert answer.status_code == 200 and answer.json()["stored"] == 10
    answer = post(client, json.dumps(access[:5]).encode(), token)  # a JSON array body (Vector's json codec)
    assert answer.status_code == 200 and answer.json()["stored"] == 5

    assert RequestLog.objects.filter(gateway_instance="gw-http").count() == 165
    source = IntakeSource.objects.get(instance_id="gw-http", kind="http")
    assert (source.accepted, source.malformed, source.batches) == (165, 1, 3)


def test_http_door_refuses_bad_tokens_bombs_and_answers_429_when_busy(client, token, slots, settings) -> None:
    assert post(client, b"{}", "lpt_wrong").status_code == 401
    assert client.post("/logs/ingest", data=b"{}", content_type="application/x-ndjson").status_code == 401
    assert client.get("/logs/ingest", headers={"Authorization": f"Bearer {token}"}).status_code == 405
    assert post(client, b"x", token, **{"Content-Encoding": "br"}).status_code == 415
    wrong_format = client.post("/logs/ingest?format=apache", data=b"x", content_type="application/x-ndjson",
                               headers={"Authorization": f"Bearer {token}"})
    assert wrong_format.status_code == 400

    settings.LOG_INTAKE_MAX_BODY_BYTES = 1024
    bomb = gzip.compress(b"A" * (10 * 1024 * 1024))  # 10 KB that inflates to 10 MB
    assert post(client, bomb, token, **{"Content-Encoding": "gzip"}).status_code == 413
    assert post(client, b"x" * 2048, token).status_code == 413

    settings.LOG_INTAKE_MAX_INFLIGHT = 1
    slots.zadd(SLOT_KEY, {"another-process": time.time()})
    busy = post(client, combined(1).encode(), token)
    assert busy.status_code == 429 and busy.headers["Retry-After"] == str(settings.LOG_INTAKE_RETRY_AFTER_SECONDS)
    slots.zrem(SLOT_KEY, "another-process")
    assert post(client, combined(1).encode(), token).status_code == 200
    assert slots.zcard(SLOT_KEY) == 0  # the slot is released

    call_command("log_intake_token", "gw-http", "--revoke", stdout=io.StringIO())
    assert post(client, combined(2).encode(), token).status_code == 401


def test_import_logs_gzip_with_progress_and_resume(tmp_path, detectors) -> None:
    lines = [line for line in corpus.generate(seed=11, benign_lines=3000) if line.fmt == "nginx-combined"]
    path = tmp_path / "access.log.gz"
    path.write_bytes(gzip.compress(("\n".join(line.line for line in lines) + "\n").encode()))

    first = import_file(path, "nginx-combined", "gw-file", batch_lines=1000, stop_after_batches=2)  # interrupted
    assert (first.lines, first.finished) == (2000, False)
    assert RequestLog.objects.filter(gateway_instance="gw-file").count() == 2000

    out, err = io.StringIO(), io.StringIO()
    call_command("import_logs", str(path), "--format", "nginx-combined", "--instance", "gw-file", "--batch", "1000",
                 stdout=out, stderr=err)
    assert f"{len(lines):,} lines, 0 malformed (resumed at byte" in out.getvalue()
    assert "100.0%" in err.getvalue() and "lines/s" in err.getvalue()
    assert RequestLog.objects.filter(gateway_instance="gw-file").count() == len(lines)  # no line twice, none lost
    assert ImportCheckpoint.objects.get().finished

    call_command("import_logs", str(path), "--format", "nginx-combined", "--instance", "gw-file",
                 stdout=io.StringIO(), stderr=io.StringIO())  # already done: nothing again
    assert RequestLog.objects.filter(gateway_instance="gw-file").count() == len(lines)


def test_import_plain_gateway_text(tmp_path, detectors) -> None:
    path = tmp_path / "gateway.log"
    path.write_text("2026-01-05T10:00:00Z  INFO Gateway starting\n"
                    "2026-01-05T10:00:01Z  WARN Request blocked by WAF: Rule sqli matched client_ip=192.0.2.9\n"
                    "garbage\n")
    state = import_file(path, "gateway-text", "gw-text")
    assert (state.lines, state.malformed, state.finished) == (3, 1, True)


def test_retention_archives_each_day_then_deletes(tmp_path, settings, detectors) -> None:
    from logpipeline.services import ingest

    settings.LOG_ARCHIVE_DIR = str(tmp_path)
    now = datetime.now(UTC)
    old = (now - timedelta(days=10)).replace(hour=12).timestamp()
    older = (now - timedelta(days=11)).replace(hour=12).timestamp()
    ingest("file", "gw-r", [combined(i, old + i) for i in range(30)] + [combined(i, older + i) for i in range(20)]
           + [combined(i) for i in range(5)], correlate=False)

    result = purge_request_logs(retention_days=7)
    assert (result.archives, result.archived_rows, result.deleted_rows) == (2, 50, 50)
    assert RequestLog.objects.count() == 5
    archives = list(LogArchive.objects.order_by("period_start"))
    assert [a.rows for a in archives] == [20, 30]
    with gzip.open(archives[1].path, "rt") as handle:
        rows = [json.loads(line) for line in handle]
    assert len(rows) == 30 and {r["gateway_instance"] for r in rows} == {"gw-r"}
    import hashlib
    from pathlib import Path

    assert hashlib.sha256(Path(archives[1].path).read_bytes()).hexdigest() == archives[1].sha256

    assert purge_request_logs(retention_days=7).deleted_rows == 0  # idempotent
    ingest("file", "gw-r", [combined(99, old + 99)], correlate=False)  # a late row for an archived day
    late = purge_request_logs(retention_days=7)
    assert (late.archives, late.deleted_rows) == (1, 1)
    assert LogArchive.objects.filter(part=1).count() == 1


def test_corpus_files_through_import_logs_are_detected(tmp_path, settings, detectors, redis_client) -> None:
    """make_log_corpus writes one file per instance and format; importing them one after the other (event-time
    windows) finds every attack kind and flags nothing else."""
    import uuid

    from logpipeline import services
    from logpipeline.models import SecurityEvent
    from tests.log_support import clear_prefix

    settings.LOG_CORRELATION_PREFIX = f"lp-test:{uuid.uuid4().hex[:12]}:"
    services._engine = None  # the process-wide engine picks the prefix up
    try:
        call_command("make_log_corpus", str(tmp_path), "--seed", "5", "--benign-lines", "3000", stdout=io.StringIO())
        assert (tmp_path / "labels.ndjson").exists() and (tmp_path / "expected.json").exists()
        for path in sorted(tmp_path.glob("gw-*.log")):
            instance, fmt, _ = path.name.split(".", 2)
            call_command("import_logs", str(path), "--format", fmt, "--instance", instance, stdout=io.StringIO(),
                         stderr=io.StringIO())
        found = set(SecurityEvent.objects.exclude(detector="").values_list("event_type", "subject"))
        expected = json.loads((tmp_path / "expected.json").read_text())
        assert {(e["event_type"], e["subject"]) for e in expected.values()} == found
    finally:
        clear_prefix(redis_client, settings.LOG_CORRELATION_PREFIX)
        services._engine = None
