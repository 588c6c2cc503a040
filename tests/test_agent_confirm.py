"""An ACK means served: after a reload the agent waits until nginx presents the new certificate, and refuses
(NACK, files restored) when it never does."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from gateway_agent.apply import Applier, ApplyError
from gateway_agent.config import AgentConfig
from tests.peers.nginx import NginxServer
from tests.push_support import cert_entry
from tests.test_agent_apply import update

pytestmark = pytest.mark.slow


def serial_of(pem: str) -> str:
    return format(x509.load_pem_x509_certificate(pem.encode()).serial_number, "x")


def presented(nginx: NginxServer, name: str) -> str:
    return format(x509.load_der_x509_certificate(nginx.peer_certificate(name)).serial_number, "x")


def nginx_cfg(nginx: NginxServer, tmp_path: Path, **extra: object) -> AgentConfig:
    return AgentConfig(state_dir=str(tmp_path / "s"), cert_dir=str(tmp_path / "certs"),
                       challenge_dir=str(nginx.challenge_dir), nginx_include=str(nginx.tls_include),
                       nginx_listen=nginx.https_listen, check_command=nginx.check_command,
                       reload_command=nginx.reload_command, command_timeout=10, **extra)  # type: ignore[arg-type]


def test_when_apply_returns_nginx_already_presents_the_new_certificate(nginx: NginxServer, tmp_path: Path) -> None:
    applier = Applier(nginx_cfg(nginx, tmp_path))
    for version in range(1, 5):  # a few changes in a row: each checked with one handshake, no polling
        entry, pem = cert_entry(["shop.example.test", "*.shop.example.test"])
        applier.apply(update("certificates", {"certificates": [entry]}, version))
        assert presented(nginx, "shop.example.test") == serial_of(pem)
        assert presented(nginx, "x.shop.example.test") == serial_of(pem)


def test_a_reload_that_never_takes_effect_is_refused_and_rolled_back(nginx: NginxServer, tmp_path: Path) -> None:
    cfg = nginx_cfg(nginx, tmp_path)
    first, first_pem = cert_entry(["shop.example.test"])
    Applier(cfg).apply(update("certificates", {"certificates": [first]}))
    files_before = {p.name: p.read_bytes() for p in (tmp_path / "certs").iterdir()}

    cfg.reload_command = ["true"]  # "reloads" without nginx noticing
    cfg.command_timeout = 1.0
    second, _ = cert_entry(["shop.example.test"])
    with pytest.raises(ApplyError, match=f"still presents {serial_of(first_pem)} for shop.example.test"):
        Applier(cfg).apply(update("certificates", {"certificates": [second]}, 2))
    assert {p.name: p.read_bytes() for p in (tmp_path / "certs").iterdir()} == files_before
    assert presented(nginx, "shop.example.test") == serial_of(first_pem)
