"""The Gateway's regex dialect, checked and matched by the Rust ``regex`` crate itself.

The Gateway compiles WAF patterns with ``regex`` 1.11.1 (FORMATS §a.2). ``flpc`` is a PyO3 binding whose wheel
embeds ``regex`` 1.10.5 / ``regex-syntax`` 0.8.4 and compiles with ``RegexBuilder::new(p).build()`` — the same
defaults as the Gateway's ``Regex::new``. 1.10.5 → 1.11.1 changed no syntax, only the Unicode tables (15 → 16).
See docs/waf.md for the choice and the known differences.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import flpc

ENGINE = "Rust regex crate 1.10.5 via flpc 0.2.5 (the Gateway uses 1.11.1: same syntax, Unicode 16 tables)"

# Rust's `a*+` is `(a*)+`, greedy, not possessive as in Python 3.11+/PCRE: it compiles, but means something else.
_POSSESSIVE = re.compile(r"(?<!\\)(?:[*+?]|\})\+")
# Rust's \Z does not exist (error) and $ is end-of-text; Python users often rely on $ before a final newline.


class RustRegexError(ValueError):
    """The pattern does not compile in the Rust regex crate."""

    def __init__(self, pattern: str, reason: str, column: int | None) -> None:
        self.pattern = pattern
        self.reason = reason
        self.column = column
        at = f" at column {column}" if column else ""
        super().__init__(f"invalid Rust regex{at}: {reason}")


class RustRegex:
    """A compiled pattern; ``is_match`` is the crate's unanchored search, as the Gateway calls it."""

    __slots__ = ("pattern", "_compiled")

    def __init__(self, pattern: str, compiled: Any) -> None:
        self.pattern = pattern
        self._compiled = compiled

    def is_match(self, text: str) -> bool:
        try:
            return flpc.search(self._compiled, text) is not None
        except UnicodeEncodeError:  # lone surrogates cannot reach the Gateway as UTF-8 either
            return flpc.search(self._compiled, text.encode("utf-8", "replace").decode("utf-8")) is not None

    def __repr__(self) -> str:
        return f"RustRegex({self.pattern!r})"


def _parse_error(pattern: str, message: str) -> RustRegexError:
    lines = message.splitlines()
    reason = next((ln[len("error: "):] for ln in lines if ln.startswith("error: ")), lines[-1] if lines else message)
    column = None
    for i, ln in enumerate(lines):
        if ln.strip().startswith("^") and i > 0:
            column = len(ln) - len(ln.lstrip()) - (len(lines[i - 1]) - len(lines[i - 1].lstrip())) + 1
            break
    return RustRegexError(pattern, reason.strip(), column)


@lru_cache(maxsize=8192)
def compile_rust(pattern: str) -> RustRegex:
    """Compile with the Rust crate's defaults (size limit included); raises RustRegexError."""
    try:
        return RustRegex(pattern, flpc.compile(pattern, None))
    except ValueError as exc:
        raise _parse_error(pattern, str(exc)) from None


def rust_regex_error(pattern: str) -> RustRegexError | None:
    try:
        compile_rust(pattern)
    except RustRegexError as exc:
        return exc
    return None


def dialect_warnings(pattern: str) -> list[str]:
    """Patterns the crate accepts but that mean something else than in Python's ``re`` or PCRE."""
    notes = []
    if _POSSESSIVE.search(pattern):
        notes.append("'*+', '++', '?+' or '}+' is a nested greedy repetition in Rust, not a possessive quantifier")
    return notes


def escape(text: str) -> str:
    """The crate's own ``regex::escape``: the literal ``text`` as a pattern."""
    return str(flpc.escape(text))
