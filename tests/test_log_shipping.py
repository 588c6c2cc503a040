"""Push-stream log batches with a source and a byte range (the reference agent's access-log tail): stored with the
source's offset in one transaction, answered with LogAck, a resent or overlapping range stored never twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from gateway_worker.v1 import gateway_worker_pb2 as pb
from gateway_worker.v1 import gateway_worker_pb2_grpc as pb_grpc

from gateways.grpc_server import ServerConfig
from logpipeline.models import RequestLog, ShipOffset
from logpipeline.services import ingest
from tests.push_support import Pki, ServerThread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


@pytest.fixture
def srv(pki: Pki) -> Iterator[ServerThread]:
    s = ServerThread(ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key),
                                  ca=str(pki.ca), debounce_seconds=0.02)).start()
    yield s
    s.stop()


def entries(n: int, tag: str) -> list[pb.LogEntry]:
    now_ms = int(time.time() * 1000)
    return [pb.LogEntry(timestamp_ms=now_ms, method="GET", path=f"/{tag}/{i}", client_ip="198.51.100.20",
                        status_code=200, host="shop.example") for i in range(n)]


def test_ranges_are_acknowledged_and_never_stored_twice(srv: ServerThread, pki: Pki) -> None:
    c, k, _ = pki.client("gw-ship")
    src = "/var/log/nginx/gateway.json.log#42.0"

    async def ship() -> list[pb.LogAck]:
        creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes())
        acks: list[pb.LogAck] = []
        async with grpc.aio.secure_channel(f"127.0.0.1:{srv.port}", creds) as ch:
            call = pb_grpc.PushServiceStub(ch).Stream()
            await call.write(pb.GatewayMessage(hello=pb.Hello()))

            async def send(batch: pb.LogBatch) -> None:
                await call.write(pb.GatewayMessage(logs=batch))
                while True:
                    msg = await asyncio.wait_for(call.read(), 10)
                    if msg.WhichOneof("msg") == "log_ack":
                        acks.append(msg.log_ack)
                        return

            await send(pb.LogBatch(entries=entries(3, "a"), source=src, offset_start=0, offset_end=300))
            await send(pb.LogBatch(entries=entries(3, "a"), source=src, offset_start=0, offset_end=300))  # resend
            await send(pb.LogBatch(entries=entries(2, "b"), source=src, offset_start=300, offset_end=500))
            # after a crash the sender resends from an older offset with more lines: overlaps, nothing stored
            await send(pb.LogBatch(entries=entries(4, "b"), source=src, offset_start=300, offset_end=700))
            await send(pb.LogBatch(entries=entries(2, "c"), source=src, offset_start=500, offset_end=700))
            # a new file (rotation) is a new source from 0
            await send(pb.LogBatch(entries=entries(1, "d"), source=src.replace("#42", "#43"), offset_start=0,
                                   offset_end=100))
            call.cancel()
        return acks

    acks = asyncio.run(ship())
    assert [(a.offset_end, a.stored) for a in acks] == [(300, 3), (300, 0), (500, 2), (500, 0), (700, 2), (100, 1)]
    assert acks[0].source == src
    assert RequestLog.objects.filter(gateway_instance="gw-ship").count() == 8
    for tag, n in (("a", 3), ("b", 2), ("c", 2), ("d", 1)):
        assert RequestLog.objects.filter(uri__startswith=f"/{tag}/").count() == n
    row = ShipOffset.objects.get(instance_id="gw-ship", source=src)
    assert (row.offset_end, row.batches, row.duplicates) == (700, 3, 2)


def test_bad_ranges_are_refused(srv: ServerThread, pki: Pki) -> None:
    c, k, _ = pki.client("gw-bad")

    async def ship() -> grpc.StatusCode:
        creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{srv.port}", creds) as ch:
            call = pb_grpc.PushServiceStub(ch).Stream()
            await call.write(pb.GatewayMessage(hello=pb.Hello()))
            await call.write(pb.GatewayMessage(logs=pb.LogBatch(entries=entries(1, "x"), source="s",
                                                                offset_start=10, offset_end=5)))
            try:
                while True:
                    await asyncio.wait_for(call.read(), 10)
            except grpc.aio.AioRpcError as exc:
                return exc.code()

    assert asyncio.run(ship()) == grpc.StatusCode.INVALID_ARGUMENT
    assert not RequestLog.objects.filter(gateway_instance="gw-bad").exists()


def test_ingest_with_a_position_commits_rows_and_offset_together(detectors) -> None:
    line = '{"msec": %.3f, "remote_addr": "198.51.100.30", "method": "GET", "request_uri": "/p", "status": 200}'
    first = ingest("grpc-stream", "gw-pos", [line % time.time()] * 4, "json", position=("f#1.0", 0, 400))
    again = ingest("grpc-stream", "gw-pos", [line % time.time()] * 4, "json", position=("f#1.0", 0, 400))
    assert (first.stored, first.offset_end, first.duplicate) == (4, 400, False)
    assert (again.stored, again.offset_end, again.duplicate) == (0, 400, True)
    assert RequestLog.objects.filter(gateway_instance="gw-pos").count() == 4
