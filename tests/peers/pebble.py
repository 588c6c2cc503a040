"""Fixtures for a real Pebble ACME CA doing real validation (never ``PEBBLE_VA_ALWAYS_VALID``).

Pebble resolves names through the fixture BIND (``-dnsserver``), where ``*.example.test`` is 127.0.0.1, so for
HTTP-01 it connects to ``127.0.0.1:<http_port>``: the nginx under test must listen on ``Pebble.http_port``.
DNS-01 TXT records are looked up in the same BIND.

The ACME port sits behind a small TCP gate in this process, so ``stop()`` / ``start()`` make the CA unreachable
(connection refused) and reachable again on the same URL without losing Pebble's state (its root, accounts
and orders live in memory and would change on a process restart). ``start_pebble()`` is usable outside pytest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import secrets
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.peers import stop_process

if TYPE_CHECKING:  # imported lazily: pytest registers tests.peers.bind as a plugin itself
    from tests.peers.bind import BindServer

PEBBLE = "/usr/bin/pebble"
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _write_https_identity(workdir: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a localhost/127.0.0.1 server certificate for Pebble's own HTTPS."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway-worker test Pebble HTTPS CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = workdir / "https-ca.pem", workdir / "https-cert.pem", workdir / "https-key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


class TcpGate:
    """A TCP pass-through (TLS stays end to end) that can refuse connections and come back on the same port."""

    def __init__(self, listen_port: int, target_port: int, host: str = HOST) -> None:
        self.host, self.port, self.target_port = host, listen_port, target_port
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.accepted = 0  # connections passed to Pebble so far: "the CA was not contacted" is this unchanged

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def open(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(256)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="pebble-gate").start()

    def close(self) -> None:
        """Refuse new connections and cut the live ones (clients keep-alive)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.host, self.target_port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.accepted += 1
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            src.close()


@dataclass
class Pebble:
    directory_url: str
    ca_bundle: str  # PEM file that trusts Pebble's HTTPS (ACME and management ports)
    http_port: int  # HTTP-01: Pebble connects to <name>:http_port, <name> resolving to 127.0.0.1
    tls_port: int
    management_url: str
    dns_server: str  # host:port Pebble resolves names with
    workdir: Path
    eab_keys: dict[str, str] = field(default_factory=dict)  # kid -> base64url HMAC key
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    gate: TcpGate | None = field(default=None, repr=False)

    def _get(self, path: str) -> str:
        context = ssl.create_default_context(cafile=self.ca_bundle)
        with urllib.request.urlopen(self.management_url + path, context=context, timeout=10) as response:
            return response.read().decode()

    def roots_pem(self) -> str:
        """The issuing root(s): what an issued chain must build to (the trust store in tests)."""
        return self._get("/roots/0")

    def intermediates_pem(self) -> str:
        return self._get("/intermediates/0")

    @property
    def reachable(self) -> bool:
        return self.gate is None or self.gate.is_open

    def stop(self) -> None:
        """Make the ACME directory unreachable (connection refused); Pebble keeps its state."""
        if self.gate is None:
            raise RuntimeError("this Pebble was started without a gate")
        self.gate.close()

    def start(self) -> None:
        """Reachable again on the same URL."""
        if self.gate is None:
            raise RuntimeError("this Pebble was started without a gate")
        self.gate.open()

    def terminate(self) -> None:
        if self.gate is not None:
            self.gate.close()
        stop_process(self.process)
        self.process = None


def _wait_for_directory(url: str, ca_bundle: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    context = ssl.create_default_context(cafile=ca_bundle)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pebble exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as response:
                if "newAccount" in json.loads(response.read()):
                    return
        except Exception as exc:  # not listening yet
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"pebble directory {url} did not answer: {last}")


def start_pebble(workdir: Path, dns_server: str, *, eab: bool = False, gated: bool = True,
                 extra_env: dict[str, str] | None = None) -> Pebble:
    """Start Pebble on free ports. ``gated=False`` skips the in-process TCP gate (benchmarks: no extra hop)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca_bundle, cert, key = _write_https_identity(workdir)
    eab_keys = {"kid-1": secrets.token_urlsafe(48), "kid-2": secrets.token_urlsafe(48)} if eab else {}
    env = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",
        "PEBBLE_WFE_NONCEREJECT": "0",
        "PEBBLE_AUTHZREUSE": "0",
        **(extra_env or {}),
    }
    env.pop("PEBBLE_VA_ALWAYS_VALID", None)
    last_error: Exception | None = None
    for attempt in range(3):
        public_port = free_port()
        acme_port = free_port() if gated else public_port
        mgmt_port, http_port, tls_port = free_port(), free_port(), free_port()
        config = {
            "pebble": {
                "listenAddress": f"{HOST}:{acme_port}",
                "managementListenAddress": f"{HOST}:{mgmt_port}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": eab,
                **({"externalAccountMACKeys": eab_keys} if eab else {}),
            }
        }
        config_path = workdir / "pebble-config.json"
        config_path.write_text(json.dumps(config, indent=2))
        log = (workdir / f"pebble-{attempt}.log").open("ab")
        process = subprocess.Popen([PEBBLE, "-config", str(config_path), "-dnsserver", dns_server],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir,
                                   start_new_session=True)
        gate = TcpGate(public_port, acme_port) if gated else None
        pebble = Pebble(
            directory_url=f"https://{HOST}:{public_port}/dir", ca_bundle=str(ca_bundle), http_port=http_port,
            tls_port=tls_port, management_url=f"https://{HOST}:{mgmt_port}", dns_server=dns_server,
            workdir=workdir, eab_keys=eab_keys, process=process, gate=gate,
        )
        try:
            if gate is not None:
                gate.open()
            _wait_for_directory(pebble.directory_url, pebble.ca_bundle, process)
            return pebble
        except (RuntimeError, OSError) as exc:  # a port taken in between: retry on fresh ones
            last_error = exc
            pebble.terminate()
    raise RuntimeError(f"could not start pebble: {last_error}")


@contextlib.contextmanager
def running_pebble(workdir: Path, dns_server: str, *, eab: bool = False, gated: bool = True) -> Iterator[Pebble]:
    pebble = start_pebble(workdir, dns_server, eab=eab, gated=gated)
    try:
        yield pebble
    finally:
        pebble.terminate()


@contextlib.contextmanager
def serve_http01_tokens(port: int, tokens: dict[str, str]) -> Iterator[None]:
    """A minimal HTTP-01 responder on 127.0.0.1:``port`` (token -> key authorization), for peer tests that do not
    need nginx."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            body = tokens.get(self.path.rsplit("/", 1)[-1])
            self.send_response(200 if body else 404)
            self.end_headers()
            if body:
                self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((HOST, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def acme_test_client(pebble: Pebble):  # type: ignore[no-untyped-def]  # -> acme.client.ClientV2
    """A registered ``acme`` ClientV2 for ``pebble`` with a fresh P-256 account key (peer tests only)."""
    import josepy
    from acme import client, messages

    key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(key, alg=josepy.ES256, verify_ssl=pebble.ca_bundle)
    acme = client.ClientV2(client.ClientV2.get_directory(pebble.directory_url, net), net)
    net.account = acme.new_account(
        messages.NewRegistration.from_data(email="peer-test@example.test", terms_of_service_agreed=True)
    )
    return acme


def issue_with_http01(pebble: Pebble, csr_pem: str, timeout: float = 30) -> str:
    """Have Pebble issue ``csr_pem`` through real HTTP-01 on ``pebble.http_port``; returns the fullchain PEM.
    The port must be free (no nginx there)."""
    from acme import challenges

    acme = acme_test_client(pebble)
    order = acme.new_order(csr_pem.encode())
    tokens: dict[str, str] = {}
    answers = []
    for authz in order.authorizations:
        challb = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
        response, validation = challb.response_and_validation(acme.net.key)
        tokens[challb.chall.encode("token")] = validation
        answers.append((challb, response))
    with serve_http01_tokens(pebble.http_port, tokens):
        for challb, response in answers:
            acme.answer_challenge(challb, response)
        order = acme.poll_and_finalize(order, deadline=dt.datetime.now() + dt.timedelta(seconds=timeout))
    return str(order.fullchain_pem)


def _require_pebble() -> None:
    if not os.path.exists(PEBBLE):
        pytest.fail(f"{PEBBLE} missing: install the Debian package pebble")


@pytest.fixture(scope="session")
def pebble(tmp_path_factory: pytest.TempPathFactory, bind_server: BindServer) -> Iterator[Pebble]:
    """A real Pebble resolving names through ``bind_server``. Tests that call ``stop()`` must ``start()``
    again in a ``finally`` (the fixture is shared by the session)."""
    _require_pebble()
    with running_pebble(tmp_path_factory.mktemp("pebble"), bind_server.address) as server:
        yield server


@pytest.fixture(scope="session")
def pebble_eab(tmp_path_factory: pytest.TempPathFactory, bind_server: BindServer) -> Iterator[Pebble]:
    """A second Pebble that requires External Account Binding; ``eab_keys`` holds kid -> HMAC key."""
    _require_pebble()
    with running_pebble(tmp_path_factory.mktemp("pebble-eab"), bind_server.address, eab=True) as server:
        yield server
