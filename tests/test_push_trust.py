"""The push plane's trust boundary, tried as an intruder would: a Gateway is who its credential says, reads only
its own group, cannot forge acknowledgements, is cut off when revoked, and cannot grow the server without bound.

Every RPC here goes over mTLS to the server run_grpc assembles (gateways.grpc_server.start_server), through the
generated stubs of both services; the RSS test runs the real ``manage.py run_grpc`` process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from gateway_worker import gateway_worker_pb2 as dpb
from gateway_worker import gateway_worker_pb2_grpc as dgrpc
from gateway_worker.v1 import gateway_worker_pb2 as pb
from gateway_worker.v1 import gateway_worker_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateways.grpc_server import ServerConfig
from gateways.models import GatewayCredential, GatewayGroup, GatewayInstance, InstanceResourceState
from gateways.services import create_group, publish_desired_state, revoke_credentials, wait_for_acks
from tests.push_support import DEFAULT_STATE, Pki, ServerThread, cert_entry, placeholder_state, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CANARY_DOMAIN = "secret.canary.example"


@pytest.fixture
def state() -> Iterator[dict[tuple[str, str], dict[str, Any]]]:
    with placeholder_state() as data:
        yield data


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


@pytest.fixture
def server(pki: Pki) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def start(**overrides: Any) -> ServerThread:
        cfg = ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key), ca=str(pki.ca),
                           debounce_seconds=0.02, reconcile_seconds=30.0, hello_timeout=2.0)
        for k, v in overrides.items():
            setattr(cfg, k, v)
        srv = ServerThread(cfg).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def fleet(state: dict[tuple[str, str], dict[str, Any]], pki: Pki) -> dict[str, str]:
    """Two groups; a certificate (and its key) scoped to canary only. Returns the canary key's PEM."""
    create_group("canary", actor="tests")
    GatewayGroup.objects.get_or_create(name="default")
    entry, _ = cert_entry([CANARY_DOMAIN])
    state[("certificates", "canary")] = {"certificates": [entry]}
    state[("waf_rules", "canary")] = {"name": "waf-rules.yaml", "content": "rules: [canary-only]\n"}
    for rtype in DEFAULT_STATE:
        publish_desired_state(rtype)
    pki.client("gw-default", "default")
    pki.client("gw-canary", "canary")
    return {"key": entry["key_pem"], "cert": entry["cert_pem"]}


def _raises(code: grpc.StatusCode, fn: Callable[[], Any], text: str = "") -> str:
    with pytest.raises(grpc.RpcError) as err:
        fn()
    assert err.value.code() == code, (err.value.code(), err.value.details())
    assert text in (err.value.details() or ""), err.value.details()
    return err.value.details() or ""


def _stream_first_updates(ch: grpc.Channel, hello: pb.Hello, wait: float = 1.0) -> list[pb.WorkerMessage]:
    """Open a push stream with ``hello`` and collect what arrives within ``wait`` seconds."""
    got: list[pb.WorkerMessage] = []
    call = pb_grpc.PushServiceStub(ch).Stream(iter([pb.GatewayMessage(hello=hello)]), timeout=wait)
    try:
        for msg in call:
            got.append(msg)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    return got


def test_a_credential_reads_only_its_own_group_through_every_rpc(server, pki, fleet) -> None:
    srv = server()
    secret_key, secret_cert = fleet["key"], fleet["cert"]
    with pki.channel(srv.port, "gw-default") as ch:
        push, draft = pb_grpc.PushServiceStub(ch), dgrpc.GatewayWorkerServiceStub(ch)
        # v1 stream: naming the other group or the other instance is refused before anything is sent
        _raises(grpc.StatusCode.PERMISSION_DENIED,
                lambda: _stream_first_updates(ch, pb.Hello(group="canary")), "belongs to group 'default'")
        _raises(grpc.StatusCode.PERMISSION_DENIED,
                lambda: _stream_first_updates(ch, pb.Hello(instance_id="gw-canary")), "issued to 'gw-default'")
        # without claims it gets its own group's state, which holds nothing of canary's
        own = _stream_first_updates(ch, pb.Hello())
        assert {m.update.type for m in own if m.WhichOneof("msg") == "update"} == set(DEFAULT_STATE)
        blob = b"".join(m.SerializeToString() for m in own)
        assert secret_key.encode() not in blob and secret_cert.encode() not in blob
        # unary v1 calls
        for req in (pb.FetchResourceRequest(type="certificates", group="canary"),
                    pb.FetchResourceRequest(type="certificates", instance_id="gw-canary")):
            _raises(grpc.StatusCode.PERMISSION_DENIED, lambda req=req: push.FetchResource(req, timeout=5))
        fetched = push.FetchResource(pb.FetchResourceRequest(type="certificates"), timeout=5)
        assert secret_key not in fetched.SerializeToString().decode(errors="replace")
        _raises(grpc.StatusCode.PERMISSION_DENIED,
                lambda: push.ReportStatus(pb.StatusReport(instance_id="gw-canary"), timeout=5))
        # the Gateway's draft service
        _raises(grpc.StatusCode.NOT_FOUND,
                lambda: draft.GetCertificate(dpb.CertificateRequest(domain=CANARY_DOMAIN), timeout=5))
        _raises(grpc.StatusCode.PERMISSION_DENIED, lambda: list(draft.WatchCertificateUpdates(
            dpb.CertificateWatchRequest(gateway_id="gw-canary"), timeout=5)), "issued to 'gw-default'")
        _raises(grpc.StatusCode.PERMISSION_DENIED, lambda: draft.GetConfiguration(
            dpb.ConfigurationRequest(gateway_id="gw-canary", config_type="waf"), timeout=5))
        _raises(grpc.StatusCode.PERMISSION_DENIED, lambda: list(draft.WatchConfigurationUpdates(
            dpb.ConfigurationWatchRequest(gateway_id="gw-canary"), timeout=5)))
        waf = draft.GetConfiguration(dpb.ConfigurationRequest(config_type="waf"), timeout=5)
        assert "canary-only" not in waf.config_data
        watched: list[dpb.CertificateUpdate] = []
        with pytest.raises(grpc.RpcError):  # deadline: the watch stays open with nothing of canary's
            for u in draft.WatchCertificateUpdates(dpb.CertificateWatchRequest(), timeout=1.0):
                watched.append(u)
        assert all(secret_key not in u.private_key_pem for u in watched)
    # control: the canary credential does read it, through both services
    with pki.channel(srv.port, "gw-canary", "canary") as ch:
        got = dgrpc.GatewayWorkerServiceStub(ch).GetCertificate(dpb.CertificateRequest(domain=CANARY_DOMAIN),
                                                                 timeout=5)
        assert got.private_key_pem == secret_key
        own = _stream_first_updates(ch, pb.Hello(group="canary", instance_id="gw-canary"))
        assert secret_key.encode() in b"".join(m.SerializeToString() for m in own)
    # no RPC created a group, and the intruder's attempts registered nothing under the other name
    assert sorted(GatewayGroup.objects.values_list("name", flat=True)) == ["canary", "default"]
    assert GatewayInstance.objects.get(instance_id="gw-default").group.name == "default"


def test_a_hello_claiming_another_instance_changes_nothing_about_it(server, pki, fleet) -> None:
    srv = server()
    with pki.channel(srv.port, "gw-canary", "canary") as ch:
        _stream_first_updates(ch, pb.Hello())
    wait_until(lambda: not GatewayInstance.objects.get(instance_id="gw-canary").connected, message="disconnect")
    before = GatewayInstance.objects.filter(instance_id="gw-canary").values().get()
    with pki.channel(srv.port, "gw-default") as ch:
        _raises(grpc.StatusCode.PERMISSION_DENIED,
                lambda: _stream_first_updates(ch, pb.Hello(instance_id="gw-canary", group="default")))
        _raises(grpc.StatusCode.PERMISSION_DENIED,
                lambda: _stream_first_updates(ch, pb.Hello(instance_id="gw-canary", group="canary")))
    assert GatewayInstance.objects.filter(instance_id="gw-canary").values().get() == before


def test_a_hello_reporting_a_huge_version_is_not_an_acknowledgement(server, pki, fleet, state) -> None:
    srv = server()
    huge = 2**63 - 1
    c, k, _ = pki.client("gw-default")
    errors: list[BaseException] = []

    async def silent_gateway(stop: asyncio.Event) -> None:
        creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{srv.port}", creds) as ch:
            call = pb_grpc.PushServiceStub(ch).Stream()
            await call.write(pb.GatewayMessage(hello=pb.Hello(known_versions={t: huge for t in DEFAULT_STATE})))
            await call.read()  # Welcome; then it reads on but never ACKs
            await stop.wait()
            call.cancel()

    import threading

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def run() -> None:
        try:
            loop.run_until_complete(silent_gateway(stop))
        except BaseException as exc:
            errors.append(exc)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        wait_until(lambda: errors or GatewayInstance.objects.filter(instance_id="gw-default",
                                                                    connected=True).exists(), message="connected")
        assert not errors, errors
        assert not InstanceResourceState.objects.filter(instance__instance_id="gw-default",
                                                        acked_version__isnull=False).exists()
        state[("certificates", "default")] = {"certificates": [cert_entry(["new.example"])[0]]}
        (version,) = publish_desired_state("certificates", GatewayGroup.objects.get(name="default"))
        result = wait_for_acks([version], timeout=1.5)
        assert not result.ok and result.timed_out and result.pending == {version.pk: ["gw-default"]}, result
    finally:
        loop.call_soon_threadsafe(stop.set)
        t.join(10)


def _open_watchers(pki: Pki, port: int, name: str, group: str) -> tuple[Any, Any, list[Any]]:
    """An aio push stream and a draft watch for one credential, each reading in a task; returns their outcomes."""
    c, k, _ = pki.client(name, group)
    creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes())
    outcomes: list[Any] = []

    async def run(ready: asyncio.Event) -> None:
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as ch:
            call = pb_grpc.PushServiceStub(ch).Stream()
            await call.write(pb.GatewayMessage(hello=pb.Hello()))
            watch = dgrpc.GatewayWorkerServiceStub(ch).WatchConfigurationUpdates(dpb.ConfigurationWatchRequest())

            async def drain(c: Any, label: str) -> None:
                try:
                    async for _ in c:
                        if label == "stream":
                            ready.set()
                    outcomes.append((label, "OK", "", time.monotonic()))
                except grpc.aio.AioRpcError as exc:
                    outcomes.append((label, exc.code().name, exc.details(), time.monotonic()))
            await asyncio.wait_for(asyncio.gather(drain(call, "stream"), drain(watch, "watch")), 20)

    import threading

    loop = asyncio.new_event_loop()
    ready = asyncio.Event()
    t = threading.Thread(target=lambda: loop.run_until_complete(run(ready)), daemon=True)
    t.start()
    return loop, t, outcomes


@pytest.mark.parametrize("notice", ["redis", "reconcile"])
def test_revocation_closes_open_streams_within_a_second_and_refuses_every_rpc(server, pki, fleet, notice) -> None:
    from django.test import override_settings

    srv = server(reconcile_seconds=0.3 if notice == "reconcile" else 30.0)
    loop, thread, outcomes = _open_watchers(pki, srv.port, "gw-default", "default")
    wait_until(lambda: GatewayInstance.objects.filter(instance_id="gw-default", connected=True).exists()
               and srv.running.hub.auth.sessions.count(_fp(pki, "gw-default")) == 2, message="both calls open")
    cred = GatewayCredential.objects.get(name="gw-default")
    if notice == "redis":
        revoke_credentials([cred], actor="tests", reason="key leaked")
    else:  # the notice is lost (nothing listens at that Redis): the replica's reconcile still closes them
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
            revoke_credentials([cred], actor="tests", reason="key leaked")
    revoked_at = time.monotonic()
    thread.join(10)
    assert sorted((o[0], o[1]) for o in outcomes) == [("stream", "PERMISSION_DENIED"), ("watch", "PERMISSION_DENIED")]
    assert all("revoked" in o[2] for o in outcomes), outcomes
    assert max(o[3] for o in outcomes) - revoked_at < 1.0, [o[3] - revoked_at for o in outcomes]
    # every RPC of every service refuses it now (the credential cache was dropped by the notice/reconcile)
    with pki.channel(srv.port, "gw-default") as ch:
        push, draft = pb_grpc.PushServiceStub(ch), dgrpc.GatewayWorkerServiceStub(ch)
        calls: list[Callable[[], Any]] = [
            lambda: _stream_first_updates(ch, pb.Hello()),
            lambda: push.FetchResource(pb.FetchResourceRequest(type="certificates"), timeout=5),
            lambda: push.ReportStatus(pb.StatusReport(), timeout=5),
            lambda: draft.GetCertificate(dpb.CertificateRequest(domain="a.example"), timeout=5),
            lambda: list(draft.WatchCertificateUpdates(dpb.CertificateWatchRequest(), timeout=5)),
            lambda: draft.GetConfiguration(dpb.ConfigurationRequest(config_type="waf"), timeout=5),
            lambda: list(draft.WatchConfigurationUpdates(dpb.ConfigurationWatchRequest(), timeout=5)),
            lambda: draft.UpdateConfiguration(dpb.UpdateConfigurationRequest(), timeout=5),
            lambda: draft.SendLogs(iter([dpb.LogEntry(message="x")]), timeout=5),
            lambda: draft.HealthCheck(dpb.HealthCheckRequest(), timeout=5),
            lambda: draft.GetMetrics(dpb.MetricsRequest(), timeout=5),
            lambda: health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5),
        ]
        for call in calls:
            _raises(grpc.StatusCode.PERMISSION_DENIED, call, "revoked")
    # the other credential is untouched
    with pki.channel(srv.port, "gw-canary", "canary") as ch:
        assert dgrpc.GatewayWorkerServiceStub(ch).GetCertificate(dpb.CertificateRequest(domain=CANARY_DOMAIN),
                                                                  timeout=5).private_key_pem


def _fp(pki: Pki, name: str) -> str:
    return pki.client(name)[2].fingerprint_sha256


def test_streams_per_credential_and_unary_rate_are_bounded(server, pki, fleet) -> None:
    srv = server(max_streams_per_credential=2, unary_rate=5.0)
    with pki.channel(srv.port, "gw-default") as ch:
        draft = dgrpc.GatewayWorkerServiceStub(ch)
        w1 = draft.WatchCertificateUpdates(dpb.CertificateWatchRequest(), timeout=10)
        w2 = draft.WatchCertificateUpdates(dpb.CertificateWatchRequest(), timeout=10)
        wait_until(lambda: srv.running.hub.auth.sessions.count(_fp(pki, "gw-default")) == 2, message="2 open")
        _raises(grpc.StatusCode.RESOURCE_EXHAUSTED,
                lambda: list(draft.WatchCertificateUpdates(dpb.CertificateWatchRequest(), timeout=5)), "streams open")
        w1.cancel()
        w2.cancel()
        wait_until(lambda: srv.running.hub.auth.sessions.count(_fp(pki, "gw-default")) == 0, message="closed")
        codes = []
        for _ in range(30):  # burst of 10 allowed at 5/s, then refused
            try:
                draft.HealthCheck(dpb.HealthCheckRequest(), timeout=5)
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
        assert codes[:10] == ["OK"] * 10 and "RESOURCE_EXHAUSTED" in codes[10:], codes
    # another credential has its own budget
    with pki.channel(srv.port, "gw-canary", "canary") as ch:
        dgrpc.GatewayWorkerServiceStub(ch).HealthCheck(dpb.HealthCheckRequest(), timeout=5)


def test_gateways_that_stop_reading_are_cut_off_and_memory_stays_bounded(state, pki) -> None:
    """200 streams that send Hello and never read, against the real run_grpc process. grpc would buffer every update
    for them; instead each is cut off (RESOURCE_EXHAUSTED, counted by the server: the client, not reading, never
    sees it) once an update stays unanswered past the answer timeout, the streams gauge returns to zero, and new
    versions published afterwards cost the replica nothing for them: its RSS stays flat."""
    from tests.push_support import GrpcProcess

    clients, payload = 200, 512 * 1024  # one waf_rules file, far over an HTTP/2 stream window
    GatewayGroup.objects.get_or_create(name="default")
    files = [pki.client(f"gw-mute-{i}")[:2] for i in range(clients)]
    state[("waf_rules", "default")] = {"name": "waf-rules.yaml", "content": "#" * payload}
    for rtype in DEFAULT_STATE:
        publish_desired_state(rtype)
    proc = GrpcProcess(pki, {"GRPC_ANSWER_TIMEOUT_SECONDS": "2", "PUSH_RECONCILE_SECONDS": "30"}).start()
    try:
        wait_until(lambda: proc.metric("gw_push_streams") is not None, message="metrics")
        rss = {"before": proc.rss_bytes()}

        def cut() -> float:
            return proc.metric("gw_push_stream_errors_total", 'code="RESOURCE_EXHAUSTED"') or 0.0

        async def mute_fleet() -> None:
            chans, calls = [], []
            for c, k in files:
                creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes())
                ch = grpc.aio.secure_channel(f"127.0.0.1:{proc.port}", creds)
                call = pb_grpc.PushServiceStub(ch).Stream()
                await call.write(pb.GatewayMessage(hello=pb.Hello()))
                chans.append(ch)
                calls.append(call)  # never read
            await asyncio.to_thread(wait_until, lambda: (proc.metric("gw_push_streams") or 0) > 0, 20)
            await asyncio.to_thread(wait_until, lambda: cut() >= clients and proc.metric("gw_push_streams") == 0,
                                    30, 0.2, "every mute stream cut off")
            rss["cut"] = await asyncio.to_thread(proc.rss_bytes)
            # the old behaviour buffered every new version for every stuck stream (+512 KiB x 200 each time)
            for i in range(4):
                state[("waf_rules", "default")] = {"name": "waf-rules.yaml", "content": str(i) * payload}
                await asyncio.to_thread(_publish_closing, "waf_rules")
            await asyncio.sleep(2)
            rss["later"] = await asyncio.to_thread(proc.rss_bytes)
            for ch in chans:
                await ch.close()

        asyncio.run(mute_fleet())
        assert cut() == clients and proc.metric("gw_push_slow_consumers_total") == clients
        mib = {k: v / 2**20 for k, v in rss.items()}
        print(f"run_grpc RSS MiB: {mib}")
        # Stated bounds: while cut-off streams linger, each holds at most what was sent before its cut (one 512 KiB
        # file plus small updates); publishing afterwards adds nothing for them.
        assert mib["cut"] - mib["before"] < clients * (payload / 2**20 + 0.25) + 64, mib
        assert mib["later"] - mib["cut"] < 32, mib
    finally:
        proc.stop()


def _publish_closing(rtype: str) -> None:
    from django.db import connection

    try:
        publish_desired_state(rtype)
    finally:
        connection.close()


def test_push_stream_log_batches_are_stored_tagged_with_the_credentials_instance(server, pki, fleet) -> None:
    from logpipeline.models import RequestLog

    srv = server()
    now_ms = int(time.time() * 1000)
    entries = [pb.LogEntry(timestamp_ms=now_ms, method="POST", path="/login", client_ip="198.51.100.9",
                           status_code=401, host="shop.example", metadata={"claimed": "gw-canary"})
               for _ in range(5)]
    c, k, _ = pki.client("gw-default")

    async def ship() -> None:
        creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{srv.port}", creds) as ch:
            call = pb_grpc.PushServiceStub(ch).Stream()
            await call.write(pb.GatewayMessage(hello=pb.Hello()))
            await call.read()
            await call.write(pb.GatewayMessage(logs=pb.LogBatch(entries=entries)))
            await asyncio.to_thread(wait_until, lambda: RequestLog.objects.filter(uri="/login").count() == 5, 10)
            call.cancel()

    asyncio.run(ship())
    assert set(RequestLog.objects.filter(uri="/login").values_list("gateway_instance", flat=True)) == {"gw-default"}


def test_an_ack_counts_only_with_the_nonce_sent_on_that_stream(server, pki, fleet) -> None:
    srv = server()
    c, k, _ = pki.client("gw-default")

    async def forge() -> tuple[str, str]:
        creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{srv.port}", creds) as ch:
            call = pb_grpc.PushServiceStub(ch).Stream()
            await call.write(pb.GatewayMessage(hello=pb.Hello()))
            while True:
                msg = await call.read()
                if msg.WhichOneof("msg") == "update":
                    break
            u = msg.update
            await call.write(pb.GatewayMessage(ack=pb.Ack(type=u.type, version=u.version, nonce="forged-" + u.nonce)))
            try:
                while await call.read() is not grpc.aio.EOF:
                    pass
            except grpc.aio.AioRpcError as exc:
                return exc.code().name, exc.details() or ""
            return (await call.code()).name, await call.details()

    code, details = asyncio.run(forge())
    assert code == "INVALID_ARGUMENT" and "not sent on this stream" in details, (code, details)
    time.sleep(0.3)  # the event writer flushes within milliseconds
    assert not InstanceResourceState.objects.filter(instance__instance_id="gw-default",
                                                    acked_version__isnull=False).exists()


def test_a_draft_only_fleet_gets_its_groups_state_and_early_watches_the_first_version(server, pki, state) -> None:
    """No v1 agent ever says Hello: a draft watch opened before its group has any version receives the first one
    when it is published, and a version whose Redis notice is lost still reaches it through the reconcile."""
    from django.test import override_settings

    srv = server(reconcile_seconds=0.5)
    state[("config", "draft-only")] = None  # type: ignore[assignment]  # no config for this group yet
    group = create_group("draft-only", actor="tests")  # every other type built for it
    (waf_v1,) = publish_desired_state("waf_rules", group)
    c, k, _ = pki.client("gw-draft-only", "draft-only")
    got: list[str] = []

    async def watch(n: int) -> None:
        creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), k.read_bytes(), c.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{srv.port}", creds) as ch:
            call = dgrpc.GatewayWorkerServiceStub(ch).WatchConfigurationUpdates(
                dpb.ConfigurationWatchRequest(config_types=["gateway"]))
            async for u in call:
                got.append(u.config_data)
                if len(got) == n:
                    call.cancel()
                    return

    from gateways.models import ResourceVersion
    assert not ResourceVersion.objects.filter(group=group, resource_type="config").exists()
    import threading

    t = threading.Thread(target=lambda: asyncio.run(watch(2)), daemon=True)
    t.start()
    wait_until(lambda: srv.running.hub.watch_groups.get(group.pk), message="watch registered")
    state[("config", "draft-only")] = {"name": "gateway.yaml", "content": "first\n"}
    publish_desired_state("config", group)
    wait_until(lambda: got == ["first\n"], message="first version reached the early watch")
    state[("config", "draft-only")] = {"name": "gateway.yaml", "content": "second\n"}
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):  # the notice is lost
        publish_desired_state("config", group)
    t.join(15)
    assert got == ["first\n", "second\n"]
    assert waf_v1.group_id == group.pk


def test_streams_gauge_counts_each_call_once_and_never_goes_negative(server, pki, fleet) -> None:
    from gateways import metrics

    srv = server()

    def gauge() -> float:
        return metrics.REGISTRY.get_sample_value("gw_push_streams") or 0.0

    start = gauge()
    with pki.channel(srv.port, "gw-default") as ch:
        draft = dgrpc.GatewayWorkerServiceStub(ch)
        calls = [draft.WatchCertificateUpdates(dpb.CertificateWatchRequest(), timeout=10) for _ in range(3)]
        wait_until(lambda: gauge() == start + 3, message="three open")
        for c in calls:
            c.cancel()
        # refused calls (bad gateway_id) are never counted, so they cannot be subtracted either
        for _ in range(5):
            _raises(grpc.StatusCode.PERMISSION_DENIED, lambda: list(draft.WatchCertificateUpdates(
                dpb.CertificateWatchRequest(gateway_id="gw-canary"), timeout=5)))
        wait_until(lambda: gauge() == start, message="back to where it was")
    assert gauge() >= 0


def test_run_grpc_metrics_scrapes_open_no_database_connection(pki) -> None:
    from django.db import connection

    from tests.push_support import GrpcProcess

    def backends() -> int:
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            return int(cur.fetchone()[0])

    proc = GrpcProcess(pki).start()
    try:
        wait_until(lambda: proc.metric("gw_push_streams") is not None, message="metrics")
        time.sleep(1.0)
        before = backends()
        for _ in range(30):
            assert proc.metric("gw_push_streams") is not None
        assert backends() <= before, (before, backends())
    finally:
        proc.stop()
