"""Import the Gateway's own file as a new version: `manage.py import_waf_file FILE --rule-set NAME --author USER`.

``waf-rules.yaml`` and ``gateway.yaml`` are normalised into what the Gateway's loader accepts (each change printed as
a warning); a ModSecurity ``.conf`` is taken byte for byte. The rule set is created with ``--kind`` when it does not
exist. The version is validated at once; replay, approval by another person and deployment follow as usual.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from waf_config.models import RuleSet, RuleSetKind
from waf_config.services.common import WafError
from waf_config.services.versions import import_version


class Command(BaseCommand):
    help = "Import a waf-rules.yaml, gateway.yaml or ModSecurity .conf file as a new rule-set version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")
        parser.add_argument("--rule-set", required=True, help="the rule set or config document to add a version to")
        parser.add_argument("--kind", choices=[k.value for k in RuleSetKind],
                            help="create the rule set with this kind when it does not exist")
        parser.add_argument("--author", required=True,
                            help="the user the version is authored by (another person approves it)")

    def handle(self, *args: Any, **opts: Any) -> None:
        path = Path(opts["file"])
        author = get_user_model().objects.filter(username=opts["author"]).first()
        if author is None:
            raise CommandError(f"no user {opts['author']!r}")
        rule_set = RuleSet.objects.filter(name=opts["rule_set"]).first()
        if rule_set is None:
            if not opts["kind"]:
                raise CommandError(f"no rule set {opts['rule_set']!r}; pass --kind to create it")
            rule_set = RuleSet.objects.create(name=opts["rule_set"], kind=opts["kind"])
        elif opts["kind"] and opts["kind"] != rule_set.kind:
            raise CommandError(f"rule set {rule_set.name!r} is {rule_set.kind}, not {opts['kind']}")
        try:
            text = path.read_text(encoding="utf-8")
            version, report = import_version(rule_set, text, author, source=path.name)
        except (OSError, UnicodeDecodeError, WafError) as exc:
            raise CommandError(str(exc)) from exc
        for finding in report.findings:
            self.stdout.write(f"import {finding.severity.value}: {finding.message}")
        self.stdout.write(f"{version}: {version.state} ({len(version.validation_errors)} validation findings)")
        for finding in version.validation_errors:
            if finding["severity"] == "error":
                self.stdout.write(f"  error [{finding['code']}] {finding['message']}")
