"""The log intake: one entry point for every door (gRPC batches, HTTP ndjson, file import).

API (what the gRPC doors in ``gateways`` call)::

    from logpipeline.services import ingest

    result = ingest(source_kind, instance_id, records, fmt="auto")
    # result.accepted, result.stored, result.security_events, result.skipped, result.malformed, result.samples

- ``source_kind``: which door: ``"grpc-stream"`` (push-stream log batches), ``"grpc-sendlogs"`` (the Gateway
  draft's ``SendLogs``), ``"http"``, ``"file"``. Counters and malformed samples are kept per
  (``instance_id``, ``source_kind``) in ``IntakeSource``.
- ``instance_id``: the Gateway instance the sender authenticated as (its credential's name). Every event is tagged
  with it; a record's own ``gateway_id`` never overrides it (a different one is kept as ``claimed_gateway_id``).
- ``records``: a list of ``dict`` (a ``LogEntry`` with the proto's field names, or a JSON access-log object),
  ``str`` (one log line) or ``bytes`` (one log line, UTF-8). ``SendLogs`` answers ``processed_count =
  result.accepted + result.skipped`` and ``error_count = result.malformed``.
- ``fmt``: ``"auto"`` (default), ``"nginx-combined"``, ``"json"``, ``"gateway-entry"`` or ``"gateway-text"``
  (see ``logpipeline.parsers``).

Guarantees: a malformed record (bad UTF-8, binary, longer than ``LOG_MAX_LINE_BYTES``, unparsable, a timestamp in
the far future) is counted, sampled with its reason (the newest ``LOG_MALFORMED_SAMPLES`` per source are kept) and
never stops the batch; every good record of the batch is stored in one transaction before ``ingest`` returns, so
what a door acknowledges is stored. Correlation then runs on the batch (``correlate=False`` skips it) and its
detections become security events and incidents. Raises ``ValueError`` only for a wrong ``source_kind``/``fmt``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from gateways.intake import BlockCounts
from logpipeline.correlation import Detection, Engine
from logpipeline.events import LogEvent, ParseError, ProxyTrust
from logpipeline.parsers import FORMATS, Parser
from logpipeline.storage import store_requests, store_security_events

logger = logging.getLogger(__name__)

SOURCE_KINDS = ("grpc-stream", "grpc-sendlogs", "http", "file")
EXCERPT_CHARS = 300


@dataclass
class Malformed:
    reason: str
    excerpt: str
    length: int


@dataclass
class IngestResult:
    accepted: int = 0  # records that became events
    stored: int = 0  # request rows written
    security_events: int = 0  # Gateway WAF lines written as SecurityEvent
    skipped: int = 0  # well-formed records that are neither (e.g. the Gateway's "server started")
    malformed: int = 0
    samples: list[Malformed] = field(default_factory=list)  # at most LOG_MALFORMED_SAMPLES of this batch
    detections: list[Detection] = field(default_factory=list)
    offset_end: int = -1  # with a position: where the stored range of that source ends now
    duplicate: bool = False  # with a position: the range overlapped what was stored; nothing stored

    @property
    def processed(self) -> int:
        return self.accepted + self.skipped


_trust: tuple[tuple[str, ...], ProxyTrust] | None = None
_engine: Engine | None = None


def proxy_trust() -> ProxyTrust:
    global _trust
    cidrs = tuple(settings.LOG_TRUSTED_PROXIES)
    if _trust is None or _trust[0] != cidrs:
        _trust = (cidrs, ProxyTrust(cidrs))
    return _trust[1]


def default_engine() -> Engine:
    global _engine
    if _engine is None:
        _engine = Engine()
    return _engine


def _excerpt(record: Any) -> str:
    if isinstance(record, bytes):
        return repr(record[:EXCERPT_CHARS])[:EXCERPT_CHARS]
    return str(record)[:EXCERPT_CHARS]


def parse_records(parser: Parser, records: Sequence[Any], fmt: str, result: IngestResult,
                  max_samples: int) -> list[LogEvent]:
    """Turn records into events; count and sample the malformed ones."""
    max_bytes = settings.LOG_MAX_LINE_BYTES
    events: list[LogEvent] = []
    append = events.append
    parse = parser.parse
    for record in records:
        try:
            if isinstance(record, bytes | bytearray | memoryview):
                raw = bytes(record)
                if len(raw) > max_bytes:
                    raise ParseError(f"line longer than {max_bytes} bytes")
                try:
                    record = raw.decode("utf-8")
                except UnicodeDecodeError:
                    record = raw
                    raise ParseError("invalid UTF-8") from None
            elif isinstance(record, str) and len(record) > max_bytes:
                raise ParseError(f"line longer than {max_bytes} bytes")
            elif isinstance(record, dict) and len(str(record.get("message", ""))) > max_bytes:
                raise ParseError(f"message longer than {max_bytes} bytes")
            event = parse(record, fmt)
        except ParseError as exc:
            _malformed(result, str(exc), record, max_samples)
            continue
        except Exception as exc:  # a parser bug must not lose the batch: count it like bad input
            logger.exception("log parser failed on a record")
            _malformed(result, f"internal error: {type(exc).__name__}", record, max_samples)
            continue
        if event is None:
            result.skipped += 1
        else:
            append(event)
    result.accepted = len(events)
    return events


def _malformed(result: IngestResult, reason: str, record: Any, max_samples: int) -> None:
    result.malformed += 1
    if len(result.samples) < max_samples:
        length = len(record) if isinstance(record, bytes | str) else len(str(record))
        result.samples.append(Malformed(reason=reason[:200], excerpt=_excerpt(record), length=length))


def ingest(source_kind: str, instance_id: str, records: Sequence[dict[str, Any] | bytes | str], fmt: str = "auto",
           *, correlate: bool = True, store: bool = True, engine: Engine | None = None,
           position: tuple[str, int, int] | None = None) -> IngestResult:
    """Parse, store and correlate one batch from one source; see the module docstring.

    ``position=(source, offset_start, offset_end)``: the records are that byte range of a shipper's stream. The
    rows and the stream's new offset commit together; a range starting before the stored offset is a resend and
    stores nothing (``duplicate``); ``offset_end`` answers where the stored range ends now."""
    if source_kind not in SOURCE_KINDS:
        raise ValueError(f"unknown source kind {source_kind!r}; one of {', '.join(SOURCE_KINDS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if not instance_id:
        raise ValueError("instance_id is required: events are tagged with the Gateway they came from")
    instance_id = instance_id[:128]
    result = IngestResult()
    parser = Parser(instance_id, proxy_trust(), now=time.time())
    events = parse_records(parser, records, fmt, result, settings.LOG_MALFORMED_SAMPLES)
    requests = [e for e in events if e.kind == "request"]
    security = [e for e in events if e.kind == "security"] if len(requests) != len(events) else []
    if position is not None:
        with transaction.atomic():
            if not _advance(instance_id, position, result):
                return result
            result.stored = store_requests(requests)
            result.security_events = store_security_events(security)
            record_source(source_kind, instance_id, result)
    elif store:
        with transaction.atomic():
            result.stored = store_requests(requests)
            result.security_events = store_security_events(security)
            record_source(source_kind, instance_id, result)
    if correlate and events:
        from logpipeline.incidents import record_detections

        result.detections = (engine or default_engine()).process(events)
        if result.detections:
            record_detections(result.detections)
    return result


def _advance(instance_id: str, position: tuple[str, int, int], result: IngestResult) -> bool:
    """Move the stream's offset in the caller's transaction (row locked); False for a resent range."""
    from logpipeline.models import ShipOffset

    source, start, end = position
    ShipOffset.objects.get_or_create(instance_id=instance_id, source=source[:256])
    row = ShipOffset.objects.select_for_update().get(instance_id=instance_id, source=source[:256])
    if start < row.offset_end:  # already stored (wholly or in part): the sender resumes at our offset
        ShipOffset.objects.filter(pk=row.pk).update(duplicates=F("duplicates") + 1)
        result.duplicate, result.offset_end = True, row.offset_end
        return False
    ShipOffset.objects.filter(pk=row.pk).update(offset_end=end, batches=F("batches") + 1)
    result.offset_end = end
    return True


def record_source(source_kind: str, instance_id: str, result: IngestResult) -> None:
    """Counters and bounded malformed samples of one source, in the caller's transaction."""
    from logpipeline.models import IntakeSource, MalformedSample

    now = timezone.now()
    updated = IntakeSource.objects.filter(instance_id=instance_id, kind=source_kind).update(
        accepted=F("accepted") + result.accepted, malformed=F("malformed") + result.malformed,
        batches=F("batches") + 1, last_seen=now)
    if not updated:
        source, _ = IntakeSource.objects.get_or_create(instance_id=instance_id, kind=source_kind,
                                                       defaults={"first_seen": now})
        IntakeSource.objects.filter(pk=source.pk).update(
            accepted=F("accepted") + result.accepted, malformed=F("malformed") + result.malformed,
            batches=F("batches") + 1, last_seen=now)
    if not result.samples:
        return
    source_id = IntakeSource.objects.filter(instance_id=instance_id, kind=source_kind).values_list(
        "pk", flat=True).get()
    MalformedSample.objects.bulk_create([
        MalformedSample(source_id=source_id, reason=s.reason, length=s.length,
                        excerpt=s.excerpt.replace("\x00", "\\x00").encode("utf-8", "replace").decode())
        for s in result.samples])
    keep = settings.LOG_MALFORMED_SAMPLES
    stale = list(MalformedSample.objects.filter(source_id=source_id).order_by("-id").values_list(
        "pk", flat=True)[keep:keep + 1000])
    if stale:
        MalformedSample.objects.filter(pk__in=stale).delete()


def register_gateway_doors() -> None:
    """The gRPC doors (push-stream log batches, the draft SendLogs) reach ingest through the gateways seam."""
    from gateways.intake import LogIntake, LogPosition, register_block_rate_source, register_log_sink

    def sink(source_kind: str, instance_id: str, records: Sequence[dict[str, Any]], fmt: str, *,
             position: LogPosition | None = None) -> LogIntake:
        where = None if position is None else (position.source, position.offset_start, position.offset_end)
        result = ingest(source_kind, instance_id, list(records), fmt, position=where)
        return LogIntake(processed=result.processed, errors=result.malformed, offset_end=result.offset_end,
                         duplicate=result.duplicate)

    register_log_sink(sink)
    register_block_rate_source(block_counts)


# what the Gateway's logs call a request the WAF refused: a block, or a rate limit (a WAF rule's ``rate_limit``
# action answers 429 on every match, so a bad rule shows up here too)
REFUSED_WAF_ACTIONS = ("block", "rate_limit")


def block_counts(instance_ids: Collection[str], since: datetime, until: datetime) -> BlockCounts:
    """Stored requests of these Gateway instances in ``[since, until)``, and how many the WAF refused."""
    from logpipeline.models import RequestLog

    if not instance_ids:
        return BlockCounts(requests=0, blocked=0)
    counts = RequestLog.objects.filter(gateway_instance__in=list(instance_ids), timestamp__gte=since,
                                       timestamp__lt=until).aggregate(
        requests=Count("id"), blocked=Count("id", filter=Q(waf_action__in=REFUSED_WAF_ACTIONS)))
    return BlockCounts(requests=counts["requests"] or 0, blocked=counts["blocked"] or 0)
