"""A Gateway fleet for certificate tests: run_grpc in a thread and one gateway-agent driving a real nginx,
started with the push plane's own test helpers (tests/push_support.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509 as cx509

from gateways import resources
from gateways.grpc_server import ServerConfig
from tests.peers.nginx import NginxServer
from tests.push_support import DEFAULT_STATE, AgentProcess, Pki, ServerThread, agent_settings, wait_until
from tests.slow_agent import SLOW_AGENT_LOG


@dataclass
class Fleet:
    nginx: NginxServer
    agent: AgentProcess
    server: ServerThread

    def served(self, name: str) -> cx509.Certificate:
        return cx509.load_der_x509_certificate(self.nginx.peer_certificate(name))

    def wait_served(self, name: str, serial_hex: str, timeout: float = 20) -> cx509.Certificate:
        def check() -> cx509.Certificate | None:
            cert = self.served(name)
            return cert if format(cert.serial_number, "x") == serial_hex else None

        return wait_until(check, timeout=timeout, message=f"nginx to serve serial {serial_hex} for {name}")


class SlowChallengeAgent(AgentProcess):
    """The real gateway-agent, slow to take ACME tokens (``tests/slow_agent.py``): it ACKs a token set
    ``delay`` seconds late and logs when it did, so a test can see whether the CA was answered before."""

    delay: float = 1.5

    def start(self) -> SlowChallengeAgent:
        import yaml

        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "agent.yaml"
        conf.write_text(yaml.safe_dump(self.settings))
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.slow_agent", "--config", str(conf), "--log-level", "DEBUG"],
                stdout=fh, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "SLOW_AGENT_CHALLENGE_DELAY": str(self.delay)})
        return self

    def tokens_applied(self) -> dict[str, float]:
        """token -> wall-clock time the agent had written it, just before its ACK was sent."""
        path = self.state_dir / SLOW_AGENT_LOG
        lines = path.read_text().splitlines() if path.exists() else []
        return {t: entry["at"] for entry in map(json.loads, lines) for t in entry["tokens"]}


@contextmanager
def running_fleet(nginx_factory: Any, tmp_path: Path, http_port: int | None = None,
                  agent_class: type[AgentProcess] = AgentProcess) -> Iterator[Fleet]:
    """run_grpc + one connected gateway-agent (instance edge-1, group default) driving a real nginx whose
    HTTP port is ``http_port`` (the one Pebble validates HTTP-01 against) when given."""
    saved = dict(resources._builders)
    saved_validators = dict(resources._validators)
    resources._validators.clear()  # push-plane tests use placeholder files, not real WAF rules
    for rtype, data in DEFAULT_STATE.items():  # other apps' resources, if not built yet: empty states
        if rtype not in resources._builders:
            resources.register_resource(rtype, lambda g, d=data: d)
    ngx = nginx_factory(http_port=http_port)
    pki = Pki.create(tmp_path / "pki")
    server = ServerThread(ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key),
                                       ca=str(pki.ca), debounce_seconds=0.02)).start()
    settings = agent_settings(tmp_path / "agent", pki, server.port, "edge-1", "default",
                              challenge_dir=str(ngx.challenge_dir), nginx_include=str(ngx.tls_include),
                              nginx_listen=ngx.https_listen, nginx_http_listen=f"127.0.0.1:{ngx.http_port}",
                              check_command=ngx.check_command, reload_command=ngx.reload_command)
    agent = agent_class(tmp_path / "agent", settings).start()
    try:
        wait_until(lambda: agent.known().get("certificates"), timeout=20, message="agent connected")
        yield Fleet(ngx, agent, server)
    finally:
        agent.stop()
        server.stop()
        resources._builders.clear()
        resources._builders.update(saved)
        resources._validators.update(saved_validators)
