"""Fixtures for a real BIND 9 peer: an authoritative server for a test zone that takes RFC 2136 updates signed
with TSIG (DNS-01) and resolves every name in the zone to 127.0.0.1 (so Pebble reaches our nginx for HTTP-01).

``start_bind(workdir)`` is usable outside pytest (benchmarks); ``bind_server`` is the session fixture.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.peers import stop_process

NAMED = "/usr/sbin/named"
ZONE = "example.test"
TSIG_KEY_NAME = "gw-worker-update"
TSIG_ALGORITHM = "hmac-sha256"


@dataclass
class BindServer:
    host: str
    port: int
    zone: str
    tsig_key_name: str
    tsig_secret: str  # base64, as in named.conf
    tsig_algorithm: str
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``host:port`` as Pebble's ``-dnsserver`` takes it."""
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


def free_udp_tcp_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP (DNS needs both). Small race with other processes, retried by callers."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free TCP+UDP port found")


def _write_config(workdir: Path, host: str, port: int, zone: str, secret: str) -> Path:
    zone_file = workdir / f"{zone}.zone"
    zone_file.write_text(
        f"""$TTL 60
@   IN SOA ns1.{zone}. hostmaster.{zone}. ( 1 60 60 3600 1 )
@   IN NS  ns1.{zone}.
@   IN A   127.0.0.1
ns1 IN A   127.0.0.1
*   IN A   127.0.0.1
"""
    )
    # the parent zone too (empty), so a CAA lookup climbing the tree (RFC 8659) gets an answer, not REFUSED
    parent = zone.split(".", 1)[1] if "." in zone else zone
    parent_file = workdir / f"{parent}.zone"
    parent_file.write_text(
        f"""$TTL 60
@   IN SOA ns.{parent}. hostmaster.{zone}. ( 1 60 60 3600 1 )
@   IN NS  ns.{parent}.
ns  IN A   127.0.0.1
"""
    )
    conf = workdir / "named.conf"
    conf.write_text(
        f"""key "{TSIG_KEY_NAME}" {{
    algorithm {TSIG_ALGORITHM};
    secret "{secret}";
}};
controls {{ }};
options {{
    directory "{workdir}";
    pid-file "{workdir}/named.pid";
    session-keyfile "{workdir}/session.key";
    managed-keys-directory "{workdir}";
    listen-on port {port} {{ {host}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-transfer {{ none; }};
}};
logging {{
    channel stderr_chan {{ stderr; severity info; print-time yes; }};
    category default {{ stderr_chan; }};
    category lame-servers {{ null; }};
}};
zone "{parent}" {{
    type primary;
    file "{parent_file}";
}};
zone "{zone}" {{
    type primary;
    file "{zone_file}";
    journal "{workdir}/{zone}.jnl";
    allow-update {{ key "{TSIG_KEY_NAME}"; }};
}};
"""
    )
    return conf


def _wait_for_dns(host: str, port: int, zone: str, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    import dns.message
    import dns.query

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"named exited with {process.returncode}")
        try:
            query = dns.message.make_query(f"{zone}.", "SOA")
            response = dns.query.udp(query, host, port=port, timeout=0.5)
            if response.answer:
                return
        except Exception as exc:  # not listening yet
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"named did not answer on {host}:{port}: {last}")


def start_bind(workdir: Path, host: str = "127.0.0.1", zone: str = ZONE) -> BindServer:
    """Start ``named -g`` in ``workdir`` on a free port; the caller stops it with ``.stop()``."""
    workdir.mkdir(parents=True, exist_ok=True)
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    for _attempt in range(3):
        port = free_udp_tcp_port(host)
        conf = _write_config(workdir, host, port, zone, secret)
        log = (workdir / "named.log").open("ab")
        process = subprocess.Popen([NAMED, "-g", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                   cwd=workdir, start_new_session=True)
        server = BindServer(host, port, zone, TSIG_KEY_NAME, secret, TSIG_ALGORITHM, workdir, process)
        try:
            _wait_for_dns(host, port, zone, process)
            return server
        except RuntimeError:
            server.stop()
            continue  # most likely lost the port to another process: try another
    tail = (workdir / "named.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"could not start named:\n{tail}")


@contextlib.contextmanager
def running_bind(workdir: Path) -> Iterator[BindServer]:
    server = start_bind(workdir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def bind_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BindServer]:
    """A real BIND 9, authoritative for ``example.test`` (``* A 127.0.0.1``), RFC 2136 updates with TSIG."""
    if not os.path.exists(NAMED):
        pytest.fail(f"{NAMED} missing: install the Debian package bind9")
    with running_bind(tmp_path_factory.mktemp("bind")) as server:
        yield server
