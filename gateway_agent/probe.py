"""After an nginx reload, confirm by TLS handshake that the new certificates are what nginx presents.

`nginx -s reload` returns as soon as the signal is sent; the new workers start a moment later (longer with many
certificates). An ACK must mean "served", so the agent waits for the handshake before it answers.
"""

from __future__ import annotations

import socket
import ssl
import time

from cryptography import x509


def listen_target(listen: str) -> tuple[str, int]:
    """Where to connect for an nginx ``listen`` value: ``443``, ``127.0.0.1:8443``, ``[::1]:443``, ``*:443``."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "*", "0.0.0.0"):  # noqa: S104 - a wildcard listen is reached on loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def _probe_context() -> ssl.SSLContext:
    # no trust store: we compare serials, trust is not the question here (loading the system CAs for every
    # handshake was most of a probe's CPU)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_CONTEXT = _probe_context()


def presented_serial(host: str, port: int, server_name: str, timeout: float = 2.0) -> str | None:
    """Lowercase hex serial of the leaf nginx presents for ``server_name``, or None if no handshake."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                _CONTEXT.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return format(x509.load_der_x509_certificate(der).serial_number, "x") if der else None


def probe_name(domain: str) -> str:
    """An SNI that a server_name of ``domain`` answers (a wildcard needs a concrete name)."""
    return f"gateway-agent-probe.{domain[2:]}" if domain.startswith("*.") else domain


def wait_until_served(expected: dict[str, str], listen: str, timeout: float,
                      streak: int = 3, settle: float = 0.25) -> dict[str, str | None]:
    """Poll until every ``{domain: serial}`` is presented; returns what is still wrong (empty: all served).

    Right after a reload old and new nginx workers both accept for a moment: the master starts the new ones, then
    tells the old ones to stop listening, and an old worker woken by a connection accepts it before it handles
    that signal — later still when it waits for a CPU on a busy machine, or when reloads follow each other and two
    old generations are winding down. So one good handshake is not enough: a domain counts as served after
    ``streak`` good handshakes in a row that span at least ``settle`` seconds (a count alone is met within a few
    milliseconds by fast handshakes)."""
    host, port = listen_target(listen)
    pending: dict[str, str | None] = dict.fromkeys(expected)
    good = dict.fromkeys(expected, 0)
    since: dict[str, float] = {}  # first handshake of the current good streak
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        for domain in list(pending):
            got = presented_serial(host, port, probe_name(domain))
            now = time.monotonic()
            if got == expected[domain]:
                good[domain] += 1
                since.setdefault(domain, now)
            else:
                good[domain] = 0
                since.pop(domain, None)
            if good[domain] >= streak and now - since[domain] >= settle:
                del pending[domain]
            else:
                pending[domain] = got
        if not pending or time.monotonic() >= deadline:
            return pending
        # confirming a streak: ask again soon; otherwise back off
        time.sleep(0.02 if all(good[d] for d in pending) else delay)
        if not all(good[d] for d in pending):
            delay = min(delay * 2, 0.2)
