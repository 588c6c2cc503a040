"""Bad input on every RPC gets its fitting status and a short message, never an ERROR traceback; a second,
well-behaved stream stays open and keeps receiving throughout, and a normal Gateway is served right after."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from gateway_worker.v1 import gateway_worker_pb2 as pb
from gateway_worker.v1 import gateway_worker_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateways.grpc_server import ServerConfig
from gateways.models import GatewayGroup
from gateways.services import publish_desired_state, register_resource
from tests.push_support import DEFAULT_STATE, Pki, ServerThread, placeholder_builders, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PUSH = "/gateway_worker.v1.PushService/"
DRAFT = "/gateway_worker.GatewayWorkerService/"
RAW = {"request_serializer": lambda b: b, "response_deserializer": lambda b: b}


@pytest.fixture
def state() -> Iterator[dict[str, Any]]:
    with placeholder_builders():
        data: dict[str, Any] = dict(DEFAULT_STATE)
        for rtype in DEFAULT_STATE:
            register_resource(rtype, lambda g, t=rtype: data[t])
        yield data


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


@pytest.fixture
def srv(pki: Pki, state: dict[str, Any]) -> Iterator[ServerThread]:
    cfg = ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key), ca=str(pki.ca),
                       debounce_seconds=0.02, hello_timeout=0.5, max_message_bytes=64 * 1024, unary_rate=1000)
    s = ServerThread(cfg).start()
    yield s
    s.stop()


class GoodGateway:
    """A well-behaved Gateway on its own thread: reads its stream and ACKs everything, recording versions."""

    def __init__(self, pki: Pki, port: int) -> None:
        c, k, _ = pki.client("gw-good")
        self.creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes())
        self.port = port
        self.received: list[tuple[str, int]] = []
        self.ended: str | None = None
        self.loop = asyncio.new_event_loop()
        self.call: Any = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        async with grpc.aio.secure_channel(f"127.0.0.1:{self.port}", self.creds) as ch:
            self.call = pb_grpc.PushServiceStub(ch).Stream()
            await self.call.write(pb.GatewayMessage(hello=pb.Hello()))
            try:
                async for msg in self.call:
                    if msg.WhichOneof("msg") == "update":
                        u = msg.update
                        self.received.append((u.type, u.version))
                        await self.call.write(pb.GatewayMessage(ack=pb.Ack(type=u.type, version=u.version,
                                                                           nonce=u.nonce)))
                self.ended = "OK"
            except grpc.aio.AioRpcError as exc:
                self.ended = exc.code().name
            except asyncio.CancelledError:  # stop(): this side hung up
                self.ended = "CANCELLED"

    def start(self) -> GoodGateway:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.call is not None:
            self.loop.call_soon_threadsafe(self.call.cancel)
        self.thread.join(10)


def stream_status(ch: grpc.Channel, frames: list[bytes], hold: float | None = None) -> tuple[grpc.StatusCode, str]:
    def gen() -> Iterator[bytes]:
        yield from frames
        if hold:
            time.sleep(hold)  # keep the request side open: the server must end the stream by itself
    call = ch.stream_stream(PUSH + "Stream", **RAW)
    with pytest.raises(grpc.RpcError) as err:
        list(call(gen(), timeout=5))
    return err.value.code(), err.value.details() or ""


def unary_status(ch: grpc.Channel, method: str, payload: bytes, streaming: str = "") -> tuple[grpc.StatusCode, str]:
    if streaming == "response":
        fn: Callable[..., Any] = lambda: list(ch.unary_stream(method, **RAW)(payload, timeout=5))  # noqa: E731
    elif streaming == "request":
        fn = lambda: ch.stream_unary(method, **RAW)(iter([payload]), timeout=5)  # noqa: E731
    else:
        fn = lambda: ch.unary_unary(method, **RAW)(payload, timeout=5)  # noqa: E731
    with pytest.raises(grpc.RpcError) as err:
        fn()
    return err.value.code(), err.value.details() or ""


def msg(**kw: Any) -> bytes:
    return pb.GatewayMessage(**kw).SerializeToString()


NUL_ID = "gw\x00bad"
LONG_ID = "g" * 10_000
LONG_DOMAIN = ("a" * 60 + ".") * 83 + "com"  # ~5,000 characters


def test_bad_input_on_every_rpc_while_a_good_stream_stays_open(srv: ServerThread, pki: Pki, state: dict[str, Any],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    from gateway_worker import gateway_worker_pb2 as dpb

    caplog.set_level(logging.WARNING)
    GatewayGroup.objects.get_or_create(name="default")
    good = GoodGateway(pki, srv.port).start()
    wait_until(lambda: len(good.received) == len(DEFAULT_STATE), message="good gateway converged")
    with pki.channel(srv.port, "gw-bad") as bad:
        # the push stream
        cases: list[tuple[list[bytes], grpc.StatusCode, str]] = [
            ([b"\xff\xff\xff\xff"], grpc.StatusCode.INVALID_ARGUMENT, "malformed GatewayMessage"),
            ([msg(ack=pb.Ack(type="certificates", version=1))], grpc.StatusCode.FAILED_PRECONDITION,
             "first message must be Hello"),
            ([msg(hello=pb.Hello(known_versions={"teapots": 3}))], grpc.StatusCode.INVALID_ARGUMENT,
             "unknown resource type 'teapots'"),
            ([msg(hello=pb.Hello()), msg(ack=pb.Ack(type="teapots", version=1))], grpc.StatusCode.INVALID_ARGUMENT,
             "unknown resource type"),
            ([msg(hello=pb.Hello()), msg(ack=pb.Ack(type="config", version=999999, nonce="x"))],
             grpc.StatusCode.INVALID_ARGUMENT, "not sent on this stream"),
            ([msg(hello=pb.Hello(group="Not A Slug!"))], grpc.StatusCode.INVALID_ARGUMENT, "is not a slug"),
            ([msg(hello=pb.Hello(instance_id=NUL_ID))], grpc.StatusCode.INVALID_ARGUMENT, "instance id"),
            ([msg(hello=pb.Hello(instance_id=LONG_ID))], grpc.StatusCode.INVALID_ARGUMENT, "instance id"),
            ([msg(hello=pb.Hello(group="x" * 10_000))], grpc.StatusCode.INVALID_ARGUMENT, "is not a slug"),
            ([msg(hello=pb.Hello()), msg(logs=pb.LogBatch(entries=[pb.LogEntry(message="x" * 100_000)]))],
             grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
            ([msg(hello=pb.Hello()), msg(hello=pb.Hello())], grpc.StatusCode.INVALID_ARGUMENT, "only once"),
        ]
        for frames, code, text in cases:
            got_code, details = stream_status(bad, frames)
            assert got_code == code and text in details, (frames[-1][:40], got_code, details)
            assert len(details) < 400, details  # nothing the client sent is echoed unbounded
        got_code, details = stream_status(bad, [], hold=1.5)
        assert got_code == grpc.StatusCode.FAILED_PRECONDITION and "no Hello within" in details

        # every unary and streaming RPC of both services: garbage, NUL, 10 KB ids, 5,000-character domains
        garbage = b"\x0a\xff\xff\xff\xff\x0f"
        rpcs: list[tuple[str, str, list[tuple[bytes, grpc.StatusCode]]]] = [
            (PUSH + "FetchResource", "", [
                (garbage, grpc.StatusCode.INVALID_ARGUMENT),
                (pb.FetchResourceRequest(type="config", instance_id=NUL_ID).SerializeToString(),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (pb.FetchResourceRequest(type="config", instance_id=LONG_ID).SerializeToString(),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (pb.FetchResourceRequest(type="t" * 10_000).SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT),
                (pb.FetchResourceRequest(type="config", group="g" * 10_000).SerializeToString(),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (b"\x0a" + b"\xff\xff\x0f" + b"x" * 70_000, grpc.StatusCode.RESOURCE_EXHAUSTED),
            ]),
            (PUSH + "ReportStatus", "", [
                (garbage, grpc.StatusCode.INVALID_ARGUMENT),
                (pb.StatusReport(instance_id=NUL_ID).SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT),
                (pb.StatusReport(instance_id=LONG_ID).SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT),
            ]),
            (DRAFT + "GetCertificate", "", [
                (garbage, grpc.StatusCode.INVALID_ARGUMENT),
                (dpb.CertificateRequest(domain=LONG_DOMAIN).SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT),
                (dpb.CertificateRequest(domain="a\x00b.com").SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT),
                (dpb.CertificateRequest(domain="nothing-here.example").SerializeToString(),
                 grpc.StatusCode.NOT_FOUND),
            ]),
            (DRAFT + "WatchCertificateUpdates", "response", [
                (garbage, grpc.StatusCode.INVALID_ARGUMENT),
                (dpb.CertificateWatchRequest(gateway_id=LONG_ID).SerializeToString(),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (dpb.CertificateWatchRequest(domains=[LONG_DOMAIN]).SerializeToString(),
                 grpc.StatusCode.INVALID_ARGUMENT),
            ]),
            (DRAFT + "GetConfiguration", "", [
                (garbage, grpc.StatusCode.INVALID_ARGUMENT),
                (dpb.ConfigurationRequest(gateway_id=NUL_ID, config_type="waf").SerializeToString(),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (dpb.ConfigurationRequest(config_type="c" * 10_000).SerializeToString(),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (dpb.ConfigurationRequest(config_type="waf", config_version="v" * 10_000).SerializeToString(),
                 grpc.StatusCode.NOT_FOUND),
            ]),
            (DRAFT + "WatchConfigurationUpdates", "response", [
                (garbage, grpc.StatusCode.INVALID_ARGUMENT),
                (dpb.ConfigurationWatchRequest(config_types=["x" * 10_000]).SerializeToString(),
                 grpc.StatusCode.INVALID_ARGUMENT),
            ]),
            (DRAFT + "UpdateConfiguration", "", [
                (garbage, grpc.StatusCode.INVALID_ARGUMENT),
                (dpb.UpdateConfigurationRequest(gateway_id=LONG_ID).SerializeToString(),
                 grpc.StatusCode.INVALID_ARGUMENT),
            ]),
            (DRAFT + "SendLogs", "request", [
                (garbage, grpc.StatusCode.INVALID_ARGUMENT),
                (dpb.LogEntry(gateway_id=NUL_ID).SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT),
                (dpb.LogEntry(message="m" * 100_000).SerializeToString(), grpc.StatusCode.RESOURCE_EXHAUSTED),
            ]),
            (DRAFT + "HealthCheck", "", [(garbage, grpc.StatusCode.INVALID_ARGUMENT)]),
            (DRAFT + "GetMetrics", "", [(garbage, grpc.StatusCode.INVALID_ARGUMENT)]),
            ("/grpc.health.v1.Health/Check", "", [(garbage, grpc.StatusCode.INVALID_ARGUMENT)]),
        ]
        for method, streaming, payloads in rpcs:
            for payload, code in payloads:
                got_code, details = unary_status(bad, method, payload, streaming)
                assert got_code == code, (method, payload[:30], got_code, details)
                assert len(details) < 400, (method, details)

    # no ERROR (and no traceback) was logged for any of it
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [(r.name, r.getMessage()[:200]) for r in errors]

    # the good stream is provably still open: a new version published now reaches it and is ACKed
    state["waf_rules"] = {"name": "waf-rules.yaml", "content": "rules: [after-the-storm]\n"}
    (v,) = publish_desired_state("waf_rules", GatewayGroup.objects.get(name="default"))
    wait_until(lambda: ("waf_rules", v.pk) in good.received, message="good stream received the new version")
    assert good.ended is None
    # and a new Gateway is served right after, along with health and reflection
    with pki.channel(srv.port, "gw-new") as ch:
        fresh = pb_grpc.PushServiceStub(ch).Stream(iter([pb.GatewayMessage(hello=pb.Hello())]), timeout=30)
        assert next(fresh).WhichOneof("msg") == "welcome"
        fresh.cancel()
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    good.stop()


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
