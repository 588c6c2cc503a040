"""The Attack flow end to end on the real data plane (issue 16): two gateway-agents, each with its own real nginx
writing the JSON access log the agent configured; a login brute force from 127.0.0.7 split across both nginx (each
instance alone below the threshold) as real HTTP requests; the agents ship the access logs on the real grpc push
stream; the pipeline (synchronously in the Worker's intake, as it runs in production) correlates across instances,
opens an incident and asks the registered responder (waf_config) for an emergency rule; the rule is pushed to
both agents, both nginx answer 127.0.0.7 with 403 while 127.0.0.1 is served; the incident's notification reaches
a local webhook receiver (signed); at expiry the withdrawal job withdraws the rule and 127.0.0.7 is served again."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings

from gateways.grpc_server import ServerConfig
from integrations import senders
from integrations.delivery import deliver
from integrations.models import Notification, NotificationChannel
from logpipeline import services as pipeline
from logpipeline.detectors import invalidate_config
from logpipeline.models import Detector, Incident, RequestLog, ResponseAction, SecurityEvent
from tests.integrations_support import Recorder
from tests.log_support import clear_prefix
from tests.peers.nginx import NginxFactory, NginxServer
from tests.push_support import AgentProcess, Pki, ServerThread, agent_settings, wait_until
from waf_config import responder
from waf_config.models import EmergencyRule
from waf_config.services.emergency import withdraw_expired_rules

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ATTACKER, OTHER = "127.0.0.7", "127.0.0.1"
SECRET = "whsec-attack-loop"
TTL = 12
THRESHOLD = 10      # failed logins per window, summed over every instance
PER_EDGE = 6        # what each nginx sees: below the threshold alone, 12 together


def request(ngx: NginxServer, source: str, method: str = "GET", path: str = "/.well-known/acme-challenge/probe",
            body: bytes | None = None) -> int:
    """A real HTTP request to nginx from a given loopback source address (nginx logs it as the client)."""
    conn = http.client.HTTPConnection("127.0.0.1", ngx.http_port, timeout=5, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers={"Host": "shop.test", "User-Agent": "Mozilla/5.0 (X11)",
                                                       "Content-Type": "application/x-www-form-urlencoded"})
        return conn.getresponse().status
    finally:
        conn.close()


def json_logged(ngx: NginxServer, access_log: Path, probes: int = 5) -> bool:
    """True when ``probes`` requests in a row reached the JSON log: an old worker of a reload still in progress
    (serving the configuration without it) would miss one."""
    for _ in range(probes):
        marker = f"ready={time.monotonic_ns()}"
        assert request(ngx, OTHER, path=f"/.well-known/acme-challenge/probe?{marker}") == 200
        time.sleep(0.02)
        if marker not in access_log.read_text():
            return False
    return True


@pytest.fixture
def edges(tmp_path: Path, nginx_factory: NginxFactory) -> Iterator[list[tuple[AgentProcess, NginxServer, Path]]]:
    pki = Pki.create(tmp_path / "pki")
    srv = ServerThread(ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key),
                                    ca=str(pki.ca), debounce_seconds=0.02)).start()
    edges = []
    for name in ("edge-a", "edge-b"):
        ngx = nginx_factory()
        (ngx.challenge_dir / "probe").write_text("served")
        access_log = ngx.root / "logs" / "gateway.json.log"
        # emergency rules and the JSON access log are both rendered into the include nginx reads inside http {}
        conf = agent_settings(tmp_path / name, pki, srv.port, name, "default", emergency_file=str(ngx.tls_include),
                              check_command=ngx.check_command, reload_command=ngx.reload_command,
                              access_log=str(access_log), log_poll_seconds=0.1)
        edges.append((AgentProcess(tmp_path / name, conf).start(), ngx, access_log))
    try:
        for agent, ngx, access_log in edges:
            wait_until(lambda a=agent: a.known().get("emergency_rules"), timeout=30, message="agent connected")
            wait_until(access_log.exists, timeout=10, message="nginx writes the JSON access log")
            wait_until(lambda n=ngx, log=access_log: json_logged(n, log), timeout=20,
                       message="every nginx worker logs JSON (the agent's reloads are over)")
            assert request(ngx, ATTACKER) == 200 and request(ngx, OTHER) == 200
        yield edges
    finally:
        for agent, _, _ in edges:
            agent.stop()
        srv.stop()


@pytest.fixture
def pipeline_armed(detectors) -> Iterator[None]:
    """The login detector armed for this test (a real policy, short TTL); nginx answers POST /login with 404 here
    (the fixture has no login app), so 404 counts as a failed login. Fresh correlation windows; the responder
    installed as waf_config's AppConfig does (other tests may have swapped it)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    clear_prefix(client, settings.LOG_CORRELATION_PREFIX)
    pipeline._engine = None
    Detector.objects.filter(name="login-bruteforce").update(
        simulate=False, response="block", threshold=THRESHOLD, window_seconds=300, block_ttl_seconds=TTL,
        max_block_ttl_seconds=TTL, params={"paths": "^/login$", "methods": ["POST"], "statuses": [404]})
    invalidate_config()
    responder.register()
    yield
    clear_prefix(client, settings.LOG_CORRELATION_PREFIX)
    client.close()
    invalidate_config()


def test_split_brute_force_is_blocked_on_both_nginx_notified_and_withdrawn_at_expiry(
        edges: list[tuple[AgentProcess, NginxServer, Path]], pipeline_armed: None, receiver: Recorder) -> None:
    NotificationChannel.objects.create(name="ops-webhook", kind="webhook", target=receiver.url(), secret=SECRET)
    # benign traffic from another address on both edges
    for _, ngx, _ in edges:
        for _ in range(3):
            assert request(ngx, OTHER) == 200
    # the brute force, split: each nginx sees PER_EDGE failed logins from 127.0.0.7 (below THRESHOLD alone)
    for i in range(PER_EDGE):
        for _, ngx, _ in edges:
            assert request(ngx, ATTACKER, "POST", "/login", body=f"user=admin&password=guess{i}".encode()) == 404

    # shipped by the agents, stored tagged with each instance, correlated across them
    attempts = RequestLog.objects.filter(client_ip=ATTACKER, method="POST")
    wait_until(lambda: attempts.count() >= 2 * PER_EDGE, timeout=30, message="both access logs shipped")
    by_instance = {i: attempts.filter(gateway_instance=i).count() for i in ("edge-a", "edge-b")}
    assert by_instance == {"edge-a": PER_EDGE, "edge-b": PER_EDGE}
    incident = wait_until(lambda: Incident.objects.filter(subject=ATTACKER).first(), timeout=15,
                          message="an incident for 127.0.0.7")
    event = SecurityEvent.objects.get(incident=incident)
    assert event.event_type == "login_bruteforce_split"  # caught only across instances
    assert all(n < THRESHOLD for n in event.details["instances"].values()), event.details
    action = ResponseAction.objects.get(incident=incident)
    assert action.outcome == "requested", action.result
    rule = EmergencyRule.objects.get(pattern=ATTACKER)
    assert (rule.action, rule.incident_id, rule.created_by) == ("block", incident.pk, "logpipeline.correlation")

    # pushed to both agents: both nginx refuse the attacker, everyone else is served
    for _, ngx, _ in edges:
        wait_until(lambda n=ngx: request(n, ATTACKER) == 403, timeout=20, message="nginx refuses 127.0.0.7")
        assert request(ngx, OTHER) == 200
        assert f"deny {ATTACKER}/32;" in ngx.tls_include.read_text()

    # the incident's notification reaches the local receiver, signed (delivered as the integrations task does)
    pending = wait_until(lambda: list(Notification.objects.filter(event_kind="security.incident")), timeout=10,
                         message="a notification")
    assert [deliver(n.pk).status for n in pending] == ["sent"]
    (post,) = receiver.posts()
    senders.verify_webhook(SECRET, post.body, post.headers[senders.TIMESTAMP_HEADER],
                           post.headers[senders.SIGNATURE_HEADER])
    assert post.json()["kind"] == "security.incident" and ATTACKER in post.body.decode()

    # withdrawn at expiry by the beat job's service: 127.0.0.7 is served again on both
    assert withdraw_expired_rules() == 0
    wait_until(lambda: rule.expires_at.timestamp() < time.time(), timeout=TTL + 5, message="expiry")
    assert withdraw_expired_rules() == 1
    for _, ngx, _ in edges:
        wait_until(lambda n=ngx: request(n, ATTACKER) == 200, timeout=20, message="127.0.0.7 served again")
        assert "deny" not in ngx.tls_include.read_text()
    rule.refresh_from_db()
    assert rule.withdrawn_at is not None
