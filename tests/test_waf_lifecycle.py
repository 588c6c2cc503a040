"""Versions and approval on PostgreSQL: immutable versions, validation gates, replay report, four eyes in the
service (admin, command and API all go through it), audit trail."""

from __future__ import annotations

import pytest

from audit import approvals
from audit.models import ApprovalRequest, AuditEvent
from tests.waf_support import block_rule, corpus, people, rules_file, waf_rule_set
from waf_config.models import ReplayRun, RuleSetVersion, VersionState
from waf_config.services.common import WafError
from waf_config.services.versions import (
    approve_version,
    create_version,
    reject_version,
    replay_version,
    submit_for_approval,
)

pytestmark = pytest.mark.django_db

GOOD = rules_file(block_rule("wp", "uri", "contains", "wp-login"))
LOOKAROUND = rules_file(block_rule("la", "uri", "regex", "^(?!/public).*admin"))


def replayed(p, content: str = GOOD) -> RuleSetVersion:
    version = create_version(waf_rule_set(), content, p.alice, "block wp-login")
    replay_version(version, corpus())
    version.refresh_from_db()
    return version


def test_version_is_immutable_and_numbered() -> None:
    p = people()
    rs = waf_rule_set()
    v1 = create_version(rs, GOOD, p.alice)
    v2 = create_version(rs, rules_file(block_rule("x", "uri", "contains", "/x")), p.alice)
    assert (v1.number, v2.number, v2.parent_id) == (1, 2, v1.pk)
    assert v1.state == VersionState.VALIDATED and len(v1.checksum) == 64
    v1.content = "rules: []\n"
    with pytest.raises(ValueError, match="immutable"):
        v1.save()
    assert RuleSetVersion.objects.get(pk=v1.pk).content == GOOD


def test_invalid_version_is_rejected_with_precise_findings_and_cannot_go_on() -> None:
    p = people()
    version = create_version(waf_rule_set(), LOOKAROUND, p.alice)
    assert version.state == VersionState.REJECTED and version.validation_status == "invalid"
    codes = {f["code"] for f in version.validation_errors if f["severity"] == "error"}
    assert "regex-dialect" in codes
    assert any(f["rule_id"] == "la" for f in version.validation_errors)
    with pytest.raises(WafError, match="not passed validation"):
        replay_version(version, corpus())
    with pytest.raises(WafError, match="not passed validation"):
        submit_for_approval(version, p.alice)


def test_approval_needs_a_replay_report() -> None:
    p = people()
    version = create_version(waf_rule_set(), GOOD, p.alice)
    with pytest.raises(WafError, match="replay it"):
        submit_for_approval(version, p.alice)


def test_replay_report_is_attached() -> None:
    p = people()
    version = replayed(p)
    run = ReplayRun.objects.get(version=version)
    assert version.state == VersionState.REPLAYED
    assert (run.requests_replayed, run.newly_blocked, run.newly_allowed) == (3, 1, 0)
    assert run.report["attacks_stopped_new"] == 1 and run.report["false_positive_rate_new"] == 0.0
    assert run.report["samples"]["allow->block"][0]["request"]["uri"] == "/wp-login.php"


def test_author_cannot_approve_own_version_even_with_the_approver_role() -> None:
    p = people()
    version = create_version(waf_rule_set(), GOOD, p.dave, "dave's change")
    replay_version(version, corpus())
    request = submit_for_approval(version, p.alice)  # someone else submits it: still dave's version
    with pytest.raises(approvals.ApprovalError, match="authored"):
        approvals.approve(request, p.dave, "looks fine to me")
    version.refresh_from_db()
    request.refresh_from_db()
    assert (version.state, request.state) == (VersionState.REPLAYED, "pending")
    approvals.approve(request, p.bob, "ok")
    version.refresh_from_db()
    assert version.state == VersionState.APPROVED


def test_requester_cannot_decide_and_approver_needs_the_permission() -> None:
    p = people()
    version = replayed(p)
    submit_for_approval(version, p.alice, "blocks the wp-login scanner")
    with pytest.raises(approvals.ApprovalError, match="requested this"):
        approve_version(version, p.alice, "self")
    with pytest.raises(approvals.ApprovalError, match="lacks the permission"):
        approve_version(version, p.carol, "not my job")
    request = approve_version(version, p.bob, "reviewed the replay: only the scanner is blocked")
    version.refresh_from_db()
    assert (request.state, request.decided_by, version.state) == ("approved", p.bob, VersionState.APPROVED)
    with pytest.raises(approvals.ApprovalError, match="already approved"):
        approvals.approve(request, p.dave, "again")
    actions = list(AuditEvent.objects.order_by("id").values_list("action", "actor"))
    assert ("approval.requested", "alice") in actions
    assert ("approval.approved", "bob") in actions
    assert ("waf.version_approved", "bob") in actions


def test_rejection_needs_a_comment_and_ends_the_version() -> None:
    p = people()
    version = replayed(p)
    submit_for_approval(version, p.alice)
    with pytest.raises(approvals.ApprovalError, match="comment"):
        reject_version(version, p.bob, " ")
    reject_version(version, p.bob, "blocks real users")
    version.refresh_from_db()
    assert version.state == VersionState.REJECTED
    assert ApprovalRequest.objects.get().comment == "blocks real users"


def test_one_open_request_per_subject() -> None:
    p = people()
    version = replayed(p)
    assert submit_for_approval(version, p.alice).pk == submit_for_approval(version, p.alice).pk


def test_builders_only_ever_return_validated_approved_content() -> None:
    from gateways.models import GatewayGroup, ResourceVersion
    from gateways.services import InvalidResource, publish_desired_state
    from waf_config.models import GroupVersion

    p = people()
    group = GatewayGroup.objects.get(name="default")
    assert publish_desired_state("waf_rules", group) == []  # nothing deployed yet: nothing stored, nothing pushed
    bad = create_version(waf_rule_set(), LOOKAROUND, p.alice)
    GroupVersion.objects.create(group=group, kind="waf_rules", version=bad)  # pointed at by a bug or by hand
    with pytest.raises(InvalidResource, match="only a validated, approved version"):
        publish_desired_state("waf_rules", group)
    # even a row whose stored status was forged is validated again before it is built
    RuleSetVersion.objects.filter(pk=bad.pk).update(state="deployed", validation_status="valid")
    with pytest.raises(InvalidResource, match="does not validate"):
        publish_desired_state("waf_rules", group)
    assert not ResourceVersion.objects.filter(resource_type="waf_rules").exists()
    # and the publish seam's own validator refuses such content whoever builds it, not only waf_config's builder
    from gateways import resources
    saved = resources._builders["waf_rules"]
    try:
        resources._builders["waf_rules"] = lambda g: {"name": "waf-rules.yaml", "content": LOOKAROUND}
        with pytest.raises(InvalidResource, match="refused by its validator"):
            publish_desired_state("waf_rules", group)
    finally:
        resources._builders["waf_rules"] = saved
    assert not ResourceVersion.objects.filter(resource_type="waf_rules").exists()


NO_METADATA = GOOD.replace("    metadata: {}\n", "", 1)
UNKNOWN_OPERATOR = rules_file(block_rule("typo", "uri", "startswith", "/admin"))
CHAIN = ("SecRule REQUEST_URI \"@beginsWith /api/payment\" \"id:300090,phase:1,chain,severity:CRITICAL,"
         "msg:'payment'\"\nSecRule REQUEST_METHOD \"@eq GET\" \"id:300091,block\"\n")


@pytest.mark.parametrize(("kind", "content", "message"), [
    ("waf_rules", LOOKAROUND, "rule 'la': rules[0].conditions[0].value"),
    ("waf_rules", UNKNOWN_OPERATOR, "rule 'typo': rules[0].conditions[0].operator 'startswith' is unknown"),
    ("waf_rules", NO_METADATA, "rule 'wp': required key 'rules[0].metadata' is missing"),
    ("modsecurity", CHAIN, "rule 300090 uses 'chain', which the Gateway does not support"),
])
def test_each_acceptance_case_is_refused_as_a_version_and_at_the_publish_seam(kind: str, content: str,
                                                                              message: str) -> None:
    """The four refusals of the acceptance list: a version with it is rejected with the precise message, and the
    publish seam refuses it whoever builds it, so nothing is stored or pushed."""
    from gateways import resources
    from gateways.models import GatewayGroup, ResourceVersion
    from gateways.services import InvalidResource, publish_desired_state
    from waf_config.models import RuleSet

    p = people()
    version = create_version(RuleSet.objects.create(name="acc", kind=kind), content, p.alice)
    assert version.state == VersionState.REJECTED
    assert any(f["message"].startswith(message) or message in f["message"] for f in version.validation_errors
               if f["severity"] == "error"), version.validation_errors
    name = "waf-rules.yaml" if kind == "waf_rules" else "acc.conf"
    saved = resources._builders[kind]
    try:
        resources._builders[kind] = lambda g: {"name": name, "content": content}
        with pytest.raises(InvalidResource, match="refused by its validator") as err:
            publish_desired_state(kind, GatewayGroup.objects.get(name="default"))
        assert message in str(err.value)
    finally:
        resources._builders[kind] = saved
    assert not ResourceVersion.objects.filter(resource_type=kind).exists()
