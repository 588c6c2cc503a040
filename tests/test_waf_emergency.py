"""Emergency rules end to end: a person (or automation) blocks 127.0.0.5; the rule reaches every agent over the
real grpc push stream; each agent renders it into its real nginx as a `deny`, so nginx answers that client 403
while 127.0.0.1 is served; at expiry the beat job's service withdraws it and both are served again."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from audit.models import AuditEvent
from tests.peers.nginx import NginxFactory, NginxServer
from tests.push_support import AgentProcess, Pki, agent_settings, canary_fleet_server, wait_until
from tests.waf_support import people
from waf_config.models import EmergencyRule
from waf_config.services.common import WafError
from waf_config.services.emergency import create_emergency_rule, live_rules, withdraw_expired_rules

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROBE = "/.well-known/acme-challenge/probe"


def status_from(ngx: NginxServer, source: str) -> int:
    """GET through nginx from a given loopback source address (nginx sees it as the client address)."""
    conn = http.client.HTTPConnection("127.0.0.1", ngx.http_port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", PROBE, headers={"Host": "site.test"})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture
def edges(tmp_path: Path, nginx_factory: NginxFactory) -> Iterator[list[tuple[AgentProcess, NginxServer]]]:
    pki = Pki.create(tmp_path / "pki")
    srv = canary_fleet_server(pki)
    pairs = []
    for name, group in (("edge-canary", "canary"), ("edge-1", "default")):
        ngx = nginx_factory()
        (ngx.challenge_dir / "probe").write_text("served")
        # the agent's emergency file is the include nginx reads inside http {}: deny lines apply to every server
        settings = agent_settings(tmp_path / name, pki, srv.port, name, group, emergency_file=str(ngx.tls_include),
                                  check_command=ngx.check_command, reload_command=ngx.reload_command)
        pairs.append((AgentProcess(tmp_path / name, settings).start(), ngx))
    try:
        for agent, ngx in pairs:
            wait_until(lambda a=agent: a.known().get("emergency_rules"), timeout=20, message="agent connected")
            assert status_from(ngx, "127.0.0.5") == 200 and status_from(ngx, "127.0.0.1") == 200
        yield pairs
    finally:
        for agent, _ in pairs:
            agent.stop()
        srv.stop()


def test_block_reaches_every_nginx_and_expires(edges: list[tuple[AgentProcess, NginxServer]],
                                              admin_client: Any) -> None:
    p = people()
    with pytest.raises(WafError, match="lacks the permission"):
        create_emergency_rule("127.0.0.5", actor=p.alice, reason="scanner", expires_in=timedelta(seconds=5))
    rule = create_emergency_rule("127.0.0.5", actor=p.carol, reason="credential stuffing from 127.0.0.5",
                                 expires_in=timedelta(seconds=6))
    counted = create_emergency_rule("127.0.0.6", actor="logpipeline.correlation", reason="suspicious, count only",
                                    action="log", expires_in=timedelta(seconds=6))
    for _, ngx in edges:
        wait_until(lambda n=ngx: status_from(n, "127.0.0.5") == 403, timeout=15, message="nginx refuses 127.0.0.5")
        assert status_from(ngx, "127.0.0.1") == 200
        assert status_from(ngx, "127.0.0.6") == 200  # count-only: listed, not denied
        assert "deny 127.0.0.5/32;" in ngx.tls_include.read_text()

    assert withdraw_expired_rules() == 0  # not yet
    last_expiry = max(rule.expires_at, counted.expires_at).timestamp()  # counted was made a moment later
    wait_until(lambda: last_expiry < time.time(), timeout=10, message="expiry")
    assert live_rules() == []  # the builder already leaves them out
    assert withdraw_expired_rules() == 2
    assert withdraw_expired_rules() == 0  # safe to run twice
    for _, ngx in edges:
        wait_until(lambda n=ngx: status_from(n, "127.0.0.5") == 200, timeout=15, message="127.0.0.5 served again")
        assert "deny" not in ngx.tls_include.read_text()

    rule.refresh_from_db()
    counted.refresh_from_db()
    assert rule.withdrawn_at is not None and counted.created_by_type == "automation"
    events = list(AuditEvent.objects.filter(object_type="waf_config.emergencyrule").order_by("id")
                  .values_list("action", "actor", "actor_type"))
    assert ("waf.emergency_rule_created", "carol", "person") in events
    assert ("waf.emergency_rule_created", "logpipeline.correlation", "automation") in events
    assert events.count(("waf.emergency_rule_expired", "waf_config.withdraw_expired_rules", "automation")) == 2

    # admin: the withdrawn rules under "withdrawn", with who made them and why; the trail names the automation
    withdrawn = admin_client.get("/admin/waf_config/emergencyrule/?withdrawn_at__isempty=0").content.decode()
    assert "credential stuffing from 127.0.0.5" in withdrawn and "logpipeline.correlation" in withdrawn
    live = admin_client.get("/admin/waf_config/emergencyrule/?withdrawn_at__isempty=1").content.decode()
    assert "127.0.0.5" not in live and "0 emergency rules" in live
    trail = admin_client.get("/admin/audit/auditevent/?q=emergency_rule_expired").content.decode()
    assert trail.count("waf_config.withdraw_expired_rules") >= 2


def test_bad_rules_are_refused_before_anything_is_pushed() -> None:
    people()
    for value, kind, message in (("300.1.1.1", "ip", "not an IP"), ("0.0.0.0/0", "cidr", "every address"),
                                 ("(?<=a)b", "pattern", "look")):
        with pytest.raises(WafError, match=message):
            create_emergency_rule(value, actor="tests", reason="r", kind=kind, match_field="uri")
    with pytest.raises(WafError, match="at most"):
        create_emergency_rule("10.0.0.1", actor="tests", reason="r", expires_in=timedelta(days=30))
    assert not EmergencyRule.objects.exists()
