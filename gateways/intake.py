"""Seams for what Gateways send the Worker (as opposed to what it pushes to them).

The gateways app authenticates and bounds; the domain apps decide. Both are registered callables, so this app
imports no domain app:

- ``register_log_sink(sink)``: the log pipeline's intake. ``sink(source_kind, instance_id, records, fmt)``
  stores (and correlates) a batch before it returns and answers ``LogIntake(processed, errors)``; the push
  stream's ``LogBatch`` / ``SecurityEventBatch`` and the draft ``SendLogs`` hand their entries to it, tagged with
  the instance id of the caller's credential. Without a sink, nothing is stored and callers say so.
  A push-stream ``LogBatch`` that names a ``source`` (the reference agent's access-log tail) is handed over with
  ``position=LogPosition(source, offset_start, offset_end)``: the sink stores the entries and the source's offset
  together, stores nothing for a range it already stored, and answers ``offset_end`` (where its stored range of
  that source ends now); the stream answers the sender with ``LogAck``. Sinks are called with ``position`` only
  for such batches, so a sink without the keyword keeps working for the rest.
- ``register_certificate_requester(fn)``: what the draft ``GetCertificate`` does for a name no certificate of
  the caller's group covers. ``fn(group_id, domain) -> str`` (e.g. ``"pending"``, ``"outside-policy"``) is put
  into the NOT_FOUND message.
- ``register_block_rate_source(fn)``: what a WAF rollout asks of the stored requests (the log pipeline registers
  it). ``fn(instance_ids, since, until) -> BlockCounts(requests, blocked)`` counts the requests those Gateway
  instances logged in ``[since, until)`` and how many of them the WAF refused. The caller names the instances
  (from the credentials it trusts); the source only counts rows tagged with them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class LogIntake:
    processed: int      # entries stored (or deliberately skipped) — what a sender may count as done
    errors: int         # entries refused as malformed (counted and sampled by the pipeline)
    offset_end: int = -1  # with a position: where the stored range of that source ends now (-1: not tracked)
    duplicate: bool = False  # with a position: the range was already stored; nothing was stored again


@dataclass(frozen=True)
class LogPosition:
    source: str         # the sender's name for the byte stream (e.g. an access log and its inode)
    offset_start: int
    offset_end: int


@dataclass(frozen=True)
class BlockCounts:
    requests: int       # requests the instances logged in the window
    blocked: int        # of those, refused by the WAF (block or rate limit)

    @property
    def rate(self) -> float:
        return self.blocked / self.requests if self.requests else 0.0


LogSink = Callable[..., LogIntake]  # (source_kind, instance_id, records, fmt, *, position=None)
CertificateRequester = Callable[[int, str], str]
BlockRateSource = Callable[[Collection[str], datetime, datetime], BlockCounts]

_log_sink: LogSink | None = None
_certificate_requester: CertificateRequester | None = None
_block_rate_source: BlockRateSource | None = None


def register_log_sink(sink: LogSink) -> None:
    global _log_sink
    _log_sink = sink


def log_sink() -> LogSink | None:
    return _log_sink


def register_certificate_requester(fn: CertificateRequester) -> None:
    global _certificate_requester
    _certificate_requester = fn


def certificate_requester() -> CertificateRequester | None:
    return _certificate_requester


def register_block_rate_source(fn: BlockRateSource) -> None:
    global _block_rate_source
    _block_rate_source = fn


def block_rate_source() -> BlockRateSource | None:
    return _block_rate_source
