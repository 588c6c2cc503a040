"""The real nginx fixture: serves ACME challenges on HTTP, a default TLS certificate, and reloads includes."""

from __future__ import annotations

from tests.peers.nginx import NginxServer


def test_nginx_serves_challenge_and_default_tls(nginx: NginxServer) -> None:
    (nginx.challenge_dir / "tok123").write_text("tok123.thumb")
    status, body = nginx.get("/.well-known/acme-challenge/tok123", host="a.example.com")
    assert (status, body) == (200, b"tok123.thumb")
    assert nginx.get("/.well-known/acme-challenge/missing")[0] == 404
    der = nginx.peer_certificate("a.example.com")
    assert b"nginx-fixture-default" in der


def test_nginx_reload_picks_up_include(nginx: NginxServer) -> None:
    nginx.tls_include.write_text(
        f"server {{ listen 127.0.0.1:{nginx.http_port}; server_name reloaded.test; return 200 'reloaded'; }}\n"
    )
    assert nginx.get("/", host="reloaded.test")[0] == 404
    nginx.reload()
    assert nginx.get("/", host="reloaded.test") == (200, b"reloaded")


def test_nginx_reload_reports_rejected_config(nginx: NginxServer) -> None:
    nginx.tls_include.write_text(f"server {{ listen 127.0.0.1:{nginx.http_port}; bogus_directive on; }}\n")
    try:
        nginx.reload()
    except (RuntimeError, Exception) as exc:  # nginx -s reload itself fails on a bad config
        assert "bogus_directive" in str(exc) or "unknown directive" in str(getattr(exc, "stderr", b""))
    else:
        raise AssertionError("reload of a bad config did not fail")
    assert nginx.get("/.well-known/acme-challenge/none")[0] == 404  # still serving the old config
