"""A threat feed's list reaches the Gateways' files through the normal path, end to end.

A local HTTP server serves the feed; the beat job's function fetches it and proposes a gateway.yaml version
(integrations → the proposer waf_config registers); a person replays and submits it, a second person approves,
a deployer rolls it out canary → fleet through the push plane, and two real ``gateway-agent`` processes (one per
group, each with its own mTLS credential) write the new ``gateway.yaml`` byte for byte. Nothing on the way is
called directly on the agents: what they hold is what the push plane delivered.
"""

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
from integrations.feeds import fetch_all_and_publish
from integrations.models import ThreatFeed, ThreatListPublication
from tests.integrations_support import Recorder
from tests.push_support import AgentProcess, Pki, ServerThread, agent_settings, wait_until
from tests.waf_support import corpus, people
from waf_config.gateway_config import dump_gateway_config, load_gateway_config
from waf_config.models import RuleSet, RuleSetVersion, VersionState
from waf_config.services.deployment import run_deployment, start_deployment
from waf_config.services.versions import create_version, replay_version, submit_for_approval

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EXAMPLE = Path(__file__).parent / "test_waf_examples" / "gateway.yaml"


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[dict[str, AgentProcess]]:
    pki = Pki.create(tmp_path / "pki")
    srv = ServerThread(ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key),
                                    ca=str(pki.ca), debounce_seconds=0.02)).start()
    if not GatewayGroup.objects.filter(name="canary").exists():
        create_group("canary", actor="tests")
    running = {name: AgentProcess(tmp_path / name, agent_settings(tmp_path / name, pki, srv.port, name, group)).start()
               for name, group in (("edge-canary", "canary"), ("edge-1", "default"))}
    try:
        for agent in running.values():
            wait_until(lambda a=agent: a.known().get("emergency_rules"), timeout=20, message="agent connected")
        yield running
    finally:
        for agent in running.values():
            agent.stop()
        srv.stop()


def gateway_yaml(agent: AgentProcess) -> str:
    path = Path(agent.settings["config_file"])
    return path.read_text() if path.exists() else ""


def approve_and_deploy(version: RuleSetVersion, p: Any) -> None:
    replay_version(version, corpus(f"c{version.number}"))
    request = submit_for_approval(version, p.alice, "threat feed update")
    approvals.approve(request, p.bob, "looked at the replay report")
    version.refresh_from_db()
    assert version.state == VersionState.APPROVED
    deployment = run_deployment(start_deployment(version, p.carol, soak_seconds=0, enqueue=False).pk, ack_timeout=20)
    assert deployment.state == "deployed", deployment.outcome


def test_a_feed_list_reaches_the_agents_gateway_yaml_through_approval_and_deployment(
        agents: dict[str, AgentProcess], receiver: Recorder, settings: Any) -> None:
    p = people()
    document = RuleSet.objects.create(name="gateway", kind="gateway_config")
    base = create_version(document, dump_gateway_config(load_gateway_config(EXAMPLE.read_text()).value), p.alice)
    approve_and_deploy(base, p)
    wait_until(lambda: all(gateway_yaml(a) == base.content for a in agents.values()), timeout=20,
               message="the operator's gateway.yaml on both agents")

    settings.THREAT_FEED_CONFIG_DOCUMENT = "gateway"
    receiver.serve_feed("# a DROP-style list\n45.9.20.0/24 ; SBL1\n185.220.101.7\n0.0.0.0/0\n", etag='"1"')
    ThreatFeed.objects.create(name="drop", url=receiver.url("/drop.txt"), format="text")
    outcome = fetch_all_and_publish()  # what the beat job runs
    assert outcome["feeds"]["drop"]["refused"] == 1, "0.0.0.0/0 is refused, the rest goes on"
    proposal = RuleSetVersion.objects.get(pk=outcome["proposed_version"])
    assert proposal.state == VersionState.VALIDATED and proposal.parent_id == base.pk
    assert gateway_yaml(agents["edge-1"]) == base.content, "a proposal is not deployed before its approval"

    approve_and_deploy(proposal, p)
    wait_until(lambda: all(gateway_yaml(a) == proposal.content for a in agents.values()), timeout=20,
               message="the feed's list on both agents")
    on_disk = load_gateway_config(gateway_yaml(agents["edge-1"])).value.waf.ip_blacklist
    operators = load_gateway_config(base.content).value.waf.ip_blacklist
    assert on_disk == (*operators, "45.9.20.0/24", "185.220.101.7")
    assert "0.0.0.0/0" not in gateway_yaml(agents["edge-canary"])
    assert ThreatListPublication.objects.get().version_id == proposal.pk

    created = AuditEvent.objects.get(action="waf.version_created", object_id=str(proposal.pk))
    assert created.actor == "integrations.threat_feeds" and created.actor_type == "automation"
    assert AuditEvent.objects.filter(action="waf.deployed", object_id=str(proposal.pk)).exists()
