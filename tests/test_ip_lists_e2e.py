"""IP lists reach the Gateways' files and their data plane through the normal path, end to end.

A local HTTP server serves the feed; the beat job's function fetches it and proposes a gateway.yaml version
(integrations → the proposer waf_config registers); a person replays and submits it, a second person approves,
a deployer rolls it out canary → fleet through the push plane, and two real ``gateway-agent`` processes (one per
group, each with its own mTLS credential) write the new ``gateway.yaml`` byte for byte. Nothing on the way is
called directly on the agents: what they hold is what the push plane delivered. Each agent renders the deployed
lists into its real nginx (``ip_lists_include``), so an operator's block list makes nginx refuse 127.0.0.5 and a
whitelist refuses every address not on it (FORMATS §a.3 step 2); loopback addresses stand in for clients.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audit import approvals
from audit.models import AuditEvent
from integrations.feeds import fetch_all_and_publish
from integrations.models import ThreatFeed, ThreatListPublication
from tests.integrations_support import Recorder
from tests.peers.nginx import NginxFactory, NginxServer
from tests.push_support import AgentProcess, Pki, agent_settings, canary_fleet_server, wait_until
from tests.waf_support import corpus, people
from waf_config.gateway_config import dump_gateway_config, load_gateway_config
from waf_config.models import RuleSet, RuleSetVersion, VersionState
from waf_config.services.deployment import run_deployment, start_deployment
from waf_config.services.versions import create_version, replay_version, submit_for_approval

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EXAMPLE = Path(__file__).parent / "test_waf_examples" / "gateway.yaml"


Edge = tuple[AgentProcess, NginxServer]


@pytest.fixture
def agents(tmp_path: Path, nginx_factory: NginxFactory) -> Iterator[dict[str, Edge]]:
    pki = Pki.create(tmp_path / "pki")
    srv = canary_fleet_server(pki)
    running: dict[str, Edge] = {}
    for name, group in (("edge-canary", "canary"), ("edge-1", "default")):
        ip_lists = tmp_path / name / "nginx" / "ip-lists.conf"
        ngx = nginx_factory(extra_includes=(ip_lists,))
        (ngx.challenge_dir / "probe").write_text("served")
        settings = agent_settings(tmp_path / name, pki, srv.port, name, group, ip_lists_include=str(ip_lists),
                                  check_command=ngx.check_command, reload_command=ngx.reload_command)
        running[name] = (AgentProcess(tmp_path / name, settings).start(), ngx)
    try:
        for agent, _ in running.values():
            wait_until(lambda a=agent: a.known().get("emergency_rules"), timeout=20, message="agent connected")
        yield running
    finally:
        for agent, _ in running.values():
            agent.stop()
        srv.stop()


def status_from(ngx: NginxServer, source: str) -> int:
    """GET through nginx from a given loopback source address (nginx sees it as the client address)."""
    conn = http.client.HTTPConnection("127.0.0.1", ngx.http_port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", "/.well-known/acme-challenge/probe", headers={"Host": "site.test"})
        return conn.getresponse().status
    finally:
        conn.close()


def gateway_yaml(edge: Edge) -> str:
    path = Path(edge[0].settings["config_file"])
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
        agents: dict[str, Edge], receiver: Recorder, settings: Any) -> None:
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


def with_lists(blacklist: list[str], whitelist: list[str]) -> str:
    config = load_gateway_config(EXAMPLE.read_text()).value
    waf = {**config.document["waf"], "ip_blacklist": blacklist, "ip_whitelist": whitelist}
    return dump_gateway_config(type(config)({**config.document, "waf": waf}))


def test_deployed_ip_lists_are_enforced_by_each_agents_nginx(agents: dict[str, Edge]) -> None:
    p = people()
    document = RuleSet.objects.create(name="gateway", kind="gateway_config")
    for _, ngx in agents.values():
        assert status_from(ngx, "127.0.0.5") == 200 and status_from(ngx, "127.0.0.7") == 200

    blocked = create_version(document, with_lists(["127.0.0.5", "10.0.0.0/8"], []), p.alice)
    approve_and_deploy(blocked, p)
    for edge in agents.values():
        wait_until(lambda e=edge: gateway_yaml(e) == blocked.content, timeout=20, message="v1 on the agent")
        ngx = edge[1]  # `nginx -s reload` returns before the new workers answer
        wait_until(lambda n=ngx: status_from(n, "127.0.0.5") == 403, timeout=10, message="ip_blacklist refused")
        assert status_from(ngx, "127.0.0.1") == 200 and status_from(ngx, "127.0.0.7") == 200

    # a whitelist: every address not on it is refused; the blacklist still wins for an address on both
    listed = create_version(document, with_lists(["127.0.0.5"], ["127.0.0.1", "127.0.0.5"]), p.alice)
    approve_and_deploy(listed, p)
    for edge in agents.values():
        wait_until(lambda e=edge: gateway_yaml(e) == listed.content, timeout=20, message="v2 on the agent")
        ngx = edge[1]
        wait_until(lambda n=ngx: status_from(n, "127.0.0.7") == 403, timeout=10, message="not whitelisted: refused")
        assert (status_from(ngx, "127.0.0.1"), status_from(ngx, "127.0.0.5")) == (200, 403)

    cleared = create_version(document, with_lists([], []), p.alice)
    approve_and_deploy(cleared, p)
    for edge in agents.values():
        wait_until(lambda e=edge: gateway_yaml(e) == cleared.content, timeout=20, message="v3 on the agent")
        wait_until(lambda e=edge: [status_from(e[1], ip) for ip in ("127.0.0.1", "127.0.0.5", "127.0.0.7")]
                   == [200, 200, 200], timeout=10, message="every address served again")
