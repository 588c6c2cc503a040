"""Commands go through the same services: the requester cannot decide from the shell either."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audit.models import ApprovalRequest
from tests.waf_support import block_rule, people, rules_file, waf_rule_set
from waf_config.models import EmergencyRule, ReplaySet
from waf_config.services.versions import create_version, replay_version, submit_for_approval

pytestmark = pytest.mark.django_db


def test_import_corpus_then_decide_from_the_shell(tmp_path: Path) -> None:
    p = people()
    corpus = tmp_path / "requests.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in [
        {"uri": "/wp-login.php", "client_ip": "10.0.0.1", "label": "attack"},
        {"uri": "/", "client_ip": "10.0.0.2", "label": "benign"}]) + "\n")
    call_command("import_replay_corpus", str(corpus), "--name", "imported")
    replay_set = ReplaySet.objects.get(name="imported")
    assert replay_set.request_count == 2 and replay_set.requests.count() == 2

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"uri": "/"}\n{"client_ip": "not-an-ip"}\n')
    with pytest.raises(CommandError, match="line 2"):
        call_command("import_replay_corpus", str(broken), "--name", "broken")
    assert not ReplaySet.objects.filter(name="broken").exists()

    version = create_version(waf_rule_set(), rules_file(block_rule("wp", "uri", "contains", "wp-login")), p.dave)
    replay_version(version, replay_set)
    request = submit_for_approval(version, p.dave)
    with pytest.raises(CommandError, match="cannot approve"):
        call_command("decide_approval", str(request.pk), "--user", "dave", "--approve")
    call_command("decide_approval", str(request.pk), "--user", "bob", "--approve", "--comment", "ok")
    assert ApprovalRequest.objects.get(pk=request.pk).state == "approved"


def test_emergency_rule_command() -> None:
    people()
    with pytest.raises(CommandError, match="lacks the permission"):
        call_command("emergency_rule", "add", "203.0.113.7", "--user", "alice", "--reason", "x")
    call_command("emergency_rule", "add", "203.0.113.0/24", "--user", "carol", "--reason", "botnet", "--count-only")
    rule = EmergencyRule.objects.get()
    assert (rule.kind, rule.action, rule.created_by) == ("cidr", "log", "carol")
    call_command("emergency_rule", "withdraw", str(rule.pk), "--user", "carol")
    assert EmergencyRule.objects.get().withdrawn_by == "carol"
