"""Write the seeded, labelled log corpus (logpipeline/corpus.py) to files, one per instance and format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from logpipeline import corpus


class Command(BaseCommand):
    help = "Write the labelled corpus: <out>/<instance>.<format>.log per instance, and labels.ndjson."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out", help="output directory (created)")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--benign-lines", type=int, default=20000)
        parser.add_argument("--no-waf-text", action="store_true", help="nginx combined only")

    def handle(self, *args: Any, **options: Any) -> None:
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        lines = corpus.generate(seed=options["seed"], benign_lines=options["benign_lines"],
                                duration=max(2400.0, options["benign_lines"] / 8.3),
                                with_waf_text=not options["no_waf_text"])
        files: dict[tuple[str, str], Any] = {}
        with (out / "labels.ndjson").open("w") as labels:
            for line in lines:
                key = (line.instance, line.fmt)
                if key not in files:
                    files[key] = (out / f"{line.instance}.{line.fmt}.log").open("w")
                files[key].write(line.line + "\n")
                labels.write(json.dumps({"instance": line.instance, "format": line.fmt, "label": line.label,
                                         "line": line.line}) + "\n")
        for handle in files.values():
            handle.close()
        with (out / "expected.json").open("w") as expected:
            json.dump({kind: {"event_type": e, "subject": s} for kind, (e, s) in corpus.EXPECTED.items()},
                      expected, indent=2)
        self.stdout.write(f"{len(lines)} lines in {len(files)} files under {out} (seed {options['seed']}); "
                          f"import each with: manage.py import_logs FILE --format <format> --instance <instance>")
