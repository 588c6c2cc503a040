"""Import historical log files (plain or gzip) through the intake, with progress; resumable after interruption."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from logpipeline.importer import ImportProgress, describe, import_file

FILE_FORMATS = ("nginx-combined", "json", "gateway-text")


class Command(BaseCommand):
    help = ("Import log files through the same intake as the fleet (stored for replay, correlated). Resumable: run "
            "it again after an interruption and it continues where the last committed batch ended.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", help="log files, plain or gzip")
        parser.add_argument("--format", required=True, choices=FILE_FORMATS)
        parser.add_argument("--instance", default="import", help="Gateway instance the events are tagged with")
        parser.add_argument("--batch", type=int, default=5000, help="lines per committed batch")
        parser.add_argument("--no-correlate", action="store_true", help="store only, feed no detector")
        parser.add_argument("--restart", action="store_true", help="ignore an earlier checkpoint of these files")

    def handle(self, *args: Any, **options: Any) -> None:
        paths = [Path(f) for f in options["files"]]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise CommandError(f"not a file: {', '.join(missing)}")
        if options["batch"] < 1:
            raise CommandError("--batch must be at least 1")
        tty = sys.stderr.isatty()

        def show(state: ImportProgress) -> None:
            text = describe(state)
            self.stderr.write(("\r" + text) if tty else text, ending="" if tty and not state.finished else "\n")

        for path in paths:
            state = import_file(path, options["format"], options["instance"], batch_lines=options["batch"],
                                correlate=not options["no_correlate"], restart=options["restart"], progress=show)
            if state.resumed_from and state.finished:
                note = f" (resumed at byte {state.resumed_from:,})"
            else:
                note = ""
            self.stdout.write(f"{path}: {state.lines:,} lines, {state.malformed:,} malformed{note}")
