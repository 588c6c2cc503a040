"""The reference agent ships its nginx JSON access log: the format it configures agrees with the pipeline's, lines
become LogEntry, the tail survives rotation and truncation, and a SIGKILLed agent resumes at the Worker's
acknowledged offset: exactly N rows for N lines, none lost, none twice."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_worker.v1 import gateway_worker_pb2 as pb

from gateway_agent.logship import NGINX_JSON_LOG_FORMAT, Tailer, line_to_entry, render_log_directives
from gateways.grpc_server import ServerConfig
from logpipeline.models import RequestLog, ShipOffset
from logpipeline.parsers import NGINX_JSON_LOG_FORMAT as PIPELINE_FORMAT
from tests.push_support import AgentProcess, Pki, ServerThread, agent_settings, wait_until


def json_line(i: int, ip: str = "198.51.100.40") -> bytes:
    return (json.dumps({"time": "2026-01-01T00:00:00+00:00", "msec": f"{time.time():.3f}", "remote_addr": ip,
                        "x_forwarded_for": "", "method": "GET", "host": "shop.example",
                        "request_uri": f"/item/{i}?q=1", "protocol": "HTTP/1.1", "status": 200,
                        "body_bytes_sent": 12, "request_length": 80, "request_time": 0.004, "referer": "",
                        "user_agent": "Mozilla/5.0 (X11)", "request_id": f"r{i}", "upstream_status": "",
                        "upstream_response_time": ""}) + "\n").encode()


def test_the_agents_log_format_is_the_pipelines() -> None:
    assert NGINX_JSON_LOG_FORMAT == PIPELINE_FORMAT
    text = render_log_directives("/var/log/nginx/gateway.json.log")
    assert text.startswith("log_format gateway_json escape=json") and \
        "access_log /var/log/nginx/gateway.json.log gateway_json;" in text
    with pytest.raises(ValueError):
        render_log_directives("/tmp/x.log; include /etc/passwd")


def test_a_json_line_becomes_a_log_entry() -> None:
    e = line_to_entry(json_line(3).rstrip())
    assert (e.client_ip, e.method, e.path, e.status_code, e.host, e.bytes_sent, e.response_time_ms) == (
        "198.51.100.40", "GET", "/item/3?q=1", 200, "shop.example", 12, 4)
    assert e.timestamp_ms > 1_700_000_000_000 and e.metadata["request_id"] == "r3"
    bad = line_to_entry(b"\x16\x03 not json")
    assert bad.method == "" and "unparsed" in bad.message


def test_tail_batches_rotation_and_truncation(tmp_path: Path) -> None:
    log, state = tmp_path / "access.log", tmp_path / "state.json"
    log.write_bytes(json_line(0) + json_line(1) + b'{"partial":')
    t = Tailer(str(log), state, max_lines=1)
    b = t.read_batch()
    assert b is not None and len(b.entries) == 1 and (b.offset_start, b.offset_end) == (0, len(json_line(0)))
    ino = os.stat(log).st_ino
    assert b.source == f"{log}#{ino}.0"
    t.acked(pb.LogAck(source=b.source, offset_end=b.offset_end))
    b2 = t.read_batch()
    assert b2 is not None and b2.offset_start == len(json_line(0)) and b2.entries[0].request_id == "r1"
    t.acked(pb.LogAck(source=b2.source, offset_end=b2.offset_end))
    assert t.read_batch() is None  # the partial line waits for its newline
    assert json.loads(state.read_text())["offset"] == b2.offset_end
    # a restarted tailer resumes at the acknowledged offset
    assert Tailer(str(log), state).offset == b2.offset_end
    # rotation: mv + a new file; the old one is read to its end first, then the new one from 0 as a new source
    with open(log, "ab") as fh:
        fh.write(b'"x"}\n')
    os.rename(log, tmp_path / "access.log.1")
    log.write_bytes(json_line(9))
    b3 = t.read_batch()
    assert b3 is not None and b3.source.endswith(f"#{ino}.0") and len(b3.entries) == 1
    t.acked(pb.LogAck(source=b3.source, offset_end=b3.offset_end))
    b4 = t.read_batch()
    assert b4 is not None and b4.offset_start == 0 and b4.source == f"{log}#{os.stat(log).st_ino}.0"
    t.acked(pb.LogAck(source=b4.source, offset_end=b4.offset_end))
    # truncation in place (seen while the file is shorter than the offset): a new generation from 0
    log.write_bytes(b"")
    assert t.read_batch() is None and t.source.endswith(".1")
    with open(log, "ab") as fh:
        fh.write(json_line(10))
    b5 = t.read_batch()
    assert b5 is not None and b5.offset_start == 0 and b5.source.endswith(".1") and b5.entries[0].request_id == "r10"
    # an ack for another source (stale) moves nothing; the Worker's stored end wins over the batch's
    t.acked(pb.LogAck(source="elsewhere", offset_end=999))
    assert t.offset == 0
    t.acked(pb.LogAck(source=b5.source, offset_end=3))
    assert t.offset == 3


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[tuple[ServerThread, Pki]]:
    pki = Pki.create(tmp_path / "pki")
    s = ServerThread(ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key),
                                  ca=str(pki.ca), debounce_seconds=0.02)).start()
    yield s, pki
    s.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_sigkilled_agent_resumes_without_loss_or_duplicates(tmp_path: Path, srv: tuple[ServerThread, Pki]) -> None:
    server, pki = srv
    n = 3000
    log = tmp_path / "access.json.log"
    log.write_bytes(b"".join(json_line(i) for i in range(n // 2)))
    settings = agent_settings(tmp_path / "edge", pki, server.port, "edge-ship", "default", access_log=str(log),
                              log_batch_lines=10, log_poll_seconds=0.05)
    agent = AgentProcess(tmp_path / "edge", settings).start()
    rows = RequestLog.objects.filter(gateway_instance="edge-ship")
    try:
        wait_until(lambda: rows.count() >= 200, timeout=60, message="some batches stored")
        with open(log, "ab") as fh:  # nginx keeps writing while the agent ships
            fh.write(b"".join(json_line(i) for i in range(n // 2, n)))
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGKILL)  # mid-way: no goodbye, whatever was in flight is lost with it
        agent.proc.wait(10)
        at_kill = rows.count()
        assert 200 <= at_kill < n
        agent.start()
        wait_until(lambda: rows.count() >= n, timeout=120, message=f"{n} rows")
        time.sleep(1.0)  # anything resent would land now
        assert rows.count() == n
        assert rows.values("uri").distinct().count() == n
        source = f"{log}#{os.stat(log).st_ino}.0"
        assert ShipOffset.objects.get(instance_id="edge-ship", source=source).offset_end == log.stat().st_size
        # an acknowledgement that never reached the agent's disk (crash between the Worker's commit and the
        # write): the agent resends from an older offset; the Worker stores nothing and moves it forward
        agent.stop()
        state = Path(settings["state_dir"]) / "logship.json"
        saved = json.loads(state.read_text())
        state.write_text(json.dumps({**saved, "offset": 0}))
        agent.start()
        wait_until(lambda: ShipOffset.objects.get(instance_id="edge-ship", source=source).duplicates >= 1,
                   timeout=30, message="the resend answered")
        wait_until(lambda: json.loads(state.read_text())["offset"] == log.stat().st_size, timeout=30,
                   message="agent moved to the Worker's offset")
        assert rows.count() == n
    finally:
        agent.stop()
