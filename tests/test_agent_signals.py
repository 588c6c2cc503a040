"""gateway-agent stops on SIGINT and SIGTERM while its stream is open, even when started with SIGINT ignored
(what a background job of a non-interactive shell, e.g. a CI step, inherits): stopping it costs no timeout."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gateways import resources
from gateways.grpc_server import ServerConfig
from gateways.services import register_resource
from tests.push_support import DEFAULT_STATE, Pki, ServerThread, agent_settings, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerThread, Pki]]:
    saved = dict(resources._builders)
    saved_validators = dict(resources._validators)
    resources._validators.clear()  # push-plane tests use placeholder files, not real WAF rules
    for rtype, data in DEFAULT_STATE.items():
        register_resource(rtype, lambda g, d=data: d)
    pki = Pki.create(tmp_path / "pki")
    srv = ServerThread(ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key),
                                    ca=str(pki.ca), debounce_seconds=0.02)).start()
    try:
        yield srv, pki
    finally:
        srv.stop()
        resources._builders.clear()
        resources._builders.update(saved)
        resources._validators.update(saved_validators)


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_agent_started_with_sigint_ignored_stops_on_a_signal(server: tuple[ServerThread, Pki], tmp_path: Path,
                                                             sig: signal.Signals) -> None:
    srv, pki = server
    settings = agent_settings(tmp_path / "agent", pki, srv.port, "gw-signals", "default")
    conf = tmp_path / "agent.yaml"
    conf.write_text(yaml.safe_dump(settings))
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway_agent.cli", "--config", str(conf)],
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=ignore_sigint)
    try:
        versions = Path(settings["state_dir"]) / "versions.json"
        wait_until(lambda: "waf_rules" in (versions.read_text() if versions.exists() else ""), timeout=30,
                   message="the agent to apply the first push")
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopping on a signal" in log.read_text()
