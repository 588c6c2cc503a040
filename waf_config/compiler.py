"""Compile a validated policy into (a) the exact bytes the Gateway reads and (b) a matcher for replay.

The matcher gives the same answer as evaluating every rule in file order, only faster: per field, one combined
Rust regex (the crate's own engine, so no dialect drift) holds every condition on that field that a regex can
express exactly — the ``regex`` conditions and the string operators (case-insensitive ones on the lowercased
value, as the Gateway lowercases both sides). A field whose combined regex does not match rules out, in one
bitmask step, every rule with a condition on it; only the rules left are evaluated exactly, in file order.
Compiled policies are cached by the SHA-256 of their content.
"""

from __future__ import annotations

import hashlib
import json
import re
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from waf_config.findings import Report
from waf_config.formats import (
    OPERATORS,
    WafRule,
    WafRuleSet,
    dump_waf_rules,
    is_known_field,
    parse_rust_f64,
    parse_rust_i64,
)
from waf_config.gateway_config import WafSettings
from waf_config.modsecurity import BUILTIN_RULE_LINES, DETECT_SQLI, DETECT_XSS, ModSecFile, SecRule, parse_secrule
from waf_config.rust_regex import RustRegex, RustRegexError, compile_rust, escape
from waf_config.traffic import Request

_EXTENDED_FLAG = re.compile(r"\(\?[a-zA-Z-]*x")  # (?x): '#' comments run to end of line, cannot be wrapped
_CHUNK = 64  # patterns per combined regex: keeps each far below the crate's compile-size limit


class CompileError(ValueError):
    def __init__(self, report: Report) -> None:
        self.report = report
        super().__init__("the policy does not validate: " + "; ".join(str(f) for f in report.errors[:5]))


@dataclass(frozen=True, slots=True)
class Policy:
    """What decides a verdict: the rule file, the SecRule files (in the order the Gateway reads them), gateway.yaml's
    WAF settings."""

    rules: WafRuleSet
    modsecurity: tuple[ModSecFile, ...] = ()
    settings: WafSettings = field(default_factory=WafSettings)


# ------------------------------------------------------------------------------------------------ YAML rules


class _Condition:
    __slots__ = ("field", "match")

    def __init__(self, field_name: str, match: Callable[[str], bool | None]) -> None:
        self.field = field_name
        self.match = match  # True / False, or None for an evaluation error (the rule is skipped)


def _string_match(operator: str, value: str, case_sensitive: bool) -> Callable[[str], bool | None]:
    test = {"equals": str.__eq__, "contains": str.__contains__, "starts_with": str.startswith,
            "ends_with": str.endswith}[operator]
    if case_sensitive:
        return lambda text: test(text, value)
    lowered = value.lower()
    return lambda text: test(text.lower(), lowered)


def _condition(field_name: str, operator: str, value: str, case_sensitive: bool) -> _Condition | None:
    """None: the condition errors on every request (unknown field/operator, bad pattern or number)."""
    if not is_known_field(field_name) or operator not in OPERATORS:
        return None
    if operator == "regex":
        try:
            regex = compile_rust(value)
        except RustRegexError:
            return None
        return _Condition(field_name, regex.is_match)
    if operator in ("greater_than", "less_than"):
        bound = parse_rust_f64(value)
        if bound is None:
            return None
        greater = operator == "greater_than"

        def compare(text: str) -> bool | None:
            number = parse_rust_f64(text)
            if number is None:
                return None
            return number > bound if greater else number < bound

        return _Condition(field_name, compare)
    return _Condition(field_name, _string_match(operator, value, case_sensitive))


def _probe_pattern(operator: str, value: str, case_sensitive: bool) -> tuple[str, bool] | None:
    """(pattern, on_lowercased_value) matching exactly when the condition does; None when not expressible."""
    if operator == "regex":
        return None if _EXTENDED_FLAG.search(value) else (value, False)
    if operator not in ("equals", "contains", "starts_with", "ends_with"):
        return None
    literal = escape(value if case_sensitive else value.lower())
    pattern = {"equals": f"\\A{literal}\\z", "contains": literal, "starts_with": f"\\A{literal}",
               "ends_with": f"{literal}\\z"}[operator]
    return pattern, not case_sensitive


def _combine(patterns: list[str]) -> list[RustRegex] | None:
    """Alternations of ``(?:p)`` groups (flags inside a group end with it); None if one will not compile."""
    combined = []
    for start in range(0, len(patterns), _CHUNK):
        chunk = patterns[start:start + _CHUNK]
        try:
            combined.append(compile_rust("|".join(f"(?:{p})" for p in chunk)))
        except RustRegexError:
            if len(chunk) == 1:
                return None
            halves = [_combine(chunk[: len(chunk) // 2]), _combine(chunk[len(chunk) // 2:])]
            if halves[0] is None or halves[1] is None:
                return None
            combined += halves[0] + halves[1]
    return combined


@dataclass(slots=True)
class _Probe:
    field: str
    lowered: bool
    regexes: list[RustRegex]
    mask: int  # the rules ruled out when no regex matches
    empty_hit: bool = False  # the answer for "" (absent headers and query parameters), computed once


@dataclass(slots=True)
class _NumericProbe:
    """greater_than / less_than conditions on one field: sorted bounds, so one bisect finds every rule that holds."""

    field: str
    greater: bool
    bounds: list[float]
    matching: list[int]  # matching[i]: the rules that hold when bisect gives i
    mask: int


def _numeric_probe(field_name: str, greater: bool, entries: list[tuple[float, int]]) -> _NumericProbe:
    entries.sort()
    bounds = [b for b, _ in entries]
    mask = 0
    for _, index in entries:
        mask |= 1 << index
    matching = []
    for i in range(len(entries) + 1):
        held = entries[:i] if greater else entries[i:]  # x > bound for the i smallest; x < bound for the rest
        bits = 0
        for _, index in held:
            bits |= 1 << index
        matching.append(bits)
    return _NumericProbe(field_name, greater, bounds, matching, mask)


@dataclass(frozen=True, slots=True)
class RuleHit:
    rule_id: str
    action_type: str
    message: str


class RuleMatcher:
    """The YAML rules of one policy, compiled. ``evaluate`` returns (the stopping hit or None, logged rule ids)."""

    def __init__(self, rule_set: WafRuleSet) -> None:
        self.rules: list[tuple[WafRule, list[_Condition]]] = []
        live = 0
        patterns: dict[tuple[str, bool], list[tuple[str, int]]] = {}
        numeric: dict[tuple[str, bool], list[tuple[float, int]]] = {}
        for index, rule in enumerate(rule_set.rules):
            conditions = [_condition(c.field, c.operator, c.value, c.case_sensitive) for c in rule.conditions]
            self.rules.append((rule, [c for c in conditions if c is not None]))
            if not rule.enabled or not conditions or any(c is None for c in conditions) \
                    or rule.action.action_type not in ("block", "log", "rate_limit"):
                continue  # never fires: disabled, errors on every request, or an action the Gateway treats as Allow
            live |= 1 << index
            for cond in rule.conditions:
                if cond.operator in ("greater_than", "less_than"):
                    bound = parse_rust_f64(cond.value)
                    if bound is not None and bound == bound:  # NaN bounds never hold: left to exact evaluation
                        numeric.setdefault((cond.field, cond.operator == "greater_than"), []).append((bound, index))
                    continue
                expressed = _probe_pattern(cond.operator, cond.value, cond.case_sensitive)
                if expressed is not None:
                    patterns.setdefault((cond.field, expressed[1]), []).append((expressed[0], index))
        self.live = live
        self.probes: list[_Probe] = []
        for (field_name, lowered), entries in patterns.items():
            regexes = _combine([p for p, _ in entries])
            if regexes is None:
                continue  # no prefilter for this field: its rules are always evaluated
            mask = 0
            for _, index in entries:
                mask |= 1 << index
            probe = _Probe(field_name, lowered, regexes, mask)
            probe.empty_hit = any(r.is_match("") for r in regexes)
            self.probes.append(probe)
        self.numeric = [_numeric_probe(f, g, entries) for (f, g), entries in numeric.items()]

    def candidates(self, request: Request, values: dict[str, str | None]) -> int:
        ruled_out = 0
        for probe in self.probes:
            name = probe.field
            value = values.get(name)
            if value is None:
                value = values[name] = request.field_value(name)
            if not value:
                hit = probe.empty_hit
            else:
                text = value.lower() if probe.lowered else value
                hit = False
                for regex in probe.regexes:
                    if regex.is_match(text):
                        hit = True
                        break
            if not hit:
                ruled_out |= probe.mask
        for nprobe in self.numeric:
            name = nprobe.field
            value = values.get(name)
            if value is None:
                value = values[name] = request.field_value(name)
            number = parse_rust_f64(value)  # type: ignore[arg-type]
            if number is None or number != number:  # an error or NaN: none of these conditions holds
                ruled_out |= nprobe.mask
                continue
            at = bisect_left(nprobe.bounds, number) if nprobe.greater else bisect_right(nprobe.bounds, number)
            ruled_out |= nprobe.mask & ~nprobe.matching[at]
        return self.live & ~ruled_out

    def evaluate(self, request: Request) -> tuple[RuleHit | None, list[str]]:
        values: dict[str, str | None] = {}
        remaining = self.candidates(request, values) if self.probes or self.numeric else self.live
        logged: list[str] = []
        while remaining:
            low = remaining & -remaining
            remaining ^= low
            rule, conditions = self.rules[low.bit_length() - 1]
            fired = True
            for cond in conditions:
                value = values.get(cond.field)
                if value is None:
                    value = values[cond.field] = request.field_value(cond.field)
                if not cond.match(value):  # type: ignore[arg-type]  # False, or None: an error skips the rule
                    fired = False
                    break
            if not fired:
                continue
            action = rule.action.action_type
            if action == "log":
                logged.append(rule.id)
                continue
            return RuleHit(rule.id, action, rule.action.message), logged
        return None, logged


# ------------------------------------------------------------------------------------------------ ModSecurity


def _secrule_test(rule: SecRule) -> Callable[[str], bool]:
    op, arg = rule.operator, rule.operator_arg
    if op in ("@detectSQLi", "@detectXSS"):
        regexes = [compile_rust(p) for p in (DETECT_SQLI if op == "@detectSQLi" else DETECT_XSS)]
        return lambda text: any(r.is_match(text) for r in regexes)
    if op == "@rx":
        try:
            return compile_rust(arg).is_match
        except RustRegexError:  # the Gateway's fallback: case-insensitive substring of the raw argument
            needle = arg.lower()
            return lambda text: needle in text.lower()
    if op == "@contains":
        return lambda text: arg in text
    if op == "@beginsWith":
        return lambda text: text.startswith(arg)
    if op == "@endsWith":
        return lambda text: text.endswith(arg)
    if op == "@eq":
        return lambda text: text == arg
    if op in ("@gt", "@lt"):
        bound = parse_rust_i64(arg)
        greater = op == "@gt"

        def compare(text: str) -> bool:
            number = parse_rust_i64(text)
            if number is None or bound is None:
                return False
            return number > bound if greater else number < bound

        return compare
    return lambda text: False  # unsupported operator: a warning in the Gateway's log, never a match


@dataclass(frozen=True, slots=True)
class SecRuleHit:
    rule_id: str
    outcome: str  # "block" or "log"
    message: str  # "<msg> (Rule ID: <id>)"


class ModSecMatcher:
    """Built-in rules, then each file's rules, in order; first block or log decides, allow/pass continue."""

    def __init__(self, files: tuple[ModSecFile, ...]) -> None:
        rules = [r for r in (parse_secrule(line) for line in BUILTIN_RULE_LINES) if r is not None]
        for file in files:
            rules.extend(file.rules)
        self.rules = [(rule, _secrule_test(rule)) for rule in rules]

    def evaluate(self, request: Request) -> SecRuleHit | None:
        cache: dict[str, list[str]] = {}
        for rule, test in self.rules:
            outcome = rule.outcome
            for variable in rule.variables:
                values = cache.get(variable)
                if values is None:
                    values = cache[variable] = request.variable_values(variable)
                if any(test(v) for v in values):
                    if outcome == "allow":
                        break  # treated as no match: evaluation continues with the next rule
                    return SecRuleHit(rule.id, outcome, f"{rule.msg} (Rule ID: {rule.id})")
        return None


# ------------------------------------------------------------------------------------------------ policy


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    content_hash: str
    files: dict[str, bytes]  # "waf-rules.yaml", "modsecurity/<name>": exactly what the Gateway reads
    policy: Policy
    rules: RuleMatcher
    modsecurity: ModSecMatcher | None


_CACHE: OrderedDict[str, CompiledPolicy] = OrderedDict()
_CACHE_SIZE = 16


def policy_files(policy: Policy) -> dict[str, bytes]:
    files = {"waf-rules.yaml": dump_waf_rules(policy.rules).encode("utf-8")}
    for file in policy.modsecurity:
        files[f"modsecurity/{file.name}"] = file.text.encode("utf-8")
    return files


def content_hash(policy: Policy) -> str:
    digest = hashlib.sha256()
    for name, data in policy_files(policy).items():
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    digest.update(json.dumps(asdict(policy.settings), sort_keys=True).encode())
    return digest.hexdigest()


def compile_policy(policy: Policy, *, validate: bool = True) -> CompiledPolicy:
    """Validate (errors raise CompileError), then compile once per content hash."""
    key = content_hash(policy)
    cached = _CACHE.get(key)
    if cached is not None:
        _CACHE.move_to_end(key)
        return cached
    if validate:
        from waf_config.validation import validate_modsecurity_file, validate_rule_set

        report = validate_rule_set(policy.rules)
        for file in policy.modsecurity:
            report.extend(validate_modsecurity_file(file.text, file.name).findings)
        if not report.ok:
            raise CompileError(report)
    compiled = CompiledPolicy(
        key, policy_files(policy), policy, RuleMatcher(policy.rules),
        ModSecMatcher(policy.modsecurity) if policy.settings.modsecurity_enabled else None,
    )
    _CACHE[key] = compiled
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return compiled
