"""The three roles as Django groups: authors draft, approvers approve (never their own), deployers roll out."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

ROLES: dict[str, list[str]] = {
    "waf-author": ["add_ruleset", "view_ruleset", "add_rulesetversion", "view_rulesetversion", "view_replayrun",
                   "view_replayset", "add_replayset", "view_deployment", "audit.view_approvalrequest"],
    "waf-approver": ["view_ruleset", "view_rulesetversion", "approve_rulesetversion", "view_replayrun",
                     "view_replayset", "view_deployment", "audit.view_approvalrequest"],
    "waf-deployer": ["view_ruleset", "view_rulesetversion", "deploy_rulesetversion", "view_replayrun",
                     "view_deployment", "add_deployment", "view_groupversion", "view_emergencyrule",
                     "add_emergencyrule", "change_emergencyrule"],
}


def ensure_roles() -> dict[str, Group]:
    """Create or complete the groups (idempotent); permissions exist once migrations ran."""
    groups = {}
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        for entry in codenames:
            app_label, _, codename = entry.rpartition(".")
            perm = Permission.objects.filter(content_type__app_label=app_label or "waf_config",
                                             codename=codename).first()
            if perm is None:
                raise LookupError(f"permission {entry} does not exist (migrations not run?)")
            group.permissions.add(perm)
        groups[name] = group
    return groups
