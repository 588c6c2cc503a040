"""Seams for what Gateways send the Worker (as opposed to what it pushes to them).

The gateways app authenticates and bounds; the domain apps decide. Both are registered callables, so this app
imports no domain app:

- ``register_log_sink(sink)``: the log pipeline's intake. ``sink(source_kind, instance_id, records, fmt)``
  stores (and correlates) a batch before it returns and answers ``LogIntake(processed, errors)``; the push
  stream's ``LogBatch`` / ``SecurityEventBatch`` and the draft ``SendLogs`` hand their entries to it, tagged with
  the instance id of the caller's credential. Without a sink, nothing is stored and callers say so.
- ``register_certificate_requester(fn)``: what the draft ``GetCertificate`` does for a name no certificate of
  the caller's group covers. ``fn(group_id, domain) -> str`` (e.g. ``"pending"``, ``"outside-policy"``) is put
  into the NOT_FOUND message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LogIntake:
    processed: int      # entries stored (or deliberately skipped) — what a sender may count as done
    errors: int         # entries refused as malformed (counted and sampled by the pipeline)


LogSink = Callable[[str, str, Sequence[dict[str, Any]], str], LogIntake]
CertificateRequester = Callable[[int, str], str]

_log_sink: LogSink | None = None
_certificate_requester: CertificateRequester | None = None


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
