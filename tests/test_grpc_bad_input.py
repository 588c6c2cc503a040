"""Bad input on the push server gets a clear gRPC status, and the server keeps serving the others."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from gateway_worker.v1 import gateway_worker_pb2 as pb
from gateway_worker.v1 import gateway_worker_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateways.grpc_server import ServerConfig
from gateways.models import GatewayCredential
from tests.push_support import Pki, ServerThread

pytestmark = pytest.mark.django_db(transaction=True)

STREAM = "/gateway_worker.v1.PushService/Stream"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


@pytest.fixture
def srv(pki: Pki) -> Iterator[ServerThread]:
    cfg = ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key), ca=str(pki.ca),
                       debounce_seconds=0.02, hello_timeout=0.5, max_message_bytes=64 * 1024)
    s = ServerThread(cfg).start()
    yield s
    s.stop()


def hello(name: str = "gw-good", **kw: object) -> bytes:
    return pb.GatewayMessage(hello=pb.Hello(instance_id=name, group="default", **kw)).SerializeToString()


def status_of(ch: grpc.Channel, frames: list[bytes], hold: float | None = None) -> tuple[grpc.StatusCode, str]:
    def gen() -> Iterator[bytes]:
        yield from frames
        if hold:
            time.sleep(hold)  # keep the request side open: the server must end the stream by itself
    call = ch.stream_stream(STREAM, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as err:
        list(call(gen(), timeout=5))
    return err.value.code(), err.value.details() or ""


def test_bad_input_gets_clear_status_and_others_keep_being_served(srv: ServerThread, pki: Pki) -> None:
    with pki.channel(srv.port, "gw-good") as good_ch, pki.channel(srv.port, "gw-bad") as bad_ch:
        good = pb_grpc.PushServiceStub(good_ch).Stream(iter([pb.GatewayMessage(
            hello=pb.Hello(instance_id="gw-good", group="default"))]), timeout=30)
        assert next(good).WhichOneof("msg") == "welcome"

        code, details = status_of(bad_ch, [b"\xff\xff\xff\xff"])
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "malformed GatewayMessage" in details

        code, details = status_of(bad_ch, [], hold=2.0)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "no Hello within" in details

        ack_first = pb.GatewayMessage(ack=pb.Ack(type="certificates", version=1)).SerializeToString()
        code, details = status_of(bad_ch, [ack_first])
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "first message must be Hello" in details

        code, details = status_of(bad_ch, [hello("gw-bad", known_versions={"teapots": 3})])
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "unknown resource type 'teapots'" in details

        unknown_ack = pb.GatewayMessage(ack=pb.Ack(type="teapots", version=1)).SerializeToString()
        code, details = status_of(bad_ch, [hello("gw-bad"), unknown_ack])
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "unknown resource type" in details

        stray = pb.GatewayMessage(ack=pb.Ack(type="config", version=999999)).SerializeToString()
        code, details = status_of(bad_ch, [hello("gw-bad"), stray])
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "not sent on this stream" in details

        huge = pb.GatewayMessage(logs=pb.LogBatch(entries=[pb.LogEntry(message="x" * 100_000)])).SerializeToString()
        code, details = status_of(bad_ch, [hello("gw-bad"), huge])
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED

        bad_group = pb.GatewayMessage(hello=pb.Hello(instance_id="gw-bad", group="Not A Slug!")).SerializeToString()
        code, details = status_of(bad_ch, [bad_group])
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "is not a slug" in details

        # the well-behaved stream is still open and the server still answers new ones
        with pki.channel(srv.port, "gw-new") as ch2:
            fresh = pb_grpc.PushServiceStub(ch2).Stream(iter([pb.GatewayMessage(
                hello=pb.Hello(instance_id="gw-new", group="default"))]), timeout=30)
            assert next(fresh).WhichOneof("msg") == "welcome"
            fresh.cancel()
        health = health_pb2_grpc.HealthStub(good_ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        good.cancel()


def test_health_and_reflection(srv: ServerThread, pki: Pki) -> None:
    with pki.channel(srv.port, "gw-probe") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for name in ("", "gateway_worker.v1.PushService", "gateway_worker.GatewayWorkerService"):
            assert stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status == 1
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        resp = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                              timeout=5))
        names = {s.name for s in resp.list_services_response.service}
        assert {"gateway_worker.v1.PushService", "gateway_worker.GatewayWorkerService",
                "grpc.health.v1.Health"} <= names


def test_revoked_credential_is_refused(srv: ServerThread, pki: Pki) -> None:
    from django.utils import timezone

    _, _, issued = pki.client("gw-revoked")
    GatewayCredential.objects.create(name="gw-revoked", serial=issued.serial,
                                     fingerprint_sha256=issued.fingerprint_sha256, not_after=issued.not_after,
                                     revoked_at=timezone.now())
    with pki.channel(srv.port, "gw-revoked") as ch:
        code, details = status_of(ch, [hello("gw-revoked")])
    assert code == grpc.StatusCode.PERMISSION_DENIED and "revoked" in details
