"""Bad input never stops a batch: binary garbage, a 10 MB line, invalid UTF-8, a far-future timestamp and 10,000
malformed lines are counted and sampled with their reason, and no good line is lost."""

from __future__ import annotations

import json
import random
import time

import pytest
from django.conf import settings

from logpipeline.models import IntakeSource, MalformedSample, RequestLog
from logpipeline.services import ingest

pytestmark = pytest.mark.django_db


def good(n: int, ip: str = "198.51.100.1") -> str:
    when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(time.time() - 60))
    return f'{ip} - - [{when}] "GET /item/{n}?a=1 HTTP/1.1" 200 {n} "-" "Mozilla/5.0 (X11)"'


def test_every_kind_of_bad_input_is_counted_sampled_and_the_good_lines_kept(detectors, make_engine) -> None:
    rng = random.Random(3)
    garbage = bytes(rng.randrange(256) for _ in range(4096))
    future = good(1).replace(time.strftime("%Y", time.gmtime()), "2999", 1)
    bad: list[object] = [
        garbage,  # binary
        b"\x00\x01\x02\x03" * 10,  # binary that happens to be valid UTF-8
        b"A" * (10 * 1024 * 1024),  # a 10 MB line
        "x" * (10 * 1024 * 1024),  # the same as text
        good(2).encode()[:40] + b"\xff\xfe" + good(2).encode()[40:],  # invalid UTF-8 in an otherwise good line
        future,  # far-future timestamp
        {"gateway_id": "gw", "timestamp": 4102444800000 * 1000, "source_ip": "1.2.3.4", "method": "GET",
         "path": "/"},  # a LogEntry from 2100
        {"gateway_id": "gw", "timestamp": "yesterday", "source_ip": "1.2.3.4"},
        {"gateway_id": "gw", "timestamp": 1, "source_ip": "1.2.3.4", "metadata": "not a map"},
        '{"remote_addr": "1.2.3.4", "status": 200}',  # JSON without a timestamp
        "",
    ]
    bad += [f"malformed line {i} \x1b[31m" for i in range(10000)]
    good_lines = [good(i) for i in range(1000)]
    # good lines with hostile but legal content: NUL and tab in the user agent, a lone surrogate from JSON
    tricky = [good(5000).replace("Mozilla/5.0 (X11)", "a\\x00b\tc"),
              json.dumps({"time": "2026-01-05T10:00:00Z", "remote_addr": "198.51.100.2", "status": 200,
                          "request_uri": "/\ud800", "user_agent": "x\u0000y"})]
    records: list[object] = []
    for i, line in enumerate(good_lines):  # interleaved
        records.append(line)
        if i < len(bad):
            records.append(bad[i])
    records += bad[len(good_lines):] + tricky

    result = ingest("http", "gw-bad", records, engine=make_engine())

    assert result.stored == len(good_lines) + len(tricky)
    assert result.malformed == len(bad)
    assert RequestLog.objects.filter(gateway_instance="gw-bad").count() == len(good_lines) + len(tricky)
    stored_sizes = set(RequestLog.objects.filter(gateway_instance="gw-bad").values_list("bytes_sent", flat=True))
    assert set(range(1000)) <= stored_sizes  # each good line, none lost or mangled
    reasons = {s.reason for s in result.samples}
    assert {"invalid UTF-8", f"line longer than {settings.LOG_MAX_LINE_BYTES} bytes", "timestamp in the future",
            "not nginx combined"} <= reasons
    assert len(result.samples) == settings.LOG_MALFORMED_SAMPLES
    assert all(len(s.excerpt) <= 300 for s in result.samples)

    source = IntakeSource.objects.get(instance_id="gw-bad", kind="http")
    assert (source.accepted, source.malformed) == (len(good_lines) + len(tricky), len(bad))
    assert MalformedSample.objects.filter(source=source).count() == settings.LOG_MALFORMED_SAMPLES

    # the next batch of the same source goes through, and the samples stay bounded (newest kept)
    again = ingest("http", "gw-bad", ["still bad", good(7)], engine=make_engine())
    assert (again.stored, again.malformed) == (1, 1)
    samples = MalformedSample.objects.filter(source=source)
    assert samples.count() == settings.LOG_MALFORMED_SAMPLES and samples.first().excerpt == "still bad"


def test_a_wrong_door_or_format_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown source kind"):
        ingest("carrier-pigeon", "gw", [])
    with pytest.raises(ValueError, match="unknown format"):
        ingest("http", "gw", [], fmt="apache")
    with pytest.raises(ValueError, match="instance_id is required"):
        ingest("http", "", [])
