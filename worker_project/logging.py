"""Log formatting: optional JSON lines, and a filter that keeps secrets out of every record."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from types import TracebackType

from worker_project.redaction import redact, redact_text

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            try:
                record.msg = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string must not lose the record
                record.msg = str(record.msg)
            record.args = None
        record.msg = redact_text(str(record.msg))
        return True


class TextFormatter(logging.Formatter):
    """Plain lines; tracebacks are redacted too (an exception message can carry a token)."""

    def formatException(self, ei: _ExcInfo) -> str:  # noqa: N802 - logging's name
        return redact_text(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        if extra:
            payload.update(redact(extra))
        if record.exc_info:
            payload["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)
