"""A Gateway asking the draft GetCertificate for a name it has no certificate for, over mTLS: inside its group's
policy that files exactly one pending request however often it asks; outside it, nothing is created."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from gateway_worker import gateway_worker_pb2 as dpb
from gateway_worker import gateway_worker_pb2_grpc as dgrpc

from certificates.models import CertificateRequest
from gateways.grpc_server import ServerConfig
from tests.cert_request_support import group_with_policy, offline_account
from tests.certificates_support import unique
from tests.push_support import Pki, ServerThread

pytestmark = pytest.mark.django_db(transaction=True)


def test_get_certificate_for_an_unknown_name_files_one_pending_request(bind_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = group_with_policy(offline_account(bind_server), bind_server.zone)
    pki = Pki.create(tmp_path / "pki")
    srv = ServerThread(ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key),
                                    ca=str(pki.ca), debounce_seconds=0.02)).start()
    name = f"{unique('ondemand')}.{bind_server.zone}"
    try:
        with pki.channel(srv.port, "gw-ondemand", policy.group.name) as ch:
            stub = dgrpc.GatewayWorkerServiceStub(ch)
            for _ in range(4):
                with pytest.raises(grpc.RpcError) as err:
                    stub.GetCertificate(dpb.CertificateRequest(domain=name), timeout=10)
                assert err.value.code() == grpc.StatusCode.NOT_FOUND
                assert "pending" in (err.value.details() or ""), err.value.details()
            with pytest.raises(grpc.RpcError) as err:
                stub.GetCertificate(dpb.CertificateRequest(domain="www.elsewhere.example"), timeout=10)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert "outside-policy" in (err.value.details() or "")
    finally:
        srv.stop()
    requests = CertificateRequest.objects.filter(group=policy.group)
    assert list(requests.values_list("dedupe_key", "source", "state")) == [(name, "gateway", "pending")]
