"""Load a JSON-lines file of requests as a replay set: `manage.py import_replay_corpus FILE --name NAME`.

One request per line with ``traffic.Request`` fields: method, uri, headers (exact-case names), client_ip,
timestamp (seconds, the rate limiter's clock), label (benign / attack, for the false-positive estimate)…"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from waf_config.services.common import WafError
from waf_config.services.replay_sets import import_corpus


class Command(BaseCommand):
    help = "Import a JSON-lines corpus of requests as a replay set."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")
        parser.add_argument("--name", required=True)
        parser.add_argument("--replace", action="store_true", help="load an existing set again")

    def handle(self, *args: Any, **opts: Any) -> None:
        path = Path(opts["file"])
        try:
            with path.open(encoding="utf-8") as fh:
                replay_set = import_corpus(opts["name"], fh, actor="command:import_replay_corpus",
                                           source=path.name, replace=opts["replace"])
        except (OSError, WafError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"replay set {replay_set.name}: {replay_set.request_count} requests")
