"""The Gateway's draft GatewayWorkerService over mTLS, from the same desired state; run_grpc's /metrics."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from gateway_worker import gateway_worker_pb2 as dpb
from gateway_worker import gateway_worker_pb2_grpc as dgrpc
from gateway_worker.v1 import gateway_worker_pb2 as pb
from gateway_worker.v1 import gateway_worker_pb2_grpc as pb_grpc

from gateways.grpc_server import ServerConfig
from gateways.models import GatewayGroup
from gateways.services import publish_desired_state, register_resource
from tests.peers.nginx import free_port
from tests.push_support import DEFAULT_STATE, Pki, ServerThread, cert_entry, placeholder_builders, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def state() -> Iterator[dict[str, Any]]:
    with placeholder_builders():
        data: dict[str, Any] = dict(DEFAULT_STATE)
        for rtype in DEFAULT_STATE:
            register_resource(rtype, lambda g, t=rtype: data[t])
        yield data


@pytest.fixture
def env(tmp_path: Path, state: dict[str, Any]) -> Iterator[tuple[ServerThread, Pki]]:
    pki = Pki.create(tmp_path / "pki")
    srv = ServerThread(ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key),
                                    ca=str(pki.ca), debounce_seconds=0.02)).start()
    yield srv, pki
    srv.stop()


def test_draft_service_serves_the_same_desired_state(env: tuple[ServerThread, Pki], state: dict[str, Any]) -> None:
    srv, pki = env
    group, _ = GatewayGroup.objects.get_or_create(name="default")
    entry, pem = cert_entry(["shop.example.com", "*.shop.example.com"])
    state["certificates"] = {"certificates": [entry]}
    state["waf_rules"] = {"name": "waf-rules.yaml", "content": "rules: [1]\n"}
    publish_desired_state("certificates", group)
    (waf,) = publish_desired_state("waf_rules", group)
    with pki.channel(srv.port, "gw-draft") as ch:
        stub = dgrpc.GatewayWorkerServiceStub(ch)
        health = stub.HealthCheck(dpb.HealthCheckRequest(service="gateway-worker"), timeout=5)
        assert health.status == dpb.HealthCheckResponse.SERVING
        assert stub.HealthCheck(dpb.HealthCheckRequest(service="nope"), timeout=5).status == 3

        cert = stub.GetCertificate(dpb.CertificateRequest(domain="api.shop.example.com"), timeout=5)
        assert (cert.certificate_pem, cert.private_key_pem, cert.is_temporary) == (pem, entry["key_pem"], False)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetCertificate(dpb.CertificateRequest(domain="unknown.test"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        conf = stub.GetConfiguration(dpb.ConfigurationRequest(gateway_id="gw-draft", config_type="waf"), timeout=5)
        assert (conf.config_data, conf.config_version) == ("rules: [1]\n", str(waf.pk))
        assert conf.checksum == hashlib.sha256(b"rules: [1]\n").hexdigest() and conf.updated_at > 1_600_000_000
        with pytest.raises(grpc.RpcError) as err:
            stub.GetConfiguration(dpb.ConfigurationRequest(config_type="routing"), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        upd = stub.UpdateConfiguration(dpb.UpdateConfigurationRequest(config_type="waf", config_data="x"), timeout=5)
        assert not upd.success and "read-only" in upd.message

        # SendLogs: what is counted as processed is stored, tagged with the credential's instance id
        import time as _time

        from logpipeline.models import RequestLog
        now_ms = int(_time.time() * 1000)
        good = [dpb.LogEntry(gateway_id="gw-draft", timestamp=now_ms, method="GET", path=f"/p/{i}",
                             source_ip="192.0.2.7", status_code=200, target_host="shop.example.com")
                for i in range(3)]
        sent = stub.SendLogs(iter([*good, dpb.LogEntry(message="no timestamp")]), timeout=10)
        assert (sent.processed_count, sent.error_count, sent.success) == (3, 1, False), sent
        stored = RequestLog.objects.filter(uri__startswith="/p/")
        assert sorted(stored.values_list("uri", flat=True)) == ["/p/0", "/p/1", "/p/2"]
        assert set(stored.values_list("gateway_instance", flat=True)) == {"gw-draft"}
        with pytest.raises(grpc.RpcError) as err:
            stub.SendLogs(iter([dpb.LogEntry(gateway_id="someone-else", timestamp=now_ms)]), timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

        watch = stub.WatchConfigurationUpdates(dpb.ConfigurationWatchRequest(gateway_id="gw-draft",
                                                                            config_types=["waf"]), timeout=20)
        first = next(watch)
        assert (first.update_type, first.config_data) == ("CREATED", "rules: [1]\n")
        certs = stub.WatchCertificateUpdates(dpb.CertificateWatchRequest(gateway_id="gw-draft",
                                                                         domains=["shop.example.com"]), timeout=20)
        c1 = next(certs)
        assert (c1.domain, c1.update_type, c1.certificate_pem) == ("shop.example.com", "RENEWED", pem)
        # a new version reaches the watchers: the hub learns of it through the Redis notice
        state["waf_rules"] = {"name": "waf-rules.yaml", "content": "rules: [2]\n"}
        publish_desired_state("waf_rules", group)
        second = next(watch)
        assert (second.update_type, second.config_data) == ("UPDATED", "rules: [2]\n")
        state["certificates"] = {"certificates": []}
        publish_desired_state("certificates", group)
        gone = next(certs)
        assert (gone.domain, gone.update_type) == ("shop.example.com", "REVOKED")
        watch.cancel()
        certs.cancel()

        fetched = pb_grpc.PushServiceStub(ch).FetchResource(pb.FetchResourceRequest(group="default",
                                                                                    type="waf_rules"), timeout=5)
        assert fetched.waf_rules.content == "rules: [2]\n"


def test_run_grpc_command_serves_metrics(db: None, tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    port, mport = free_port(), free_port()
    from django.conf import settings
    db_name = settings.DATABASES["default"]["NAME"]
    env = {**os.environ, "GRPC_TLS_CERT": str(pki.server_cert), "GRPC_TLS_KEY": str(pki.server_key),
           "GRPC_CA_CERT": str(pki.ca), "GRPC_INSECURE": "false",
           "DATABASE_URL": f"postgres://postgres:postgres@127.0.0.1:5432/{db_name}"}
    proc = subprocess.Popen([sys.executable, "manage.py", "run_grpc", "--bind", f"127.0.0.1:{port}",
                             "--metrics-port", str(mport)], env=env, cwd=Path(__file__).parent.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        while "listening on port" not in line:
            assert line, "run_grpc exited"
            line = proc.stdout.readline().decode()

        def scrape() -> str:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=2).read().decode()
            except OSError:
                return ""
        body = wait_until(scrape, timeout=10, message="metrics endpoint")
        for name, kind in (("gw_push_streams", "gauge"), ("gw_push_updates_total", "counter"),
                           ("gw_push_acks_total", "counter"), ("gw_push_nacks_total", "counter"),
                           ("gw_push_converge_seconds", "histogram")):
            assert f"# TYPE {name} {kind}" in body, name
        # plaintext is refused by the mTLS server
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch, pytest.raises(grpc.RpcError):
            dgrpc.GatewayWorkerServiceStub(ch).HealthCheck(dpb.HealthCheckRequest(), timeout=3)
    finally:
        proc.terminate()
        proc.wait(15)
