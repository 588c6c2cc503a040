"""Personas and rule files for the WAF lifecycle tests: alice authors, bob approves, carol deploys."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User

from waf_config.formats import RuleAction, RuleCondition, WafRule, WafRuleSet, dump_waf_rules
from waf_config.models import ReplaySet, RuleSet
from waf_config.services.replay_sets import import_corpus
from waf_config.services.roles import ensure_roles


@dataclass
class People:
    alice: User  # author
    bob: User  # approver
    carol: User  # deployer
    dave: User  # author and approver (may approve others' versions, never his own)


def people() -> People:
    roles = ensure_roles()

    def user(name: str, *groups: str) -> User:
        u = User.objects.create_user(name, f"{name}@example.invalid", "pw")
        u.groups.add(*(roles[g] for g in groups))
        return User.objects.get(pk=u.pk)  # fresh permission cache

    return People(user("alice", "waf-author"), user("bob", "waf-approver"), user("carol", "waf-deployer"),
                  user("dave", "waf-author", "waf-approver"))


def block_rule(rule_id: str, field: str, operator: str, value: str) -> WafRule:
    return WafRule(rule_id, rule_id, f"{rule_id} rule", "high", True,
                   (RuleCondition(field, operator, value, True),), RuleAction("block", f"{rule_id} blocked"))


def rules_file(*rules: WafRule) -> str:
    return dump_waf_rules(WafRuleSet("1.0", tuple(rules)))


def corpus(name: str = "corpus", rows: list[dict[str, Any]] | None = None) -> ReplaySet:
    rows = rows if rows is not None else [
        {"method": "GET", "uri": "/index.html", "client_ip": "10.0.0.1", "label": "benign", "timestamp": 1},
        {"method": "GET", "uri": "/admin/login", "client_ip": "10.0.0.2", "label": "benign", "timestamp": 2},
        {"method": "GET", "uri": "/wp-login.php", "client_ip": "10.0.0.3", "label": "attack", "timestamp": 3},
    ]
    return import_corpus(name, [json.dumps(r) for r in rows], actor="tests", source=f"{name}.jsonl")


def waf_rule_set(name: str = "edge") -> RuleSet:
    return RuleSet.objects.create(name=name, kind="waf_rules")
