"""Emergency rules from the shell, as a named person (pushed at once, audited, expire by themselves):

    manage.py emergency_rule add 203.0.113.7 --user carol --reason "credential stuffing" --expires-in 3600
    manage.py emergency_rule add 198.51.100.0/24 --user carol --reason "…" --count-only
    manage.py emergency_rule list
    manage.py emergency_rule withdraw 12 --user carol
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from waf_config.models import EmergencyRule
from waf_config.services.common import WafError
from waf_config.services.emergency import create_emergency_rule, live_rules, withdraw_emergency_rule


class Command(BaseCommand):
    help = "Add, list or withdraw emergency rules."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="op", required=True)
        add = sub.add_parser("add")
        add.add_argument("value", help="IP, CIDR, or a Rust regex with --kind pattern")
        add.add_argument("--user", required=True)
        add.add_argument("--reason", required=True)
        add.add_argument("--kind", default="ip", choices=["ip", "cidr", "pattern"])
        add.add_argument("--field", default="uri", help="the field a pattern matches")
        add.add_argument("--expires-in", type=int, default=3600, help="seconds")
        add.add_argument("--count-only", action="store_true", help="log matches, do not block")
        sub.add_parser("list")
        withdraw = sub.add_parser("withdraw")
        withdraw.add_argument("rule_id", type=int)
        withdraw.add_argument("--user", required=True)

    def _user(self, name: str) -> Any:
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            raise CommandError(f"no user {name!r}")
        return user

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            if opts["op"] == "add":
                kind = opts["kind"]
                if kind == "ip" and "/" in opts["value"]:
                    kind = "cidr"
                rule = create_emergency_rule(
                    opts["value"], actor=self._user(opts["user"]), reason=opts["reason"], kind=kind,
                    match_field=opts["field"] if kind == "pattern" else "ip",
                    action="log" if opts["count_only"] else "block", expires_in=timedelta(seconds=opts["expires_in"]))
                self.stdout.write(f"rule {rule.pk}: {rule} until {rule.expires_at:%Y-%m-%d %H:%M:%S} UTC")
            elif opts["op"] == "withdraw":
                existing = EmergencyRule.objects.filter(pk=opts["rule_id"]).first()
                if existing is None:
                    raise CommandError(f"no emergency rule {opts['rule_id']}")
                done = withdraw_emergency_rule(existing, self._user(opts["user"]), "withdrawn from the command line")
                self.stdout.write(f"rule {existing.pk}: {'withdrawn' if done else 'was already withdrawn'}")
            else:
                for rule in live_rules():
                    self.stdout.write(f"{rule.pk:6} {rule.action:5} {rule.kind:7} {rule.pattern:40} "
                                      f"{rule.expires_at:%Y-%m-%d %H:%M:%S} {rule.created_by}: {rule.reason}")
        except WafError as exc:
            raise CommandError(str(exc)) from exc
