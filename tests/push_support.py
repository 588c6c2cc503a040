"""Test helpers for the push plane: a CA with server/client certificates (each client registered as a Gateway
credential in its group), a run_grpc server in a thread, and gateway-agent subprocesses. Used by the push, grpc,
agent and certificate end-to-end tests and by bench/."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml

from gateways import pki
from gateways.grpc_server import RunningServer, ServerConfig, start_server


@dataclass
class Pki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    _issued: dict[str, pki.Issued] = field(default_factory=dict)

    @classmethod
    def create(cls, d: Path) -> Pki:
        ca_cert, ca_key = pki.ensure_ca(d / "ca.crt", d / "ca.key")
        srv = pki.issue(ca_cert, ca_key, "worker", server=True, hosts=["localhost", "127.0.0.1"])
        pki.write_bundle(d, "server", srv, (d / "ca.crt").read_bytes())
        return cls(d, d / "ca.crt", d / "server.crt", d / "server.key")

    def client(self, name: str, group: str = "default", *, register: bool = True,
               file_name: str | None = None) -> tuple[Path, Path, pki.Issued]:
        """The client certificate for ``name`` (issued once, then reused), registered as the credential of the
        Gateway ``name`` in ``group`` (the group is created when missing). ``register=False``: a certificate of
        the right CA that the Worker has no credential for."""
        from gateways.credentials import register_credential
        from gateways.models import GatewayCredential, GatewayGroup
        from gateways.services import create_group

        key_name = file_name or name
        out = self.dir / "clients"
        if key_name not in self._issued:
            ca_cert, ca_key = pki.ensure_ca(self.ca, self.dir / "ca.key")
            self._issued[key_name] = pki.issue(ca_cert, ca_key, name)
            pki.write_bundle(out, key_name, self._issued[key_name], self.ca.read_bytes())
        issued = self._issued[key_name]
        if register and not GatewayCredential.objects.filter(fingerprint_sha256=issued.fingerprint_sha256).exists():
            if not GatewayGroup.objects.filter(name=group).exists():
                create_group(group, actor="tests")
            register_credential(name, group, issued, actor="tests")
        return out / f"{key_name}.crt", out / f"{key_name}.key", issued

    def channel(self, port: int, name: str | None = None, group: str = "default") -> grpc.Channel:
        cert = key = None
        if name:
            c, k, _ = self.client(name, group)
            cert, key = c.read_bytes(), k.read_bytes()
        creds = grpc.ssl_channel_credentials(self.ca.read_bytes(), key, cert)
        return grpc.secure_channel(f"127.0.0.1:{port}", creds)


class ServerThread:
    """A real run_grpc server on its own event loop in a thread (port 0: a free port)."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.loop = asyncio.new_event_loop()
        self.running: RunningServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="grpc-test-server")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.running = self.loop.run_until_complete(start_server(self.cfg))
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error:
            raise self._error
        return self

    @property
    def port(self) -> int:
        assert self.running
        return self.running.port

    def call(self, fn: Callable[[], Any], timeout: float = 10) -> Any:
        """Run a coroutine factory on the server's loop (e.g. ``lambda: hub.reconcile()``)."""
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout)

    def stop(self) -> None:
        from gateways.hub import close_thread_connections

        if self.running:
            self.call(lambda: self.running.stop(grace=0.5), timeout=30)  # type: ignore[union-attr]
            self.call(lambda: self.loop.shutdown_default_executor(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        close_thread_connections()


@dataclass
class AgentProcess:
    """A ``gateway-agent`` subprocess with its own directories under ``root``."""

    root: Path
    settings: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "agent.log"

    @property
    def state_dir(self) -> Path:
        return Path(self.settings["state_dir"])

    def start(self) -> AgentProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "agent.yaml"
        conf.write_text(yaml.safe_dump(self.settings))
        fh = open(self.log, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway_agent.cli", "--config", str(conf),
                                      "--log-level", "DEBUG"], stdout=fh, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        fh.close()
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def journal(self) -> list[dict[str, Any]]:
        import json
        try:
            return [json.loads(line) for line in (self.state_dir / "journal.jsonl").read_text().splitlines()]
        except FileNotFoundError:
            return []

    def known(self) -> dict[str, int]:
        import json
        try:
            return json.loads((self.state_dir / "versions.json").read_text())
        except FileNotFoundError:
            return {}


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
               message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def self_signed_pem(domains: list[str], days: int = 30) -> tuple[str, str, str]:
    """(cert_pem, key_pem, fingerprint) of a throwaway certificate for ``domains``."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return (cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem,
            cert.fingerprint(hashes.SHA256()).hex())


def cert_entry(domains: list[str], name: str | None = None) -> tuple[dict[str, Any], str]:
    cert_pem, key_pem, fp = self_signed_pem(domains)
    return ({"name": name or domains[0], "domains": domains, "cert_pem": cert_pem, "chain_pem": "",
             "key_pem": key_pem, "temporary": False, "serial": "1", "fingerprint": fp,
             "not_after": int(time.time()) + 86400, "version_id": 1}, cert_pem)


DEFAULT_STATE: dict[str, dict[str, Any]] = {
    "certificates": {"certificates": []},
    "acme_challenges": {"challenges": []},
    "waf_rules": {"name": "waf-rules.yaml", "content": "rules: []\n"},
    "config": {"name": "gateway.yaml", "content": "server: {}\n"},
    "emergency_rules": {"rules": []},
}


def agent_settings(root: Path, pki_: Pki, port: int, instance_id: str, group: str, **extra: Any) -> dict[str, Any]:
    cert, key, _ = pki_.client(instance_id, group)
    settings = {
        "server": f"127.0.0.1:{port}", "server_name": "localhost", "instance_id": instance_id, "group": group,
        "ca": str(pki_.ca), "cert": str(cert), "key": str(key), "state_dir": str(root / "state"),
        "cert_dir": str(root / "certs"), "challenge_dir": str(root / "challenges"),
        "rules_file": str(root / "waf-rules.yaml"), "config_file": str(root / "gateway.yaml"),
        "emergency_file": str(root / "emergency.yaml"), "modsecurity_dir": str(root / "modsecurity"),
        "backoff_max": 1.0,
    }
    settings.update(extra)
    return settings


@dataclass
class GrpcProcess:
    """A real ``manage.py run_grpc`` process on the test database (for RSS, metrics and replica tests)."""

    pki: Pki
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    metrics_port: int = 0
    log: list[str] = field(default_factory=list)

    def start(self, timeout: float = 30.0) -> GrpcProcess:
        from django.conf import settings

        from tests.peers.nginx import free_port

        self.port, self.metrics_port = free_port(), free_port()
        db = settings.DATABASES["default"]
        env = {**os.environ, "GRPC_TLS_CERT": str(self.pki.server_cert), "GRPC_TLS_KEY": str(self.pki.server_key),
               "GRPC_CA_CERT": str(self.pki.ca), "GRPC_INSECURE": "false",
               "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
               **self.extra_env}
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_grpc", "--bind", f"127.0.0.1:{self.port}",
             "--metrics-port", str(self.metrics_port)], env=env, cwd=Path(__file__).parent.parent,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise RuntimeError("run_grpc exited:\n" + "".join(self.log))
            self.log.append(line)
            if "listening on port" in line:
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        raise TimeoutError("run_grpc did not start:\n" + "".join(self.log))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.log.append(raw.decode(errors="replace"))

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def metric(self, name: str, labels: str = "") -> float | None:
        import urllib.request

        body = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        want = f"{name}{{{labels}}}" if labels else name
        for line in body.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextlib.contextmanager
def placeholder_builders() -> Iterator[None]:
    """For push-plane tests that register builders of their own: the apps' builders and format validators are set
    aside (the tests push placeholder files, not real WAF rules) and put back afterwards."""
    from gateways import resources

    saved, saved_validators = dict(resources._builders), dict(resources._validators)
    resources._validators.clear()
    try:
        yield
    finally:
        resources._builders.clear()
        resources._builders.update(saved)
        resources._validators.clear()
        resources._validators.update(saved_validators)


@contextlib.contextmanager
def placeholder_state() -> Iterator[dict[tuple[str, str], dict[str, Any]]]:
    """``placeholder_builders`` with a builder per type serving ``data[(type, group name)]`` (else the type's
    ``DEFAULT_STATE``): a test sets what a group should run, then publishes."""
    from gateways.resources import register_resource

    with placeholder_builders():
        data: dict[tuple[str, str], dict[str, Any]] = {}
        for rtype, default in DEFAULT_STATE.items():
            register_resource(rtype, lambda g, t=rtype, d=default: data.get((t, g.name), d))
        yield data


def canary_fleet_server(pki_: Pki) -> ServerThread:
    """A real push server for WAF rollout tests (20 ms debounce) with the ``canary`` group they roll out to first."""
    from gateways.grpc_server import ServerConfig
    from gateways.models import GatewayGroup
    from gateways.services import create_group

    if not GatewayGroup.objects.filter(name="canary").exists():
        create_group("canary", actor="tests")
    return ServerThread(ServerConfig(bind="127.0.0.1:0", cert=str(pki_.server_cert), key=str(pki_.server_key),
                                     ca=str(pki_.ca), debounce_seconds=0.02)).start()
