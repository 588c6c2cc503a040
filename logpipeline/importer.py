"""The file door: import historical logs (plain or gzip) through ``ingest``, resumable.

A file is known by its fingerprint (SHA-256 of its first MiB and its size), so a renamed file is still recognised
and a rewritten one is imported afresh. After each batch, the stored rows and the checkpoint (bytes of
decompressed input done) commit in one transaction: an interrupted import resumes at the first line not stored,
and no line is stored twice. Correlation state is in Redis, outside that transaction: a crash between the commit
and the correlation of the last batch can at worst miss that batch's counts, never double them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.db import transaction

from logpipeline.models import ImportCheckpoint
from logpipeline.services import ingest

GZIP_MAGIC = b"\x1f\x8b"
FINGERPRINT_BYTES = 1024 * 1024


@dataclass
class ImportProgress:
    path: str
    lines: int
    malformed: int
    done_bytes: int  # of the file on disk (compressed bytes for gzip)
    total_bytes: int
    lines_per_second: float
    resumed_from: int = 0
    finished: bool = False


def fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        digest.update(handle.read(FINGERPRINT_BYTES))
    digest.update(str(path.stat().st_size).encode())
    return digest.hexdigest()


def _open(path: Path) -> tuple[BinaryIO, BinaryIO]:
    raw = path.open("rb")
    if raw.read(2) == GZIP_MAGIC:
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw  # type: ignore[return-value]
    raw.seek(0)
    return raw, raw


def _skip(stream: BinaryIO, offset: int) -> None:
    if isinstance(stream, io.BufferedReader):
        stream.seek(offset)
        return
    remaining = offset  # gzip: decompress and drop what was done
    while remaining:
        chunk = stream.read(min(remaining, 1 << 20))
        if not chunk:
            break
        remaining -= len(chunk)


def import_file(path: Path, fmt: str, instance: str, *, batch_lines: int = 5000, correlate: bool = True,
                restart: bool = False, progress: Callable[[ImportProgress], None] | None = None,
                stop_after_batches: int | None = None) -> ImportProgress:
    """Import one file; returns the final progress. ``stop_after_batches`` simulates an interruption (tests)."""
    path = path.resolve()
    total = path.stat().st_size
    checkpoint, _ = ImportCheckpoint.objects.get_or_create(fingerprint=fingerprint(path),
                                                           defaults={"path": str(path)})
    if restart:
        ImportCheckpoint.objects.filter(pk=checkpoint.pk).update(offset=0, lines=0, malformed=0, finished=False)
        checkpoint.refresh_from_db()
    state = ImportProgress(str(path), checkpoint.lines, checkpoint.malformed, 0, total, 0.0,
                           resumed_from=checkpoint.offset, finished=checkpoint.finished)
    if checkpoint.finished:
        state.done_bytes = total
        return state
    stream, raw = _open(path)
    started = time.monotonic()
    done_lines = 0
    batches = 0
    try:
        _skip(stream, checkpoint.offset)
        offset = checkpoint.offset
        while True:
            lines: list[bytes] = []
            consumed = 0
            for line in stream:
                consumed += len(line)
                lines.append(line.rstrip(b"\r\n"))
                if len(lines) >= batch_lines:
                    break
            if not lines:
                break
            with transaction.atomic():
                result = ingest("file", instance, lines, fmt, correlate=correlate)
                offset += consumed
                ImportCheckpoint.objects.filter(pk=checkpoint.pk).update(
                    offset=offset, lines=checkpoint.lines + done_lines + len(lines),
                    malformed=state.malformed + result.malformed, path=str(path))
            done_lines += len(lines)
            batches += 1
            state.lines = checkpoint.lines + done_lines
            state.malformed += result.malformed
            state.done_bytes = raw.tell() if raw is not stream else offset
            state.lines_per_second = done_lines / max(time.monotonic() - started, 1e-6)
            if progress is not None:
                progress(state)
            if stop_after_batches is not None and batches >= stop_after_batches:
                return state
        ImportCheckpoint.objects.filter(pk=checkpoint.pk).update(finished=True)
        state.finished = True
        state.done_bytes = total
        if progress is not None:
            progress(state)
        return state
    finally:
        stream.close()
        if raw is not stream:
            raw.close()


def describe(state: ImportProgress) -> str:
    share = 100.0 * state.done_bytes / state.total_bytes if state.total_bytes else 100.0
    return (f"{os.path.basename(state.path)}: {share:5.1f}%  {state.lines:,} lines  {state.malformed:,} malformed  "
            f"{state.lines_per_second:,.0f} lines/s" + ("  done" if state.finished else ""))
