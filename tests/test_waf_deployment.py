"""End to end on real PostgreSQL, Redis, the grpc server and gateway-agent processes: an approved version goes
to the canary group, soaks, then to every group; a canary NACK rolls the group back by itself; a manual
rollback points the groups at an older deployed version again. Everything in the audit trail."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from gateway_worker import gateway_worker_pb2 as dpb
from gateway_worker import gateway_worker_pb2_grpc as dgrpc

from audit import approvals
from audit.models import AuditEvent
from gateways.models import GatewayGroup
from tests.push_support import AgentProcess, Pki, agent_settings, canary_fleet_server, wait_until
from tests.waf_support import block_rule, corpus, people, rules_file, waf_rule_set
from waf_config.models import Deployment, GroupVersion, RuleSetVersion, VersionState
from waf_config.services.deployment import judge_block_rate, rollback_to, run_deployment, start_deployment
from waf_config.services.versions import create_version, replay_version, submit_for_approval

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


class Fleet(dict[str, AgentProcess]):
    pki: Pki
    port: int


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    pki = Pki.create(tmp_path / "pki")
    srv = canary_fleet_server(pki)
    agents = Fleet()
    agents.pki, agents.port = pki, srv.port
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


def test_canary_then_fleet_automatic_rollback_on_nack_and_manual_rollback(fleet: dict[str, AgentProcess],
                                                                        admin_client: Any) -> None:
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

    # what a person sees in admin: every rollout with its state and outcome, the audit trail of the rollback
    deployments = admin_client.get("/admin/waf_config/deployment/").content.decode()
    rows = deployments.split("<tr")[1:]
    assert any("canary NACK" in row and "Rolled back" in row for row in rows), "the automatic rollback's row"
    assert sum("Deployed" in row for row in rows) >= 2  # v1 and v3's rollouts
    trail = admin_client.get("/admin/audit/auditevent/?q=waf.rolled_back").content.decode()
    assert "waf_config.run_deployment" in trail and "rolled back: canary NACK" in trail
    approvals_page = admin_client.get("/admin/audit/approvalrequest/").content.decode()
    assert approvals_page.count("bob") >= 3  # the second person on every approved version


def send_requests(fleet: Fleet, name: str, group: str, total: int, blocked: int, at: float) -> None:
    """``total`` requests (``blocked`` of them refused by the WAF) through the draft SendLogs door with the
    Gateway's own client certificate: the log pipeline tags them with that credential's instance id."""
    refused = {i * total // blocked for i in range(blocked)}  # spread out, as real traffic: a check that runs
    # while the batch is still arriving (timestamps run 1 ms apart) sees the same share as the whole batch
    entries = [dpb.LogEntry(timestamp=int((at + i / 1000) * 1000), method="GET", path=f"/shop/{i}",
                            source_ip="192.0.2.40", target_host="shop.example.com",
                            status_code=403 if i in refused else 200,
                            metadata={"waf_action": "block", "waf_rule_id": "wp"} if i in refused else {})
               for i in range(total)]
    with fleet.pki.channel(fleet.port, name, group) as ch:
        sent = dgrpc.GatewayWorkerServiceStub(ch).SendLogs(iter(entries), timeout=30)
    assert (sent.processed_count, sent.error_count) == (total, 0), sent


def deploy_with_traffic(deployment: Deployment, during_soak: Callable[[], None]) -> Deployment:
    """Run the rollout in a thread (as the Celery task would) and, once the canary has ACKed, let the canary's
    traffic arrive while it soaks."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["d"] = run_deployment(deployment.pk, ack_timeout=20, poll=0.1)
        except BaseException as exc:  # surfaced below
            out["error"] = exc
        finally:
            connection.close()

    t = threading.Thread(target=run)
    t.start()
    try:
        wait_until(lambda: Deployment.objects.get(pk=deployment.pk).state != "canary", timeout=30,
                   message="canary ACKed")
        d = Deployment.objects.get(pk=deployment.pk)
        assert d.state == "soaking", d.outcome
        during_soak()
    finally:
        t.join(60)
    assert "error" not in out, out.get("error")
    return out["d"]


def test_block_rate_spike_rolls_the_canary_back_and_a_steady_rate_proceeds(fleet: Fleet, settings: Any) -> None:
    settings.WAF_BLOCK_RATE_SPIKE_RATIO = 2.0
    settings.WAF_BLOCK_RATE_MIN_DELTA = 0.02
    settings.WAF_BLOCK_RATE_MIN_REQUESTS = 200
    settings.WAF_BLOCK_RATE_CHECK_SECONDS = 0.2
    p = people()
    rs = waf_rule_set()
    # the canary's traffic before any rollout: 400 requests, 8 refused (2%)
    send_requests(fleet, "edge-canary", "canary", 400, 8, time.time() - 600)

    # control: during the soak the canary refuses 9 of 300 (3%: no spike); edge-1 (group default, not the canary)
    # refuses everything it sees — its requests are not the canary's, whatever they say
    v1_text = rules_file(block_rule("wp", "uri", "contains", "wp-login"))
    v1 = approved(p, rs, v1_text)
    def steady() -> None:
        send_requests(fleet, "edge-canary", "canary", 300, 9, time.time())
        send_requests(fleet, "edge-1", "default", 300, 300, time.time())

    d1 = deploy_with_traffic(start_deployment(v1, p.carol, soak_seconds=4, enqueue=False), steady)
    assert d1.state == "deployed", d1.outcome
    passed = AuditEvent.objects.get(action="waf.soak_passed", object_id=str(d1.pk))
    figures = (passed.after or {})["block_rate"]
    assert figures["instances"] == ["edge-canary"]
    assert (figures["baseline"], figures["current"], figures["spike"]) == ([400, 8], [300, 9], False)
    assert "no block-rate spike: 3.0% of 300 requests" in passed.summary

    # v2 makes the canary refuse 150 of 300 (50%) against 17 of 700 (2.4%) before: rolled back by itself
    v2_text = rules_file(block_rule("shop", "uri", "starts_with", "/shop"))
    v2 = approved(p, rs, v2_text)
    d2 = deploy_with_traffic(start_deployment(v2, p.carol, soak_seconds=6, enqueue=False),
                             lambda: send_requests(fleet, "edge-canary", "canary", 300, 150, time.time()))
    v2.refresh_from_db()
    assert (d2.state, v2.state) == ("rolled_back", VersionState.ROLLED_BACK), d2.outcome
    # the first check that sees the spike acts: it may run while the 300 are still arriving (>= 200 of them)
    m = re.fullmatch(r"canary group canary \(edge-canary\): block-rate spike: (\d+\.\d)% of (\d+) requests refused "
                     r"since the canary ACK \((\d+)\) against 2\.4% of 700 before the rollout \(17\); "
                     r"threshold x2 and \+2\.0%", d2.outcome)
    assert m is not None, d2.outcome
    requests, blocked = int(m[2]), int(m[3])
    assert 200 <= requests <= 300 and abs(blocked / requests - 0.5) < 0.02 and m[1] == f"{blocked / requests:.1%}"[:-1]
    assert d2.fleet_started_at is None and d2.groups == ["canary"]  # the fleet never got v2
    assert GroupVersion.objects.get(group__name="canary").version_id == v1.pk
    wait_until(lambda: rules_text(fleet["edge-canary"]) == v1_text, timeout=20, message="v1 back on the canary")
    assert rules_text(fleet["edge-1"]) == v1_text
    rolled = AuditEvent.objects.get(action="waf.rolled_back", object_id=str(d2.pk))
    assert rolled.actor == "waf_config.run_deployment" and rolled.actor_type == "automation"
    figures = (rolled.after or {})["block_rate"]
    assert (figures["current"], figures["baseline"], figures["spike"]) == ([requests, blocked], [700, 17], True)
    assert f"block-rate spike: {m[1]}% of {requests} requests" in rolled.summary


@pytest.mark.parametrize(("baseline", "current", "spike"), [
    ((1000, 20), (300, 150), True),     # 2% -> 50%
    ((1000, 20), (300, 9), False),      # 2% -> 3%: under x2
    ((1000, 0), (300, 3), False),       # 0% -> 1%: over x2 but under +2 points
    ((1000, 0), (300, 6), True),        # 0% -> 2%: both
    ((100, 0), (300, 300), False),      # a baseline of 100 requests is too small to judge
    ((1000, 0), (10, 10), False),       # so are 10 requests since the ACK, all refused
])
def test_judge_block_rate(baseline: tuple[int, int], current: tuple[int, int], spike: bool) -> None:
    from gateways.intake import BlockCounts

    got, verdict = judge_block_rate(BlockCounts(*baseline), BlockCounts(*current), ratio=2.0, min_delta=0.02,
                                    min_requests=200)
    assert got is spike, verdict


MODSEC_V1 = ("# worker-managed SecRules \u2014 d\u00e9ploy\u00e9 by the Worker\n"
             "SecRule REQUEST_URI \"@contains /wp-admin\" \"id:900001,phase:1,deny,msg:'wp admin probe'\"\n"
             "SecRule REQUEST_HEADERS:User-Agent \"@rx (?i)sqlmap\"\t\"id:900002,phase:1,block,severity:CRITICAL,"
             "msg:'sqlmap'\"\n\n")
# the Gateway runs each line of a chain as its own rule: the second line would block every GET (FORMATS §a.4)
MODSEC_CHAIN = ("SecRule REQUEST_URI \"@beginsWith /api/payment\" \"id:300090,phase:1,chain,severity:CRITICAL,"
                "msg:'payment'\"\nSecRule REQUEST_METHOD \"@eq GET\" \"block\"\n")


def test_modsecurity_file_deployed_byte_exact_and_a_chain_is_refused_at_the_publish_seam(fleet: Fleet) -> None:
    from gateways import resources
    from gateways.models import ResourceVersion
    from gateways.services import InvalidResource, publish_desired_state
    from waf_config.models import RuleSet

    p = people()
    rs = RuleSet.objects.create(name="worker-custom", kind="modsecurity")
    v1 = approved(p, rs, MODSEC_V1)
    d1 = run_deployment(start_deployment(v1, p.carol, soak_seconds=0, enqueue=False).pk, ack_timeout=20)
    assert d1.state == "deployed", d1.outcome
    files = {name: Path(a.settings["modsecurity_dir"]) / "worker-custom.conf" for name, a in fleet.items()}
    wait_until(lambda: all(f.exists() and f.read_bytes() == MODSEC_V1.encode() for f in files.values()),
               timeout=20, message="the SecRule file on every Gateway")
    assert {n: a.known().get("modsecurity") for n, a in fleet.items()} == {
        n: ResourceVersion.objects.filter(resource_type="modsecurity", group__name=g).latest("id").pk
        for n, g in (("edge-canary", "canary"), ("edge-1", "default"))}

    # a chain never becomes a version that can be approved...
    bad = create_version(rs, MODSEC_CHAIN, p.alice, "chained")
    assert bad.state == VersionState.REJECTED
    assert any("uses 'chain', which the Gateway does not support" in f["message"] for f in bad.validation_errors)
    # ...and the publish seam refuses it whoever builds it: nothing stored, nothing pushed
    pushed_before = set(ResourceVersion.objects.filter(resource_type="modsecurity").values_list("pk", flat=True))
    saved = resources._builders["modsecurity"]
    try:
        for name, content, reason in (
                ("worker-custom.conf", MODSEC_CHAIN, "uses 'chain', which the Gateway does not support"),
                ("../etc/evil.conf", MODSEC_V1, "is not a plain <name>.conf file name")):
            resources._builders["modsecurity"] = lambda g, n=name, c=content: {"name": n, "content": c}
            for group in ("canary", "default"):
                with pytest.raises(InvalidResource, match="refused by its validator") as err:
                    publish_desired_state("modsecurity", GatewayGroup.objects.get(name=group))
                assert reason in str(err.value)
    finally:
        resources._builders["modsecurity"] = saved
    assert set(ResourceVersion.objects.filter(resource_type="modsecurity").values_list("pk", flat=True)) \
        == pushed_before
    time.sleep(1)  # had anything been pushed, an agent would have written it by now
    assert all(f.read_bytes() == MODSEC_V1.encode() for f in files.values())
