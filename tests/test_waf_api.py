"""The JSON API with token auth: same permissions as admin, the same four-eyes refusal (it calls the same service),
precise validation findings, replay reports, deployments and emergency rules."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.models import ApprovalRequest
from tests.waf_support import block_rule, corpus, people, rules_file, waf_rule_set
from waf_config.models import RuleSetVersion
from waf_config.services.versions import create_version, replay_version, submit_for_approval

pytestmark = pytest.mark.django_db

GOOD = rules_file(block_rule("wp", "uri", "contains", "wp-login"))


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_token_obtained_with_password_and_anonymous_refused(client) -> None:
    people()
    assert APIClient().get("/api/waf/versions/").status_code == 401
    res = client.post("/api/token/", {"username": "alice", "password": "pw"})
    assert res.status_code == 200 and res.json()["token"]


def test_flow_through_the_api_with_four_eyes_in_the_service() -> None:
    p = people()
    rs = waf_rule_set()
    corpus()
    alice, bob, carol = client_for(p.alice), client_for(p.bob), client_for(p.carol)

    res = bob.post(f"/api/waf/rule-sets/{rs.pk}/versions/", {"content": GOOD}, format="json")
    assert res.status_code == 403 and "lacks the permission" in res.json()["detail"]  # approvers do not author

    bad = alice.post(f"/api/waf/rule-sets/{rs.pk}/versions/",
                     {"content": rules_file(block_rule("op", "uri", "matches", "x"))}, format="json")
    assert bad.status_code == 201 and bad.json()["state"] == "rejected"
    finding = next(f for f in bad.json()["findings"] if f["code"] == "unknown-operator")
    assert finding["rule_id"] == "op" and "conditions[0].operator" in finding["field"]
    assert alice.post(f"/api/waf/versions/{bad.json()['id']}/replay/").status_code == 400

    res = alice.post(f"/api/waf/rule-sets/{rs.pk}/versions/", {"content": GOOD, "comment": "wp"}, format="json")
    vid = res.json()["id"]
    assert res.json()["state"] == "validated"
    assert alice.post(f"/api/waf/versions/{vid}/submit/").status_code == 400  # no replay report yet
    res = alice.post(f"/api/waf/versions/{vid}/replay/", {"replay_set": "corpus"}, format="json")
    assert res.status_code == 201 and res.json()["newly_blocked"] == 1
    report = alice.get(f"/api/waf/versions/{vid}/replay-report/").json()
    assert report["report"]["samples"]["allow->block"][0]["request"]["uri"] == "/wp-login.php"
    assert alice.post(f"/api/waf/versions/{vid}/submit/", {"justification": "scanner"}).status_code == 200

    res = carol.post(f"/api/waf/versions/{vid}/approve/", ["not", "an", "object"], format="json")
    assert res.status_code == 400 and "JSON object" in res.json()["detail"]  # a clear 400, not a 500 on .get
    res = alice.post(f"/api/waf/versions/{vid}/approve/", {"comment": "mine"}, format="json")
    assert res.status_code == 403 and "cannot approve" in res.json()["detail"]
    res = carol.post(f"/api/waf/versions/{vid}/approve/", {"comment": "?"}, format="json")
    assert res.status_code == 403 and "lacks the permission" in res.json()["detail"]
    pending = bob.get("/api/approvals/", {"state": "pending"}).json()["results"]
    assert [r["subject_id"] for r in pending] == [str(vid)]
    assert bob.post(f"/api/approvals/{pending[0]['id']}/approve/", ["ok"], format="json").status_code == 400
    res = bob.post(f"/api/approvals/{pending[0]['id']}/approve/", {"comment": "ok"}, format="json")
    assert res.status_code == 200 and res.json()["state"] == "approved"
    assert RuleSetVersion.objects.get(pk=vid).state == "approved"

    res = bob.post(f"/api/waf/versions/{vid}/deploy/", {"soak_seconds": 0}, format="json")
    assert res.status_code == 403
    res = carol.post(f"/api/waf/versions/{vid}/deploy/", {"canary_group": "nope"}, format="json")
    assert res.status_code == 400


def test_admin_approval_button_refuses_the_requester(client) -> None:
    p = people()
    version = create_version(waf_rule_set(), GOOD, p.dave)
    replay_version(version, corpus())
    request = submit_for_approval(version, p.dave, "mine")
    p.dave.is_staff = True
    p.dave.save()
    client.force_login(p.dave)
    url = f"/admin/audit/approvalrequest/{request.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200 and 'name="_approve"' in page.content.decode()
    assert f"/admin/waf_config/rulesetversion/{version.pk}/change/" in page.content.decode()  # the subject
    res = client.post(url, {"_approve": "Approve", "decision_comment": "self"}, follow=True)
    assert "cannot approve it" in res.content.decode()
    assert ApprovalRequest.objects.get(pk=request.pk).state == "pending"
    p.bob.is_staff = True
    p.bob.save()
    client.force_login(p.bob)
    client.post(url, {"_approve": "Approve", "decision_comment": "fine"})
    assert ApprovalRequest.objects.get(pk=request.pk).state == "approved"
    assert RuleSetVersion.objects.get(pk=version.pk).state == "approved"


def test_emergency_rule_via_api() -> None:
    p = people()
    res = client_for(p.alice).post("/api/waf/emergency-rules/", {"pattern": "10.0.0.9", "reason": "x",
                                                                  "expires_in_seconds": 60}, format="json")
    assert res.status_code == 403
    carol = client_for(p.carol)
    res = carol.post("/api/waf/emergency-rules/", {"pattern": "10.0.0.0/8", "kind": "cidr", "reason": "botnet",
                                                   "expires_in_seconds": 60}, format="json")
    assert res.status_code == 201 and res.json()["created_by"] == "carol"
    res = carol.post(f"/api/waf/emergency-rules/{res.json()['id']}/withdraw/")
    assert res.status_code == 200 and res.json()["withdrawn_by"] == "carol"
