"""An HTTPS pass-through proxy in front of the real Pebble that adds what Debian's Pebble 2.4 lacks: ACME Renewal
Information (RFC 9773) and certificate profiles in the directory.

Every request goes to Pebble unchanged (same method, path, headers including ``Host``, body): Pebble builds its
URLs and checks each JWS ``url`` from ``Host``, so all of them point at the proxy and every signature stays
valid. The proxy only

* adds ``renewalInfo`` (its own URL) and ``meta.profiles`` to the directory JSON;
* answers ``GET <renewalInfo>/<ari-id>`` itself with the window the test sets (and ``Retry-After``), recording
  the ids asked for;
* records the decoded JWS payload of every newOrder POST (the JWS is forwarded as is: it cannot re-sign), and
  on request refuses the next newOrder carrying ``replaces`` with an RFC 8555 problem document, as a CA that
  does not accept the replacement would (with a real Pebble nonce, as RFC 8555 wants on every POST answer).

Pebble 2.4 ignores the unknown ``replaces`` and ``profile`` fields of newOrder (Go's JSON decoding drops unknown
keys), so they reach it and the order proceeds; ``tests/test_ari.py`` checks that.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.client
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.peers.pebble import HOST, Pebble, _write_https_identity

RENEWAL_INFO_PATH = "/renewal-info"
DEFAULT_PROFILES = {"classic": "the default 90-day profile", "shortlived": "a 6-day profile"}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
              "content-length"}


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class RecordedOrder:
    """One newOrder POST as the CA received it: the decoded payload and whether the proxy refused it."""

    payload: dict[str, Any]
    rejected: bool = False

    @property
    def domains(self) -> list[str]:
        return sorted(i["value"] for i in self.payload.get("identifiers", []))


@dataclass
class AriProxy:
    pebble: Pebble
    ca_bundle: str  # trusts both the proxy's HTTPS and Pebble's (management URLs stay Pebble's)
    port: int = 0
    profiles: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PROFILES))
    window: tuple[dt.datetime, dt.datetime] | None = None  # None: renewalInfo answers 404
    retry_after_seconds: int = 21600
    new_orders: list[RecordedOrder] = field(default_factory=list)
    ari_requests: list[str] = field(default_factory=list)
    reject_replaces: dict[str, Any] | None = None  # the problem document for the next newOrder with replaces
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _upstream_context: ssl.SSLContext | None = field(default=None, repr=False)
    _new_order_path: str = ""
    _new_nonce_path: str = ""

    @property
    def base_url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def directory_url(self) -> str:
        return self.base_url + urlsplit(self.pebble.directory_url).path

    @property
    def renewal_info_url(self) -> str:
        return self.base_url + RENEWAL_INFO_PATH

    def orders_for(self, domains: list[str]) -> list[RecordedOrder]:
        with self.lock:
            return [o for o in self.new_orders if o.domains == sorted(domains)]

    def reject_next_replaces(self, problem_type: str = "urn:ietf:params:acme:error:alreadyReplaced",
                             detail: str = "the certificate named in replaces has already been replaced",
                             status: int = 409) -> None:
        self.reject_replaces = {"type": problem_type, "detail": detail, "status": status}

    # ---- upstream ---------------------------------------------------------------------------------------
    def upstream(self, method: str, path: str, headers: dict[str, str], body: bytes | None
                 ) -> tuple[int, list[tuple[str, str]], bytes]:
        target = urlsplit(self.pebble.directory_url)
        if self._upstream_context is None:
            self._upstream_context = ssl.create_default_context(cafile=self.pebble.ca_bundle)
        conn = http.client.HTTPSConnection(target.hostname or HOST, target.port, context=self._upstream_context,
                                           timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.getheaders(), data
        finally:
            conn.close()

    def fresh_nonce(self, host: str) -> str:
        """A real Pebble nonce for the proxy's own error answers (RFC 8555 §6.5: every POST answer has one)."""
        _, headers, _ = self.upstream("HEAD", self._new_nonce_path, {"Host": host}, None)
        return next((v for k, v in headers if k.lower() == "replay-nonce"), "")

    def rewrite_directory(self, body: bytes) -> bytes:
        directory = json.loads(body)
        if "renewalInfo" in directory or "profiles" in directory.get("meta", {}):
            raise RuntimeError("this Pebble offers ARI/profiles itself: the proxy would hide them")
        self._new_order_path = urlsplit(directory["newOrder"]).path
        self._new_nonce_path = urlsplit(directory["newNonce"]).path
        directory["renewalInfo"] = self.renewal_info_url
        directory.setdefault("meta", {})["profiles"] = dict(self.profiles)
        return json.dumps(directory, indent=2).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the acme client's session expects
    server: _ProxyServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self._handle()

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        proxy = self.server.proxy
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.command == "GET" and path.startswith(RENEWAL_INFO_PATH + "/"):
            self._renewal_info(path[len(RENEWAL_INFO_PATH) + 1:])
            return
        if self.command == "POST" and proxy._new_order_path and path == proxy._new_order_path and body:
            jws = json.loads(body)
            payload = json.loads(_b64url_decode(jws["payload"]))
            problem = proxy.reject_replaces if "replaces" in payload else None
            with proxy.lock:
                proxy.new_orders.append(RecordedOrder(payload, rejected=problem is not None))
                if problem is not None:
                    proxy.reject_replaces = None
            if problem is not None:
                nonce = proxy.fresh_nonce(self.headers["Host"])
                self._reply(problem["status"], [("Content-Type", "application/problem+json"),
                                                ("Replay-Nonce", nonce)], json.dumps(problem).encode())
                return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        status, response_headers, data = proxy.upstream(self.command, self.path, headers, body)
        if self.command == "GET" and path == urlsplit(proxy.pebble.directory_url).path and status == 200:
            if any(k.lower() == "content-encoding" for k, _ in response_headers):
                raise RuntimeError("compressed directory: the proxy cannot add ARI to it")
            data = proxy.rewrite_directory(data)
        self._reply(status, response_headers, data)

    def _renewal_info(self, ari_id: str) -> None:
        proxy = self.server.proxy
        with proxy.lock:
            proxy.ari_requests.append(ari_id)
            window = proxy.window
        if window is None or "." not in ari_id:
            problem = {"type": "urn:ietf:params:acme:error:malformed", "status": 404,
                       "detail": f"no renewal information for {ari_id!r}"}
            self._reply(404, [("Content-Type", "application/problem+json")], json.dumps(problem).encode())
            return
        info = {"suggestedWindow": {"start": _rfc3339(window[0]), "end": _rfc3339(window[1])}}
        self._reply(200, [("Content-Type", "application/json"),
                          ("Retry-After", str(proxy.retry_after_seconds))], json.dumps(info).encode())


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    proxy: AriProxy


@contextlib.contextmanager
def running_ari_proxy(pebble: Pebble, workdir: Path) -> Iterator[AriProxy]:
    """The proxy on a free port of 127.0.0.1 in a thread, HTTPS with its own throwaway CA."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = _write_https_identity(workdir)
    bundle = workdir / "ca-bundle.pem"
    bundle.write_text(Path(pebble.ca_bundle).read_text() + ca_path.read_text())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = _ProxyServer((HOST, 0), _Handler)
    # the TLS handshake runs lazily in the handler thread, so a slow client never blocks accept()
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    proxy = AriProxy(pebble=pebble, ca_bundle=str(bundle), port=int(server.server_address[1]))
    server.proxy = proxy
    # shutdown() waits for serve_forever to notice, which it checks every poll_interval (0.5 s by default)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True,
                              name="ari-proxy")
    thread.start()
    try:
        # learn Pebble's newOrder/newNonce paths before any client asks (clients get the directory rewritten anew)
        _, _, directory = proxy.upstream("GET", urlsplit(pebble.directory_url).path,
                                         {"Host": f"{HOST}:{proxy.port}"}, None)
        proxy.rewrite_directory(directory)
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def ari_pebble(pebble: Pebble, tmp_path: Path) -> Iterator[AriProxy]:
    """The session Pebble behind a fresh ARI/profiles proxy (records start empty for each test)."""
    with running_ari_proxy(pebble, tmp_path / "ari-proxy") as proxy:
        yield proxy
