"""The checked-in generated code matches proto/ byte for byte, and the Gateway's draft is wire-exact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "genproto"), str(tmp_path)], check=True,
                   env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "scripts/genproto produced nothing"
    checked_in = sorted(p.relative_to(PROTO) for p in PROTO.rglob("*_pb2*") if p.suffix in (".py", ".pyi"))
    assert generated == checked_in
    for rel in generated:
        assert (tmp_path / rel).read_bytes() == (PROTO / rel).read_bytes(), f"{rel} differs: run scripts/genproto"


def test_gateway_draft_service_is_wire_exact() -> None:
    from gateway_worker import gateway_worker_pb2 as draft

    svc = draft.DESCRIPTOR.services_by_name["GatewayWorkerService"]
    assert draft.DESCRIPTOR.package == "gateway_worker"
    assert [m.name for m in svc.methods] == [
        "HealthCheck", "GetCertificate", "WatchCertificateUpdates", "GetConfiguration", "UpdateConfiguration",
        "WatchConfigurationUpdates", "SendLogs", "GetMetrics",
    ]
    streams = {m.name: (m.client_streaming, m.server_streaming) for m in svc.methods}
    assert streams["WatchCertificateUpdates"] == (False, True)
    assert streams["WatchConfigurationUpdates"] == (False, True)
    assert streams["SendLogs"] == (True, False)

    def fields(msg: str) -> dict[int, str]:
        return {f.number: f.name for f in draft.DESCRIPTOR.message_types_by_name[msg].fields}

    assert fields("CertificateUpdate") == {1: "domain", 2: "certificate_pem", 3: "private_key_pem",
                                           4: "certificate_chain_pem", 5: "expires_at", 6: "is_temporary",
                                           7: "certificate_id", 8: "update_type"}
    assert fields("ConfigurationResponse") == {1: "config_type", 2: "config_version", 3: "config_data",
                                               4: "updated_at", 5: "checksum"}
    assert fields("UpdateConfigurationRequest") == {1: "gateway_id", 2: "config_type", 3: "config_data",
                                                    4: "checksum"}
    assert fields("LogEntry")[15] == "metadata" and fields("LogEntry")[14] == "session_id"
    assert fields("MetricData") == {1: "name", 2: "type", 3: "value", 4: "timestamp", 5: "labels"}
    status = draft.HealthCheckResponse.ServingStatus
    assert (status.Value("SERVING"), status.Value("SERVICE_UNKNOWN")) == (1, 3)
