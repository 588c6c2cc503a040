"""A real nginx as the Gateway data plane, started per test on free ports in a tmp dir.

Stable API (the certificates end-to-end test and the push-plane tests use it):

    def test_x(nginx_factory):
        ngx = nginx_factory()                      # or nginx_factory(http_port=..., https_port=...,
                                                   #                  challenge_dir=..., tls_include=...)
        ngx.http_port, ngx.https_port              # ints, bound on 127.0.0.1
        ngx.challenge_dir                          # Path: files here are served at
                                                   #   http://127.0.0.1:<http_port>/.well-known/acme-challenge/<name>
        ngx.tls_include                            # Path: included inside ``http {}``; the gateway agent's nginx
                                                   #   target renders its ``server { listen ... ssl; }`` blocks here
        ngx.https_listen                           # "127.0.0.1:<https_port>" (what the agent's servers must listen on)
        ngx.conf_path, ngx.prefix                  # for ``nginx -t -c conf -p prefix`` / ``nginx -s reload -c ...``
        ngx.check_command, ngx.reload_command      # list[str] argv, ready for the agent's check/reload options
        ngx.reload()                               # ``nginx -s reload``, wait for the new workers (raises if rejected)
        ngx.get(path, host=None) -> (status, body) # plain HTTP GET on the HTTP port
        ngx.peer_certificate(server_name) -> bytes # DER of the leaf nginx presents for that SNI on the HTTPS port
        ngx.wait_for_certificate(server_name, der, timeout=10)   # poll until that leaf is served
        ngx.stop()                                 # also done by the fixture at teardown

Every server block listens on 127.0.0.1 only. The HTTP server is the default server for any Host (so an ACME
CA validating ``http://<domain>:<http_port>/.well-known/acme-challenge/<token>`` reaches it); the HTTPS port
has a default server with a fixture-made self-signed certificate (CN ``nginx-fixture-default``) until the
include adds real ones.
"""

from __future__ import annotations

import datetime as dt
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

NGINX_BIN = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _self_signed(cert_path: Path, key_path: Path, cn: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class NginxServer:
    """One running nginx (see the module docstring for the API)."""

    root: Path
    http_port: int
    https_port: int
    challenge_dir: Path
    tls_include: Path
    extra_includes: tuple[Path, ...] = ()  # included after tls_include, in order
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def prefix(self) -> Path:
        return self.root

    @property
    def conf_path(self) -> Path:
        return self.root / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.root / "logs" / "error.log"

    @property
    def https_listen(self) -> str:
        return f"127.0.0.1:{self.https_port}"

    @property
    def check_command(self) -> list[str]:
        return [NGINX_BIN, "-t", "-q", "-c", str(self.conf_path), "-p", str(self.prefix)]

    @property
    def reload_command(self) -> list[str]:
        return [NGINX_BIN, "-s", "reload", "-c", str(self.conf_path), "-p", str(self.prefix)]

    def render_conf(self) -> str:
        user = "user root;\n" if os.geteuid() == 0 else ""
        tmp = self.root / "tmp"
        includes = "".join(f"    include {p};\n" for p in self.extra_includes)
        return f"""{user}daemon off;
worker_processes 1;
pid {self.root}/nginx.pid;
error_log {self.error_log} notice;
events {{ worker_connections 512; }}
http {{
    access_log {self.root}/logs/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    server_names_hash_bucket_size 128;
    server {{
        listen 127.0.0.1:{self.http_port} default_server;
        server_name _;
        location /.well-known/acme-challenge/ {{
            alias {self.challenge_dir}/;
            default_type text/plain;
            try_files $uri =404;
        }}
        location / {{ return 404; }}
    }}
    server {{
        listen 127.0.0.1:{self.https_port} ssl default_server;
        server_name _;
        ssl_certificate {self.root}/default.crt;
        ssl_certificate_key {self.root}/default.key;
        location / {{ return 404; }}
    }}
    include {self.tls_include};
{includes}}}
"""

    def start(self, timeout: float = 10.0) -> None:
        for sub in ("logs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.challenge_dir.mkdir(parents=True, exist_ok=True)
        self.tls_include.parent.mkdir(parents=True, exist_ok=True)
        for include in (self.tls_include, *self.extra_includes):
            include.parent.mkdir(parents=True, exist_ok=True)
            if not include.exists():
                include.write_text("# rendered by gateway-agent\n")
        _self_signed(self.root / "default.crt", self.root / "default.key", "nginx-fixture-default")
        self.conf_path.write_text(self.render_conf())
        self.proc = subprocess.Popen([NGINX_BIN, "-c", str(self.conf_path), "-p", str(self.prefix)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {err}")
            if _listening(self.http_port) and _listening(self.https_port):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nginx did not listen on {self.http_port}/{self.https_port} in {timeout}s")

    def _log_size(self) -> int:
        try:
            return self.error_log.stat().st_size
        except FileNotFoundError:
            return 0

    def reload(self, timeout: float = 10.0) -> None:
        """``nginx -s reload``, then wait until the master has started workers with the new config."""
        offset = self._log_size()
        subprocess.run(self.reload_command, check=True, capture_output=True, timeout=timeout)
        self.wait_reloaded(offset, timeout)

    def wait_reloaded(self, log_offset: int, timeout: float = 10.0) -> None:
        """Wait for a reload signalled after ``log_offset`` (bytes of error.log) to finish; raise if nginx
        rejected the new configuration (it then keeps serving the old one)."""
        deadline = time.monotonic() + timeout
        while True:
            with open(self.error_log, "rb") as fh:
                fh.seek(log_offset)
                new = fh.read().decode(errors="replace")
            if "[emerg]" in new:
                raise RuntimeError(f"nginx rejected the reload: {new.strip()[-500:]}")
            # done when the new workers run AND the old ones exited (until then an old worker may still accept)
            if "start worker process " in new and "exited with code" in new:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"nginx did not reload within {timeout}s; see {self.error_log}")
            time.sleep(0.02)

    def get(self, path: str, host: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": host or "localhost"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def peer_certificate(self, server_name: str, timeout: float = 5.0) -> bytes:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # we inspect what is served, trust is not the question here
        with socket.create_connection(("127.0.0.1", self.https_port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    def wait_for_certificate(self, server_name: str, der: bytes, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.peer_certificate(server_name) == der:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"nginx did not serve the expected certificate for {server_name}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)  # graceful: finish requests, remove the pid file
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        if self.proc.stderr:
            self.proc.stderr.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


NginxFactory = Callable[..., NginxServer]


@pytest.fixture
def nginx_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxFactory]:
    """Start real nginx servers: ``nginx_factory(http_port=None, https_port=None, challenge_dir=None,
    tls_include=None, extra_includes=()) -> NginxServer``. All are stopped at teardown."""
    started: list[NginxServer] = []

    def start(http_port: int | None = None, https_port: int | None = None, challenge_dir: Path | None = None,
              tls_include: Path | None = None, extra_includes: tuple[Path, ...] = ()) -> NginxServer:
        root = tmp_path_factory.mktemp("nginx")
        last: Exception | None = None
        for _ in range(5):  # a free port can be taken between probing and binding: retry with new ones
            server = NginxServer(
                root=root, http_port=http_port or free_port(), https_port=https_port or free_port(),
                challenge_dir=challenge_dir or root / "acme-challenge",
                tls_include=tls_include or root / "conf.d" / "gateway-tls.conf", extra_includes=extra_includes,
            )
            try:
                server.start()
            except RuntimeError as exc:
                last = exc
                if http_port and https_port:
                    break
                continue
            started.append(server)
            return server
        raise RuntimeError(f"could not start nginx: {last}")

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def nginx(nginx_factory: NginxFactory) -> NginxServer:
    """One nginx on free ports with default paths."""
    return nginx_factory()
