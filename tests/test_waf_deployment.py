"""End to end on real PostgreSQL, Redis, the grpc server and gateway-agent processes: an approved version goes
to the canary group, soaks, then to every group; a canary NACK rolls the group back by itself; a manual
rollback points the groups at an older deployed version again. Everything in the audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audit import approvals
from audit.models import AuditEvent
from gateways.grpc_server import ServerConfig
from gateways.models import GatewayGroup
from gateways.services import create_group
from tests.push_support import AgentProcess, Pki, ServerThread, agent_settings, wait_until
from tests.waf_support import block_rule, corpus, people, rules_file, waf_rule_set
from waf_config.models import Deployment, GroupVersion, RuleSetVersion, VersionState
from waf_config.services.deployment import rollback_to, run_deployment, start_deployment
from waf_config.services.versions import create_version, replay_version, submit_for_approval

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[dict[str, Any]]:
    pki = Pki.create(tmp_path / "pki")
    srv = ServerThread(ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key),
                                    ca=str(pki.ca), debounce_seconds=0.02)).start()
    if not GatewayGroup.objects.filter(name="canary").exists():
        create_group("canary", actor="tests")
    agents: dict[str, AgentProcess] = {}
    # the canary Gateway refuses (NACKs) any rule file naming the rule "nack-me": a Gateway-side failure
    canary_rules = tmp_path / "edge-canary" / "waf-rules.yaml"
    for name, group, extra in (
        ("edge-canary", "canary", {"check_command": ["sh", "-c", f"! grep -q nack-me {canary_rules}"]}),
        ("edge-1", "default", {}),
    ):
        agents[name] = AgentProcess(tmp_path / name, agent_settings(tmp_path / name, pki, srv.port, name, group,
                                                                    **extra)).start()
    try:
        for a in agents.values():
            wait_until(lambda a=a: a.known().get("emergency_rules"), timeout=20, message="agent connected")
        yield agents
    finally:
        for a in agents.values():
            a.stop()
        srv.stop()


def approved(p: Any, rule_set: Any, content: str) -> RuleSetVersion:
    version = create_version(rule_set, content, p.alice, "change")
    replay_version(version, corpus(f"c{version.number}"))
    request = submit_for_approval(version, p.alice, "please")
    with pytest.raises(approvals.ApprovalError):
        approvals.approve(request, p.alice, "mine")  # the author's own approval is refused
    approvals.approve(request, p.bob, "reviewed")
    version.refresh_from_db()
    assert version.state == VersionState.APPROVED
    return version


def rules_text(agent: AgentProcess) -> str:
    path = Path(agent.settings["rules_file"])
    return path.read_text() if path.exists() else ""


def test_canary_then_fleet_automatic_rollback_on_nack_and_manual_rollback(fleet: dict[str, AgentProcess]) -> None:
    p = people()
    rs = waf_rule_set()
    v1_text = rules_file(block_rule("wp", "uri", "contains", "wp-login"))
    v1 = approved(p, rs, v1_text)
    with pytest.raises(Exception, match="lacks the permission"):
        start_deployment(v1, p.bob, enqueue=False)  # approvers do not deploy
    d1 = start_deployment(v1, p.carol, soak_seconds=1, enqueue=False)
    d1 = run_deployment(d1.pk, ack_timeout=20)
    assert d1.state == "deployed", d1.outcome
    assert d1.canary_acked_at is not None and d1.fleet_started_at is not None
    assert (d1.fleet_started_at - d1.canary_acked_at).total_seconds() >= 1  # the soak happened
    assert rules_text(fleet["edge-canary"]) == v1_text and rules_text(fleet["edge-1"]) == v1_text
    assert set(GroupVersion.objects.values_list("version_id", flat=True)) == {v1.pk}

    # v2 is refused by the canary Gateway: back to v1 by itself, the fleet never sees v2
    v2_text = rules_file(block_rule("wp", "uri", "contains", "wp-login"), block_rule("nack-me", "uri", "contains",
                                                                                     "/x"))
    v2 = approved(p, rs, v2_text)
    d2 = run_deployment(start_deployment(v2, p.carol, soak_seconds=1, enqueue=False).pk, ack_timeout=20)
    v2.refresh_from_db()
    assert (d2.state, v2.state) == ("rolled_back", VersionState.ROLLED_BACK)
    assert "canary NACK" in d2.outcome and "edge-canary" in d2.outcome
    assert GroupVersion.objects.get(group__name="canary").version_id == v1.pk
    assert rules_text(fleet["edge-canary"]) == v1_text and rules_text(fleet["edge-1"]) == v1_text
    assert d2.groups == ["canary"]

    # v3 goes everywhere, then a person points every group back at v1
    v3_text = rules_file(block_rule("adm", "uri", "starts_with", "/admin"))
    v3 = approved(p, rs, v3_text)
    d3 = run_deployment(start_deployment(v3, p.carol, soak_seconds=0, enqueue=False).pk, ack_timeout=20)
    assert d3.state == "deployed", d3.outcome
    wait_until(lambda: rules_text(fleet["edge-1"]) == v3_text, timeout=10, message="v3 on the fleet")
    rollback_to(v1, p.carol, reason="v3 blocks the admin team")
    wait_until(lambda: rules_text(fleet["edge-1"]) == v1_text and rules_text(fleet["edge-canary"]) == v1_text,
               timeout=20, message="v1 back on every Gateway")
    v3.refresh_from_db()
    assert v3.state == VersionState.ROLLED_BACK
    assert Deployment.objects.filter(version=v1, outcome="v3 blocks the admin team").exists()

    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"waf.version_created", "waf.version_validated", "waf.version_replayed", "approval.requested",
            "approval.approved", "waf.version_approved", "waf.deployment_started", "waf.canary_pushed",
            "waf.fleet_pushed", "waf.deployed", "waf.rolled_back", "waf.rolled_back_manually"} <= actions
    rollback = AuditEvent.objects.get(action="waf.rolled_back")
    assert rollback.actor == "waf_config.run_deployment" and rollback.actor_type == "automation"
