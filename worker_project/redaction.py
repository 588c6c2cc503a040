"""One place that knows what a secret looks like, used by logging and by Sentry's before_send."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"

PEM_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|\Z)", re.DOTALL)
# key=value / "key": "value" pairs whose key names a secret
SECRET_PAIR = re.compile(
    r"(?i)([\"']?\b[\w-]*(?:password|passwd|secret|token|api[_-]?key|private[_-]?key|hmac|authorization|dsn)"
    r"[\w-]*[\"']?\s*[:=]\s*)([\"']?)([^\s\"',;&}]+)"
)
BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[a-z0-9._~+/=-]{8,}")
SECRET_KEY_NAMES = re.compile(
    r"(?i)(password|passwd|secret|token|api[_-]?key|private[_-]?key|key_pem|hmac|authorization|cookie|dsn|"
    r"encryption_keys?|eab)"
)


def redact_text(text: str) -> str:
    text = PEM_BLOCK.sub("[redacted PEM block]", text)
    text = BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def redact(value: Any, _depth: int = 0) -> Any:
    """Redact secrets in nested dicts/lists/strings: values under secret-looking keys, PEM blocks, tokens."""
    if _depth > 20:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and SECRET_KEY_NAMES.search(k) and v not in (None, "")
                else redact(v, _depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(v, _depth + 1) for v in value)
    return value
